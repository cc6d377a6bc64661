#pragma once
// Feature extraction: images -> frozen backbone -> assembled features -> HDF5 cache.
//
// Under MPI the batches are dealt round-robin to the ranks; every rank sends its results
// to rank 0, which writes them in order, so the file is the same as a one-rank run's.
// The file is written under a temporary name and renamed when complete. An existing cache
// with the same identity is reused; one with another identity is an error unless `force`.
#include <string>

#include <mpi.h>
#include <nlohmann/json.hpp>

#include "data/dataset.h"
#include "data/image.h"
#include "feature_cache/backbone.h"
#include "feature_cache/cache.h"

namespace uniad::feature_cache {

struct ExtractOptions {
  std::string data_root;
  data::ScanOptions scan;
  std::string out;
  BackboneOptions backbone;
  data::ImageOptions image;
  FeatureDtype dtype = FeatureDtype::kFloat16;
  int grid = 0;            // grid side; 0 = image size / 16 (the stride-16 grid)
  int batch_size = 16;
  int decode_threads = 1;
  c10::Device device = c10::kCPU;  // where the backbone runs (common/device.h: rank_device)
  bool force = false;      // rebuild even if a cache with other settings exists
  bool progress = true;
};

struct ExtractResult {
  bool reused = false;
  std::int64_t samples = 0;
  double seconds = 0;
  nlohmann::ordered_json identity;
  std::string backbone_description;
};

// Runs on every rank of `comm` (a single process passes MPI_COMM_SELF or a 1-rank world).
ExtractResult extract_features(const ExtractOptions& options, MPI_Comm comm);

}  // namespace uniad::feature_cache
