#pragma once
// Image resizing exactly as the UniAD reference does it: torchvision's
// `Resize(size, Image.BILINEAR)` on a PIL image, i.e. Pillow's `Image.resize`.
//
// Why not cv::resize: Pillow's bilinear filter *antialiases* when shrinking. Its triangle
// filter is stretched by the scale factor, so each output pixel averages every source
// pixel under it (on MVTec's 1024 -> 224, about 9 x 9 of them); OpenCV's INTER_LINEAR
// reads only the 2 x 2 nearest and aliases fine texture. Pillow's nearest neighbour also
// samples at pixel centres ((x + 0.5) * scale), where OpenCV's INTER_NEAREST samples at
// x * scale. Both differences change the features, so both are reproduced here, including
// Pillow's fixed-point arithmetic, to the grey level.
#include <opencv2/core/mat.hpp>

namespace uniad::data {

// Pillow's Image.resize((width, height), BILINEAR) of an 8-bit image with 1 or 3 channels:
// a separable triangle filter of support max(1, scale) source pixels on each side,
// horizontal pass first (rounded to 8 bits), then vertical; any up- or downscale factor
// and aspect ratio.
cv::Mat resize_bilinear_pillow(const cv::Mat& image, int width, int height);

// Pillow's Image.resize((width, height), NEAREST): output pixel x reads source pixel
// floor((x + 0.5) * in / out), with the position accumulated in double as Pillow does.
cv::Mat resize_nearest_pillow(const cv::Mat& image, int width, int height);

}  // namespace uniad::data
