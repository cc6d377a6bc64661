#include "data/resample.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "common/error.h"

namespace uniad::data {

namespace {

// Pillow keeps filter weights as integers with this many fraction bits (Resample.c), so that
// 8-bit pixels times weights fit 32-bit sums.
constexpr int kPrecisionBits = 32 - 8 - 2;

// For each output position along one axis: the first source index, how many source pixels
// contribute, and their fixed-point weights (`taps` per output position, unused ones 0).
struct AxisWeights {
  int taps = 0;
  std::vector<int> first, count;
  std::vector<std::int32_t> weights;
};

double triangle(double x) {
  x = std::abs(x);
  return x < 1.0 ? 1.0 - x : 0.0;
}

AxisWeights bilinear_weights(int in_size, int out_size) {
  const double scale = static_cast<double>(in_size) / out_size;
  // Shrinking stretches the filter over `scale` source pixels (the antialiasing);
  // enlarging keeps it at one pixel on each side (plain linear interpolation).
  const double filter_scale = std::max(scale, 1.0);
  const double support = 1.0 * filter_scale;
  AxisWeights axis;
  axis.taps = static_cast<int>(std::ceil(support)) * 2 + 1;
  axis.first.resize(out_size);
  axis.count.resize(out_size);
  axis.weights.assign(static_cast<std::size_t>(out_size) * axis.taps, 0);
  std::vector<double> w(axis.taps);
  for (int o = 0; o < out_size; ++o) {
    const double center = (o + 0.5) * scale;
    // The same truncating "rounding" as Pillow, which decides the edge taps.
    const int lo = std::max(0, static_cast<int>(center - support + 0.5));
    const int hi = std::min(in_size, static_cast<int>(center + support + 0.5));
    double total = 0;
    for (int i = lo; i < hi; ++i) total += w[i - lo] = triangle((i - center + 0.5) / filter_scale);
    std::int32_t* fixed = &axis.weights[static_cast<std::size_t>(o) * axis.taps];
    for (int i = 0; i < hi - lo; ++i) {
      const double normalised = total != 0.0 ? w[i] / total : w[i];
      const double scaled = normalised * (1 << kPrecisionBits);
      fixed[i] = static_cast<std::int32_t>(scaled < 0 ? scaled - 0.5 : scaled + 0.5);
    }
    axis.first[o] = lo;
    axis.count[o] = hi - lo;
  }
  return axis;
}

// Fixed-point sum -> 8 bits, saturating (Pillow's clip8).
std::uint8_t clip8(std::int32_t sum) {
  if (sum >= (1 << kPrecisionBits << 8)) return 255;
  if (sum <= 0) return 0;
  return static_cast<std::uint8_t>(sum >> kPrecisionBits);
}

cv::Mat resample_horizontal(const cv::Mat& in, int width) {
  const int channels = in.channels();
  const AxisWeights axis = bilinear_weights(in.cols, width);
  cv::Mat out(in.rows, width, in.type());
  for (int y = 0; y < in.rows; ++y) {
    const std::uint8_t* src = in.ptr<std::uint8_t>(y);
    std::uint8_t* dst = out.ptr<std::uint8_t>(y);
    for (int x = 0; x < width; ++x) {
      const std::int32_t* k = &axis.weights[static_cast<std::size_t>(x) * axis.taps];
      const std::uint8_t* px = src + axis.first[x] * channels;
      for (int c = 0; c < channels; ++c) {
        std::int32_t sum = 1 << (kPrecisionBits - 1);  // rounds the final shift to nearest
        for (int i = 0; i < axis.count[x]; ++i) sum += px[i * channels + c] * k[i];
        dst[x * channels + c] = clip8(sum);
      }
    }
  }
  return out;
}

cv::Mat resample_vertical(const cv::Mat& in, int height) {
  const int row_values = in.cols * in.channels();
  const AxisWeights axis = bilinear_weights(in.rows, height);
  cv::Mat out(height, in.cols, in.type());
  std::vector<std::int32_t> sums(row_values);
  for (int y = 0; y < height; ++y) {
    std::fill(sums.begin(), sums.end(), 1 << (kPrecisionBits - 1));
    const std::int32_t* k = &axis.weights[static_cast<std::size_t>(y) * axis.taps];
    for (int i = 0; i < axis.count[y]; ++i) {
      const std::uint8_t* src = in.ptr<std::uint8_t>(axis.first[y] + i);
      for (int v = 0; v < row_values; ++v) sums[v] += src[v] * k[i];
    }
    std::uint8_t* dst = out.ptr<std::uint8_t>(y);
    for (int v = 0; v < row_values; ++v) dst[v] = clip8(sums[v]);
  }
  return out;
}

void check_input(const cv::Mat& image, int width, int height) {
  if (image.empty() || image.depth() != CV_8U || (image.channels() != 1 && image.channels() != 3)) {
    throw UsageError("resize: expects an 8-bit image with 1 or 3 channels");
  }
  if (width < 1 || height < 1) throw UsageError("resize: the output size must be positive");
}

}  // namespace

cv::Mat resize_bilinear_pillow(const cv::Mat& image, int width, int height) {
  check_input(image, width, height);
  // Pillow skips a pass whose size does not change (no rounding through 8 bits there).
  cv::Mat out = image;
  if (width != image.cols) out = resample_horizontal(out, width);
  if (height != image.rows) out = resample_vertical(out, height);
  return out.data == image.data ? image.clone() : out;
}

cv::Mat resize_nearest_pillow(const cv::Mat& image, int width, int height) {
  check_input(image, width, height);
  if (width == image.cols && height == image.rows) return image.clone();
  const std::size_t pixel_bytes = image.elemSize();
  // Positions as Pillow's affine nearest-neighbour scaling computes them: start at half a
  // step and add the step, in double (a product would round differently at exact halves).
  auto source_positions = [](int in_size, int out_size) {
    const double step = static_cast<double>(in_size) / out_size;
    std::vector<int> at(out_size);
    double position = step * 0.5;
    for (int o = 0; o < out_size; ++o, position += step) at[o] = std::min(in_size - 1, static_cast<int>(position));
    return at;
  };
  const std::vector<int> xs = source_positions(image.cols, width), ys = source_positions(image.rows, height);
  cv::Mat out(height, width, image.type());
  for (int y = 0; y < height; ++y) {
    const std::uint8_t* src = image.ptr<std::uint8_t>(ys[y]);
    std::uint8_t* dst = out.ptr<std::uint8_t>(y);
    for (int x = 0; x < width; ++x) std::copy_n(src + xs[x] * pixel_bytes, pixel_bytes, dst + x * pixel_bytes);
  }
  return out;
}

}  // namespace uniad::data
