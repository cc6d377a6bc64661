#include "model/memory_bank.h"

#include <algorithm>
#include <cmath>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/utils.h>

#include "common/error.h"

namespace uniad::model {

namespace {
// Candidates per query and bank block whose distances are measured directly.
constexpr std::int64_t kCandidates = 8;
}  // namespace

torch::Tensor aggregate_neighborhood(const torch::Tensor& features, int k) {
  if (k <= 1) return features;
  return at::avg_pool2d(features, {k, k}, {1, 1}, {k / 2, k / 2}, /*ceil_mode=*/false, /*count_include_pad=*/true);
}

NearestPatches nearest_patches(const torch::Tensor& queries, const torch::Tensor& bank, std::int64_t bank_block) {
  torch::NoGradGuard no_grad;
  const std::int64_t m = queries.size(0), n = bank.size(0);
  if (n == 0) throw RuntimeError("the memory bank is empty (not fitted)");
  const torch::Tensor query_norms = queries.pow(2).sum(1, /*keepdim=*/true);  // [M, 1]
  torch::Tensor best = torch::full({m}, INFINITY, queries.options());
  torch::Tensor best_index = torch::zeros({m}, queries.options().dtype(torch::kLong));
  for (std::int64_t start = 0; start < n; start += bank_block) {
    const torch::Tensor block = bank.slice(0, start, std::min(n, start + bank_block));
    // ||q - b||^2 = ||q||^2 - 2 q.b + ||b||^2, one matrix product per block. Its rounding
    // (relative to ||q||^2 + ||b||^2, not to the distance) can reorder near ties, so the
    // few best candidates are measured directly and the nearest of them is kept.
    const torch::Tensor squared = at::addmm(query_norms + block.pow(2).sum(1).unsqueeze(0), queries, block.t(), 1, -2);
    const std::int64_t k = std::min<std::int64_t>(kCandidates, block.size(0));
    const torch::Tensor candidates = std::get<1>(squared.topk(k, 1, /*largest=*/false)) + start;  // [M, k]
    const torch::Tensor exact = (queries.unsqueeze(1) - bank.index_select(0, candidates.flatten()).view({m, k, -1}))
                                    .pow(2)
                                    .sum(2);  // [M, k]
    const auto [value, which] = exact.min(1);
    const torch::Tensor better = value < best;
    best = torch::where(better, value, best);
    best_index = torch::where(better, candidates.gather(1, which.unsqueeze(1)).squeeze(1), best_index);
  }
  return {best.sqrt(), best_index};
}

std::vector<std::int64_t> greedy_coreset(const torch::Tensor& points, std::int64_t count, std::int64_t first) {
  torch::NoGradGuard no_grad;
  const std::int64_t n = points.size(0);
  count = std::min(count, n);
  std::vector<std::int64_t> chosen;
  chosen.reserve(count);
  const torch::Tensor norms = points.pow(2).sum(1);
  // Squared distance of every point to its nearest chosen point so far.
  torch::Tensor nearest = torch::full({n}, INFINITY, points.options());
  std::int64_t next = first;
  while (static_cast<std::int64_t>(chosen.size()) < count) {
    chosen.push_back(next);
    const torch::Tensor centre = points[next];
    const torch::Tensor squared = (norms - 2 * points.mv(centre) + norms[next]).clamp_min(0);
    nearest = torch::minimum(nearest, squared);
    nearest[next] = 0;  // exactly, whatever the rounding of the expansion
    next = nearest.argmax().item<std::int64_t>();
  }
  return chosen;
}

namespace {

// Features [B, C, H, W] -> their aggregated patches [B * H * W, C], one row per position.
torch::Tensor patches_of(const torch::Tensor& features, int neighborhood) {
  const torch::Tensor x = aggregate_neighborhood(features, neighborhood);
  return x.permute({0, 2, 3, 1}).reshape({-1, x.size(1)});
}

}  // namespace

MemoryBank::MemoryBank(const ModelOptions& options) : ReconstructionNet(options) {
  bank = register_parameter("bank", torch::zeros({options.bank_size, options.in_channels}), /*requires_grad=*/false);
}

torch::Tensor MemoryBank::forward(const torch::Tensor& features) {
  const auto b = features.size(0), c = features.size(1), h = features.size(2), w = features.size(3);
  const NearestPatches nearest = nearest_patches(patches_of(features, options_.bank_neighborhood), bank);
  return bank.index_select(0, nearest.index).view({b, h, w, c}).permute({0, 3, 1, 2}).contiguous();
}

torch::Tensor MemoryBank::anomaly_map(const torch::Tensor& features) {
  const auto b = features.size(0), h = features.size(2), w = features.size(3);
  return nearest_patches(patches_of(features, options_.bank_neighborhood), bank).distance.view({b, 1, h, w});
}

void MemoryBank::fit(const torch::Tensor& features, std::uint64_t seed) {
  torch::NoGradGuard no_grad;
  if (features.size(1) != options_.in_channels) {
    throw RuntimeError("memory bank: features have " + std::to_string(features.size(1)) + " channels, the bank " +
                       std::to_string(options_.in_channels));
  }
  const torch::Tensor patches = patches_of(features, options_.bank_neighborhood).contiguous();
  const std::int64_t n = patches.size(0);
  const std::int64_t keep =
      options_.coreset == CoresetMode::kNone ? n
                                             : std::max<std::int64_t>(1, std::llround(options_.coreset_ratio * double(n)));
  // Every random draw comes from a CPU generator, on the CPU, and then moves to the patches'
  // device: the same seed picks the same patches on the CPU and on a GPU.
  auto generator = at::make_generator<at::CPUGeneratorImpl>(seed);
  const auto on_patches = [&](const torch::Tensor& t) { return t.to(patches.device()); };
  torch::Tensor kept;
  switch (options_.coreset) {
    case CoresetMode::kNone: kept = patches; break;
    case CoresetMode::kRandom: {
      const torch::Tensor rows = std::get<0>(at::randperm(n, generator, torch::kLong).slice(0, 0, keep).sort());
      kept = patches.index_select(0, on_patches(rows));
      break;
    }
    case CoresetMode::kGreedy: {
      // Distances in a random projection (Johnson-Lindenstrauss), as PatchCore does for speed.
      torch::Tensor points = patches;
      const int d = options_.coreset_projection;
      if (d > 0 && d < patches.size(1)) {
        const torch::Tensor projection =
            at::normal(0.0, 1.0 / std::sqrt(double(d)), {patches.size(1), d}, generator, patches.options().device(torch::kCPU));
        points = patches.mm(on_patches(projection));
      }
      const std::int64_t first = at::randint(n, {1}, generator, torch::kLong).item<std::int64_t>();
      const std::vector<std::int64_t> rows = greedy_coreset(points, keep, first);
      kept = patches.index_select(0, on_patches(torch::tensor(rows, torch::kLong)));
      break;
    }
  }
  options_.bank_size = kept.size(0);
  bank.set_data(kept.clone());
}

}  // namespace uniad::model
