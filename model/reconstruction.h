#pragma once
// The reconstruction networks: UniAD's transformer and the two baselines of the paper's
// "identical shortcut" analysis (per-token MLP, convolutional encoder-decoder); the
// nearest-neighbour reference (model/memory_bank.h) shares the interface.
//
// All map backbone features [B, C, H, W] to a reconstruction of the same shape. In
// training mode the input is jittered first (if enabled); the caller's loss compares the
// output with the clean input. The anomaly map is the per-position reconstruction error.
//
// Parameter names equal the reference implementation's state-dict names (UniAD module
// `models/reconstructions/uniad.py`), so reference weights load by name; see
// docs/model.md for the mapping.
#include <memory>

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>

#include "model/options.h"

namespace uniad::model {

// The interface every reconstruction network implements.
class ReconstructionNet : public torch::nn::Module {
 public:
  explicit ReconstructionNet(ModelOptions options) : options_(std::move(options)) {}
  // features [B, C, H, W] -> reconstruction [B, C, H, W].
  virtual torch::Tensor forward(const torch::Tensor& features) = 0;
  // The anomaly map on the token grid, [B, 1, H, W]: the reconstruction error (the memory
  // bank, which reconstructs nothing, gives its nearest-neighbour distance instead).
  virtual torch::Tensor anomaly_map(const torch::Tensor& features);
  const ModelOptions& options() const { return options_; }

 protected:
  ModelOptions options_;
};

// Builds the network `options.kind` asks for, initialised as the reference does (uses the
// current default random generator: seed it first for reproducible weights).
std::shared_ptr<ReconstructionNet> make_model(const ModelOptions& options);

// Feature jittering (training only): x + N(0,1) * (||x||_2 / C) * scale per token, where the
// norm is over the C channels of dimension `channel_dim`. One draw decides, with
// probability `prob`, whether this call jitters at all (as the reference does per forward).
torch::Tensor jitter_features(const torch::Tensor& x, int64_t channel_dim, double scale, double prob);

// The additive neighbor mask [H*W, H*W] for a grid: -inf where key (r', c') lies in the
// window x window neighbourhood of query (r, c) (clipped at the borders, the query itself
// included), 0 elsewhere. Tokens are row-major (t = r * W + c).
torch::Tensor neighbor_mask(int grid_h, int grid_w, int window);

// Reconstruction error per grid position: sqrt(sum_c (rec - x)^2), [B, 1, H, W].
torch::Tensor reconstruction_error(const torch::Tensor& reconstruction, const torch::Tensor& features);

// ---------------------------------------------------------------------------------------
// UniAD's building blocks, named as the reference names them.

// Multi-head attention with a packed q|k|v input projection (nn.MultiheadAttention's
// parameters: in_proj_weight [3E, E], in_proj_bias [3E], out_proj).
class MultiheadAttentionImpl : public torch::nn::Module {
 public:
  MultiheadAttentionImpl(int embed_dim, int heads, double dropout);
  // Sequence-first, as nn.MultiheadAttention: query [Tq, B, E], key/value [Tk, B, E],
  // additive mask [Tq, Tk] (or undefined); returns [Tq, B, E]. A query of batch 1 is shared by
  // the whole batch.
  torch::Tensor forward(const torch::Tensor& query, const torch::Tensor& key, const torch::Tensor& value,
                        const torch::Tensor& mask);
  // The same before the output projection, [Tq * B, E]: the layers apply out_proj themselves, so
  // that at inference the residual addition happens inside that product.
  torch::Tensor attend(const torch::Tensor& query, const torch::Tensor& key, const torch::Tensor& value,
                       const torch::Tensor& mask);
  torch::Tensor in_proj_weight, in_proj_bias;
  torch::nn::Linear out_proj{nullptr};

 private:
  int heads_;
  double dropout_;
};
TORCH_MODULE(MultiheadAttention);

class EncoderLayerImpl : public torch::nn::Module {
 public:
  explicit EncoderLayerImpl(const ModelOptions& o);
  torch::Tensor forward(const torch::Tensor& src, const torch::Tensor& pos, const torch::Tensor& mask);
  MultiheadAttention self_attn{nullptr};
  torch::nn::Linear linear1{nullptr}, linear2{nullptr};
  torch::nn::LayerNorm norm1{nullptr}, norm2{nullptr};

