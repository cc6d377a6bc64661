#pragma once
// Where a training step's batch comes from.
//
// Resident (the GPU default): the run's training features live on the training device in the
// cache's storage type (float16 or float32), copied there once. Each epoch's shard (the
// sampler's rows in step order, trainer.h: epoch_shard) becomes one index tensor on the device,
// and a step's batch is a gather and a conversion to float32 there: inside a step nothing is
// read, converted or copied on the host. On MVTec AD that is 3,629 x 272 x 14 x 14 float16 =
// 387 MB, which any GPU holds many times over.
//
// Host (the CPU default, or a split that does not fit): each batch is read from the cache (its
// preloaded host copy) as float32 and copied to the device.
//
// Both give the same batches, value for value, in the same order (float16 -> float32 is exact).
#include <cstdint>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include "feature_cache/cache.h"

namespace uniad::trainer {

enum class Residency { kAuto, kOn, kOff };
Residency parse_residency(const std::string& text);  // "auto" | "on" | "off"
std::string to_string(Residency residency);

class TrainingBatches {
 public:
  // `rows`: the training split's rows the run trains on (its selected classes). kAuto: resident
  // on a GPU when the features take at most half of its free memory, host reads otherwise and
  // on the CPU; kOn: resident wherever the device is (an error when it does not fit a GPU).
  TrainingBatches(const feature_cache::FeatureCache& cache, const std::vector<std::int64_t>& rows,
                  const c10::Device& device, Residency residency);

  // The rows of one epoch, in step order (cache rows, each one of `rows`).
  void begin_epoch(const std::vector<std::int64_t>& shard);
  // Shard positions [begin, end) as float32 [n, C, H, W] on the device.
  at::Tensor batch(std::int64_t begin, std::int64_t end) const;

  bool resident() const { return features_.defined(); }
  std::int64_t resident_bytes() const { return resident() ? features_.numel() * features_.element_size() : 0; }

 private:
  const feature_cache::FeatureCache& cache_;
  c10::Device device_;
  at::Tensor features_;                   // resident: [rows, C, H, W] in the storage type, on the device
  std::vector<std::int64_t> slot_of_row_;  // resident: cache row -> its slot in features_ (-1: not held)
  at::Tensor shard_slots_;                 // resident: this epoch's slots in step order, on the device
  std::vector<std::int64_t> shard_;        // host reads: this epoch's rows
};

}  // namespace uniad::trainer
