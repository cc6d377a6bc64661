// Dataset scanning: counts on the real datasets, and every bad-input case names its file.
#include <opencv2/imgcodecs.hpp>

#include "common/error.h"
#include "data/dataset.h"
#include "data/image.h"
#include "tests/test_support.h"

namespace uniad::data {
namespace {

namespace fs = std::filesystem;

using test::TempDir;
using test::shared_dir;

// Expected counts per class: train/good, test/good, anomalous.
struct Counts {
  const char* name;
  int train_good, test_good, anomalous;
};

void expect_counts(const Dataset& dataset, const std::vector<Counts>& expected) {
  const auto summary = summarize(dataset);
  ASSERT_EQ(summary.size(), expected.size());
  for (std::size_t c = 0; c < expected.size(); ++c) {
    SCOPED_TRACE(expected[c].name);
    EXPECT_EQ(summary[c].name, expected[c].name);
    EXPECT_EQ(summary[c].train_good, expected[c].train_good);
    EXPECT_EQ(summary[c].test_good, expected[c].test_good);
    int anomalous = 0;
    for (const auto& [type, n] : summary[c].test_anomalous) anomalous += n;
    EXPECT_EQ(anomalous, expected[c].anomalous);
    EXPECT_EQ(summary[c].masks, expected[c].anomalous) << "every anomalous image has a mask";
  }
}

TEST(RealDatasets, Real3SmallCounts) {
  UNIAD_REQUIRE_SHARED("data/real3-small");
  const Dataset d = load_dataset((shared_dir() / "data/real3-small").string());
  EXPECT_EQ(d.layout, "mvtec");
  expect_counts(d, {{"ball_screw", 20, 8, 12}, {"commutator", 20, 8, 12}, {"magnetic_tile", 20, 8, 12}});
  EXPECT_EQ(d.indices(Split::kTrain).size(), 60u);
  EXPECT_EQ(d.indices(Split::kTest, 1).size(), 20u);
}

TEST(RealDatasets, Real3CountsMatchSharedReadme) {
  UNIAD_REQUIRE_SHARED("data/real3");
  const Dataset d = load_dataset((shared_dir() / "data/real3").string());
  expect_counts(d, {{"ball_screw", 516, 86, 84}, {"commutator", 261, 43, 26}, {"magnetic_tile", 714, 119, 198}});
  const auto summary = summarize(d);
  std::vector<std::string> tile_types;
  for (const auto& [type, n] : summary[2].test_anomalous) tile_types.push_back(type);
  EXPECT_EQ(tile_types, (std::vector<std::string>{"blowhole", "break", "crack", "fray", "uneven"}));
}

TEST(RealDatasets, ClassSelection) {
  UNIAD_REQUIRE_SHARED("data/real3-small");
  ScanOptions options;
  options.classes = {"magnetic_tile", "ball_screw"};
  const Dataset d = load_dataset((shared_dir() / "data/real3-small").string(), options);
  EXPECT_EQ(d.classes, (std::vector<std::string>{"ball_screw", "magnetic_tile"}));
  EXPECT_EQ(d.samples.size(), 80u);
}

// A tiny valid MVTec dataset to break in each test: class "part" with two training
// images, one good test image and one "crack" test image with its mask.
class BadInput : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = dir_ / "ds";
    const cv::Mat image(32, 40, CV_8UC3, cv::Scalar(60, 120, 180));
    cv::Mat mask(32, 40, CV_8U, cv::Scalar(0));
    mask(cv::Rect(5, 5, 6, 6)).setTo(255);
    write(part() / "train/good/000.png", image);
    write(part() / "train/good/001.png", image);
    write(part() / "test/good/000.png", image);
    write(part() / "test/crack/000.png", image);
    write(part() / "ground_truth/crack/000_mask.png", mask);
  }
  fs::path part() const { return root_ / "part"; }
  static void write(const fs::path& path, const cv::Mat& image) {
    fs::create_directories(path.parent_path());
    ASSERT_TRUE(cv::imwrite(path.string(), image));
  }
  // Loads every sample's pixels, as extraction would.
  ImageBatch load_all() const {
    const Dataset d = load_dataset(root_.string());
    std::vector<std::size_t> all(d.samples.size());
    for (std::size_t i = 0; i < all.size(); ++i) all[i] = i;
    return load_batch(d, all, ImageOptions{}, 2);
  }
  // Runs `fn`, expects an InputError whose message names `path`, and returns the message.
  template <typename Fn>
  static std::string expect_error_naming(Fn&& fn, const fs::path& path) {
    try {
      fn();
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find(path.string()), std::string::npos)
          << "error does not name " << path << ": " << e.what();
      return e.what();
    }
    ADD_FAILURE() << "expected an InputError naming " << path;
    return "";
  }

  TempDir dir_;
  fs::path root_;
};

