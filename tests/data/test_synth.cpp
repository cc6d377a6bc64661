// The synthetic dataset: deterministic bytes per seed, exact masks, usable by the scanner.
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>

#include "common/error.h"
#include "data/dataset.h"
#include "data/synth.h"
#include "tests/test_support.h"

namespace uniad::data {
namespace {

namespace fs = std::filesystem;

SynthOptions small_options(std::uint64_t seed) {
  SynthOptions o;
  o.classes = 8;  // every design once
  o.seed = seed;
  o.train_good = 2;
  o.test_good = 1;
  o.test_anomalous = 4;  // one per defect type
  o.image_size = 96;
  return o;
}

std::map<std::string, std::string> all_files(const fs::path& root) {
  std::map<std::string, std::string> files;
  for (const auto& entry : fs::recursive_directory_iterator(root)) {
    if (entry.is_regular_file()) files[fs::relative(entry.path(), root).string()] = test::read_bytes(entry.path());
  }
  return files;
}

TEST(Synth, SameSeedSameBytesOtherSeedOtherBytes) {
  test::TempDir dir;
  write_synthetic_dataset((dir / "a").string(), small_options(7), false);
  write_synthetic_dataset((dir / "b").string(), small_options(7), false);
  write_synthetic_dataset((dir / "c").string(), small_options(8), false);
  const auto a = all_files(dir / "a"), b = all_files(dir / "b"), c = all_files(dir / "c");
  EXPECT_EQ(a.size(), 8u * (2 + 1 + 4 + 4) + 1);  // images, masks, synth.json
  EXPECT_TRUE(a == b) << "same seed must give identical files";
  int differing = 0;
  for (const auto& [name, bytes] : a) differing += c.count(name) && c.at(name) != bytes;
  EXPECT_GT(differing, static_cast<int>(a.size()) / 2) << "another seed must give other images";
}

TEST(Synth, MaskIsExactlyTheChangedPixels) {
  const SynthOptions options = small_options(3);
  const auto classes = synthetic_classes(options.classes);
  for (int c = 0; c < options.classes; ++c) {
    for (const auto& defect : classes[c].defects) {
      for (int index = 0; index < 3; ++index) {
        SCOPED_TRACE(classes[c].name + "/" + defect + "/" + std::to_string(index));
        const SynthImage s = render_synthetic(options, c, Split::kTest, defect, index);
        cv::Mat diff, changed;
        cv::absdiff(s.image, s.normal, diff);
        cv::transform(diff, changed, cv::Matx13f(1, 1, 1));  // sum over channels
        const cv::Mat changed_mask = changed > 0;
        EXPECT_EQ(cv::countNonZero(changed_mask != s.mask), 0) << "mask differs from the changed pixels";
        EXPECT_GE(cv::countNonZero(s.mask), 8) << "a defect must change some pixels";
        EXPECT_LT(cv::countNonZero(s.mask), options.image_size * options.image_size / 4) << "defects are local";
      }
    }
    const SynthImage normal = render_synthetic(options, c, Split::kTest, "good", 0);
    EXPECT_EQ(cv::countNonZero(normal.mask), 0);
    EXPECT_EQ(cv::norm(normal.image, normal.normal, cv::NORM_INF), 0);
  }
}

TEST(Synth, NormalImagesVary) {
  const SynthOptions options = small_options(1);
  for (int c = 0; c < options.classes; ++c) {
    const cv::Mat a = render_synthetic(options, c, Split::kTrain, "good", 0).image;
    const cv::Mat b = render_synthetic(options, c, Split::kTrain, "good", 1).image;
    EXPECT_GT(cv::norm(a, b, cv::NORM_L1) / a.total(), 3.0) << "class " << c;
  }
}

TEST(Synth, WrittenDatasetScansCleanlyWithExactMasks) {
  test::TempDir dir;
  const SynthOptions options = small_options(5);
  write_synthetic_dataset((dir / "ds").string(), options, false);
  const Dataset d = load_dataset((dir / "ds").string());
  ASSERT_EQ(d.classes.size(), 8u);
  for (const auto& row : summarize(d)) {
    EXPECT_EQ(row.train_good, 2);
    EXPECT_EQ(row.test_good, 1);
    EXPECT_EQ(row.masks, 4);
  }
  // The mask file on disk is the rendered mask (255 = defect).
  const int c = d.class_index("hex_nut");
  const std::string defect = synthetic_classes(8)[c].defects[0];
  const cv::Mat on_disk = cv::imread((dir / "ds/hex_nut/ground_truth" / defect / "000_mask.png").string(), cv::IMREAD_UNCHANGED);
  const SynthImage rendered = render_synthetic(options, c, Split::kTest, defect, 0);
  EXPECT_EQ(cv::norm(on_disk, rendered.mask, cv::NORM_INF), 0);
  EXPECT_EQ(test::read_bytes(dir / "ds/synth.json"), synthetic_manifest(options));
}

TEST(Synth, RefusesToOverwrite) {
  test::TempDir dir;
  fs::create_directories(dir / "taken");
  EXPECT_THROW(write_synthetic_dataset((dir / "taken").string(), small_options(0), false), InputError);
}

}  // namespace
}  // namespace uniad::data
