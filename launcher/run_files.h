#pragma once
// Reading what `uniad train` leaves in a run directory: the model(s) and their provenance,
// and the metrics log (for curves).
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "feature_cache/cache.h"
#include "model/checkpoint.h"

namespace uniad::commands {

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

// The run's metrics.jsonl lines (empty if none).
std::vector<nlohmann::json> read_metrics_log(const std::string& run_dir);

// loss.png and auroc.png (training loss and periodic image/pixel AUROC over epochs) for
// one or more runs, one line per label: runs sharing a label (the seeds of a configuration)
// are drawn as their mean at the epochs they all logged. False when no run has a metrics log.
bool write_training_curves(const std::vector<std::string>& run_dirs, const std::vector<std::string>& labels,
                           const std::string& out_dir);
inline bool write_training_curves(const std::string& run_dir, const std::string& out_dir, const std::string& label) {
  return write_training_curves(std::vector<std::string>{run_dir}, std::vector<std::string>{label}, out_dir);
}

}  // namespace uniad::commands
