// The image pipeline against an independent oracle: the reference's own steps in Python
// (OpenCV decoding, Pillow resizing, numpy normalisation).
#include <cmath>
#include <fstream>
#include <numeric>

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>

#include "data/dataset.h"
#include "data/image.h"
#include "data/resample.h"
#include "common/error.h"
#include "tests/test_support.h"

namespace uniad::data {
namespace {

namespace fs = std::filesystem;

using test::shared_dir;

template <typename T>
std::vector<T> read_raw(const fs::path& path, std::size_t count) {
  std::vector<T> out(count);
  std::ifstream in(path, std::ios::binary);
  in.read(reinterpret_cast<char*>(out.data()), static_cast<std::streamsize>(count * sizeof(T)));
  EXPECT_TRUE(in) << "cannot read oracle output " << path;
  return out;
}

// The oracle is the reference's own resize (Pillow, fixed-point): the same algorithm here
// should agree to the grey level; the bound is <= 1 level, mean < 0.05.
constexpr int kMaxLevelDiff = 1;
constexpr double kMaxMeanLevelDiff = 0.05;

struct OracleItem {
  std::string image, mask;  // mask may be empty
};

// Runs tests/oracle/preprocess_images.py on `items` at width x height into `out`.
void run_oracle(const fs::path& out, int width, int height, const std::vector<OracleItem>& items) {
  std::string command = std::string(test::python()) + " " + test::quote(test::oracle_script("preprocess_images.py")) +
                        " " + test::quote(out) + " " + std::to_string(width) + " " + std::to_string(height);
  for (const auto& item : items) command += " " + test::quote(item.image + (item.mask.empty() ? "" : ":" + item.mask));
  const auto result = test::run(command);
  ASSERT_EQ(result.exit_code, 0) << result.output;
}

// Compares our resized RGB image with the oracle's `k`-th one, level by level.
void expect_same_levels(const cv::Mat& ours, const fs::path& out, std::size_t k) {
  const std::size_t values = ours.total() * 3;
  const auto expected = read_raw<std::uint8_t>(out / (std::to_string(k) + ".resized.u8"), values);
  ASSERT_TRUE(ours.isContinuous());
  int max_diff = 0;
  double sum = 0;
  for (std::size_t i = 0; i < values; ++i) {
    const int d = std::abs(int(expected[i]) - int(ours.data[i]));
    max_diff = std::max(max_diff, d);
    sum += d;
  }
  EXPECT_LE(max_diff, kMaxLevelDiff);
  EXPECT_LT(sum / values, kMaxMeanLevelDiff);
}

TEST(ImagePipeline, MatchesPillowOnRealImagesOfEveryClass) {
  UNIAD_REQUIRE_SHARED("data/real3");
  // Colour and grayscale JPEGs of different sizes, normal and anomalous (with masks): the
  // first training image and the last (anomalous) test image of every class.
  const Dataset d = load_dataset((shared_dir() / "data/real3").string());
  std::vector<std::size_t> picks;
  for (int c = 0; c < static_cast<int>(d.classes.size()); ++c) {
    picks.push_back(d.indices(Split::kTrain, c).front());
    picks.push_back(d.indices(Split::kTest, c).back());
  }
  std::vector<OracleItem> items;
  for (std::size_t i : picks) items.push_back({d.samples[i].image_path, d.samples[i].mask_path});
  test::TempDir out;
  run_oracle(out.path(), 224, 224, items);

  const ImageBatch batch = load_batch(d, picks, ImageOptions{}, 2);
  const std::size_t plane = 224 * 224;
  // One grey level after normalisation, the largest rounding a 1-level difference can cause.
  const float one_level = 1.0f / 255.0f / 0.224f + 1e-5f;
  for (std::size_t k = 0; k < picks.size(); ++k) {
    const Sample& s = d.samples[picks[k]];
    SCOPED_TRACE(s.image_path);
    expect_same_levels(resize_bilinear_pillow(read_rgb(s.image_path), 224, 224), out.path(), k);
    const auto expected = read_raw<float>(out / (std::to_string(k) + ".image.f32"), 3 * plane);
    float max_diff = 0;
    for (std::size_t i = 0; i < 3 * plane; ++i) {
      max_diff = std::max(max_diff, std::abs(expected[i] - batch.images[k * 3 * plane + i]));
    }
    EXPECT_LE(max_diff, one_level) << "load_batch uses the same resize";
    if (!s.mask_path.empty()) {
      const auto mask = read_raw<std::uint8_t>(out / (std::to_string(k) + ".mask.u8"), plane);
      std::size_t differ = 0, defect = 0;
      for (std::size_t i = 0; i < plane; ++i) {
        differ += mask[i] != batch.masks[k * plane + i];
        defect += mask[i];
      }
      EXPECT_EQ(differ, 0u) << "masks (nearest) must be identical";
      EXPECT_GT(defect, 0u);
    }
  }
  // The grayscale classes must come out with three equal channels.
  const auto gray = std::find(d.classes.begin(), d.classes.end(), "commutator");
  ASSERT_NE(gray, d.classes.end());
  const std::size_t k = 2 * static_cast<std::size_t>(gray - d.classes.begin());  // its first training image
  for (std::size_t i = 0; i < plane; i += 97) {
    const float r = batch.images[k * 3 * plane + i] * 0.229f + 0.485f;
    const float g = batch.images[k * 3 * plane + plane + i] * 0.224f + 0.456f;
    EXPECT_NEAR(r, g, 1e-5f);
  }
}

TEST(ImagePipeline, MatchesPillowOnFineStripesAtAnyScale) {
  // Fine stripes and checkers alias badly without Pillow's antialiasing (OpenCV's
  // INTER_LINEAR is 10-100 levels off here); square and non-square, down- and upscaling.
  test::TempDir dir;
  struct Case {
    int width, height, out_width, out_height;
  };
  const std::vector<Case> cases = {{1024, 1024, 224, 224}, {700, 450, 224, 224}, {300, 517, 256, 128},
                                   {100, 60, 224, 224},    {224, 224, 97, 301},  {33, 47, 40, 20}};
  for (std::size_t n = 0; n < cases.size(); ++n) {
    const Case& c = cases[n];
    SCOPED_TRACE(std::to_string(c.width) + "x" + std::to_string(c.height) + " -> " + std::to_string(c.out_width) +
                 "x" + std::to_string(c.out_height));
    cv::Mat bgr(c.height, c.width, CV_8UC3), mask(c.height, c.width, CV_8U);
    for (int y = 0; y < c.height; ++y) {
      for (int x = 0; x < c.width; ++x) {
        // Period-2 stripes, period-3 checkers and a slow ramp, one per channel.
        bgr.at<cv::Vec3b>(y, x) = {std::uint8_t(x % 2 ? 250 : 5), std::uint8_t(((x / 3 + y / 3) % 2) * 255),
                                   std::uint8_t((x * 7 + y * 3) % 256)};
        mask.at<std::uint8_t>(y, x) = (x % 5 == 0 || y % 7 == 0) ? 255 : 0;
      }
    }
    const fs::path image = dir / ("stripes" + std::to_string(n) + ".png");
    const fs::path mask_path = dir / ("stripes" + std::to_string(n) + "_mask.png");
    ASSERT_TRUE(cv::imwrite(image.string(), bgr));
    ASSERT_TRUE(cv::imwrite(mask_path.string(), mask));
    const fs::path out = dir / ("out" + std::to_string(n));
    fs::create_directories(out);
    run_oracle(out, c.out_width, c.out_height, {{image.string(), mask_path.string()}});
    expect_same_levels(resize_bilinear_pillow(read_rgb(image.string()), c.out_width, c.out_height), out, 0);
    const cv::Mat ours = resize_nearest_pillow(read_gray(mask_path.string()), c.out_width, c.out_height);
    const auto expected = read_raw<std::uint8_t>(out / "0.mask.u8", ours.total());
    std::size_t differ = 0;
    for (std::size_t i = 0; i < ours.total(); ++i) differ += expected[i] != (ours.data[i] > 0 ? 1 : 0);
    EXPECT_EQ(differ, 0u) << "nearest-neighbour masks must be identical";
  }
}

TEST(ImagePipeline, AnomalousImageWithoutMaskIsRefused) {
  // The reference would use an all-defect mask; uniad refuses and names the file.
  test::TempDir dir;
  cv::Mat image(16, 16, CV_8UC3, cv::Scalar(10, 20, 30));
  ASSERT_TRUE(cv::imwrite((dir / "a.png").string(), image));
  Dataset d;
  d.classes = {"c"};
  d.samples.push_back({(dir / "a.png").string(), "", 0, "scratch", 1, Split::kTest});
  try {
    load_batch(d, {0}, ImageOptions{}, 1);
    FAIL() << "expected an InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("a.png"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("no mask"), std::string::npos) << e.what();
  }
  // And the scan of an MVTec folder reports it before any decoding.
  const fs::path root = dir / "mvtec";
  for (const char* sub : {"c/train/good", "c/test/good", "c/test/scratch", "c/ground_truth/scratch"})
    fs::create_directories(root / sub);
  for (const char* file : {"c/train/good/0.png", "c/test/good/0.png", "c/test/scratch/0.png"})
    ASSERT_TRUE(cv::imwrite((root / file).string(), image));
  try {
    load_dataset(root.string());
    FAIL() << "expected an InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("scratch/0.png"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("0_mask.png"), std::string::npos) << e.what();
  }
}

TEST(ImagePipeline, ReadsPngJpegBmpTiffAndGrayscale) {
  test::TempDir dir;
  cv::Mat colour(20, 30, CV_8UC3);
  cv::randu(colour, 0, 255);
  for (const char* ext : {"png", "bmp", "tif", "tiff"}) {
    const fs::path path = dir / (std::string("a.") + ext);
    ASSERT_TRUE(cv::imwrite(path.string(), colour));
    const cv::Mat rgb = read_rgb(path.string());
    ASSERT_EQ(rgb.size(), colour.size()) << ext;
    EXPECT_EQ(rgb.at<cv::Vec3b>(3, 4)[0], colour.at<cv::Vec3b>(3, 4)[2]) << ext << ": BGR swapped to RGB";
  }
  ASSERT_TRUE(cv::imwrite((dir / "a.jpg").string(), colour));
  EXPECT_EQ(read_rgb((dir / "a.jpg").string()).channels(), 3);
  cv::Mat gray(20, 30, CV_8U, cv::Scalar(77));
  ASSERT_TRUE(cv::imwrite((dir / "g.png").string(), gray));
  const cv::Mat rgb = read_rgb((dir / "g.png").string());
  EXPECT_EQ(rgb.at<cv::Vec3b>(5, 5), cv::Vec3b(77, 77, 77));
}

TEST(ImagePipeline, NormalisationValues) {
  // A flat image of value v becomes (v/255 - mean)/std in every pixel of its channel.
  cv::Mat rgb(10, 10, CV_8UC3, cv::Scalar(255, 0, 128));
  ImageOptions options;
  options.size = 4;
  std::vector<float> out(3 * 16);
  normalize_into(rgb, options, out.data());
  EXPECT_NEAR(out[0], (1.0f - 0.485f) / 0.229f, 1e-6);
  EXPECT_NEAR(out[16], (0.0f - 0.456f) / 0.224f, 1e-6);
  EXPECT_NEAR(out[32 + 15], (128 / 255.0f - 0.406f) / 0.225f, 1e-6);
}

TEST(ImagePipeline, MaskIsBinarisedAboveZero) {
  cv::Mat mask(8, 8, CV_8U, cv::Scalar(0));
  mask.at<std::uint8_t>(0, 0) = 1;  // any value > 0 is a defect
  mask.at<std::uint8_t>(7, 7) = 255;
  ImageOptions options;
  options.size = 8;
  std::vector<std::uint8_t> out(64);
  binarize_mask_into(mask, options, out.data());
  EXPECT_EQ(out[0], 1);
  EXPECT_EQ(out[63], 1);
  EXPECT_EQ(std::accumulate(out.begin(), out.end(), 0), 2);
}

}  // namespace
}  // namespace uniad::data
