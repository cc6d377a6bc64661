#include "data/image.h"

#include <algorithm>
#include <fstream>
#include <iterator>
#include <mutex>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "common/error.h"
#include "common/fs.h"
#include "common/parallel.h"
#include "data/resample.h"

namespace uniad::data {

namespace {

std::vector<std::uint8_t> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    throw InputError(path, fs::exists(path) ? "cannot open the file (permissions?)" : "file does not exist");
  }
  return std::vector<std::uint8_t>(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// libjpeg decodes a truncated JPEG with only a warning on stderr and grey filler pixels.
// A complete JPEG ends with the end-of-image marker FF D9 (some writers pad after it).
bool jpeg_looks_complete(const std::vector<std::uint8_t>& bytes) {
  const std::size_t start = bytes.size() > 4096 ? bytes.size() - 4096 : 0;
  for (std::size_t i = bytes.size() - 1; i > start; --i) {
    if (bytes[i - 1] == 0xFF && bytes[i] == 0xD9) return true;
  }
  return false;
}

cv::Mat decode(const std::string& path, int flags) {
  const auto bytes = read_file(path);
  if (bytes.empty()) throw InputError(path, "empty file (0 bytes); re-copy or remove it");
  const std::string ext = lower_extension(path);
  if ((ext == "jpg" || ext == "jpeg") && !jpeg_looks_complete(bytes)) {
    throw InputError(path, "truncated JPEG (no end-of-image marker); re-copy or remove it");
  }
  cv::Mat image;
  try {
    image = cv::imdecode(bytes, flags);
  } catch (const cv::Exception& e) {
    throw InputError(path, std::string("cannot decode image: ") + e.what());
  }
  if (image.empty()) throw InputError(path, "cannot decode image (corrupt or not a PNG/JPEG/BMP/TIFF file)");
  if (image.depth() != CV_8U) image.convertTo(image, CV_8U);
  return image;
}

}  // namespace

cv::Mat read_rgb(const std::string& path) {
  cv::Mat bgr = decode(path, cv::IMREAD_COLOR);  // grayscale is replicated to 3 channels
  cv::Mat rgb;
  cv::cvtColor(bgr, rgb, cv::COLOR_BGR2RGB);
  return rgb;
}

cv::Mat read_gray(const std::string& path) { return decode(path, cv::IMREAD_GRAYSCALE); }

void normalize_into(const cv::Mat& rgb, const ImageOptions& options, float* out) {
  const int s = options.size;
  const cv::Mat resized = resize_bilinear_pillow(rgb, s, s);
  // (v / 255 - mean) / std, written channel-first. Same float32 arithmetic as the
  // reference's ToTensor + Normalize, so results agree to rounding.
  const std::size_t plane = static_cast<std::size_t>(s) * s;
  for (int c = 0; c < 3; ++c) {
    const float mean = options.mean[c], std = options.std[c];
    float* dst = out + c * plane;
    for (int y = 0; y < s; ++y) {
      const std::uint8_t* row = resized.ptr<std::uint8_t>(y);
      for (int x = 0; x < s; ++x) dst[y * s + x] = (row[3 * x + c] / 255.0f - mean) / std;
    }
  }
}

void binarize_mask_into(const cv::Mat& mask, const ImageOptions& options, std::uint8_t* out) {
  const int s = options.size;
  const cv::Mat resized = resize_nearest_pillow(mask, s, s);
  for (int y = 0; y < s; ++y) {
    const std::uint8_t* row = resized.ptr<std::uint8_t>(y);
    for (int x = 0; x < s; ++x) out[y * s + x] = row[x] > 0 ? 1 : 0;
  }
}

static void check_mask_size(const cv::Mat& image, const cv::Mat& mask, const Sample& sample) {
  if (mask.size() != image.size()) {
    throw InputError(sample.mask_path, "mask is " + std::to_string(mask.cols) + "x" + std::to_string(mask.rows) +
                                           " but its image " + sample.image_path + " is " +
                                           std::to_string(image.cols) + "x" + std::to_string(image.rows));
  }
}

ImageBatch load_batch(const Dataset& dataset, const std::vector<std::size_t>& indices,
                      const ImageOptions& options, int threads) {
  ImageBatch batch;
  batch.count = static_cast<int>(indices.size());
  batch.size = options.size;
  const std::size_t plane = static_cast<std::size_t>(options.size) * options.size;
  batch.images.resize(indices.size() * 3 * plane);
  batch.masks.assign(indices.size() * plane, 0);
  batch.original_sizes.resize(indices.size());
  parallel_for(indices.size(), threads, [&](std::size_t i) {
    const Sample& sample = dataset.samples.at(indices[i]);
    const cv::Mat rgb = read_rgb(sample.image_path);
    batch.original_sizes[i] = {rgb.rows, rgb.cols};
    normalize_into(rgb, options, batch.images.data() + i * 3 * plane);
    if (!sample.mask_path.empty()) {
      const cv::Mat mask = read_gray(sample.mask_path);
      check_mask_size(rgb, mask, sample);
      binarize_mask_into(mask, options, batch.masks.data() + i * plane);
    } else if (sample.label != 0) {
      // The reference would score such an image against an all-defect mask, which makes its
      // pixel metrics meaningless; refuse instead (see docs/feature-cache.md).
      throw InputError(sample.image_path, "anomalous image has no mask; add its ground-truth mask or remove the image");
    }
  });
  return batch;
}

std::vector<Problem> verify_images(const Dataset& dataset, std::vector<ClassSummary>& summary, int threads) {
  std::vector<Problem> problems;
  std::vector<int> empty(dataset.classes.size(), 0);
  std::mutex mutex;
  parallel_for(dataset.samples.size(), threads, [&](std::size_t i) {
    const Sample& sample = dataset.samples[i];
    try {
      const cv::Mat rgb = read_rgb(sample.image_path);
      if (sample.mask_path.empty()) return;
      const cv::Mat mask = read_gray(sample.mask_path);
      check_mask_size(rgb, mask, sample);
      if (cv::countNonZero(mask) == 0) {
        std::lock_guard<std::mutex> lock(mutex);
        ++empty[sample.class_index];
      }
    } catch (const InputError& e) {
      std::lock_guard<std::mutex> lock(mutex);
      problems.push_back({e.path(), std::string(e.what()).substr(e.path().size() + 2)});
    }
  });
  std::sort(problems.begin(), problems.end(), [](const Problem& a, const Problem& b) { return a.path < b.path; });
  for (std::size_t c = 0; c < summary.size() && c < empty.size(); ++c) summary[c].empty_masks = empty[c];
  return problems;
}

}  // namespace uniad::data
