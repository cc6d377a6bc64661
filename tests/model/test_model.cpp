// The reconstruction networks: shapes, the neighbor mask, jitter statistics, train/eval
// behaviour, the ablation switches, the baselines, options and checkpoints.
#include <algorithm>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>
#include <torch/cuda.h>
#include <torch/optim/adam.h>
#include <torch/serialize/input-archive.h>

#include "common/blas.h"
#include "common/error.h"
#include "model/checkpoint.h"
#include "tests/test_support.h"

namespace uniad::model {
namespace {

ModelOptions small(int channels = 24, int h = 6, int w = 9) {
  ModelOptions o;
  o.in_channels = channels;
  o.grid_h = h;
  o.grid_w = w;
  o.hidden = 32;
  o.heads = 4;
  o.feedforward = 64;
  o.encoder_layers = 2;
  o.decoder_layers = 3;
  o.neighbor_window = 3;
  return o;
}

// OpenBLAS falls back to generic kernels on CPUs it does not know (common/blas.h); the test
// main, like uniad's, restarts with the matching ones, so matmuls here run at the CPU's speed.
TEST(Blas, OpenBlasRunsVectorKernelsWhereTheCpuHasThem) {
  const torch::Tensor warm = at::mm(at::ones({2, 2}), at::ones({2, 2}));  // BLAS is loaded
  const std::string kernels = blas_kernel_name();
  if (kernels.empty()) GTEST_SKIP() << "the BLAS in use is not OpenBLAS";
  if (!__builtin_cpu_supports("avx2")) GTEST_SKIP() << "this CPU has no AVX2";
  EXPECT_NE(kernels, "Prescott") << "OPENBLAS_CORETYPE=" << (std::getenv("OPENBLAS_CORETYPE") ?: "(unset)");
  EXPECT_EQ(warm.sum().item<float>(), 8);
}

TEST(Model, ShapesForAnyGridAndChannels) {
  torch::manual_seed(0);
  for (auto [c, h, w] : {std::tuple{24, 6, 9}, std::tuple{272, 14, 14}, std::tuple{8, 5, 5}, std::tuple{64, 7, 3}}) {
    for (ModelKind kind : {ModelKind::kUniAD, ModelKind::kMlp, ModelKind::kCnn}) {
      ModelOptions o = small(c, h, w);
      if (h == 14) o = ModelOptions{};
      o.kind = kind;
      auto model = make_model(o);
      const torch::Tensor x = torch::randn({2, c, h, w});
      EXPECT_EQ(model->forward(x).sizes(), x.sizes()) << to_string(kind) << " " << c << "x" << h << "x" << w;
    }
  }
}

TEST(NeighborMask, BlocksExactlyTheClippedWindow) {
  for (auto [h, w, window] : {std::tuple{14, 14, 7}, std::tuple{6, 9, 3}, std::tuple{10, 4, 5}}) {
    const torch::Tensor mask = neighbor_mask(h, w, window);
    ASSERT_EQ(mask.sizes(), (std::vector<int64_t>{h * w, h * w}));
    auto m = mask.accessor<float, 2>();
    const int half = window / 2;
    for (int q = 0; q < h * w; ++q) {
      for (int k = 0; k < h * w; ++k) {
        const bool inside = std::abs(q / w - k / w) <= half && std::abs(q % w - k % w) <= half;
        ASSERT_EQ(std::isinf(m[q][k]) && m[q][k] < 0, inside) << q << "," << k;
        if (!inside) {
          ASSERT_EQ(m[q][k], 0.0f);
        }
      }
    }
  }
  // 14x14, 7x7: corners block 16 keys, interior tokens 49.
  const torch::Tensor blocked = neighbor_mask(14, 14, 7).isinf().sum(1);
  EXPECT_EQ(blocked.min().item<int64_t>(), 16);
  EXPECT_EQ(blocked.max().item<int64_t>(), 49);
}

TEST(NeighborMask, BuiltOnceAndSwitchable) {
  ModelOptions o = small();
  auto model = std::make_shared<UniAD>(o);
  const void* first = model->mask().data_ptr();
  model->forward(torch::randn({1, 24, 6, 9}));
  EXPECT_EQ(model->mask().data_ptr(), first) << "the mask is built in the constructor, not per forward";
  o.neighbor_window = 0;
  EXPECT_FALSE(std::make_shared<UniAD>(o)->mask().defined());
  o.neighbor_window = 11;  // would block every key of the centre token of a 6x9 grid
  EXPECT_THROW(std::make_shared<UniAD>(o), UsageError);
}

TEST(Model, EveryTensorMovesWithTheModel) {
  // A CPU stand-in for model->to(cuda): after ->to(kFloat64) the forward and backward run, and
  // every tensor the model owns (parameters and the neighbor mask buffer) is float64. A mask
  // kept outside the module's buffers would stay float32 (or on the CPU) and fail here.
  const ModelOptions o = small(12, 8, 9);
  torch::manual_seed(0);
  auto model = std::dynamic_pointer_cast<UniAD>(make_model(o));
  ASSERT_TRUE(model);
  model->to(torch::kFloat64);
  model->train();
  for (const auto& p : model->parameters()) EXPECT_EQ(p.scalar_type(), torch::kFloat64);
  ASSERT_EQ(model->buffers().size(), 1u) << "the neighbor mask is a registered buffer";
  for (const auto& b : model->buffers()) EXPECT_EQ(b.scalar_type(), torch::kFloat64);
  EXPECT_EQ(model->mask().scalar_type(), torch::kFloat64) << "the mask the attentions use moved too";
  const torch::Tensor x = torch::randn({2, 12, 8, 9}, torch::kFloat64);
  const torch::Tensor out = model->forward(x);
  EXPECT_EQ(out.scalar_type(), torch::kFloat64);
  (out - x).pow(2).mean().backward();
  for (const auto& p : model->parameters()) {
    ASSERT_TRUE(p.grad().defined());
    EXPECT_EQ(p.grad().scalar_type(), torch::kFloat64);
  }
}

TEST(Jitter, NoiseStdPerTokenIsScaleTimesNormOverChannels) {
  torch::manual_seed(1);
  const int64_t channels = 272;
  // Tokens with very different norms, to see the per-token scaling.
  const torch::Tensor x = torch::randn({64, 196, channels}) * torch::rand({64, 196, 1}) * 5;
  const torch::Tensor noise = jitter_features(x, 2, 20.0, 1.0) - x;
  const torch::Tensor expected_std = x.norm(2, {2}, true) * (20.0 / channels);
  const torch::Tensor z = noise / expected_std;  // should be N(0, 1) in every token
  EXPECT_NEAR(z.mean().item<double>(), 0.0, 0.01);
  EXPECT_NEAR(z.std().item<double>(), 1.0, 0.01);
  // Per token: the empirical std over 272 channels scatters around 1 (sd ~ 1/sqrt(2*272)).
  const torch::Tensor per_token = z.std(2);
  EXPECT_NEAR(per_token.mean().item<double>(), 1.0, 0.01);
  EXPECT_LT((per_token - 1).abs().max().item<double>(), 0.3);
  // Scale 0 or probability 0: untouched.
  EXPECT_TRUE(torch::equal(jitter_features(x, 2, 0.0, 1.0), x));
  EXPECT_TRUE(torch::equal(jitter_features(x, 2, 20.0, 0.0), x));
  // Probability 0.5: about half the calls jitter.
  int jittered = 0;
  for (int i = 0; i < 400; ++i) jittered += !torch::equal(jitter_features(x[0], 1, 20.0, 0.5), x[0]);
  EXPECT_NEAR(jittered, 200, 40);
}

TEST(Model, JitterAndDropoutOnlyInTraining) {
  torch::manual_seed(2);
  for (ModelKind kind : {ModelKind::kUniAD, ModelKind::kMlp, ModelKind::kCnn}) {
    ModelOptions o = small();
    o.kind = kind;
    auto model = make_model(o);
    const torch::Tensor x = torch::randn({2, 24, 6, 9});
    torch::NoGradGuard no_grad;
    model->eval();
    EXPECT_TRUE(torch::equal(model->forward(x), model->forward(x))) << "eval is deterministic";
    model->train();
    EXPECT_FALSE(torch::equal(model->forward(x), model->forward(x))) << "training jitters";
    // With jitter and dropout off, training mode equals evaluation mode.
    o.jitter_scale = 0;
    o.dropout = 0;
    torch::manual_seed(3);
    auto plain = make_model(o);
    plain->train();
    const torch::Tensor train_out = plain->forward(x);
    plain->eval();
    // To float rounding: inference on one thread computes attention with its own kernels (attention.h).
    EXPECT_TRUE(torch::allclose(train_out, plain->forward(x), 1e-5, 1e-5)) << to_string(kind);
  }
}

TEST(Model, InferenceOnMoreThreadsSplitsTheBatch) {
  // On T > 1 threads an inference forward gives each thread a slice of the batch (UniAD::forward):
  // the result is the one-thread result, in the batch's order, for batches that do not divide
  // evenly and for batches smaller than T, and the workers keep the caller's grad mode.
  torch::manual_seed(4);
  auto model = make_model(small());
  model->eval();
  const int threads = at::get_num_threads();
  for (const int64_t batch : {1, 2, 5}) {
    const torch::Tensor x = torch::randn({batch, 24, 6, 9});
    torch::NoGradGuard no_grad;
    at::set_num_threads(1);
    const torch::Tensor one = model->forward(x);
    at::set_num_threads(std::max(2, threads));
    const torch::Tensor split = model->forward(x);
    ASSERT_EQ(split.sizes(), one.sizes());
    EXPECT_LE((split - one).abs().max().item<float>(), 1e-5) << batch;
    {
      // An inference tensor: a worker outside the caller's inference mode, with grad mode on,
      // would refuse to save it for backward in the first projection and throw.
      c10::InferenceMode inference;
      const torch::Tensor in_inference = model->forward(x.clone());
      EXPECT_LE((in_inference - one).abs().max().item<float>(), 1e-5) << batch;
    }
  }
  // With gradients the forward stays one pass, and gradients reach the parameters.
  model->forward(torch::randn({3, 24, 6, 9})).sum().backward();
  for (const auto& p : model->parameters()) EXPECT_TRUE(p.grad().defined());
  at::set_num_threads(threads);
}

TEST(Model, DropoutAloneChangesTrainingOutput) {
  ModelOptions o = small();
  o.jitter_scale = 0;
  auto model = make_model(o);
  model->train();
  const torch::Tensor x = torch::randn({2, 24, 6, 9});
  torch::NoGradGuard no_grad;
  EXPECT_FALSE(torch::equal(model->forward(x), model->forward(x)));
}

std::vector<std::string> names(const ReconstructionNet& model, const std::string& part) {
  std::vector<std::string> out;
  for (const auto& [name, t] : named_parameters(model))
    if (name.find(part) != std::string::npos) out.push_back(name);
  return out;
}

TEST(Ablation, QueryModes) {
  ModelOptions o = small();
  EXPECT_EQ(names(UniAD(o), "learned_embed").size(), 3u) << "layer-wise: one table per decoder layer";
  o.query_mode = QueryMode::kFirstLayer;
  EXPECT_EQ(names(UniAD(o), "learned_embed"), (std::vector<std::string>{"transformer.decoder.layers.0.learned_embed.weight"}));
  o.query_mode = QueryMode::kNone;
  EXPECT_TRUE(names(UniAD(o), "learned_embed").empty()) << "none: no query tables at all";
}

TEST(Ablation, EachMaskSwitchChangesTheOutput) {
  torch::manual_seed(4);
  ModelOptions o = small();
  auto full = std::make_shared<UniAD>(o);
  full->eval();
  const auto weights = named_parameters(*full);
  const torch::Tensor x = torch::randn({2, 24, 6, 9});
  torch::NoGradGuard no_grad;
  const torch::Tensor reference = full->forward(x);
  for (int which = 0; which < 4; ++which) {
    ModelOptions a = o;
    if (which == 0) a.mask_encoder = false;
    if (which == 1) a.mask_decoder_a = false;
    if (which == 2) a.mask_decoder_b = false;
    if (which == 3) a.neighbor_window = 0;
    auto ablated = std::make_shared<UniAD>(a);
    load_parameters(*ablated, weights, "full model");
    ablated->eval();
    EXPECT_GT((ablated->forward(x) - reference).abs().max().item<float>(), 1e-3) << "switch " << which;
  }
  // And the full model with the same weights reproduces itself.
  auto same = std::make_shared<UniAD>(o);
  load_parameters(*same, weights, "full model");
  same->eval();
  EXPECT_TRUE(torch::equal(same->forward(x), reference));
}

TEST(Model, ReferenceInitialisation) {
  torch::manual_seed(5);
  UniAD model{ModelOptions{}};
  const auto p = named_parameters(model);
  // Identical across layers (prototype copies) ...
  EXPECT_TRUE(torch::equal(p.at("transformer.encoder.layers.0.self_attn.in_proj_weight"),
                           p.at("transformer.encoder.layers.3.self_attn.in_proj_weight")));
  EXPECT_TRUE(torch::equal(p.at("transformer.decoder.layers.0.learned_embed.weight"),
                           p.at("transformer.decoder.layers.2.learned_embed.weight")));
  // ... but other linears re-drawn per layer.
  EXPECT_FALSE(torch::equal(p.at("transformer.encoder.layers.0.linear1.weight"),
                            p.at("transformer.encoder.layers.1.linear1.weight")));
  // xavier-uniform bound sqrt(6 / (fan_in + fan_out)), biases 0, LayerNorm 1/0, positions in [0, 1).
  const double bound = std::sqrt(6.0 / (256 + 1024));
  EXPECT_LE(p.at("transformer.encoder.layers.0.linear1.weight").abs().max().item<double>(), bound);
  EXPECT_GT(p.at("transformer.encoder.layers.0.linear1.weight").abs().max().item<double>(), 0.95 * bound);
  EXPECT_EQ(p.at("input_proj.bias").abs().max().item<float>(), 0.0f);
  EXPECT_EQ(p.at("transformer.decoder.norm.weight").min().item<float>(), 1.0f);
  EXPECT_GE(p.at("pos_embed.row_embed.weight").min().item<float>(), 0.0f);
  EXPECT_LT(p.at("pos_embed.row_embed.weight").max().item<float>(), 1.0f);
  EXPECT_NEAR(p.at("transformer.decoder.layers.0.learned_embed.weight").std().item<double>(), 1.0, 0.02);
}

// The identical shortcut: a per-token MLP without jitter learns to copy its input.
TEST(Baselines, MlpLearnsTheIdentityOnRandomFeatures) {
  torch::manual_seed(6);
  ModelOptions o = small(32, 7, 7);
  o.kind = ModelKind::kMlp;
  o.jitter_scale = 0;
  auto model = make_model(o);
  model->train();
  torch::optim::Adam optimizer(model->parameters(), torch::optim::AdamOptions(1e-3));
  const torch::Tensor data = torch::randn({64, 32, 7, 7});
  double first = 0, last = 0;
  for (int step = 0; step < 400; ++step) {
    const torch::Tensor x = data.index({torch::randint(64, {16})});
    const torch::Tensor loss = (model->forward(x) - x).pow(2).mean();
    optimizer.zero_grad();
    loss.backward();
    optimizer.step();
    if (step == 0) first = loss.item<double>();
    last = loss.item<double>();
  }
  // Unseen random features are copied just as well: the network learned the identity.
  torch::NoGradGuard no_grad;
  model->eval();
  const torch::Tensor unseen = torch::randn({16, 32, 7, 7});
  const double unseen_loss = (model->forward(unseen) - unseen).pow(2).mean().item<double>();
  EXPECT_GT(first, 0.5);
  EXPECT_LT(last, 0.01) << "the MLP's loss must fall near zero";
  EXPECT_LT(unseen_loss, 0.02) << "and it copies features it never saw";
}

TEST(Options, JsonRoundTripAndErrors) {
  ModelOptions o = small();
  o.kind = ModelKind::kCnn;
  o.query_mode = QueryMode::kNone;
  o.jitter_scale = 3.5;
  const ModelOptions back = model_options_from_json(to_json(o));
  EXPECT_EQ(to_json(back).dump(), to_json(o).dump());
  EXPECT_THROW(model_options_from_json(nlohmann::json{{"hiden", 3}}), UsageError);
  EXPECT_THROW(parse_query_mode("all"), UsageError);
  ModelOptions bad;
  bad.heads = 7;
  EXPECT_THROW(bad.validate(), UsageError);
}

TEST(Checkpoint, RoundTripAndClearErrors) {
  test::TempDir dir;
  torch::manual_seed(7);
  ModelOptions o = small();
  o.query_mode = QueryMode::kFirstLayer;
  auto model = make_model(o);
  save_checkpoint((dir / "a.ckpt").string(), *model, {{"seed", 7}});
  const Checkpoint loaded = load_checkpoint((dir / "a.ckpt").string());
  EXPECT_EQ(to_json(loaded.model->options()).dump(), to_json(o).dump());
  for (const auto& [name, t] : named_parameters(*model)) EXPECT_TRUE(torch::equal(t, named_parameters(*loaded.model).at(name))) << name;
  EXPECT_EQ(loaded.meta["seed"], 7);

  // Truncated, foreign and missing files name the file.
  const std::string bytes = test::read_bytes(dir / "a.ckpt");
  test::write_text(dir / "cut.ckpt", bytes.substr(0, bytes.size() / 2));
  test::write_text(dir / "text.ckpt", "hello");
  for (const char* name : {"cut.ckpt", "text.ckpt", "missing.ckpt"}) {
    try {
      load_checkpoint((dir / name).string());
      ADD_FAILURE() << name << " loaded";
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find(name), std::string::npos) << e.what();
    }
  }
  // Weights that do not fit the model are listed.
  auto other = make_model(small(16));
  try {
    load_parameters(*other, named_parameters(*model), "a.ckpt");
    ADD_FAILURE() << "mismatched weights loaded";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("input_proj.weight"), std::string::npos) << e.what();
  }
}

