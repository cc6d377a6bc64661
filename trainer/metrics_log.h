#pragma once
// The run's metrics log, metrics.jsonl: one JSON line per epoch (rank 0 writes it) with the
// loss, learning rate, speed, the gradient exchange's share and, at periodic evaluations,
// the metrics (docs/training.md, "metrics.jsonl").
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "eval/evaluate.h"
#include "feature_cache/cache.h"
#include "model/reconstruction.h"
#include "report/eval_report.h"
#include "trainer/step.h"

namespace uniad::trainer {

// Appends one line. A failed write is an OutputError; a partly written line is cut off again
// so the log stays valid JSON lines.
void append_metrics_line(const std::filesystem::path& path, const std::string& line);

// Keeps the lines up to `epoch` (a resumed run rewrites what came after its checkpoint).
void truncate_metrics_log(const std::filesystem::path& path, int epoch);

// What one epoch's steps add up to.
struct EpochTotals {
  double loss_sum = 0, exchange_seconds = 0, overlap_sum = 0;
  std::int64_t steps = 0;
  void add(const StepResult& step, std::size_t buckets);
};

// An evaluation of the model during training: `summary` is the log line's "eval" field (mean
// metrics, per-class image / pixel AUROC); with `keep_maps`, each class's test rows and maps
// (for TensorBoard's panels).
struct PeriodicEvaluation {
  nlohmann::ordered_json summary;
  eval::Evaluation evaluation;
  report::KeptMaps maps;
  eval::ScoreOptions score;  // how the image scores were taken from the maps
};

// Evaluates `model` on the cache's test split of `classes` (empty: all), maps at the masks'
// resolution. Leaves the model in training mode.
PeriodicEvaluation periodic_evaluation(model::ReconstructionNet& model, const feature_cache::FeatureCache& cache,
                                       const std::vector<int>& classes, bool pixel_metrics, bool keep_maps);

}  // namespace uniad::trainer
