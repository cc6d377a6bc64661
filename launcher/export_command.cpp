// `uniad export`: one portable model file from a trained run (eval/model_file.h): the
// backbone, the reconstruction model(s), preprocessing, the image-score rule, decision
// thresholds chosen on the cache's test split, and provenance.
#include <chrono>
#include <ctime>
#include <iostream>
#include <limits>

#include <ATen/ATen.h>
#include <fmt/core.h>
#include <spdlog/spdlog.h>

#include "common/device.h"
#include "common/error.h"
#include "common/fs.h"
#include "common/progress.h"
#include "common/version.h"
#include "eval/evaluate.h"
#include "eval/metrics.h"
#include "eval/model_file.h"
#include "feature_cache/backbone.h"
#include "launcher/cli.h"
#include "launcher/command_options.h"
#include "launcher/commands.h"
#include "launcher/run_files.h"
#include "model/checkpoint.h"
#include "trainer/trainer.h"

namespace uniad::commands {

namespace po = cli::po;

namespace {

// The backbone the cache was built with: the built-in one (re-created from its seed), or the
// TorchScript file given with --backbone, which must be the very file (same content hash).
nlohmann::ordered_json backbone_record(const feature_cache::FeatureCache& cache, const std::string& file,
                                       std::string& bytes) {
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

int export_model(int argc, char** argv) {
  const cli::Command command{
      "export", "uniad export --run RUN --cache CACHE.h5 --out MODEL.uniad [--backbone FILE] [--image-score ...]",
      "Writes one portable model file for `uniad predict`: the backbone (the cache's; give its TorchScript file with\n"
      "--backbone), the run's reconstruction model(s), preprocessing, the image-score rule, and decision thresholds\n"
      "chosen at the image F1-max on the cache's test split (per class, and one for all classes), with the\n"
      "metrics and provenance at export. The run is evaluated on the cache here to choose them."};
  eval::EvalOptions o;
  po::options_description options("export options");
  options.add_options()
      ("run", po::value<std::string>()->required(), "run directory written by `uniad train`")
      ("cache", po::value<std::string>()->required(), "the run's feature cache; its test split sets the thresholds")
      ("out", po::value<std::string>()->required(), "model file to write (.uniad)")
      ("backbone", po::value<std::string>()->default_value(""), "the TorchScript backbone the cache was built with")
      ("threads", po::value<int>()->default_value(0), "compute threads (0 = the CPUs this process may use)")
      ("device", po::value<std::string>()->default_value("auto"), "auto | cpu | cuda: where maps are computed (metrics stay on the CPU)");
  add_map_and_score_options(options, o);
  o.pixel_metrics = false;  // thresholds need image scores only
  cli::add_logging_options(options);
  const auto vm = cli::parse_command(command, options, argc, argv);
  if (!vm) return 0;
  cli::configure_logging(*vm);
  configure_compute_threads((*vm)["threads"].as<int>());
  o.score.kind = eval::parse_image_score((*vm)["image-score"].as<std::string>());
  const std::string run = (*vm)["run"].as<std::string>(), cache_path = (*vm)["cache"].as<std::string>();
  const std::string out = (*vm)["out"].as<std::string>();

  const feature_cache::FeatureCache cache = feature_cache::FeatureCache::open(cache_path);
  const RunModels models = load_run_models(run, cache, resolve_device((*vm)["device"].as<std::string>()));
  eval::ModelFile file;
  const nlohmann::ordered_json backbone = backbone_record(cache, (*vm)["backbone"].as<std::string>(), file.backbone);

  // Evaluate as `uniad eval` does, keeping every image score and the map range.
  o.map.size = cache.shape().mask_size;
  o.classes = models.class_indices;
  float map_min = std::numeric_limits<float>::infinity(), map_max = 0;
  spdlog::info("evaluating {} on {} to choose the thresholds", run, cache_path);
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
      {"format_version", eval::kModelFileVersion},
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
  write_model_file(out, file);
  std::cout << fmt::format("wrote {}: {} setting, {} model(s), classes {}; thresholds (image F1-max on {} test images): "
                           "all classes {:.4g}",
                           out, models.setting, keys.size(), classes.dump(), evaluation.images.size(), all.f1_threshold);
  for (const auto& c : evaluation.classes) std::cout << fmt::format(", {} {:.4g}", c.name, c.image.f1_threshold);
  std::cout << "\n";
  return 0;
}

}  // namespace uniad::commands
