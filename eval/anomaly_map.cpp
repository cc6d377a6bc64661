#include "eval/anomaly_map.h"

#include <cmath>

#include <ATen/ATen.h>

#include "common/error.h"

namespace uniad::eval {

std::string to_string(ImageScore kind) {
  switch (kind) {
    case ImageScore::kAvgPoolMax: return "avgpool-max";
    case ImageScore::kMax: return "max";
    case ImageScore::kMean: return "mean";
    case ImageScore::kStd: return "std";
    case ImageScore::kTopMean: return "top-mean";
  }
  return "?";
}

ImageScore parse_image_score(const std::string& text) {
  for (ImageScore k : {ImageScore::kAvgPoolMax, ImageScore::kMax, ImageScore::kMean, ImageScore::kStd,
                       ImageScore::kTopMean}) {
    if (text == to_string(k)) return k;
  }
  throw UsageError("--image-score must be avgpool-max, max, mean, std or top-mean, not '" + text + "'");
}

at::Tensor upsample_maps(const at::Tensor& lowres, const MapOptions& options) {
  const at::Tensor maps = at::upsample_bilinear2d(lowres, {options.size, options.size}, /*align_corners=*/true);
  return smooth_maps(maps.squeeze(1), options.smoothing_sigma);
}

at::Tensor smooth_maps(const at::Tensor& maps, double sigma) {
  if (sigma <= 0) return maps;
  const int radius = static_cast<int>(4.0 * sigma + 0.5);
  at::Tensor kernel = at::arange(-radius, radius + 1, maps.options()).pow(2).div(-2 * sigma * sigma).exp();
  kernel = kernel / kernel.sum();
  // scipy's 'reflect' mirrors including the edge pixel (d c b a | a b c d | d c b a).
  auto symmetric_index = [&](int64_t n) {
    at::Tensor i = at::arange(-radius, n + radius, at::kLong);
    const int64_t period = 2 * n;
    i = at::remainder(i, period);
    return at::where(i >= n, period - 1 - i, i);
  };
  at::Tensor x = maps.unsqueeze(1);  // [B, 1, H, W]
  const int64_t h = x.size(2), w = x.size(3);
  x = x.index_select(2, symmetric_index(h).to(maps.device()));
  x = at::conv2d(x, kernel.view({1, 1, -1, 1}));
  x = x.index_select(3, symmetric_index(w).to(maps.device()));
  x = at::conv2d(x, kernel.view({1, 1, 1, -1}));
  return x.squeeze(1);
}

at::Tensor image_scores(const at::Tensor& maps, const ScoreOptions& options) {
  const at::Tensor flat = maps.flatten(1);
  switch (options.kind) {
    case ImageScore::kAvgPoolMax: {
      // The k x k mean as a 1 x k mean of rows, then a k x 1 mean of those: the same mean (to float
      // rounding) for 2k instead of k^2 additions per pixel (a third of the time at k = 16).
      const int k = options.pool_window;
      const at::Tensor rows = at::avg_pool2d(maps.unsqueeze(1), {1, k}, {1, 1});
      const at::Tensor pooled = at::avg_pool2d(rows, {k, 1}, {1, 1});
      return std::get<0>(pooled.flatten(1).max(1));
    }
    case ImageScore::kMax: return std::get<0>(flat.max(1));
    case ImageScore::kMean: return flat.mean(1);
    case ImageScore::kStd: return flat.std(1, /*unbiased=*/false);
    case ImageScore::kTopMean: {
      const int64_t k = std::max<int64_t>(1, static_cast<int64_t>(std::ceil(flat.size(1) * options.top_percent / 100.0)));
      return std::get<0>(flat.topk(k, 1)).mean(1);
    }
  }
  throw UsageError("unknown image score");
}

}  // namespace uniad::eval
