#pragma once
// UniAD's multi-scale feature assembly (the reference's MFCN neck): each selected map is
// resized to the grid (stride 16: 14x14 for a 224 input) with bilinear interpolation,
// align_corners = true, and the maps are concatenated along channels. No normalisation.
#include <vector>

#include <ATen/core/Tensor.h>

namespace uniad::feature_cache {

// maps: [B, C_i, H_i, W_i] each -> [B, sum C_i, grid_h, grid_w].
at::Tensor assemble_features(const std::vector<at::Tensor>& maps, int grid_h, int grid_w);

}  // namespace uniad::feature_cache
