#include "deploy/export.h"

#include <algorithm>
#include <filesystem>
#include <limits>

#include <ATen/ATen.h>
#include <fmt/core.h>

#include "common/error.h"
#include "common/fs.h"
#include "common/progress.h"
#include "common/version.h"
#include "eval/metrics.h"
#include "feature_cache/backbone.h"
#include "model/checkpoint.h"

namespace uniad::deploy {

namespace {

// The backbone the cache was built with: the built-in one (re-created from its seed), or the
// TorchScript file given with --backbone, which must be the very file (same content hash).
nlohmann::ordered_json backbone_record(const feature_cache::FeatureCache& cache, const std::string& file,
                                       std::string& bytes) {
  if (!cache.identity().contains("backbone")) {
    throw InputError(cache.path(), "the cache records no backbone (it was not made by `uniad extract`), so no model "
                                   "file can include one; export from a cache made by `uniad extract`");
  }
  const nlohmann::json& id = cache.identity().at("backbone");
  const std::string identity = id.at("identity");
  nlohmann::ordered_json record = {{"layers", cache.identity().at("layers")},
                                   {"grid", cache.shape().grid_h},
                                   {"identity", identity},
                                   {"description", cache.attributes().value("backbone_description", "")}};
  if (id.at("random_features").get<bool>()) {
    const auto at = identity.find("seed=");
    if (at == std::string::npos) throw InputError(cache.path(), "its built-in backbone identity has no seed");
    record["kind"] = "builtin";
    record["builtin_seed"] = std::stoull(identity.substr(at + 5));
    return record;
  }
  if (file.empty()) {
    throw UsageError(fmt::format("the cache was built with the backbone file {} ({}); give it with --backbone FILE",
                                 id.value("file", "?"), identity));
  }
  if (feature_cache::file_hash(file) != identity) {
    throw UsageError(fmt::format("--backbone {} is not the file the cache was built with ({} has {}, the cache {})", file,
                                 file, feature_cache::file_hash(file), identity));
  }
  bytes = read_file_bytes(file);
  record["kind"] = "torchscript";
  record["file"] = std::filesystem::path(file).filename().string();
  feature_cache::BackboneOptions options;
  options.file = file;
  record["metadata"] = feature_cache::load_backbone(options)->metadata();
  return record;
}

}  // namespace

ModelFile assemble_model_file(const trainer::RunModels& models, const feature_cache::FeatureCache& cache,
                              const std::string& run, const std::string& cache_path, const std::string& backbone_file,
                              eval::EvalOptions o) {
  ModelFile file;
  const nlohmann::ordered_json backbone = backbone_record(cache, backbone_file, file.backbone);

  // Evaluate as `uniad eval` does, keeping every image score and the map range.
  o.map.size = cache.shape().mask_size;
  o.classes = models.class_indices;
  float map_min = std::numeric_limits<float>::infinity(), map_max = 0;
    const eval::Evaluation evaluation = eval::evaluate(
      [&](int c) -> model::ReconstructionNet& { return models.for_class(c); }, cache, o,
      [&](int, const std::vector<std::int64_t>&, const at::Tensor& maps) {
        map_min = std::min(map_min, maps.min().item<float>());
        map_max = std::max(map_max, maps.max().item<float>());
      });
  std::vector<float> all_scores;
  std::vector<std::uint8_t> all_labels;
  for (const auto& image : evaluation.images) all_scores.push_back(image.score), all_labels.push_back(image.label);
  const eval::BinaryMetrics all = eval::binary_metrics(all_scores, all_labels);
  nlohmann::ordered_json thresholds = {{"all", all.f1_threshold}, {"classes", nlohmann::ordered_json::object()}};
  nlohmann::ordered_json classes = nlohmann::ordered_json::array();
  for (const auto& c : evaluation.classes) {
    thresholds["classes"][c.name] = c.image.f1_threshold;
    classes.push_back(c.name);
  }

  // The models: their weights, options and provenance, without the trainer's state
  // (optimizer moments, random states), which only resuming needs.
  nlohmann::ordered_json keys = nlohmann::ordered_json::array();
  for (const auto& [index, checkpoint] : models.checkpoints) {
    const std::string key = index < 0 ? "all" : cache.classes()[index];
    file.models[key] = model::checkpoint_bytes(*checkpoint.model, checkpoint.meta);
    keys.push_back(key);
  }

  nlohmann::ordered_json report_mean = evaluation.mean();
  file.metadata = {
      {"format", "uniad-model"},
      {"format_version", kModelFileVersion},
      {"created", utc_timestamp()},
      {"project_version", project_version()},
      {"source_revision", source_revision()},
      {"setting", models.setting},
      {"classes", classes},
      {"model_keys", keys},
      {"image", {{"size", cache.identity().at("input_size")},
                 {"mean", cache.identity().at("mean")},
                 {"std", cache.identity().at("std")},
                 {"resize", cache.identity().at("resize")}}},
      {"backbone", backbone},
      {"map", {{"size", o.map.size}, {"smoothing_sigma", o.map.smoothing_sigma}, {"upsampling", "bilinear, align_corners=true"}}},
      {"score", {{"kind", eval::to_string(o.score.kind)}, {"pool_window", o.score.pool_window}, {"top_percent", o.score.top_percent}}},
      {"thresholds", thresholds},
      {"threshold_rule", "image F1-max on the evaluated set"},
      {"threshold_set", {{"cache", std::filesystem::absolute(cache_path).string()},
                         {"split", "test"},
                         {"dataset", cache.identity().at("dataset")},
                         {"images", evaluation.images.size()}}},
      {"map_range", {map_min, map_max}},
      {"metrics_at_export", report_mean},
      {"run", {{"path", std::filesystem::absolute(run).string()}, {"provenance", models.provenance}}},
      {"cache_identity", cache.identity()}};
  return file;
}

}  // namespace uniad::deploy
