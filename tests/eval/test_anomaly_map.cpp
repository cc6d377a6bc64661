// Anomaly maps and image scores: Gaussian smoothing against SciPy, the image-score rules.
#include <fstream>
#include <tuple>

#include <ATen/ATen.h>

#include "common/error.h"
#include "eval/anomaly_map.h"
#include "tests/test_support.h"

namespace uniad::eval {
namespace {

namespace fs = std::filesystem;

TEST(AnomalyMap, GaussianSmoothingMatchesScipy) {
  const at::Tensor maps = at::rand({2, 40, 50});
  const at::Tensor smoothed = smooth_maps(maps, 4.0);
  test::TempDir dir;
  std::ofstream(dir / "in.f32", std::ios::binary)
      .write(static_cast<const char*>(maps.contiguous().data_ptr()), maps.numel() * 4);
  const auto r = test::run(std::string(test::python()) + " " + test::quote(test::oracle_script("gaussian.py")) + " " +
                           test::quote(dir / "in.f32") + " " + test::quote(dir / "out.f32") + " 2 40 50 4");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  at::Tensor expected = at::empty({2, 40, 50});
  std::ifstream(dir / "out.f32", std::ios::binary).read(static_cast<char*>(expected.data_ptr()), expected.numel() * 4);
  EXPECT_LE((smoothed - expected).abs().max().item<float>(), 1e-5);
  EXPECT_TRUE(at::equal(smooth_maps(maps, 0), maps)) << "sigma 0 is off";
}

TEST(AnomalyMap, ImageScoreVariants) {
  at::Tensor maps = at::zeros({1, 32, 32});
  maps[0][5][5] = 256;  // one hot pixel
  ScoreOptions o;
  o.kind = ImageScore::kMax;
  EXPECT_FLOAT_EQ(image_scores(maps, o).item<float>(), 256);
  o.kind = ImageScore::kAvgPoolMax;
  EXPECT_FLOAT_EQ(image_scores(maps, o).item<float>(), 1.0f) << "256 / (16*16)";
  o.kind = ImageScore::kMean;
  EXPECT_FLOAT_EQ(image_scores(maps, o).item<float>(), 0.25f);
  o.kind = ImageScore::kTopMean;
  o.top_percent = 1.0;  // top 11 of 1024 pixels
  EXPECT_NEAR(image_scores(maps, o).item<float>(), 256.0f / 11, 1e-4);
  EXPECT_THROW(parse_image_score("median"), UsageError);
}

TEST(AnomalyMap, AvgPoolMaxEqualsTheMaxOfTheDirectWindowMean) {
  // The score pools rows then columns; the definition is the k x k window mean, everywhere.
  at::manual_seed(3);
  for (const auto& [h, w, k] : {std::tuple{224, 224, 16}, std::tuple{40, 57, 5}, std::tuple{16, 16, 16}}) {
    const at::Tensor maps = at::rand({3, h, w}) * 10;
    ScoreOptions o;
    o.kind = ImageScore::kAvgPoolMax;
    o.pool_window = k;
    const at::Tensor direct = std::get<0>(at::avg_pool2d(maps.unsqueeze(1), {k, k}, {1, 1}).flatten(1).max(1));
    EXPECT_LE((image_scores(maps, o) - direct).abs().max().item<float>(), 1e-5) << h << "x" << w << ", k " << k;
  }
}

}  // namespace
}  // namespace uniad::eval
