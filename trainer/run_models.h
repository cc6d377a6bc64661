#pragma once
// Reading the model(s) `uniad train` leaves in a run directory, with their provenance.
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "feature_cache/cache.h"
#include "model/checkpoint.h"

namespace uniad::trainer {

struct RunModels {
  std::string setting;                       // unified | separate
  std::vector<int> class_indices;            // classes of the cache this run covers
  std::map<int, model::Checkpoint> checkpoints;  // unified: key -1; separate: per class index
  nlohmann::ordered_json provenance;         // run config, seed, checkpoint paths, epochs
  model::ReconstructionNet& for_class(int class_index) const;
};

// Loads the run's last checkpoint(s) onto `device` (whichever device trained them) and checks
// they were trained on features like the cache's (same backbone, layers, grid, dtype); a
// different dataset is allowed with a warning.
RunModels load_run_models(const std::string& run_dir, const feature_cache::FeatureCache& cache,
                          const c10::Device& device = c10::kCPU);

}  // namespace uniad::trainer
