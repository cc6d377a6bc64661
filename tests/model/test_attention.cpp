// The attention kernels against each other (model/attention.h): LibTorch's fused
// scaled_dot_product_attention, which the GPU path takes, equals the explicit softmax(q k^T +
// mask) v the reference writes (the CPU training path), in values and in the gradients of q, k
// and v, in float32 and float64, with the neighbor mask; and the automatic choice per device.
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/version.h>

#include "common/error.h"
#include "model/attention.h"
#include "model/reconstruction.h"

namespace uniad::model {
namespace {

struct Result {
  at::Tensor out, grad_q, grad_k, grad_v;
};

// Attention of random [B*H, T, D] inputs with the 7 x 7 neighbor mask of a 14 x 14 grid (the
// reference's), and the gradients of a random projection of the output.
Result run(AttentionKernel kernel, at::ScalarType dtype) {
  at::manual_seed(3);
  const int64_t heads = 2 * 4, tokens = 14 * 14, dim = 32;
  const auto options = at::TensorOptions().dtype(dtype);
  const at::Tensor q = at::randn({heads, tokens, dim}, options).requires_grad_(true);
  const at::Tensor k = at::randn({heads, tokens, dim}, options).requires_grad_(true);
  const at::Tensor v = at::randn({heads, tokens, dim}, options).requires_grad_(true);
  const at::Tensor weights = at::randn({tokens, heads, dim}, options);
  const at::Tensor mask = neighbor_mask(14, 14, 7).to(dtype);
  const at::Tensor out = attention(q, k, v, mask, /*p=*/0.0, /*training=*/true, kernel);
  (out * weights).sum().backward();
  return {out.detach(), q.grad(), k.grad(), v.grad()};
}

double largest_difference(const at::Tensor& a, const at::Tensor& b) {
  return (a.to(at::kDouble) - b.to(at::kDouble)).abs().max().item<double>();
}

TEST(Attention, SdpaEqualsTheExplicitAttentionWithTheNeighborMask) {
  if (!sdpa_available()) GTEST_SKIP() << "LibTorch " << TORCH_VERSION << " has no scaled_dot_product_attention (2.0+)";
  // Bounds: the two sum the same products in another order (and SDPA's CPU kernel works in
  // blocks with an online softmax), so they differ by rounding: a few units of the type's
  // epsilon times the values' size (outputs ~1, gradients ~10 here). Measured on this machine:
  // float32 out 1e-6, gradients 5e-6; float64 1e-15 and 1e-14.
  for (const auto& [dtype, bound] : {std::pair{at::kFloat, 1e-4}, std::pair{at::kDouble, 1e-12}}) {
    const Result explicit_ = run(AttentionKernel::kExplicit, dtype), fused = run(AttentionKernel::kSdpa, dtype);
    EXPECT_EQ(fused.out.sizes(), explicit_.out.sizes());
    EXPECT_LE(largest_difference(fused.out, explicit_.out), bound) << c10::toString(dtype);
    EXPECT_LE(largest_difference(fused.grad_q, explicit_.grad_q), 10 * bound) << c10::toString(dtype);
    EXPECT_LE(largest_difference(fused.grad_k, explicit_.grad_k), 10 * bound) << c10::toString(dtype);
    EXPECT_LE(largest_difference(fused.grad_v, explicit_.grad_v), 10 * bound) << c10::toString(dtype);
    // The comparison is not between two trivial outputs: the mask matters.
    EXPECT_GT(explicit_.out.abs().max().item<double>(), 0.1);
    std::cout << "[ sdpa     ] " << c10::toString(dtype) << ": out " << largest_difference(fused.out, explicit_.out)
              << ", grad q " << largest_difference(fused.grad_q, explicit_.grad_q) << ", grad k "
              << largest_difference(fused.grad_k, explicit_.grad_k) << ", grad v "
              << largest_difference(fused.grad_v, explicit_.grad_v) << "\n";
  }
}

TEST(Attention, MaskedKeysGetNoWeightInEitherKernel) {
  // With v one-hot per token, the output row is the attention distribution: blocked keys get 0.
  const int64_t tokens = 4 * 4;
  const at::Tensor mask = neighbor_mask(4, 4, 3);
  const at::Tensor q = at::randn({1, tokens, tokens}), k = at::randn({1, tokens, tokens});
  const at::Tensor v = at::eye(tokens).unsqueeze(0);
  std::vector<AttentionKernel> kernels = {AttentionKernel::kExplicit};
  if (sdpa_available()) kernels.push_back(AttentionKernel::kSdpa);
  for (const auto kernel : kernels) {
    const at::Tensor weights = attention(q, k, v, mask, 0.0, true, kernel).squeeze(1);  // [Tq, Tk]
    EXPECT_TRUE(at::equal(weights.masked_select(mask.isinf()), at::zeros({mask.isinf().sum().item<int64_t>()})));
    EXPECT_TRUE(at::allclose(weights.sum(1), at::ones({tokens}), 1e-5, 1e-6));
  }
}

TEST(Attention, TheChoiceFollowsTheDeviceAndMode) {
  const at::Tensor q = at::randn({8, 196, 32});
  EXPECT_EQ(choose_attention_kernel(q, /*training=*/true), AttentionKernel::kExplicit) << "CPU training: the reference's";
  const int threads = at::get_num_threads();
  at::set_num_threads(1);
  EXPECT_EQ(choose_attention_kernel(q, false), AttentionKernel::kHeadByHead) << "CPU float32 inference, one thread";
  EXPECT_EQ(choose_attention_kernel(q.to(at::kDouble), false), AttentionKernel::kExplicit);
  EXPECT_EQ(choose_attention_kernel(q.clone().requires_grad_(true), false), AttentionKernel::kExplicit);
  at::set_num_threads(threads);
  EXPECT_THROW(attention(q, q, q, {}, 0.0, true, AttentionKernel::kHeadByHead), RuntimeError);
  if (!sdpa_available()) {
    EXPECT_THROW(attention(q, q, q, {}, 0.0, true, AttentionKernel::kSdpa), RuntimeError);
  }
}

}  // namespace
}  // namespace uniad::model
