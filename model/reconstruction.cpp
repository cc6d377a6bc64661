#include "model/reconstruction.h"

#include <cmath>
#include <limits>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/ThreadLocalState.h>
#include <torch/nn/functional/activation.h>
#include <torch/nn/functional/upsampling.h>
#include <torch/nn/init.h>
#include <torch/nn/modules/activation.h>
#include <torch/utils.h>

#include "common/error.h"
#include "model/attention.h"
#include "model/fused_dropout.h"
#include "model/linear.h"
#include "model/memory_bank.h"

namespace uniad::model {

namespace F = torch::nn::functional;

torch::Tensor jitter_features(const torch::Tensor& x, int64_t channel_dim, double scale, double prob) {
  if (scale <= 0 || prob <= 0) return x;
  if (prob < 1 && torch::rand({1}).item<double>() > prob) return x;  // one draw per forward pass
  const double channels = static_cast<double>(x.size(channel_dim));
  const torch::Tensor norm = x.norm(2, {channel_dim}, /*keepdim=*/true);
  return x + torch::randn_like(x) * (norm * (scale / channels));
}

torch::Tensor neighbor_mask(int grid_h, int grid_w, int window) {
  const int tokens = grid_h * grid_w, half = window / 2;
  torch::Tensor mask = torch::zeros({tokens, tokens});
  auto m = mask.accessor<float, 2>();
  const float blocked = -std::numeric_limits<float>::infinity();
  for (int q = 0; q < tokens; ++q) {
    const int qr = q / grid_w, qc = q % grid_w;
    for (int r = std::max(0, qr - half); r <= std::min(grid_h - 1, qr + half); ++r)
      for (int c = std::max(0, qc - half); c <= std::min(grid_w - 1, qc + half); ++c) m[q][r * grid_w + c] = blocked;
  }
  return mask;
}

torch::Tensor reconstruction_error(const torch::Tensor& reconstruction, const torch::Tensor& features) {
  return (reconstruction - features).pow(2).sum(1, /*keepdim=*/true).sqrt();
}

torch::Tensor ReconstructionNet::anomaly_map(const torch::Tensor& features) {
  return reconstruction_error(forward(features), features);
}

int64_t parameter_count(const torch::nn::Module& module) {
  int64_t n = 0;
  for (const auto& p : module.parameters())
    if (p.requires_grad()) n += p.numel();
  return n;
}

// ---------------------------------------------------------------------------------------

MultiheadAttentionImpl::MultiheadAttentionImpl(int embed_dim, int heads, double dropout)
    : heads_(heads), dropout_(dropout) {
  in_proj_weight = register_parameter("in_proj_weight", torch::empty({3 * embed_dim, embed_dim}));
  in_proj_bias = register_parameter("in_proj_bias", torch::zeros({3 * embed_dim}));
  out_proj = register_module("out_proj", torch::nn::Linear(embed_dim, embed_dim));
}

torch::Tensor MultiheadAttentionImpl::forward(const torch::Tensor& query, const torch::Tensor& key,
                                              const torch::Tensor& value, const torch::Tensor& mask) {
  return out_proj(attend(query, key, value, mask)).view({query.size(0), key.size(1), query.size(2)});
}

torch::Tensor MultiheadAttentionImpl::attend(const torch::Tensor& query, const torch::Tensor& key,
                                             const torch::Tensor& value, const torch::Tensor& mask) {
  const int64_t tq = query.size(0), batch = key.size(1), tk = key.size(0), embed = query.size(2);
  const int64_t head_dim = embed / heads_;
  const auto w = in_proj_weight.chunk(3), b = in_proj_bias.chunk(3);
  // Project, then split heads: [T, B, E] -> [B * heads, T, head_dim] (nn.MultiheadAttention's layout).
  auto split_heads = [&](const torch::Tensor& t, int64_t len) {
    return t.expand({len, batch, embed}).contiguous().view({len, batch * heads_, head_dim}).transpose(0, 1);
  };
  // Inference runs the projections through oneDNN (model/linear.h); a query of batch 1 (the
  // decoder's learned table at inference) is projected once and shared by the batch.
  const bool inference = !is_training() && fused_linear_applies(query);
  auto project = [&](const torch::Tensor& x, int i) { return inference ? linear(x, w[i], b[i]) : torch::linear(x, w[i], b[i]); };
  const torch::Tensor q = split_heads(project(query, 0), tq);
  const torch::Tensor k = split_heads(project(key, 1), tk);
  const torch::Tensor v = split_heads(project(value, 2), tk);
  // The kernel (head by head, fused SDPA, or the reference's explicit softmax) is attention.h's choice.
  return attention(q, k, v, mask, dropout_, is_training()).view({tq * batch, embed});
}

static torch::nn::LayerNorm layer_norm(const ModelOptions& o) {
  return torch::nn::LayerNorm(torch::nn::LayerNormOptions({o.hidden}).eps(o.layer_norm_eps));
}

EncoderLayerImpl::EncoderLayerImpl(const ModelOptions& o) : dropout_(o.dropout) {
  self_attn = register_module("self_attn", MultiheadAttention(o.hidden, o.heads, o.dropout));
  linear1 = register_module("linear1", torch::nn::Linear(o.hidden, o.feedforward));
  linear2 = register_module("linear2", torch::nn::Linear(o.feedforward, o.hidden));
  norm1 = register_module("norm1", layer_norm(o));
  norm2 = register_module("norm2", layer_norm(o));
}

// residual + dropout(layer(input)): the residual connection around a sublayer's last linear
// layer; at inference one oneDNN product with the addition in it (model/linear.h).
static torch::Tensor residual_linear(const torch::Tensor& residual, const torch::Tensor& input,
                                     torch::nn::Linear& layer, double p, bool train) {
  if (!train) return linear(input, layer->weight, layer->bias, residual);
  return add_dropout(residual, layer->forward(input).view(residual.sizes()), p, train);
}

// dropout(relu(layer(x))): the feed-forward block's hidden activation (one product at inference).
static torch::Tensor relu_linear(const torch::Tensor& x, torch::nn::Linear& layer, double p, bool train) {
  if (!train) return linear(x, layer->weight, layer->bias, {}, /*relu=*/true);
  return relu_dropout(layer->forward(x), p, train);
}

// A sublayer's LayerNorm through model/linear.h's layer_norm: the inference kernel without
// autograd, at::layer_norm (what the module itself calls) otherwise.
static torch::Tensor normalize(torch::nn::LayerNorm& norm, const torch::Tensor& x) {
  return layer_norm(x, norm->weight, norm->bias, norm->options.eps());
}

torch::Tensor EncoderLayerImpl::forward(const torch::Tensor& src, const torch::Tensor& pos, const torch::Tensor& mask) {
  const bool train = is_training();
  const torch::Tensor q = src + pos;  // positions go into queries and keys, never values
  // Dropout is fused into the softmax, the ReLU and the residual additions (fused_dropout.h).
  const torch::Tensor x =
      normalize(norm1, residual_linear(src, self_attn->attend(q, q, src, mask), self_attn->out_proj, dropout_, train));
  return normalize(norm2, residual_linear(x, relu_linear(x, linear1, dropout_, train), linear2, dropout_, train));
}

DecoderLayerImpl::DecoderLayerImpl(const ModelOptions& o, bool has_query_table) : dropout_(o.dropout) {
  if (has_query_table) learned_embed = register_module("learned_embed", torch::nn::Embedding(o.grid_h * o.grid_w, o.hidden));
  self_attn = register_module("self_attn", MultiheadAttention(o.hidden, o.heads, o.dropout));
  multihead_attn = register_module("multihead_attn", MultiheadAttention(o.hidden, o.heads, o.dropout));
  linear1 = register_module("linear1", torch::nn::Linear(o.hidden, o.feedforward));
  linear2 = register_module("linear2", torch::nn::Linear(o.feedforward, o.hidden));
  norm1 = register_module("norm1", layer_norm(o));
  norm2 = register_module("norm2", layer_norm(o));
  norm3 = register_module("norm3", layer_norm(o));
}

torch::Tensor DecoderLayerImpl::forward(const torch::Tensor& previous, const torch::Tensor& memory,
                                        const torch::Tensor& memory_pos, const torch::Tensor& pos,
                                        const torch::Tensor& mask_a, const torch::Tensor& mask_b) {
  const bool train = is_training();
  // The query stream starts from this layer's own learned table, not from the previous output.
  const torch::Tensor query = learned_embed ? learned_embed->weight.unsqueeze(1).repeat({1, previous.size(1), 1}) : previous;
  // At inference the table's queries are the same for every sample: given with batch 1, attend()
  // projects them once for the whole batch (the positions are the same for every sample too).
  const torch::Tensor query_pos =
      learned_embed && !train ? learned_embed->weight.unsqueeze(1) + pos.narrow(1, 0, 1) : query + pos;
  torch::Tensor x = normalize(norm1, residual_linear(query, self_attn->attend(query_pos, memory_pos, memory, mask_a),
                                                     self_attn->out_proj, dropout_, train));
  x = normalize(norm2, residual_linear(x, multihead_attn->attend(x + pos, previous + pos, previous, mask_b),
                                       multihead_attn->out_proj, dropout_, train));
  return normalize(norm3, residual_linear(x, relu_linear(x, linear1, dropout_, train), linear2, dropout_, train));
}

PositionEmbeddingImpl::PositionEmbeddingImpl(int grid_h, int grid_w, int dim) {
  row_embed = register_module("row_embed", torch::nn::Embedding(grid_h, dim / 2));
  col_embed = register_module("col_embed", torch::nn::Embedding(grid_w, dim / 2));
}

torch::Tensor PositionEmbeddingImpl::forward() {
  const int64_t h = row_embed->weight.size(0), w = col_embed->weight.size(0), half = row_embed->weight.size(1);
  // Token t = r * W + c gets [col_embed[c] | row_embed[r]].
  const torch::Tensor cols = col_embed->weight.unsqueeze(0).expand({h, w, half});
  const torch::Tensor rows = row_embed->weight.unsqueeze(1).expand({h, w, half});
  return torch::cat({cols, rows}, -1).reshape({h * w, 2 * half});
}

TransformerEncoderImpl::TransformerEncoderImpl(const ModelOptions& o) {
  layers = register_module("layers", torch::nn::ModuleList());
  for (int i = 0; i < o.encoder_layers; ++i) layers->push_back(EncoderLayer(o));
}

torch::Tensor TransformerEncoderImpl::forward(torch::Tensor src, const torch::Tensor& pos, const torch::Tensor& mask) {
  for (const auto& layer : *layers) src = layer->as<EncoderLayerImpl>()->forward(src, pos, mask);
  return src;  // no final encoder norm (post-norm layers)
}

TransformerDecoderImpl::TransformerDecoderImpl(const ModelOptions& o) {
  layers = register_module("layers", torch::nn::ModuleList());
  for (int i = 0; i < o.decoder_layers; ++i) {
    const bool table = o.query_mode == QueryMode::kLayerwise || (o.query_mode == QueryMode::kFirstLayer && i == 0);
    layers->push_back(DecoderLayer(o, table));
  }
  norm = register_module("norm", layer_norm(o));
}

torch::Tensor TransformerDecoderImpl::forward(const torch::Tensor& memory, const torch::Tensor& pos,
                                              const torch::Tensor& mask_a, const torch::Tensor& mask_b) {
  torch::Tensor out = memory;  // layer 0's "previous output" is the encoder output
  const torch::Tensor memory_pos = memory + pos;
  for (const auto& layer : *layers) {
    out = layer->as<DecoderLayerImpl>()->forward(out, memory, memory_pos, pos, mask_a, mask_b);
  }
  return normalize(norm, out);
}

TransformerImpl::TransformerImpl(const ModelOptions& o) {
  encoder = register_module("encoder", TransformerEncoder(o));
  decoder = register_module("decoder", TransformerDecoder(o));
}

UniAD::UniAD(const ModelOptions& options) : ReconstructionNet(options) {
  const ModelOptions& o = options_;
  o.validate();
  input_proj = register_module("input_proj", torch::nn::Linear(o.in_channels, o.hidden));
  output_proj = register_module("output_proj", torch::nn::Linear(o.hidden, o.in_channels));
  pos_embed = register_module("pos_embed", PositionEmbedding(o.grid_h, o.grid_w, o.hidden));
  transformer = register_module("transformer", Transformer(o));
  // A buffer, so that model->to(device or dtype) moves it with the parameters. It is not
  // saved in checkpoints (only parameters are): it is rebuilt from the options.
  if (o.neighbor_window > 0) mask_ = register_buffer("neighbor_mask", neighbor_mask(o.grid_h, o.grid_w, o.neighbor_window));
  reset_parameters();
}

void UniAD::reset_parameters() {
  torch::NoGradGuard no_grad;
  // xavier-uniform on every linear weight (biases 0), including the packed q|k|v projection.
  for (auto& module : modules(/*include_self=*/false)) {
    if (auto* linear = module->as<torch::nn::LinearImpl>()) {
      torch::nn::init::xavier_uniform_(linear->weight);
      torch::nn::init::zeros_(linear->bias);
    } else if (auto* attention = module->as<MultiheadAttentionImpl>()) {
      torch::nn::init::xavier_uniform_(attention->in_proj_weight);
      torch::nn::init::zeros_(attention->in_proj_bias);
    }
  }
  torch::nn::init::uniform_(pos_embed->row_embed->weight, 0, 1);
  torch::nn::init::uniform_(pos_embed->col_embed->weight, 0, 1);
  for (const auto& layer : *transformer->decoder->layers) {
    auto* decoder_layer = layer->as<DecoderLayerImpl>();
    if (decoder_layer->learned_embed) torch::nn::init::normal_(decoder_layer->learned_embed->weight, 0, 1);
  }
  if (!options_.identical_layer_init) return;
  // The reference deep-copies one prototype layer, so these start equal in every layer.
  const auto& encoder = *transformer->encoder->layers;
  for (std::size_t i = 1; i < encoder.size(); ++i) {
    encoder[i]->as<EncoderLayerImpl>()->self_attn->in_proj_weight.copy_(
        encoder[0]->as<EncoderLayerImpl>()->self_attn->in_proj_weight);
  }
  const auto& decoder = *transformer->decoder->layers;
  auto* first = decoder[0]->as<DecoderLayerImpl>();
  for (std::size_t i = 1; i < decoder.size(); ++i) {
    auto* layer = decoder[i]->as<DecoderLayerImpl>();
    layer->self_attn->in_proj_weight.copy_(first->self_attn->in_proj_weight);
    layer->multihead_attn->in_proj_weight.copy_(first->multihead_attn->in_proj_weight);
    if (layer->learned_embed && first->learned_embed) layer->learned_embed->weight.copy_(first->learned_embed->weight);
  }
}

torch::Tensor UniAD::forward(const torch::Tensor& features) {
  const ModelOptions& o = options_;
  if (features.dim() != 4 || features.size(1) != o.in_channels || features.size(2) != o.grid_h ||
      features.size(3) != o.grid_w) {
    throw UsageError("UniAD expects features [B, " + std::to_string(o.in_channels) + ", " + std::to_string(o.grid_h) +
                     ", " + std::to_string(o.grid_w) + "], got " + c10::str(features.sizes()));
  }
  const int64_t parts = inference_slices(features);
  if (parts <= 1) return reconstruct(features);
  // Inference on T > 1 threads: the batch in T slices, each reconstructed on its own thread with
  // single-threaded kernels. At this size one matrix product (196 x B tokens by 256) is too small
  // for BLAS to keep two cores busy (the eval forward ran at ~40% of the 2-thread sgemm peak
  // against ~59% of the 1-thread peak), and at inference the samples are independent, so
  // splitting the batch changes no result beyond BLAS rounding. at::parallel_for does not carry
  // thread-local state, so the caller's grad and inference mode go to the workers explicitly.
  const std::vector<torch::Tensor> slices = features.tensor_split(parts);
  std::vector<torch::Tensor> out(parts);
  const at::ThreadLocalState caller;
  at::parallel_for(0, parts, 1, [&](int64_t begin, int64_t end) {
    at::ThreadLocalStateGuard guard(caller);
    for (int64_t i = begin; i < end; ++i) out[i] = reconstruct(slices[i]);
  });
  return torch::cat(out);
}

int64_t UniAD::inference_slices(const torch::Tensor& features) const {
  const bool inference = !is_training() && !torch::GradMode::is_enabled() && features.device().is_cpu();
  if (!inference || at::in_parallel_region()) return 1;
  return std::min<int64_t>(at::get_num_threads(), features.size(0));
}

torch::Tensor UniAD::reconstruct(const torch::Tensor& features) {
  const ModelOptions& o = options_;
  const int64_t batch = features.size(0);
  // [B, C, H, W] -> tokens [H*W, B, C], row-major over the grid and sequence-first, as the
  // reference lays them out (the same layout gives the same summation order in every matmul).
  torch::Tensor x = features.flatten(2).permute({2, 0, 1});
  if (is_training()) x = jitter_features(x, 2, o.jitter_scale, o.jitter_prob);
  // The positions [H*W, E], repeated over the batch as the reference does.
  const torch::Tensor pos = torch::cat(std::vector<torch::Tensor>(batch, pos_embed->forward().unsqueeze(1)), 1);
  const torch::Tensor none;
  const torch::Tensor memory = transformer->encoder->forward(input_proj(x), pos, o.mask_encoder ? mask_ : none);
  const torch::Tensor decoded =
      transformer->decoder->forward(memory, pos, o.mask_decoder_a ? mask_ : none, o.mask_decoder_b ? mask_ : none);
  return output_proj(decoded).permute({1, 2, 0}).reshape({batch, o.in_channels, o.grid_h, o.grid_w});
}

// ---------------------------------------------------------------------------------------

MlpReconstruction::MlpReconstruction(const ModelOptions& options) : ReconstructionNet(options) {
  options_.validate();
  layers = register_module("layers", torch::nn::Sequential());
  int width = options_.in_channels;
  for (int i = 0; i < options_.baseline_layers; ++i) {
    const bool last = i + 1 == options_.baseline_layers;
    const int out = last ? options_.in_channels : options_.baseline_hidden;
    layers->push_back(torch::nn::Linear(width, out));
    if (!last) layers->push_back(torch::nn::ReLU());
    width = out;
  }
}

torch::Tensor MlpReconstruction::forward(const torch::Tensor& features) {
  torch::Tensor x = features.flatten(2).transpose(1, 2);  // tokens [B, T, C]
  if (is_training()) x = jitter_features(x, 2, options_.jitter_scale, options_.jitter_prob);
  return layers->forward(x).transpose(1, 2).reshape(features.sizes());
}

CnnReconstruction::CnnReconstruction(const ModelOptions& options) : ReconstructionNet(options) {
  options_.validate();
  const int c = options_.in_channels, h = options_.baseline_hidden;
  using torch::nn::Conv2dOptions;
  encoder = register_module("encoder", torch::nn::Sequential(
      torch::nn::Conv2d(Conv2dOptions(c, h, 3).padding(1)), torch::nn::ReLU(),
      torch::nn::Conv2d(Conv2dOptions(h, h, 3).stride(2).padding(1)), torch::nn::ReLU()));
  decoder = register_module("decoder", torch::nn::Sequential(
      torch::nn::Conv2d(Conv2dOptions(h, h, 3).padding(1)), torch::nn::ReLU(),
      torch::nn::Conv2d(Conv2dOptions(h, c, 3).padding(1))));
}

torch::Tensor CnnReconstruction::forward(const torch::Tensor& features) {
  torch::Tensor x = features;
  if (is_training()) x = jitter_features(x, 1, options_.jitter_scale, options_.jitter_prob);
  torch::Tensor z = encoder->forward(x);
  // Back to the input grid (any size, odd included) before decoding.
  z = F::interpolate(z, F::InterpolateFuncOptions()
                            .size(std::vector<int64_t>{features.size(2), features.size(3)})
                            .mode(torch::kBilinear)
                            .align_corners(false));
  return decoder->forward(z);
}

std::shared_ptr<ReconstructionNet> make_model(const ModelOptions& options) {
  switch (options.kind) {
    case ModelKind::kUniAD: return std::make_shared<UniAD>(options);
    case ModelKind::kMlp: return std::make_shared<MlpReconstruction>(options);
    case ModelKind::kCnn: return std::make_shared<CnnReconstruction>(options);
    case ModelKind::kMemoryBank: return std::make_shared<MemoryBank>(options);
  }
  throw UsageError("unknown model kind");
}

}  // namespace uniad::model
