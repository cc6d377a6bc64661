// The inference attention kernels: the softmax rows (model/softmax.h) against the float64
// softmax, for every instruction set this CPU runs, on rows with and without a vector-width tail
// and with -inf (masked) logits as the neighbour mask makes them; and the head-by-head attention
// (model/attention.h) against the batched LibTorch expression the training path uses.
#include <algorithm>
#include <cmath>
#include <limits>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include "model/attention.h"
#include "model/reconstruction.h"
#include "model/softmax.h"
#include "tests/test_support.h"

namespace uniad::model {
namespace {

const float kInfinity = std::numeric_limits<float>::infinity();

// Logits of the attention's scale, a quarter of them masked (never a whole row).
at::Tensor masked_logits(std::int64_t rows, std::int64_t cols, std::uint64_t seed) {
  at::manual_seed(seed);
  at::Tensor x = at::randn({rows, cols}) * 6;
  const at::Tensor masked = at::rand({rows, cols}) < 0.25;
  masked.select(1, 0).fill_(false);
  return x.masked_fill(masked, -kInfinity);
}

at::Tensor softmax_rows(const at::Tensor& x, const char* set) {
  at::Tensor y = at::empty_like(x);
  const bool ran = fused::softmax_rows_with(set, x.data_ptr<float>(), y.data_ptr<float>(), x.size(0), x.size(1));
  return ran ? y : at::Tensor();
}

TEST(Softmax, EveryInstructionSetMatchesTheFloat64Softmax) {
  int checked = 0;
  for (const char* set : {"avx512", "avx2", "sse2"}) {
    for (const std::int64_t cols : {1, 3, 4, 8, 15, 16, 17, 33, 196}) {
      const at::Tensor x = masked_logits(37, cols, 7 + cols);
      const at::Tensor y = softmax_rows(x, set);
      if (!y.defined()) continue;  // this CPU lacks the set
      const at::Tensor expected = at::softmax(x.to(at::kDouble), -1);
      auto relative_error = [&](const at::Tensor& t) {
        return ((t.to(at::kDouble) - expected).abs() / (expected + 1e-30)).max().item<double>();
      };
      // Rounding x - max in float already costs up to |x - max| * 2^-24 relative (LibTorch's
      // float softmax has it too); exp's ulp and the sum add a few 1e-7 at most.
      const double libtorch = relative_error(at::softmax(x, -1));
      EXPECT_LE(relative_error(y), libtorch + 5e-7) << set << ", " << cols << " columns; LibTorch's float: " << libtorch;
      EXPECT_TRUE((y.masked_select(x == -kInfinity) == 0).all().item<bool>()) << "masked logits give exactly 0";
      ++checked;
    }
  }
  EXPECT_GE(checked, 9) << "at least the SSE2 kernels ran";
  std::cout << "[ softmax  ] this CPU's kernels: " << fused::softmax_instruction_set() << "\n";
}

TEST(Softmax, AdditiveMaskEqualsAddingItFirst) {
  // Three heads of 5 queries share one [5, cols] mask (row r takes mask row r % 5): the kernel's
  // addition inside its pass is the same float addition as adding the mask beforehand.
  int checked = 0;
  for (const char* set : {"avx512", "avx2", "sse2"}) {
    for (const std::int64_t cols : {3, 16, 17, 196}) {
      at::manual_seed(cols);
      const at::Tensor x = at::randn({15, cols}) * 6;
      at::Tensor mask = at::randn({5, cols}).masked_fill(at::rand({5, cols}) < 0.3, -kInfinity);
      mask.select(1, 0).fill_(0.5f);  // never a whole row masked
      at::Tensor y = at::empty_like(x);
      if (!fused::softmax_rows_with(set, x.data_ptr<float>(), y.data_ptr<float>(), 15, cols, mask.data_ptr<float>(), 5))
        continue;
      const at::Tensor expected = softmax_rows(x + mask.repeat({3, 1}), set);
      EXPECT_TRUE(at::equal(y, expected)) << set << ", " << cols << " columns";
      // A slice that starts at row 2 of the stack takes mask rows 2, 3, 4, 0, ...
      fused::softmax_rows_with(set, x.data_ptr<float>(), y.data_ptr<float>(), 15, cols, mask.data_ptr<float>(), 5, 2);
      EXPECT_TRUE(at::equal(y, softmax_rows(x + mask.roll(-2, 0).repeat({3, 1}), set))) << set << ", first row 2";
      ++checked;
    }
  }
  EXPECT_GE(checked, 4) << "at least the SSE2 kernels ran";
}

TEST(Softmax, ExtremeLogits) {
  // Large differences underflow to exactly 0 (as exp(x - max) does in float), huge logits do not
  // overflow, a row of equal logits is uniform, and a fully masked row is NaN as in LibTorch.
  const at::Tensor x = at::tensor({0.0f, -100.0f, -kInfinity, 3e38f, 3e38f, 1.0f, 1.0f, 1.0f, 1.0f, 1.0f, -kInfinity,
                                   -kInfinity, -kInfinity, -kInfinity, -kInfinity})
                           .view({3, 5});
  for (const char* set : {"avx512", "avx2", "sse2"}) {
    const at::Tensor y = softmax_rows(x, set);
    if (!y.defined()) continue;
    EXPECT_TRUE(at::equal(y[0], at::tensor({0.0f, 0.0f, 0.0f, 0.5f, 0.5f}))) << set << ": " << y;
    EXPECT_TRUE(at::allclose(y[1], at::full({5}, 0.2f))) << set << ": " << y;
    EXPECT_TRUE(y[2].isnan().all().item<bool>()) << set << ": " << y;
  }
}

TEST(Attention, HeadByHeadEqualsTheBatchedExpression) {
  at::manual_seed(5);
  const int threads = at::get_num_threads();
  at::set_num_threads(1);  // where the model uses it
  for (const std::int64_t heads : {1, 8, 19}) {  // 19: groups of the 1 MB budget leave a remainder
    // q, k, v as the model makes them: [T, H, D] projections seen as [H, T, D] (strided).
    const std::int64_t tokens = 196, dim = 32;
    const at::Tensor q = at::randn({tokens, heads, dim}).transpose(0, 1);
    const double scale = 1 / std::sqrt(32.0);  // applied by the kernel, as the model asks it to
    const at::Tensor k = at::randn({tokens, heads, dim}).transpose(0, 1);
    const at::Tensor v = at::randn({tokens, heads, dim}).transpose(0, 1);
    const at::Tensor mask = neighbor_mask(14, 14, 7);
    for (const bool masked : {true, false}) {
      const at::Tensor m = masked ? mask : at::Tensor();
      const at::Tensor qs = q * scale;
      const at::Tensor logits = masked ? at::baddbmm(m, qs, k.transpose(1, 2)) : at::bmm(qs, k.transpose(1, 2));
      const at::Tensor expected = at::bmm(at::softmax(logits, -1), v).transpose(0, 1);  // [T, H, D]
      ASSERT_TRUE(head_by_head_applies(q));
      const at::Tensor actual = attention_head_by_head(q, k, v, m, scale);
      ASSERT_EQ(actual.sizes(), expected.sizes());
      EXPECT_TRUE(actual.is_contiguous());
      EXPECT_LE((actual - expected).abs().max().item<float>(), 1e-5) << heads << " heads, masked " << masked;
    }
  }
  at::set_num_threads(std::max(2, threads));
  EXPECT_FALSE(head_by_head_applies(at::zeros({1, 2, 2}))) << "more threads: the batched operators";
  at::set_num_threads(threads);
}

}  // namespace
}  // namespace uniad::model
