// Metrics against sklearn (AUROC, AP, PR curve for F1-max) and an independent AUPRO, on
// random and heavily tied data; undefined cases; crafted AUPRO values by hand.
#include <fstream>
#include <random>

#include <nlohmann/json.hpp>

#include "eval/metrics.h"
#include "tests/test_support.h"

namespace uniad::eval {
namespace {

namespace fs = std::filesystem;

template <typename T>
void write_raw(const fs::path& path, const std::vector<T>& values) {
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(T));
}

nlohmann::json oracle(const std::vector<float>& scores, const std::vector<uint8_t>& labels, const std::string& shape = "") {
  test::TempDir dir;
  write_raw(dir / "s.f32", scores);
  write_raw(dir / "l.u8", labels);
  const auto r = test::run(std::string(test::python()) + " " + test::quote(test::oracle_script("metrics.py")) + " " +
                           test::quote(dir / "s.f32") + " " + test::quote(dir / "l.u8") + " " + shape);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  return nlohmann::json::parse(r.output.substr(r.output.find('{')));
}

TEST(Metrics, ImageMetricsMatchSklearnOnRandomAndTiedData) {
  std::mt19937 rng(1);
  for (int trial = 0; trial < 6; ++trial) {
    const int n = 50 + 300 * trial;
    std::vector<float> scores(n);
    std::vector<uint8_t> labels(n);
    for (int i = 0; i < n; ++i) {
      labels[i] = rng() % 3 == 0;
      // Odd trials: scores on a coarse grid, so many ties across labels.
      const float raw = std::normal_distribution<float>(labels[i] ? 0.8f : 0.f, 1.f)(rng);
      scores[i] = trial % 2 ? std::round(raw * 2) / 2 : raw;
    }
    const BinaryMetrics m = binary_metrics(scores, labels);
    const auto o = oracle(scores, labels);
    SCOPED_TRACE(trial);
    EXPECT_NEAR(m.auroc, o["auroc"].get<double>(), 1e-6);
    EXPECT_NEAR(m.ap, o["ap"].get<double>(), 1e-6);
    EXPECT_NEAR(m.f1_max, o["f1_max"].get<double>(), 1e-6);
  }
}

TEST(Metrics, PixelMetricsAndAuproMatchOracles) {
  std::mt19937 rng(2);
  const int images = 6, h = 40, w = 40;
  std::vector<float> maps(images * h * w);
  std::vector<uint8_t> masks(images * h * w, 0);
  for (int k = 0; k < images; ++k) {
    // A few rectangles and blobs per image (some touching diagonally: one 8-connected region).
    for (int r = 0; r < 1 + k % 3; ++r) {
      const int y0 = rng() % 30, x0 = rng() % 30, hh = 2 + rng() % 8, ww = 2 + rng() % 8;
      for (int y = y0; y < std::min(h, y0 + hh); ++y)
        for (int x = x0; x < std::min(w, x0 + ww); ++x) masks[(k * h + y) * w + x] = 1;
    }
    if (k == 5) std::fill(masks.begin() + k * h * w, masks.begin() + (k + 1) * h * w, 0);  // a normal image
  }
  masks[(0 * h + 0) * w + 0] = 1;
  masks[(0 * h + 1) * w + 1] = 1;  // diagonal neighbours
  for (std::size_t i = 0; i < maps.size(); ++i) {
    const float noise = std::normal_distribution<float>(0.f, 1.f)(rng);
    maps[i] = std::round((noise + (masks[i] ? 1.2f : 0.f)) * 8) / 8;  // quantised: ties everywhere
  }
  const PixelMetrics m = pixel_metrics(maps.data(), masks.data(), images, h, w);
  const auto o = oracle(maps, masks, std::to_string(images) + " " + std::to_string(h) + " " + std::to_string(w));
  EXPECT_NEAR(m.binary.auroc, o["auroc"].get<double>(), 1e-6);
  EXPECT_NEAR(m.binary.ap, o["ap"].get<double>(), 1e-6);
  EXPECT_NEAR(m.binary.f1_max, o["f1_max"].get<double>(), 1e-6);
  EXPECT_NEAR(m.aupro, o["aupro"].get<double>(), 1e-6);
  EXPECT_GT(m.regions, 5);
}

TEST(Metrics, AuproOnCraftedMasks) {
  // Two images 1x10. Image 0: region A = pixels 0..1 (scores 9, 1). Image 1: region B =
  // pixel 0 (score 8). Normal pixels: 16, scores 0.1 .. 1.6 except one at 5.
  const int h = 1, w = 10;
  std::vector<uint8_t> masks(20, 0);
  masks[0] = masks[1] = masks[10] = 1;
  std::vector<float> maps(20);
  for (int i = 0; i < 20; ++i) maps[i] = 0.1f * (i + 1);
  maps[0] = 9;
  maps[1] = 1;
  maps[10] = 8;
  maps[5] = 5;
  const PixelMetrics m = pixel_metrics(maps.data(), masks.data(), 2, h, w);
  // Thresholds from the top: 9 -> PRO 1/4 at FPR 0; 8 -> PRO 3/4 at FPR 0; 5 -> FPR 1/17 (PRO 3/4);
  // then normal pixels up to FPR 0.3 = 5.1/17 before the region pixel at score 1 is reached.
  // Area = 3/4 * 0.3 exactly (PRO is flat at 3/4 on [0, 0.3]), so AUPRO = 0.75.
  EXPECT_NEAR(m.aupro, 0.75, 1e-12);
  EXPECT_EQ(m.regions, 2);
  // Perfect separation: AUROC 1, AUPRO 1.
  std::vector<float> perfect(20, 0.f);
  for (int i = 0; i < 20; ++i) perfect[i] = masks[i] ? 2.f : 1.f;
  EXPECT_NEAR(pixel_metrics(perfect.data(), masks.data(), 2, h, w).aupro, 1.0, 1e-12);
  EXPECT_NEAR(pixel_metrics(perfect.data(), masks.data(), 2, h, w).binary.auroc, 1.0, 1e-12);
}

TEST(Metrics, UndefinedWithoutBothClasses) {
  const BinaryMetrics none = binary_metrics({0.1f, 0.5f}, {0, 0});
  EXPECT_FALSE(none.defined());
  EXPECT_TRUE(std::isnan(none.auroc));
  std::vector<float> maps(16, 0.5f);
  std::vector<uint8_t> masks(16, 0);
  const PixelMetrics p = pixel_metrics(maps.data(), masks.data(), 1, 4, 4);
  EXPECT_TRUE(std::isnan(p.binary.auroc));
  EXPECT_TRUE(std::isnan(p.aupro));
  EXPECT_THROW(binary_metrics({NAN, 0.5f}, {0, 1}), std::exception);
}

}  // namespace
}  // namespace uniad::eval
