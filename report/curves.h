#pragma once
// Training curves of runs from their metrics logs (RUN/metrics.jsonl, written by the trainer):
// the loss and the periodic evaluation's AUROC against epochs, as PNG figures for reports.
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace uniad::report {

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

}  // namespace uniad::report