TEST_F(BadInput, ValidDatasetLoads) {
  const Dataset d = load_dataset(root_.string());
  ASSERT_EQ(d.samples.size(), 4u);
  EXPECT_EQ(d.samples[3].label, 1);
  EXPECT_EQ(d.samples[3].defect_type, "crack");
  const ImageBatch batch = load_all();
  EXPECT_EQ(batch.count, 4);
  int defect_pixels = 0;
  for (std::size_t i = 3 * 224 * 224; i < 4 * 224 * 224; ++i) defect_pixels += batch.masks[i];
  EXPECT_GT(defect_pixels, 0);
}

TEST_F(BadInput, MissingRoot) {
  expect_error_naming([&] { load_dataset((root_ / "nope").string()); }, root_ / "nope");
}

TEST_F(BadInput, MissingTrainFolder) {
  fs::remove_all(part() / "train");
  const std::string message = expect_error_naming([&] { load_dataset(root_.string()); }, part() / "train/good");
  EXPECT_NE(message.find("missing folder"), std::string::npos);
}

TEST_F(BadInput, MissingTestFolder) {
  fs::remove_all(part() / "test");
  expect_error_naming([&] { load_dataset(root_.string()); }, part() / "test");
}

TEST_F(BadInput, EmptyClass) {
  for (const auto& f : fs::directory_iterator(part() / "train/good")) fs::remove(f.path());
  const std::string message = expect_error_naming([&] { load_dataset(root_.string()); }, part() / "train/good");
  EXPECT_NE(message.find("empty class"), std::string::npos);
}

TEST_F(BadInput, MaskMissingForAnomalousImage) {
  fs::remove(part() / "ground_truth/crack/000_mask.png");
  const std::string message =
      expect_error_naming([&] { load_dataset(root_.string()); }, part() / "test/crack/000.png");
  EXPECT_NE(message.find("000_mask.png"), std::string::npos) << "names the expected mask file";
}

TEST_F(BadInput, CorruptImage) {
  test::write_text(part() / "train/good/001.png", "this is not a PNG file at all");
  expect_error_naming([&] { load_all(); }, part() / "train/good/001.png");
}

TEST_F(BadInput, TruncatedJpeg) {
  const cv::Mat image(64, 64, CV_8UC3, cv::Scalar(10, 200, 30));
  write(part() / "train/good/002.jpg", image);
  const std::string bytes = test::read_bytes(part() / "train/good/002.jpg");
  test::write_text(part() / "train/good/002.jpg", bytes.substr(0, bytes.size() / 2));
  const std::string message = expect_error_naming([&] { load_all(); }, part() / "train/good/002.jpg");
  EXPECT_NE(message.find("truncated"), std::string::npos);
}

TEST_F(BadInput, EmptyFile) {
  test::write_text(part() / "test/good/000.png", "");
  expect_error_naming([&] { load_all(); }, part() / "test/good/000.png");
}

TEST_F(BadInput, MaskSizeDiffersFromImage) {
  write(part() / "ground_truth/crack/000_mask.png", cv::Mat(16, 16, CV_8U, cv::Scalar(255)));
  const std::string message =
      expect_error_naming([&] { load_all(); }, part() / "ground_truth/crack/000_mask.png");
  EXPECT_NE(message.find("16x16"), std::string::npos);
  EXPECT_NE(message.find("40x32"), std::string::npos);
}

