#pragma once
// The nearest-neighbour reference: a PatchCore-style memory bank of training patches.
//
// No learning. Fitting keeps the training features' patches (one C-vector per grid position,
// after averaging each over its k x k neighbourhood as PatchCore does), optionally only a
// subset of them: a seeded random one, or a greedy k-center coreset (each next patch the one
// farthest from those already kept). The anomaly map of an image is, per grid position, the
// Euclidean distance from its patch to the nearest bank patch; evaluation upsamples it like
// UniAD's reconstruction error, so `uniad eval` and `uniad report` treat it as any model.
//
// As a ReconstructionNet, forward() returns each position's nearest bank patch (the
// "reconstruction"), and anomaly_map() the distance to it.
#include <cstdint>
#include <vector>

#include "model/reconstruction.h"

namespace uniad::model {

class MemoryBank : public ReconstructionNet {
 public:
  // An empty bank of options.bank_size patches (filled by fit() or by loading a checkpoint).
  explicit MemoryBank(const ModelOptions& options);

  // Fills the bank from training features [N, C, H, W]; `seed` drives the random subset and
  // the greedy coreset's first patch and projection.
  void fit(const torch::Tensor& features, std::uint64_t seed);

  torch::Tensor forward(const torch::Tensor& features) override;
  torch::Tensor anomaly_map(const torch::Tensor& features) override;

  torch::Tensor bank;  // [bank_size, C]: a parameter without gradient, so checkpoints carry it
};

// PatchCore's local aggregation: the mean of each position's k x k neighbourhood, the zero
// padding at the borders counted (as unfold + average pooling does). k = 1 returns `features`.
torch::Tensor aggregate_neighborhood(const torch::Tensor& features, int k);

struct NearestPatches {
  torch::Tensor distance;  // [M]: Euclidean distance to the nearest bank row
  torch::Tensor index;     // [M]: that row (int64)
};

// For each query row [M, C], the nearest row of `bank` [N, C]. Candidates come from
// ||q||^2 - 2 q.b + ||b||^2 in blocks of `bank_block` rows (one matrix product each); the
// best few of each block are measured directly, so rounding cannot pick a farther row.
NearestPatches nearest_patches(const torch::Tensor& queries, const torch::Tensor& bank, std::int64_t bank_block = 16384);

// Greedy k-center selection of `count` rows of `points` [N, d], starting at row `first`: each
// next row is the one whose distance to the nearest row chosen so far is largest (ties: the
// lowest index). Returns the rows in the order chosen.
std::vector<std::int64_t> greedy_coreset(const torch::Tensor& points, std::int64_t count, std::int64_t first);

}  // namespace uniad::model
