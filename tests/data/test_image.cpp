// The image pipeline against an independent oracle (OpenCV's Python module + numpy).
#include <cmath>
#include <fstream>
#include <numeric>

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>

#include "data/dataset.h"
#include "data/image.h"
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

// Tolerance: both sides resize with the same OpenCV routine and normalise in float32, so
// values should agree to float rounding; 1e-5 allows for a different operation order.
constexpr float kTolerance = 1e-5f;

TEST(ImagePipeline, MatchesPythonOracleOnRealImages) {
  UNIAD_REQUIRE_SHARED("data/real3-small");
  // Colour and grayscale JPEGs of different sizes, normal and anomalous (with masks).
  ScanOptions options;
  const Dataset d = load_dataset((shared_dir() / "data/real3-small").string(), options);
  std::vector<std::size_t> picks;
  for (int c = 0; c < 3; ++c) {
    picks.push_back(d.indices(Split::kTrain, c).front());
    picks.push_back(d.indices(Split::kTest, c).back());  // anomalous: last in class order
  }
  test::TempDir out;
  std::string command = std::string(test::python()) + " " + test::quote(test::oracle_script("preprocess_images.py")) +
                        " " + test::quote(out.path()) + " 224";
  for (std::size_t i : picks) {
    command += " " + test::quote(d.samples[i].image_path);
    if (!d.samples[i].mask_path.empty()) command += ":" + d.samples[i].mask_path;
  }
  const auto result = test::run(command);
  ASSERT_EQ(result.exit_code, 0) << result.output;

  const ImageBatch batch = load_batch(d, picks, ImageOptions{}, 2);
  const std::size_t plane = 224 * 224;
  for (std::size_t k = 0; k < picks.size(); ++k) {
    const Sample& s = d.samples[picks[k]];
    SCOPED_TRACE(s.image_path);
    const auto expected = read_raw<float>(out / (std::to_string(k) + ".image.f32"), 3 * plane);
    float max_diff = 0;
    for (std::size_t i = 0; i < 3 * plane; ++i) {
      max_diff = std::max(max_diff, std::abs(expected[i] - batch.images[k * 3 * plane + i]));
    }
    EXPECT_LE(max_diff, kTolerance);
    if (!s.mask_path.empty()) {
      const auto mask = read_raw<std::uint8_t>(out / (std::to_string(k) + ".mask.u8"), plane);
      std::size_t differ = 0, defect = 0;
      for (std::size_t i = 0; i < plane; ++i) {
        differ += mask[i] != batch.masks[k * plane + i];
        defect += mask[i];
      }
      EXPECT_EQ(differ, 0u);
      EXPECT_GT(defect, 0u);
    }
  }
  // The grayscale classes must come out with three equal channels.
  const std::size_t gray = 2;  // commutator's first training image
  ASSERT_EQ(d.classes[1], "commutator");
  for (std::size_t i = 0; i < plane; i += 97) {
    const float r = batch.images[gray * 3 * plane + i] * 0.229f + 0.485f;
    const float g = batch.images[gray * 3 * plane + plane + i] * 0.224f + 0.456f;
    EXPECT_NEAR(r, g, 1e-5f);
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
