#include "eval/evaluate.h"

#include <ATen/ATen.h>
#include <torch/utils.h>

#include "common/error.h"

namespace uniad::eval {

using data::Split;

at::Tensor anomaly_maps(model::ReconstructionNet& model, const feature_cache::FeatureCache& cache,
                        const std::vector<std::int64_t>& rows, const MapOptions& options, int batch_size) {
  torch::NoGradGuard no_grad;
  const bool was_training = model.is_training();
  model.eval();
  const auto device = model.parameters().empty() ? at::kCPU : model.parameters().front().device();
  std::vector<at::Tensor> parts;
  for (std::size_t first = 0; first < rows.size(); first += batch_size) {
    const std::vector<std::int64_t> batch(rows.begin() + first, rows.begin() + std::min(rows.size(), first + batch_size));
    const at::Tensor features = cache.read_features(Split::kTest, batch).to(device);
    const at::Tensor error = model.anomaly_map(features);
    parts.push_back(upsample_maps(error, options).cpu());
  }
  if (was_training) model.train();
  return parts.empty() ? at::empty({0, options.size, options.size}) : at::cat(parts);
}

Evaluation evaluate(const ModelForClass& model_for, const feature_cache::FeatureCache& cache, const EvalOptions& options,
                    const MapsCallback& on_maps) {
  Evaluation out;
  std::vector<int> classes = options.classes;
  if (classes.empty())
    for (std::size_t c = 0; c < cache.classes().size(); ++c) classes.push_back(static_cast<int>(c));
  const auto& index = cache.split(Split::kTest);
  for (int c : classes) {
    const std::vector<std::int64_t> rows = cache.rows_of_class(Split::kTest, c);
    ClassResult result;
    result.name = cache.classes()[c];
    result.images = static_cast<std::int64_t>(rows.size());
    const at::Tensor maps = anomaly_maps(model_for(c), cache, rows, options.map, options.batch_size).contiguous();
    const at::Tensor scores = image_scores(maps, options.score).contiguous();
    std::vector<float> score_values(scores.data_ptr<float>(), scores.data_ptr<float>() + scores.numel());
    std::vector<std::uint8_t> labels;
    for (std::size_t i = 0; i < rows.size(); ++i) {
      labels.push_back(index.label[rows[i]]);
      result.anomalous += index.label[rows[i]];
      out.images.push_back({result.name, index.path[rows[i]], index.defect_type[rows[i]], index.label[rows[i]],
                            score_values[i]});
    }
    result.image = binary_metrics(score_values, labels);
    if (options.pixel_metrics) {
      const at::Tensor masks = cache.read_masks(rows).contiguous();
      if (masks.sizes() != maps.sizes()) {
        throw InputError(cache.path(), "its masks of class " + result.name + " are " + c10::str(masks.sizes()) +
                                           " but the anomaly maps are " + c10::str(maps.sizes()) +
                                           "; evaluate at the cache's mask size (" +
                                           std::to_string(cache.shape().mask_size) + ")");
      }
      result.pixel = pixel_metrics(maps.data_ptr<float>(), masks.data_ptr<std::uint8_t>(), maps.size(0),
                                   static_cast<int>(maps.size(1)), static_cast<int>(maps.size(2)), options.max_fpr);
    }
    if (on_maps) on_maps(c, rows, maps);
    out.classes.push_back(std::move(result));
  }
  return out;
}

const std::vector<MetricColumn>& metric_columns() {
  static const std::vector<MetricColumn> columns = {
      {"image_auroc", "image AUROC", [](const ClassResult& r) { return r.image.auroc; }},
      {"image_ap", "image AP", [](const ClassResult& r) { return r.image.ap; }},
      {"image_f1_max", "image F1-max", [](const ClassResult& r) { return r.image.f1_max; }},
      {"pixel_auroc", "pixel AUROC", [](const ClassResult& r) { return r.pixel.binary.auroc; }},
      {"pixel_ap", "pixel AP", [](const ClassResult& r) { return r.pixel.binary.ap; }},
      {"pixel_f1_max", "pixel F1-max", [](const ClassResult& r) { return r.pixel.binary.f1_max; }},
      {"aupro", "AUPRO@0.3", [](const ClassResult& r) { return r.pixel.aupro; }},
  };
  return columns;
}

nlohmann::ordered_json Evaluation::mean() const {
  nlohmann::ordered_json mean;
  for (const auto& column : metric_columns()) {
    double sum = 0;
    int n = 0;
    for (const auto& c : classes) {
      const double v = column.get(c);
      if (!std::isnan(v)) sum += v, ++n;
    }
    mean[column.key] = n ? nlohmann::ordered_json(sum / n) : nlohmann::ordered_json();
  }
  return mean;
}

}  // namespace uniad::eval
