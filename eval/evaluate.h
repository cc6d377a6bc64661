#pragma once
// Evaluation of a reconstruction model on a feature cache's test split: anomaly maps,
// image scores, and the exact metrics per class (and their mean over classes).
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "eval/anomaly_map.h"
#include "eval/metrics.h"
#include "feature_cache/cache.h"
#include "model/reconstruction.h"

namespace uniad::eval {

struct EvalOptions {
  MapOptions map;
  ScoreOptions score;
  double max_fpr = 0.3;     // AUPRO integration limit
  bool pixel_metrics = true;
  int batch_size = 32;
  std::vector<int> classes;  // class indices to evaluate; empty = all
};

struct ClassResult {
  std::string name;
  std::int64_t images = 0, anomalous = 0;
  BinaryMetrics image;
  PixelMetrics pixel;
};

struct ImageRecord {
  std::string class_name, path, defect_type;
  int label = 0;
  float score = 0;
};

struct Evaluation {
  std::vector<ClassResult> classes;
  std::vector<ImageRecord> images;
  // Mean over classes of each metric, over the classes where it is defined (NaN if none).
  nlohmann::ordered_json mean() const;
};

// The model for a class: the one unified model, or that class's model (separate setting).
using ModelForClass = std::function<model::ReconstructionNet&(int class_index)>;
// Called per class with its test rows and maps [n, S, S] (for pictures and saved maps).
using MapsCallback = std::function<void(int class_index, const std::vector<std::int64_t>& rows, const at::Tensor& maps)>;

Evaluation evaluate(const ModelForClass& model_for, const feature_cache::FeatureCache& cache, const EvalOptions& options,
                    const MapsCallback& on_maps = {});

// Anomaly maps [n, S, S] for some test rows (eval mode, no gradients).
at::Tensor anomaly_maps(model::ReconstructionNet& model, const feature_cache::FeatureCache& cache,
                        const std::vector<std::int64_t>& rows, const MapOptions& options, int batch_size = 32);

// Metric names and accessors, in report order.
struct MetricColumn {
  const char* key;    // "image_auroc"
  const char* title;  // "image AUROC"
  double (*get)(const ClassResult&);
};
const std::vector<MetricColumn>& metric_columns();

}  // namespace uniad::eval
