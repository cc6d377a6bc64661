// FlatAdamW against its oracle, torch::optim::AdamW + torch::nn::utils::clip_grad_norm_ (the
// optimizer the reference and earlier uniad versions used): the same trajectory on the same
// gradients, the fused loop against the operator path, gradients kept in the flat buffer by
// backward, checkpoints of both formats, and a parameter without a gradient refused.
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <torch/types.h>  // clip_grad.h needs torch::Tensor declared
#include <torch/nn/utils/clip_grad.h>
#include <torch/optim/adamw.h>
#include <torch/serialize/input-archive.h>
#include <torch/serialize/output-archive.h>

#include "common/error.h"
#include "model/reconstruction.h"
#include "trainer/flat_adamw.h"

namespace uniad::trainer {
namespace {

constexpr double kLr = 3e-3, kWeightDecay = 1e-2, kMaxNorm = 0.5;

std::vector<at::Tensor> random_parameters(at::ScalarType dtype, std::uint64_t seed) {
  at::manual_seed(seed);
  std::vector<at::Tensor> parameters;
  for (const auto& shape : std::vector<std::vector<std::int64_t>>{{7, 5}, {5}, {3, 4, 6}, {1}, {130}})
    parameters.push_back(at::randn(shape, at::TensorOptions().dtype(dtype)).requires_grad_(true));
  return parameters;
}

std::vector<at::Tensor> copies(const std::vector<at::Tensor>& tensors) {
  std::vector<at::Tensor> out;
  for (const auto& t : tensors) out.push_back(t.detach().clone().requires_grad_(true));
  return out;
}

// Gradients of step s, large enough that clipping applies on some steps and not on others.
std::vector<at::Tensor> gradients(const std::vector<at::Tensor>& parameters, int s) {
  at::manual_seed(1000 + s);
  std::vector<at::Tensor> out;
  for (const auto& p : parameters) out.push_back(at::randn_like(p) * (s % 2 == 0 ? 0.01 : 1.0));
  return out;
}

void set_gradients(const std::vector<at::Tensor>& parameters, const std::vector<at::Tensor>& grads) {
  for (std::size_t i = 0; i < parameters.size(); ++i) parameters[i].mutable_grad() = grads[i].clone();
}

FlatAdamWOptions options(bool fused) {
  FlatAdamWOptions o;
  o.lr = kLr;
  o.weight_decay = kWeightDecay;
  o.beta2 = 0.99;
  o.fused = fused;
  return o;
}

double largest_difference(const std::vector<at::Tensor>& a, const std::vector<at::Tensor>& b) {
  double worst = 0;
  for (std::size_t i = 0; i < a.size(); ++i)
    worst = std::max(worst, (a[i].detach().to(at::kDouble) - b[i].detach().to(at::kDouble)).abs().max().item<double>());
  return worst;
}

// What `save` writes, through bytes, as a checkpoint would carry it.
template <typename Save>
torch::serialize::InputArchive round_trip(const Save& save) {
  torch::serialize::OutputArchive out;
  save(out);
  std::stringstream bytes;
  out.save_to(bytes);
  torch::serialize::InputArchive in;
  in.load_from(bytes);
  return in;
}

// `steps` steps of torch's AdamW with clipping, and of FlatAdamW, on the same gradients.
void compare_with_torch(at::ScalarType dtype, bool fused, double tolerance) {
  const auto torch_parameters = random_parameters(dtype, 1);
  const auto flat_parameters = copies(torch_parameters);
  torch::optim::AdamW reference(torch_parameters,
                                torch::optim::AdamWOptions(kLr).weight_decay(kWeightDecay).betas({0.9, 0.99}));
  FlatAdamW flat(flat_parameters, options(fused));
  for (int s = 1; s <= 6; ++s) {
    const auto grads = gradients(torch_parameters, s);
    set_gradients(torch_parameters, grads);
    set_gradients(flat_parameters, grads);
    const double reference_norm = torch::nn::utils::clip_grad_norm_(torch_parameters, kMaxNorm);
    reference.step();
    const double flat_norm = flat.clip_grad_norm(kMaxNorm);
    flat.step();
    EXPECT_NEAR(flat_norm, reference_norm, tolerance * reference_norm) << "step " << s;
    EXPECT_LE(largest_difference(flat_parameters, torch_parameters), tolerance) << "step " << s;
  }
  EXPECT_EQ(flat.steps(), 6);
  EXPECT_GT(largest_difference(flat_parameters, random_parameters(dtype, 1)), 1e-3) << "the parameters moved";
}

TEST(FlatAdamW, FusedMatchesTorchAdamWWithClipping) {
  compare_with_torch(at::kFloat, true, 2e-6);
  compare_with_torch(at::kDouble, true, 1e-13);
}

TEST(FlatAdamW, LibraryFusedKernelMatchesTorchAdamWWithClipping) {
  // at::_fused_adamw_, the kernel the CUDA path runs (LibTorch 2.4+), here on its CPU
  // implementation: the same update in another arithmetic order (it folds the bias corrections
  // into the step size), so equal up to rounding.
  if (!FlatAdamW::library_fused_available()) GTEST_SKIP() << "this LibTorch has no at::_fused_adamw_ (2.4+)";
  for (const auto& [dtype, tolerance] : {std::pair{at::kFloat, 1e-5}, std::pair{at::kDouble, 1e-12}}) {
    const auto torch_parameters = random_parameters(dtype, 1);
    const auto flat_parameters = copies(torch_parameters);
    torch::optim::AdamW reference(torch_parameters,
                                  torch::optim::AdamWOptions(kLr).weight_decay(kWeightDecay).betas({0.9, 0.99}));
    FlatAdamWOptions o = options(true);
    o.kernel = AdamWKernel::kLibraryFused;
    FlatAdamW flat(flat_parameters, o);
    EXPECT_EQ(flat.kernel(), AdamWKernel::kLibraryFused);
    for (int s = 1; s <= 6; ++s) {
      const auto grads = gradients(torch_parameters, s);
      set_gradients(torch_parameters, grads);
      set_gradients(flat_parameters, grads);
      torch::nn::utils::clip_grad_norm_(torch_parameters, kMaxNorm);
      reference.step();
      flat.clip_grad_norm(kMaxNorm);
      flat.step();
      EXPECT_LE(largest_difference(flat_parameters, torch_parameters), tolerance) << c10::toString(dtype) << " step " << s;
    }
    EXPECT_GT(largest_difference(flat_parameters, random_parameters(dtype, 1)), 1e-3) << "the parameters moved";
  }
}

TEST(FlatAdamW, KernelChoicePerDevice) {
  const auto parameters = random_parameters(at::kFloat, 2);
  EXPECT_EQ(FlatAdamW(copies(parameters), options(true)).kernel(), AdamWKernel::kCpuLoop) << "float32 on the CPU";
  EXPECT_EQ(FlatAdamW(copies(parameters), options(false)).kernel(), AdamWKernel::kOperators) << "fused = false";
  if (!FlatAdamW::library_fused_available()) {
    FlatAdamWOptions o = options(true);
    o.kernel = AdamWKernel::kLibraryFused;
    EXPECT_THROW(FlatAdamW(copies(parameters), o).kernel(), RuntimeError) << "asked for, but not in this LibTorch";
  }
}

TEST(FlatAdamW, OperatorPathMatchesTorchAdamWWithClipping) {
  compare_with_torch(at::kFloat, false, 2e-6);
  compare_with_torch(at::kDouble, false, 1e-13);
}

TEST(FlatAdamW, FusedEqualsTheOperatorPathBitwise) {
  // Where LibTorch's kernels are vectorised with FMA (AVX2 or AVX-512), the fused loop does
  // the same arithmetic in the same order; a different rounding anywhere would show here (and,
  // amplified by ReLUs at their threshold, in the float32 training-parity test).
  if (!__builtin_cpu_supports("fma")) GTEST_SKIP() << "no FMA: LibTorch's default kernels round otherwise";
  for (const auto dtype : {at::kFloat, at::kDouble}) {
    const auto fused_parameters = random_parameters(dtype, 5), operator_parameters = copies(fused_parameters);
    FlatAdamW fused(fused_parameters, options(true)), operators(operator_parameters, options(false));
    for (int s = 1; s <= 6; ++s) {
      set_gradients(fused_parameters, gradients(fused_parameters, s));
      set_gradients(operator_parameters, gradients(operator_parameters, s));
      EXPECT_EQ(fused.clip_grad_norm(kMaxNorm), operators.clip_grad_norm(kMaxNorm));
      fused.step();
      operators.step();
      EXPECT_EQ(largest_difference(fused_parameters, operator_parameters), 0.0) << c10::toString(dtype) << " step " << s;
    }
  }
}

TEST(FlatAdamW, BackwardAccumulatesIntoTheFlatGradient) {
  model::ModelOptions m;
  m.in_channels = 12;
  m.hidden = 16;
  m.heads = 2;
  m.feedforward = 24;
  m.encoder_layers = 1;
  m.decoder_layers = 1;
  m.grid_h = m.grid_w = 4;
  m.neighbor_window = 3;
  const auto model = model::make_model(m);
  model->train();
  FlatAdamW optimizer(model->parameters(), options(true));
  const at::Tensor x = at::randn({3, 12, 4, 4});
  const auto train_once = [&] {
    optimizer.zero_grad();
    at::mse_loss(model->forward(x), x).backward();
    return optimizer.flat_gradient();
  };
  const at::Tensor first = train_once().clone();  // the first backward's gradients are copied in
  const at::Tensor flat = optimizer.flat_gradient();
  const void* buffer = flat.data_ptr();
  for (int s = 0; s < 2; ++s) {
    optimizer.step();
    train_once();
    std::int64_t offset = 0;
    for (const auto& p : model->parameters()) {
      ASSERT_TRUE(p.grad().defined());
      EXPECT_EQ(p.grad().data_ptr(), static_cast<const char*>(buffer) + offset * 4) << "a view of the flat gradient";
      offset += p.numel();
    }
    EXPECT_EQ(offset, flat.numel());
  }
  // The flat buffer holds exactly what autograd computes for the parameters.
  at::Tensor expected;
  {
    std::vector<at::Tensor> grads;
    for (const auto& p : model->parameters()) grads.push_back(p.grad().reshape({-1}));
    expected = at::cat(grads);
  }
  EXPECT_TRUE(at::equal(optimizer.flat_gradient(), expected));
  EXPECT_FALSE(at::equal(first, expected)) << "the parameters moved between the steps";
}

TEST(FlatAdamW, CheckpointRoundTripIsBitwise) {
  const auto a = random_parameters(at::kFloat, 2), b = copies(a);
  FlatAdamW first(a, options(true));
  for (int s = 1; s <= 3; ++s) {
    set_gradients(a, gradients(a, s));
    first.clip_grad_norm(kMaxNorm);
    first.step();
  }
  torch::serialize::InputArchive in = round_trip([&](auto& out) { first.save(out); });
  FlatAdamW second(b, options(true));
  for (std::size_t i = 0; i < a.size(); ++i) b[i].detach().copy_(a[i].detach());
  second.load(in);
  EXPECT_EQ(second.steps(), 3);
  for (int s = 4; s <= 5; ++s) {
    set_gradients(a, gradients(a, s));
    set_gradients(b, gradients(b, s));
    first.clip_grad_norm(kMaxNorm);
    second.clip_grad_norm(kMaxNorm);
    first.step();
    second.step();
  }
  EXPECT_EQ(largest_difference(a, b), 0.0);
}

TEST(FlatAdamW, LoadsTheStateTorchAdamWWrote) {
  // Checkpoints of uniad before the flat optimizer hold torch::optim::AdamW's state.
  const auto torch_parameters = random_parameters(at::kFloat, 3), flat_parameters = copies(torch_parameters);
  torch::optim::AdamW reference(torch_parameters,
                                torch::optim::AdamWOptions(kLr).weight_decay(kWeightDecay).betas({0.9, 0.99}));
  for (int s = 1; s <= 3; ++s) {
    set_gradients(torch_parameters, gradients(torch_parameters, s));
    reference.step();
  }
  torch::serialize::InputArchive in = round_trip([&](auto& out) { reference.save(out); });
  for (std::size_t i = 0; i < torch_parameters.size(); ++i) flat_parameters[i].detach().copy_(torch_parameters[i].detach());
  FlatAdamW flat(flat_parameters, options(true));
  flat.load(in);
  EXPECT_EQ(flat.steps(), 3);
  for (int s = 4; s <= 5; ++s) {
    set_gradients(torch_parameters, gradients(torch_parameters, s));
    set_gradients(flat_parameters, gradients(flat_parameters, s));
    reference.step();
    flat.step();
  }
  EXPECT_LE(largest_difference(flat_parameters, torch_parameters), 2e-6);
}

TEST(FlatAdamW, RefusesAParameterWithoutGradient) {
  const auto parameters = random_parameters(at::kFloat, 4);
  FlatAdamW flat(parameters, options(true));
  set_gradients(parameters, gradients(parameters, 1));
  parameters[2].mutable_grad() = at::Tensor();
  try {
    flat.step();
    FAIL() << "expected an error";
  } catch (const RuntimeError& e) {
    EXPECT_NE(std::string(e.what()).find("parameter 2 (shape [3, 4, 6]) received no gradient"), std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace uniad::trainer
