// The memory-bank reference: nearest-patch distances against brute force, the greedy coreset
// against its definition, the random subset, PatchCore's neighbourhood mean, and the fitted
// bank through a checkpoint.
#include <ATen/ATen.h>

#include "model/checkpoint.h"
#include "model/memory_bank.h"
#include "tests/test_support.h"

namespace uniad::model {
namespace {

// Brute force in double: for each query the smallest Euclidean distance to any bank row.
std::vector<double> brute_force_nearest(const torch::Tensor& queries, const torch::Tensor& bank) {
  const auto q = queries.to(torch::kDouble).contiguous(), b = bank.to(torch::kDouble).contiguous();
  auto qa = q.accessor<double, 2>();
  auto ba = b.accessor<double, 2>();
  std::vector<double> out;
  for (int64_t i = 0; i < q.size(0); ++i) {
    double best = INFINITY;
    for (int64_t j = 0; j < b.size(0); ++j) {
      double sum = 0;
      for (int64_t c = 0; c < q.size(1); ++c) sum += (qa[i][c] - ba[j][c]) * (qa[i][c] - ba[j][c]);
      best = std::min(best, sum);
    }
    out.push_back(std::sqrt(best));
  }
  return out;
}

TEST(MemoryBank, NearestPatchesEqualBruteForce) {
  torch::manual_seed(0);
  const torch::Tensor bank = torch::randn({700, 24}) * 3;
  // Far queries, and queries a hair away from a bank row (where ||q||^2 - 2qb + ||b||^2 cancels).
  const torch::Tensor queries = torch::cat({torch::randn({60, 24}) * 3, bank.slice(0, 100, 140) + 1e-3 * torch::randn({40, 24})});
  const std::vector<double> expected = brute_force_nearest(queries, bank);
  for (const std::int64_t block : {16384, 64, 7}) {  // one block, several, a ragged last one
    const NearestPatches found = nearest_patches(queries, bank, block);
    ASSERT_EQ(found.distance.size(0), queries.size(0));
    for (int64_t i = 0; i < queries.size(0); ++i) {
      const double d = found.distance[i].item<double>();
      EXPECT_NEAR(d, expected[i], 1e-4 + 1e-5 * expected[i]) << "query " << i << ", block " << block;
      // The distance is the one to the returned row.
      const double to_row = (queries[i] - bank[found.index[i].item<int64_t>()]).norm().item<double>();
      EXPECT_NEAR(d, to_row, 1e-5) << i;
    }
  }
}

TEST(MemoryBank, GreedyCoresetFollowsItsDefinition) {
  torch::manual_seed(1);
  const torch::Tensor points = torch::randn({300, 8}, torch::kDouble);
  const std::vector<std::int64_t> chosen = greedy_coreset(points, 40, 17);
  ASSERT_EQ(chosen.size(), 40u);
  EXPECT_EQ(chosen[0], 17);
  // Each next point maximises the distance to the nearest point chosen before it.
  const torch::Tensor distances = at::cdist(points, points);  // [300, 300], exact in double
  for (std::size_t k = 1; k < chosen.size(); ++k) {
    const torch::Tensor previous = torch::tensor(std::vector<std::int64_t>(chosen.begin(), chosen.begin() + k));
    const torch::Tensor to_set = std::get<0>(distances.index_select(1, previous).min(1));  // [300]
    EXPECT_NEAR(to_set[chosen[k]].item<double>(), to_set.max().item<double>(), 1e-9) << "step " << k;
    EXPECT_GT(to_set[chosen[k]].item<double>(), 0) << "a point was chosen twice";
  }
  // Asking for more than there are returns every point once.
  EXPECT_EQ(greedy_coreset(points.slice(0, 0, 5), 9, 0).size(), 5u);
}

TEST(MemoryBank, NeighborhoodMeanIsPatchCores) {
  torch::manual_seed(2);
  const torch::Tensor x = torch::randn({2, 3, 5, 6});
  const torch::Tensor pooled = aggregate_neighborhood(x, 3);
  ASSERT_EQ(pooled.sizes(), x.sizes());
  // Mean over the 3 x 3 window, positions outside the grid counted as zeros (unfold + mean).
  for (int r = 0; r < 5; ++r) {
    for (int c = 0; c < 6; ++c) {
      torch::Tensor sum = torch::zeros({2, 3});
      for (int dr = -1; dr <= 1; ++dr)
        for (int dc = -1; dc <= 1; ++dc)
          if (r + dr >= 0 && r + dr < 5 && c + dc >= 0 && c + dc < 6) sum += x.select(2, r + dr).select(2, c + dc);
      EXPECT_TRUE(torch::allclose(pooled.select(2, r).select(2, c), sum / 9, 1e-6, 1e-6)) << r << "," << c;
    }
  }
  EXPECT_TRUE(aggregate_neighborhood(x, 1).equal(x));
}

ModelOptions bank_options(CoresetMode coreset, double ratio = 0.25) {
  ModelOptions o;
  o.kind = ModelKind::kMemoryBank;
  o.in_channels = 6;
  o.grid_h = 4;
  o.grid_w = 5;
  o.coreset = coreset;
  o.coreset_ratio = ratio;
  o.coreset_projection = 4;
  return o;
}

TEST(MemoryBank, FittedBankIsTheRequestedSubsetAndSeeded) {
  torch::manual_seed(3);
  const torch::Tensor features = torch::randn({10, 6, 4, 5});
  const torch::Tensor patches = aggregate_neighborhood(features, 3).permute({0, 2, 3, 1}).reshape({-1, 6});  // 200
  auto rows_in_patches = [&](const torch::Tensor& bank) {
    return std::get<0>(at::cdist(bank.to(torch::kDouble), patches.to(torch::kDouble)).min(1)).max().item<double>() < 1e-5;
  };
  for (CoresetMode mode : {CoresetMode::kNone, CoresetMode::kRandom, CoresetMode::kGreedy}) {
    MemoryBank a(bank_options(mode)), b(bank_options(mode)), other(bank_options(mode));
    a.fit(features, 7);
    b.fit(features, 7);
    other.fit(features, 8);
    const std::int64_t expected = mode == CoresetMode::kNone ? 200 : 50;
    EXPECT_EQ(a.options().bank_size, expected) << to_string(mode);
    EXPECT_EQ(a.bank.size(0), expected);
    EXPECT_TRUE(rows_in_patches(a.bank)) << to_string(mode) << ": the bank holds training patches";
    EXPECT_EQ(std::get<0>(at::unique_dim(a.bank, 0)).size(0), expected) << "no patch twice";
    EXPECT_TRUE(a.bank.equal(b.bank)) << "same seed, same bank";
    if (mode != CoresetMode::kNone) {
      EXPECT_FALSE(a.bank.equal(other.bank)) << "another seed, another subset";
    }
    EXPECT_EQ(parameter_count(a), 0) << "nothing to train";
  }
}

TEST(MemoryBank, MapIsTheDistanceToTheNearestTrainingPatch) {
  torch::manual_seed(4);
  const torch::Tensor features = torch::randn({6, 6, 4, 5});
  MemoryBank bank(bank_options(CoresetMode::kNone));
  bank.fit(features, 0);
  // A training image is its own nearest neighbour everywhere.
  EXPECT_LT(bank.anomaly_map(features.slice(0, 2, 3)).abs().max().item<float>(), 1e-5);
  // Another image: the brute-force distance per position, and forward() returns the patches.
  const torch::Tensor test = torch::randn({2, 6, 4, 5});
  const torch::Tensor map = bank.anomaly_map(test);
  ASSERT_EQ(map.sizes(), (std::vector<int64_t>{2, 1, 4, 5}));
  const torch::Tensor queries = aggregate_neighborhood(test, 3).permute({0, 2, 3, 1}).reshape({-1, 6});
  const std::vector<double> expected = brute_force_nearest(queries, bank.bank);
  const torch::Tensor flat = map.flatten();
  for (std::size_t i = 0; i < expected.size(); ++i) EXPECT_NEAR(flat[i].item<double>(), expected[i], 1e-5) << i;
  const torch::Tensor reconstruction = bank.forward(test);
  EXPECT_TRUE(torch::allclose(reconstruction_error(reconstruction, aggregate_neighborhood(test, 3)), map, 1e-5, 1e-5));
}

TEST(MemoryBank, FittedBankSurvivesACheckpoint) {
  test::TempDir dir;
  torch::manual_seed(5);
  auto bank = std::make_shared<MemoryBank>(bank_options(CoresetMode::kGreedy));
  bank->fit(torch::randn({8, 6, 4, 5}), 11);
  save_checkpoint((dir / "bank.pt").string(), *bank, {{"note", "test"}});
  const Checkpoint loaded = load_checkpoint((dir / "bank.pt").string());
  EXPECT_EQ(loaded.model->options().kind, ModelKind::kMemoryBank);
  EXPECT_EQ(loaded.model->options().bank_size, 40);
  const auto& restored = dynamic_cast<const MemoryBank&>(*loaded.model);
  EXPECT_TRUE(restored.bank.equal(bank->bank));
  const torch::Tensor x = torch::randn({1, 6, 4, 5});
  EXPECT_TRUE(loaded.model->anomaly_map(x).equal(bank->anomaly_map(x)));
}

}  // namespace
}  // namespace uniad::model