// A checkpoint written on a GPU holds CUDA tensors; it must load on a CPU node (eval, export,
// predict there). Without a GPU to write one, the file's tensors are re-tagged as CUDA ones
// (tests/oracle/retag_device.py): LibTorch then refuses to read it as it is, and
// load_checkpoint, which maps every tensor to the CPU, reads the same weights.
TEST(Checkpoint, LoadsOntoTheCpuWhicheverDeviceWroteIt) {
  test::TempDir dir;
  torch::manual_seed(3);
  auto model = make_model(small());
  save_checkpoint((dir / "cpu.ckpt").string(), *model, {{"seed", 3}});
  const auto r = test::run(std::string(test::python()) + " " + test::quote(test::oracle_script("retag_device.py")) +
                           " " + test::quote(dir / "cpu.ckpt") + " " + test::quote(dir / "cuda.ckpt"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  if (!torch::cuda::is_available()) {
    torch::serialize::InputArchive plain;
    EXPECT_THROW(plain.load_from((dir / "cuda.ckpt").string()), c10::Error)
        << "the re-tagged file should hold CUDA tensors, which need a GPU unless mapped";
  }
  const Checkpoint loaded = load_checkpoint((dir / "cuda.ckpt").string());
  for (const auto& [name, t] : named_parameters(*model)) {
    const torch::Tensor back = named_parameters(*loaded.model).at(name);
    EXPECT_TRUE(back.device().is_cpu()) << name;
    EXPECT_TRUE(torch::equal(t, back)) << name;
  }
  // The same through a model file's bytes (predict).
  const Checkpoint from_bytes = load_checkpoint_bytes(test::read_bytes(dir / "cuda.ckpt"), "cuda.ckpt");
  EXPECT_TRUE(torch::equal(named_parameters(*model).at("input_proj.weight"),
                           named_parameters(*from_bytes.model).at("input_proj.weight")));
}

// Weights saved in another type (float64 here) load into the float32 model, rounded once.
TEST(Checkpoint, WeightsOfAnotherTypeLoadAsFloat32) {
  test::TempDir dir;
  torch::manual_seed(4);
  auto model = make_model(small());
  model->to(torch::kDouble);
  save_checkpoint((dir / "f64.ckpt").string(), *model, {});
  const Checkpoint loaded = load_checkpoint((dir / "f64.ckpt").string());
  for (const auto& [name, t] : named_parameters(*model)) {
    const torch::Tensor back = named_parameters(*loaded.model).at(name);
    ASSERT_EQ(t.scalar_type(), torch::kDouble) << name;
    EXPECT_EQ(back.scalar_type(), torch::kFloat) << name;
    EXPECT_TRUE(torch::equal(back, t.to(torch::kFloat))) << name;
  }
}

}  // namespace
}  // namespace uniad::model
