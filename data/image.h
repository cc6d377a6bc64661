#pragma once
// The image pipeline of the UniAD reference (see ../shared/docs/uniad-spec.md):
// decode to RGB (grayscale replicated) with OpenCV, resize to size x size as Pillow does
// (bilinear with antialiasing for images, nearest for masks, binarised > 0; see resample.h),
// scale to [0, 1], normalise with the ImageNet mean and std. An anomalous image without a
// mask is refused (the reference would use an all-defect mask).
//
// Batches come out as plain NCHW float arrays; the feature stage wraps them in tensors
// without copying. Decoding runs on a small thread pool.
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include <opencv2/core/mat.hpp>

#include "data/dataset.h"

namespace uniad::data {

struct ImageOptions {
  int size = 224;  // output height and width
  std::array<float, 3> mean = {0.485f, 0.456f, 0.406f};
  std::array<float, 3> std = {0.229f, 0.224f, 0.225f};
};

// Decodes an image file as 8-bit RGB (3 channels). Throws InputError naming the file if
// it is missing, unreadable, not an image, or truncated.
cv::Mat read_rgb(const std::string& path);
// Decodes a mask as 8-bit single channel. Same errors.
cv::Mat read_gray(const std::string& path);

// Resizes and normalises an RGB image into out[3 * size * size] (CHW).
void normalize_into(const cv::Mat& rgb, const ImageOptions& options, float* out);
// Resizes (nearest) and binarises a mask into out[size * size] with values 0/1.
void binarize_mask_into(const cv::Mat& mask, const ImageOptions& options, std::uint8_t* out);

// A batch of preprocessed samples.
struct ImageBatch {
  int count = 0, size = 0;
  std::vector<float> images;        // [count, 3, size, size], normalised
  std::vector<std::uint8_t> masks;  // [count, size, size], 0/1; zeros for normal images
  std::vector<std::array<int, 2>> original_sizes;  // (height, width) before resizing
};

// Loads dataset.samples[i] for every i in `indices`. A mask whose size differs from its
// image, or any unreadable file, is an InputError naming the file.
ImageBatch load_batch(const Dataset& dataset, const std::vector<std::size_t>& indices,
                      const ImageOptions& options, int threads);

// Decodes every image and mask of the dataset, as `uniad datasets` does, and reports what
// is wrong instead of throwing. Fills ClassSummary::empty_masks.
std::vector<Problem> verify_images(const Dataset& dataset, std::vector<ClassSummary>& summary, int threads);

}  // namespace uniad::data
