// The oneDNN products (common/matmul.h) against float64 LibTorch expressions, on the layouts the
// model hands them (transposed weights, strided heads, a mask broadcast over the batch, output
// scale, bias, residual, ReLU), the training attention's products with their gradients, and the
// inference linear (model/linear.h) against at::linear.
#include <cmath>

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include "common/matmul.h"
#include "model/attention.h"
#include "model/linear.h"
#include "tests/test_support.h"

namespace uniad::model {
namespace {

matmul::Matrix matrix_of(const at::Tensor& t) {  // a [batch, rows, cols] view
  return {t.data_ptr<float>(), t.stride(0), t.stride(1), t.stride(2)};
}

double max_error(const at::Tensor& actual, const at::Tensor& expected) {
  return (actual.to(at::kDouble) - expected).abs().max().item<double>();
}

TEST(Matmul, LinearWithBiasResidualAndReluMatchesFloat64) {
  at::manual_seed(1);
  const int64_t m = 37, k = 19, n = 23;  // odd sizes: no kernel-width multiples
  const at::Tensor x = at::randn({m, k}), w = at::randn({n, k}), b = at::randn({n}), r = at::randn({m, n});
  const at::Tensor exact = at::addmm(b.to(at::kDouble), x.to(at::kDouble), w.to(at::kDouble).t());
  for (const bool residual : {false, true}) {
    for (const bool relu : {false, true}) {
      at::Tensor y = at::empty({m, n});
      matmul::Product p;
      p.m = m, p.k = k, p.n = n;
      p.a = {x.data_ptr<float>(), 0, k, 1};
      p.b = {w.data_ptr<float>(), 0, 1, k};  // W^T
      p.c = y.data_ptr<float>(), p.c_row_stride = n;
      p.bias = b.data_ptr<float>();
      if (residual) p.addend = {r.data_ptr<float>(), 0, n, 1};
      p.relu = relu;
      matmul::run(p);
      at::Tensor expected = residual ? exact + r.to(at::kDouble) : exact;
      if (relu) expected = expected.relu();
      EXPECT_LE(max_error(y, expected), 1e-4) << "residual " << residual << ", relu " << relu;
      if (relu) {
        EXPECT_TRUE((y >= 0).all().item<bool>());
      }
    }
  }
}

TEST(Matmul, BatchedStridedScaledWithABroadcastMaskMatchesFloat64) {
  // Heads as the model lays them out: [T, H, D] projections seen as [H, T, D]; k transposed by
  // strides; the additive mask (with -inf) shared by every head; the output written into a
  // [T, H, D] result, every head at its own offset.
  at::manual_seed(2);
  const int64_t heads = 5, tokens = 29, d = 8;
  const at::Tensor q = at::randn({tokens, heads, d}).transpose(0, 1), k = at::randn({tokens, heads, d}).transpose(0, 1);
  at::Tensor mask = at::randn({tokens, tokens}).masked_fill(at::rand({tokens, tokens}) < 0.3, -INFINITY);
  const float scale = 1 / std::sqrt(8.0f);
  at::Tensor logits = at::empty({heads, tokens, tokens});
  matmul::Product p;
  p.batch = heads, p.m = tokens, p.k = d, p.n = tokens;
  p.a = matrix_of(q);
  p.b = matrix_of(k.transpose(1, 2));
  p.c = logits.data_ptr<float>(), p.c_batch_stride = tokens * tokens, p.c_row_stride = tokens;
  p.scale = scale;
  matmul::run(p);
  const at::Tensor exact = at::bmm(q.to(at::kDouble), k.to(at::kDouble).transpose(1, 2)) * scale;
  EXPECT_LE(max_error(logits, exact), 1e-5);
  p.addend = {mask.data_ptr<float>(), 0, tokens, 1};  // the same product with the mask added
  matmul::run(p);
  const at::Tensor finite = mask.isfinite().expand({heads, tokens, tokens});
  EXPECT_LE(max_error(logits.masked_select(finite), (exact + mask.to(at::kDouble)).masked_select(finite)), 1e-5);
  EXPECT_TRUE((logits.masked_select(finite.logical_not()) == -INFINITY).all().item<bool>());
  // probabilities v into the heads' columns of a [T, H, D] result; A broadcast over the batch.
  const at::Tensor probabilities = at::softmax(at::randn({tokens, tokens}), -1), v = at::randn({heads, tokens, d});
  at::Tensor out = at::zeros({tokens, heads, d});
  matmul::Product mix;
  mix.batch = heads, mix.m = tokens, mix.k = tokens, mix.n = d;
  mix.a = {probabilities.data_ptr<float>(), 0, tokens, 1};
  mix.b = matrix_of(v);
  mix.c = out.data_ptr<float>(), mix.c_batch_stride = d, mix.c_row_stride = heads * d;
  matmul::run(mix);
  const at::Tensor expected = at::matmul(probabilities.to(at::kDouble), v.to(at::kDouble)).transpose(0, 1);
  EXPECT_LE(max_error(out, expected), 1e-5);
}

TEST(AttentionProduct, ValuesAndGradientsMatchFloat64Bmm) {
  // The training attention's two products on the model's layouts: q [H, T, D] strided, k^T by
  // strides, then probabilities [H, T, T] by v strided; gradients through oneDNN's transposes.
  at::manual_seed(4);
  const int64_t heads = 6, tokens = 29, d = 8;
  auto strided = [&] { return at::randn({tokens, heads, d}).transpose(0, 1); };
  const at::Tensor q = strided(), k = strided(), v = strided(), p = at::softmax(at::randn({heads, tokens, tokens}), -1);
  for (const auto& [a, b] : {std::pair{q, k.transpose(1, 2)}, std::pair{p, v}}) {
    const at::Tensor a1 = a.detach().requires_grad_(true), b1 = b.detach().requires_grad_(true);
    const at::Tensor a2 = a.to(at::kDouble).requires_grad_(true), b2 = b.to(at::kDouble).requires_grad_(true);
    const at::Tensor out = attention_product(a1, b1), expected = at::bmm(a2, b2);
    EXPECT_LE(max_error(out, expected.detach()), 1e-5);
    const at::Tensor g = at::randn(out.sizes());
    out.backward(g);
    expected.backward(g.to(at::kDouble));
    EXPECT_LE(max_error(a1.grad(), a2.grad()), 1e-5);
    EXPECT_LE(max_error(b1.grad(), b2.grad()), 1e-5);
  }
}

TEST(FusedLinear, EqualsTheLibTorchExpressionAtInferenceAndKeepsAutogradInTraining) {
  at::manual_seed(3);
  // [T, B, K] tokens from a permuted feature map (not contiguous), as the model's input is.
  const at::Tensor x = at::randn({2, 24, 7}).permute({2, 0, 1});
  const at::Tensor w = at::randn({16, 24}), b = at::randn({16}), r = at::randn({7, 2, 16});
  const at::Tensor plain = at::linear(x, w, b);
  {
    c10::NoGradGuard no_grad;
    ASSERT_TRUE(fused_linear_applies(x));
    EXPECT_LE(max_error(linear(x, w, b), plain.to(at::kDouble)), 1e-5);
    const at::Tensor with_residual = linear(x, w, b, r);
    EXPECT_EQ(with_residual.sizes(), r.sizes());
    EXPECT_LE(max_error(with_residual, (r + plain).to(at::kDouble)), 1e-5);
    EXPECT_LE(max_error(linear(x, w, b, {}, true), plain.relu().to(at::kDouble)), 1e-5);
  }
  // With autograd recording, the LibTorch expression, gradients included.
  const at::Tensor wg = w.clone().requires_grad_(true);
  EXPECT_FALSE(fused_linear_applies(x));
  const at::Tensor y = linear(x, wg, b, r, true);
  ASSERT_TRUE(y.requires_grad());
  y.sum().backward();
  const at::Tensor active = ((r + plain) > 0).to(at::kFloat).reshape({14, 16});
  EXPECT_TRUE(at::allclose(wg.grad(), active.t().matmul(x.reshape({14, 24})), 1e-5, 1e-5));
}

TEST(FusedLayerNorm, MatchesFloat64AtInferenceAndIsLibTorchsWithAutograd) {
  at::manual_seed(4);
  // Rows of the model's width with an offset (the two-pass variance must not cancel), a width
  // that is no multiple of any vector size, and a non-contiguous input.
  for (const auto& x : {at::randn({300, 256}) * 3 + 50, at::randn({37, 61}), at::randn({61, 37}).t()}) {
    const int64_t cols = x.size(-1);
    const at::Tensor w = at::randn({cols}), b = at::randn({cols});
    const at::Tensor exact = at::layer_norm(x.to(at::kDouble), {cols}, w.to(at::kDouble), b.to(at::kDouble), 1e-5);
    c10::NoGradGuard no_grad;
    ASSERT_TRUE(fused_linear_applies(x));
    const at::Tensor y = layer_norm(x, w, b, 1e-5);
    EXPECT_EQ(y.sizes(), x.sizes());
    EXPECT_LE(max_error(y, exact), 2e-5) << "cols " << cols;
    EXPECT_LE(max_error(at::layer_norm(x, {cols}, w, b, 1e-5), exact), 2e-5) << "LibTorch's own, for scale";
  }
  // With autograd recording: LibTorch's, with its gradient.
  const at::Tensor x = at::randn({5, 16}), w = at::randn({16}).requires_grad_(true), b = at::randn({16});
  const at::Tensor y = layer_norm(x, w, b, 1e-5);
  ASSERT_TRUE(y.requires_grad());
  y.sum().backward();
  const at::Tensor normalized = (x - x.mean(-1, true)) / (x.var(-1, false, true) + 1e-5).sqrt();
  EXPECT_TRUE(at::allclose(w.grad(), normalized.sum(0), 1e-4, 1e-4));
}

}  // namespace
}  // namespace uniad::model
