#include "trainer/training_batches.h"

#include <ATen/ATen.h>
#include <fmt/core.h>

#include "common/device.h"
#include "common/error.h"

namespace uniad::trainer {

Residency parse_residency(const std::string& text) {
  if (text == "auto") return Residency::kAuto;
  if (text == "on") return Residency::kOn;
  if (text == "off") return Residency::kOff;
  throw UsageError("--resident must be auto, on or off, not '" + text + "'");
}

std::string to_string(Residency residency) {
  switch (residency) {
    case Residency::kAuto: return "auto";
    case Residency::kOn: return "on";
    case Residency::kOff: return "off";
  }
  return "?";
}

namespace {

// The cache's storage type (features are read as float32 and kept in it on the device).
at::ScalarType storage_type(const feature_cache::FeatureCache& cache) {
  return cache.shape().dtype == feature_cache::FeatureDtype::kFloat16 ? at::kHalf : at::kFloat;
}

// Bytes the rows' features take on the device in the cache's storage type.
std::int64_t feature_bytes(const feature_cache::FeatureCache& cache, std::size_t rows) {
  const auto& s = cache.shape();
  return static_cast<std::int64_t>(rows) * s.channels * s.grid_h * s.grid_w *
         static_cast<std::int64_t>(c10::elementSize(storage_type(cache)));
}

bool choose_resident(const feature_cache::FeatureCache& cache, std::size_t rows, const c10::Device& device,
                     Residency residency) {
  if (residency == Residency::kOff) return false;
  if (!device.is_cuda()) return residency == Residency::kOn;
  const std::int64_t bytes = feature_bytes(cache, rows), free = free_device_memory(device);
  if (2 * bytes <= free) return true;
  if (residency == Residency::kAuto) return false;
  throw UsageError(fmt::format("--resident on: the training features take {:.0f} MiB, more than half of the {:.0f} MiB "
                               "free on {}; use --resident auto or off",
                               bytes / 1048576.0, free / 1048576.0, describe_device(device)));
}

}  // namespace

TrainingBatches::TrainingBatches(const feature_cache::FeatureCache& cache, const std::vector<std::int64_t>& rows,
                                 const c10::Device& device, Residency residency)
    : cache_(cache), device_(device) {
  if (!choose_resident(cache, rows.size(), device, residency)) return;
  const at::ScalarType storage = storage_type(cache);
  const auto& s = cache.shape();
  features_ = at::empty({static_cast<std::int64_t>(rows.size()), s.channels, s.grid_h, s.grid_w},
                        at::TensorOptions().dtype(storage).device(device));
  slot_of_row_.assign(cache.split(data::Split::kTrain).size(), -1);
  // In chunks, so the host holds one chunk in float32 at a time.
  constexpr std::size_t kChunk = 512;
  for (std::size_t first = 0; first < rows.size(); first += kChunk) {
    const std::vector<std::int64_t> chunk(rows.begin() + first, rows.begin() + std::min(rows.size(), first + kChunk));
    features_.narrow(0, static_cast<std::int64_t>(first), static_cast<std::int64_t>(chunk.size()))
        .copy_(cache.read_features(data::Split::kTrain, chunk).to(storage));
    for (std::size_t i = 0; i < chunk.size(); ++i) slot_of_row_[chunk[i]] = static_cast<std::int64_t>(first + i);
  }
}

void TrainingBatches::begin_epoch(const std::vector<std::int64_t>& shard) {
  if (!resident()) {
    shard_ = shard;
    return;
  }
  std::vector<std::int64_t> slots(shard.size());
  for (std::size_t i = 0; i < shard.size(); ++i) {
    slots[i] = slot_of_row_.at(shard[i]);
    if (slots[i] < 0) throw RuntimeError(fmt::format("training row {} is not among the resident rows", shard[i]));
  }
  // One host-to-device copy per epoch.
  shard_slots_ = at::tensor(slots, at::kLong).to(device_);
}

at::Tensor TrainingBatches::batch(std::int64_t begin, std::int64_t end) const {
  if (resident()) return features_.index_select(0, shard_slots_.slice(0, begin, end)).to(at::kFloat);
  const std::vector<std::int64_t> rows(shard_.begin() + begin, shard_.begin() + end);
  return cache_.read_features(data::Split::kTrain, rows).to(device_);
}

}  // namespace uniad::trainer
