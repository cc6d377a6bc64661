#include "feature_cache/assemble.h"

#include <ATen/ATen.h>

namespace uniad::feature_cache {

at::Tensor assemble_features(const std::vector<at::Tensor>& maps, int grid_h, int grid_w) {
  std::vector<at::Tensor> resized;
  for (const at::Tensor& m : maps) {
    // A map already on the grid is copied as is (the reference's scale-1 upsample is exact).
    resized.push_back(m.size(2) == grid_h && m.size(3) == grid_w
                          ? m
                          : at::upsample_bilinear2d(m, {grid_h, grid_w}, /*align_corners=*/true));
  }
  return at::cat(resized, 1);
}

}  // namespace uniad::feature_cache
