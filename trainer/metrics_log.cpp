#include "trainer/metrics_log.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>

#include "common/error.h"
#include "common/fs.h"
#include "eval/evaluate.h"

namespace uniad::trainer {

namespace fs = std::filesystem;

void append_metrics_line(const fs::path& path, const std::string& line) {
  std::error_code error;
  const auto size_before = fs::exists(path) ? fs::file_size(path, error) : 0;
  std::ofstream out(path, std::ios::app);
  out << line << "\n";
  out.close();
  if (!out) {
    fs::resize_file(path, size_before, error);
    throw OutputError(path.string(), std::string("cannot append to the metrics log: ") + std::strerror(errno));
  }
}

void truncate_metrics_log(const fs::path& path, int epoch) {
  if (!fs::exists(path)) return;
  std::ifstream in(path);
  std::string line, kept;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    if (nlohmann::json::parse(line).value("epoch", 0) <= epoch) kept += line + "\n";
  }
  atomic_write_bytes(path, kept);
}

void EpochTotals::add(const StepResult& step, std::size_t buckets) {
  loss_sum += step.loss;
  exchange_seconds += step.exchange_seconds;
  overlap_sum += static_cast<double>(step.buckets_started_during_backward) / std::max<std::size_t>(buckets, 1);
  ++steps;
}

PeriodicEvaluation periodic_evaluation(model::ReconstructionNet& model, const feature_cache::FeatureCache& cache,
                                       const std::vector<int>& classes, bool pixel_metrics, bool keep_maps) {
  eval::EvalOptions options;
  options.map.size = cache.shape().mask_size;  // maps at the masks' resolution
  options.classes = classes;
  options.pixel_metrics = pixel_metrics;
  PeriodicEvaluation result;
  result.score = options.score;
  result.evaluation = eval::evaluate(
      [&model](int) -> model::ReconstructionNet& { return model; }, cache, options,
      [&](int c, const std::vector<std::int64_t>& rows, const at::Tensor& maps) {
        if (keep_maps) result.maps[c] = {rows, maps};
      });
  model.train();
  const eval::Evaluation& evaluation = result.evaluation;
  const auto value = [](double v) { return std::isnan(v) ? nlohmann::ordered_json() : nlohmann::ordered_json(v); };
  nlohmann::ordered_json per_class;
  for (const auto& c : evaluation.classes) {
    per_class[c.name] = {{"image_auroc", value(c.image.auroc)}, {"pixel_auroc", value(c.pixel.binary.auroc)}};
  }
  result.summary = {{"mean", evaluation.mean()}, {"classes", per_class}};
  return result;
}

}  // namespace uniad::trainer
