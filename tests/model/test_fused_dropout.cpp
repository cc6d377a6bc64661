// The fused dropout operators (model/fused_dropout.h): the generator against Random123's known
// answers, the mask's statistics, and each fused operator against the unfused LibTorch
// expression on the same random numbers, forward and gradients.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/csrc/autograd/autograd.h>

#include "model/fused_dropout.h"
#include "model/reconstruction.h"
#include "tests/test_support.h"

namespace uniad::model {
namespace {

constexpr double kP = 0.1;

TEST(Philox, RandomOneTwoThreeKnownAnswers) {
  // github.com/DEShawResearch/random123, tests/kat_vectors: counter, key -> output.
  using Words = std::array<std::uint32_t, 4>;
  EXPECT_EQ(fused::philox4x32_10({0, 0, 0, 0}, {0, 0}), (Words{0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}));
  EXPECT_EQ(fused::philox4x32_10({~0u, ~0u, ~0u, ~0u}, {~0u, ~0u}),
            (Words{0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}));
  EXPECT_EQ(fused::philox4x32_10({0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}, {0xa4093822, 0x299f31d0}),
            (Words{0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}));
}

TEST(Philox, VectorisedGeneratorEqualsThePlainOne) {
  const std::uint64_t key = 0x299f31d0a4093822ull;
  // Across chunk borders, and far enough that the block counter's high word is used.
  for (const std::int64_t first : {std::int64_t{0}, std::int64_t{61}, std::int64_t{1} << 36}) {
    const std::vector<std::uint32_t> words = fused::random_words(first, 200, key);
    for (std::int64_t i = first; i < first + 200; ++i) {
      const std::uint64_t block = static_cast<std::uint64_t>(i / 4);
      const auto expected = fused::philox4x32_10(
          {static_cast<std::uint32_t>(block), static_cast<std::uint32_t>(block >> 32), 0, 0},
          {static_cast<std::uint32_t>(key), static_cast<std::uint32_t>(key >> 32)});
      ASSERT_EQ(words[i - first], expected[i % 4]) << "element " << i;
    }
  }
}

TEST(FusedDropout, MaskKeepsEachElementWithProbabilityOneMinusP) {
  const std::int64_t n = 1 << 22;
  const at::Tensor a = fused::dropout_mask({n}, kP, 1), b = fused::dropout_mask({n}, kP, 2);
  const double scale = 1 / (1 - kP);
  // Every value is 0 or 1 / (1 - p).
  EXPECT_TRUE(((a == 0) | (a == static_cast<float>(scale))).all().item<bool>());
  const at::Tensor kept_a = a > 0, kept_b = b > 0;
  const double fraction = kept_a.to(at::kDouble).mean().item<double>();
  const double sigma = std::sqrt(kP * (1 - kP) / n);
  EXPECT_NEAR(fraction, 1 - kP, 5 * sigma);
  // Another key: an independent mask (both kept with probability (1 - p)^2).
  const double both = (kept_a & kept_b).to(at::kDouble).mean().item<double>();
  EXPECT_NEAR(both, (1 - kP) * (1 - kP), 5 * std::sqrt(0.81 * 0.19 / n));
  // Neighbouring elements are independent too (lag 1 and across a 4-word block).
  for (const std::int64_t lag : {1, 4}) {
    const at::Tensor pairs = kept_a.narrow(0, 0, n - lag) & kept_a.narrow(0, lag, n - lag);
    EXPECT_NEAR(pairs.to(at::kDouble).mean().item<double>(), 0.81, 5 * std::sqrt(0.81 * 0.19 / n)) << "lag " << lag;
  }
  // A pure function of key and position: the same key gives the same mask, whatever the threads.
  const int threads = at::get_num_threads();
  at::set_num_threads(1);
  const at::Tensor single = fused::dropout_mask({n}, kP, 1);
  at::set_num_threads(threads);
  EXPECT_TRUE(at::equal(single, a));
}

TEST(FusedDropout, KeysComeFreshFromTheSeededGenerator) {
  at::manual_seed(5);
  const std::uint64_t first = fused::next_key(), second = fused::next_key();
  EXPECT_NE(first, second);
  at::manual_seed(5);
  EXPECT_EQ(fused::next_key(), first);  // a resumed run (same generator state) draws the same masks
}

// Forward and the gradients of every input: fused(inputs) vs reference(inputs), upstream grad g.
template <typename Fused, typename Reference>
void expect_same_values_and_gradients(std::vector<at::Tensor> inputs, const Fused& fused_op, const Reference& reference) {
  std::vector<at::Tensor> a, b;
  for (const auto& t : inputs) {
    a.push_back(t.clone().requires_grad_(true));
    b.push_back(t.clone().requires_grad_(true));
  }
  const at::Tensor out_fused = fused_op(a), out_reference = reference(b);
  EXPECT_TRUE(at::allclose(out_fused, out_reference, 1e-6, 1e-6))
      << "forward differs by " << (out_fused - out_reference).abs().max().item<double>();
  const at::Tensor g = at::randn(out_fused.sizes());
  out_fused.backward(g);
  out_reference.backward(g);
  for (std::size_t i = 0; i < a.size(); ++i) {
    EXPECT_TRUE(at::allclose(a[i].grad(), b[i].grad(), 1e-5, 1e-6))
        << "gradient " << i << " differs by " << (a[i].grad() - b[i].grad()).abs().max().item<double>();
  }
}

TEST(FusedDropout, SoftmaxDropoutEqualsTheUnfusedExpression) {
  // One block of rows; the reference size (many row blocks, random chunks straddling them); rows
  // shorter than a vector.
  at::manual_seed(0);
  for (const auto& shape : std::vector<std::vector<std::int64_t>>{{6, 17, 33}, {3, 196, 196}, {5, 50, 7}}) {
    SCOPED_TRACE(c10::str(at::IntArrayRef(shape)));
    at::Tensor logits = at::randn(shape);
    logits.select(2, 4).fill_(-std::numeric_limits<float>::infinity());  // a masked key, as the neighbor mask does
    const std::uint64_t key = 42;
    const at::Tensor mask = fused::dropout_mask(logits.sizes(), kP, key);
    expect_same_values_and_gradients(
        {logits}, [&](const auto& x) { return fused::softmax_dropout(x[0], kP, key); },
        [&](const auto& x) { return at::softmax(x[0], -1) * mask; });
  }
}

TEST(FusedDropout, SoftmaxDropoutWithTheNeighborMaskEqualsAddingItFirst) {
  // The attention's shape (heads x queries x keys) with the [queries, keys] neighbor mask shared by
  // every head: added inside the fused pass, as the unfused expression adds it before the softmax.
  at::manual_seed(1);
  const at::Tensor neighbor = neighbor_mask(7, 7, 3);  // 49 tokens
  const at::Tensor logits = at::randn({6, 49, 49});
  const std::uint64_t key = 43;
  const at::Tensor mask = fused::dropout_mask(logits.sizes(), kP, key);
  expect_same_values_and_gradients(
      {logits}, [&](const auto& x) { return fused::softmax_dropout(x[0], kP, key, neighbor); },
      [&](const auto& x) { return at::softmax(x[0] + neighbor, -1) * mask; });
  // The public operator, at inference and in training, takes the same mask.
  EXPECT_TRUE(at::allclose(softmax_dropout(logits, kP, /*train=*/false, neighbor), at::softmax(logits + neighbor, -1)));
  const at::Tensor trained = softmax_dropout(logits, kP, /*train=*/true, neighbor);
  EXPECT_TRUE((trained.masked_select((neighbor == -INFINITY).expand_as(trained)) == 0).all().item<bool>());
}

TEST(FusedDropout, SoftmaxDropoutDoesNotDependOnTheThreadCount) {
  at::manual_seed(3);
  const at::Tensor logits = at::randn({4, 196, 196});
  const auto run = [&](int threads) {
    const int before = at::get_num_threads();
    at::set_num_threads(threads);
    const at::Tensor x = logits.clone().requires_grad_(true);
    const at::Tensor y = fused::softmax_dropout(x, kP, 11);
    y.backward(at::ones_like(y) * at::arange(y.size(-1)).to(at::kFloat));
    at::set_num_threads(before);
    return std::make_pair(y.detach(), x.grad());
  };
  const auto one = run(1), two = run(2);
  EXPECT_TRUE(at::equal(one.first, two.first));
  EXPECT_TRUE(at::equal(one.second, two.second));
}

TEST(FusedDropout, ReluDropoutEqualsTheUnfusedExpression) {
  at::manual_seed(1);
  const at::Tensor x = at::randn({196, 8, 64});
  const std::uint64_t key = 7;
  const at::Tensor mask = fused::dropout_mask(x.sizes(), kP, key);
  expect_same_values_and_gradients(
      {x}, [&](const auto& t) { return fused::relu_dropout(t[0], kP, key); },
      [&](const auto& t) { return at::relu(t[0]) * mask; });
}

TEST(FusedDropout, AddDropoutEqualsTheUnfusedExpression) {
  at::manual_seed(2);
  const at::Tensor x = at::randn({196, 8, 32}), y = at::randn({196, 8, 32});
  const std::uint64_t key = 9;
  const at::Tensor mask = fused::dropout_mask(x.sizes(), kP, key);
  expect_same_values_and_gradients(
      {x, y}, [&](const auto& t) { return fused::add_dropout(t[0], t[1], kP, key); },
      [&](const auto& t) { return t[0] + t[1] * mask; });
}

TEST(FusedDropout, OffOutsideTrainingAndPlainWhereNoKernelApplies) {
  const at::Tensor x = at::randn({4, 5});
  EXPECT_TRUE(at::equal(softmax_dropout(x, kP, /*train=*/false), at::softmax(x, -1)));
  EXPECT_TRUE(at::equal(relu_dropout(x, kP, false), at::relu(x)));
  EXPECT_TRUE(at::equal(add_dropout(x, x, kP, false), x + x));
  EXPECT_TRUE(at::equal(add_dropout(x, x, 0.0, true), x + x));
  // float64: LibTorch's own dropout, still with the same meaning.
  const at::Tensor d = relu_dropout(at::ones({1000}, at::kDouble), 0.5, true);
  EXPECT_EQ(d.scalar_type(), at::kDouble);
  EXPECT_TRUE(((d == 0) | (d == 2)).all().item<bool>());
}

}  // namespace
}  // namespace uniad::model
