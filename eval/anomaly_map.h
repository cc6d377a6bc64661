#pragma once
// Anomaly maps and image scores, exactly as ../shared/docs/uniad-spec.md defines them:
// the reconstruction error on the token grid, upsampled bilinearly (align_corners = true)
// to the evaluation resolution, optionally smoothed; the image score pools the map.
#include <string>

#include <ATen/core/Tensor.h>

namespace uniad::eval {

enum class ImageScore {
  kAvgPoolMax,  // average-pool with a window x window box, stride 1, no padding, then max (reference default)
  kMax,         // max of the map
  kMean,        // mean of the map
  kStd,         // standard deviation of the map (population, ddof 0)
  kTopMean,     // mean of the top `top_percent` % of pixels
};

struct MapOptions {
  int size = 224;               // evaluation resolution (square)
  double smoothing_sigma = 0;   // Gaussian sigma in pixels; 0 = off (the reference)
};

struct ScoreOptions {
  ImageScore kind = ImageScore::kAvgPoolMax;
  int pool_window = 16;
  double top_percent = 1.0;
};

std::string to_string(ImageScore kind);
ImageScore parse_image_score(const std::string& text);  // avgpool-max | max | mean | std | top-mean

// Low-resolution error maps [B, 1, h, w] -> maps [B, size, size].
at::Tensor upsample_maps(const at::Tensor& lowres, const MapOptions& options);

// Gaussian smoothing of maps [B, H, W] (truncated at 4 sigma, edges mirrored as scipy's
// default 'reflect' mode does). sigma <= 0 returns the maps unchanged.
at::Tensor smooth_maps(const at::Tensor& maps, double sigma);

// Image scores [B] from maps [B, H, W].
at::Tensor image_scores(const at::Tensor& maps, const ScoreOptions& options);

}  // namespace uniad::eval