TEST_F(BadInput, NonImageFileIsReported) {
  test::write_text(part() / "train/good/notes.txt", "hello");
  expect_error_naming([&] { load_dataset(root_.string()); }, part() / "train/good/notes.txt");
}

TEST_F(BadInput, UnknownRequestedClass) {
  ScanOptions options;
  options.classes = {"part", "widget"};
  expect_error_naming([&] { load_dataset(root_.string(), options); }, root_ / "widget");
}

TEST_F(BadInput, EmptyMaskIsAllowedAndCounted) {
  write(part() / "ground_truth/crack/000_mask.png", cv::Mat(32, 40, CV_8U, cv::Scalar(0)));
  const Dataset d = load_dataset(root_.string());
  auto summary = summarize(d);
  EXPECT_TRUE(verify_images(d, summary, 2).empty());
  EXPECT_EQ(summary[0].empty_masks, 1);
  EXPECT_EQ(d.samples[3].label, 1) << "still anomalous";
  const ImageBatch batch = load_all();
  for (std::size_t i = 3 * 224 * 224; i < 4 * 224 * 224; ++i) ASSERT_EQ(batch.masks[i], 0);
}

TEST_F(BadInput, VerifyCollectsEveryProblem) {
  test::write_text(part() / "train/good/001.png", "garbage");
  write(part() / "ground_truth/crack/000_mask.png", cv::Mat(16, 16, CV_8U, cv::Scalar(255)));
  const Dataset d = load_dataset(root_.string());
  auto summary = summarize(d);
  const auto problems = verify_images(d, summary, 2);
  ASSERT_EQ(problems.size(), 2u);
  EXPECT_EQ(problems[0].path, (part() / "ground_truth/crack/000_mask.png").string());
  EXPECT_EQ(problems[1].path, (part() / "train/good/001.png").string());
}

// VisA's split-CSV layout.
class VisaCsv : public BadInput {
 protected:
  void SetUp() override {
    BadInput::SetUp();
    csv_ = root_ / "split.csv";
    test::write_text(csv_,
                     "object,split,label,image,mask\n"
                     "part,train,normal,part/train/good/000.png,\n"
                     "part,train,normal,part/train/good/001.png,\n"
                     "part,test,normal,part/test/good/000.png,\n"
                     "part,test,anomaly,part/test/crack/000.png,part/ground_truth/crack/000_mask.png\n");
  }
  fs::path csv_;
};

TEST_F(VisaCsv, Reads) {
  ScanOptions options;
  options.visa_csv = csv_.string();
  const Dataset d = load_dataset(root_.string(), options);
  EXPECT_EQ(d.layout, "visa");
  ASSERT_EQ(d.samples.size(), 4u);
  EXPECT_EQ(d.indices(Split::kTrain).size(), 2u);
  EXPECT_EQ(d.samples[3].label, 1);
  EXPECT_EQ(d.samples[3].mask_path, (root_ / "part/ground_truth/crack/000_mask.png").string());
}

TEST_F(VisaCsv, MissingColumnNamesTheCsv) {
  test::write_text(csv_, "object,split,image\npart,train,a.png\n");
  ScanOptions options;
  options.visa_csv = csv_.string();
  const std::string message = expect_error_naming([&] { load_dataset(root_.string(), options); }, csv_);
  EXPECT_NE(message.find("label"), std::string::npos);
}

TEST_F(VisaCsv, MissingImageAndMaskAreNamed) {
  test::write_text(csv_,
                   "object,split,label,image,mask\n"
                   "part,train,normal,part/train/good/000.png,\n"
                   "part,test,anomaly,part/test/crack/000.png,\n");
  ScanOptions options;
  options.visa_csv = csv_.string();
  expect_error_naming([&] { load_dataset(root_.string(), options); }, root_ / "part/test/crack/000.png");
  test::write_text(csv_,
                   "object,split,label,image,mask\n"
                   "part,train,normal,part/train/good/404.png,\n");
  expect_error_naming([&] { load_dataset(root_.string(), options); }, root_ / "part/train/good/404.png");
}

}  // namespace
}  // namespace uniad::data