 private:
  double dropout_;
};
TORCH_MODULE(EncoderLayer);

class DecoderLayerImpl : public torch::nn::Module {
 public:
  DecoderLayerImpl(const ModelOptions& o, bool has_query_table);
  // `previous`: the previous decoder layer's output (the encoder output for layer 0);
  // `memory_pos` = memory + pos, the keys' input of attention A (the same for every layer).
  torch::Tensor forward(const torch::Tensor& previous, const torch::Tensor& memory, const torch::Tensor& memory_pos,
                        const torch::Tensor& pos, const torch::Tensor& mask_a, const torch::Tensor& mask_b);
  torch::nn::Embedding learned_embed{nullptr};  // [H*W, E] query table, or null (query = previous)
  MultiheadAttention self_attn{nullptr};         // attention A: query -> encoder output
  MultiheadAttention multihead_attn{nullptr};    // attention B: -> previous decoder output
  torch::nn::Linear linear1{nullptr}, linear2{nullptr};
  torch::nn::LayerNorm norm1{nullptr}, norm2{nullptr}, norm3{nullptr};

 private:
  double dropout_;
};
TORCH_MODULE(DecoderLayer);

// The learned 2-D positional embedding: [column half | row half] per token.
class PositionEmbeddingImpl : public torch::nn::Module {
 public:
  PositionEmbeddingImpl(int grid_h, int grid_w, int dim);
  torch::Tensor forward();  // [H*W, dim]
  torch::nn::Embedding row_embed{nullptr}, col_embed{nullptr};
};
TORCH_MODULE(PositionEmbedding);

// The encoder and decoder stacks, nested as the reference nests them so parameter names
// match ("transformer.encoder.layers.0....", "transformer.decoder.norm.weight").
class TransformerEncoderImpl : public torch::nn::Module {
 public:
  explicit TransformerEncoderImpl(const ModelOptions& o);
  torch::Tensor forward(torch::Tensor src, const torch::Tensor& pos, const torch::Tensor& mask);
  torch::nn::ModuleList layers{nullptr};
};
TORCH_MODULE(TransformerEncoder);

class TransformerDecoderImpl : public torch::nn::Module {
 public:
  explicit TransformerDecoderImpl(const ModelOptions& o);
  torch::Tensor forward(const torch::Tensor& memory, const torch::Tensor& pos, const torch::Tensor& mask_a,
                        const torch::Tensor& mask_b);
  torch::nn::ModuleList layers{nullptr};
  torch::nn::LayerNorm norm{nullptr};
};
TORCH_MODULE(TransformerDecoder);

class TransformerImpl : public torch::nn::Module {
 public:
  explicit TransformerImpl(const ModelOptions& o);
  TransformerEncoder encoder{nullptr};
  TransformerDecoder decoder{nullptr};
};
TORCH_MODULE(Transformer);

// The UniAD reconstruction transformer.
class UniAD : public ReconstructionNet {
 public:
  explicit UniAD(const ModelOptions& options);
  torch::Tensor forward(const torch::Tensor& features) override;
  // The neighbor mask used by each attention (undefined where off).
  const torch::Tensor& mask() const { return mask_; }

  torch::nn::Linear input_proj{nullptr}, output_proj{nullptr};
  PositionEmbedding pos_embed{nullptr};
  Transformer transformer{nullptr};

 private:
  void reset_parameters();
  // How many slices of the batch an inference forward runs in parallel (1: one pass).
  int64_t inference_slices(const torch::Tensor& features) const;
  torch::Tensor reconstruct(const torch::Tensor& features);  // one pass over the batch
  torch::Tensor mask_;  // the registered buffer "neighbor_mask"; undefined when off
};

// Baseline: a per-token MLP (no token mixing at all) - the network most prone to learn
// the identity.
class MlpReconstruction : public ReconstructionNet {
 public:
  explicit MlpReconstruction(const ModelOptions& options);
  torch::Tensor forward(const torch::Tensor& features) override;
  torch::nn::Sequential layers{nullptr};
};

// Baseline: a convolutional encoder-decoder over the token grid (one stride-2 stage).
class CnnReconstruction : public ReconstructionNet {
 public:
  explicit CnnReconstruction(const ModelOptions& options);
  torch::Tensor forward(const torch::Tensor& features) override;
  torch::nn::Sequential encoder{nullptr}, decoder{nullptr};
};

// Parameter count (trainable: a memory bank's patches are not counted).
int64_t parameter_count(const torch::nn::Module& module);

}  // namespace uniad::model
