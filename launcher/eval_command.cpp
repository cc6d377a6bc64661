// `uniad eval`: evaluate a training run's checkpoint on a feature cache's test split and
// write the report (report/eval_report.h: Markdown, CSV, JSON, per-image scores, pictures, HTML).
#include <memory>

#include <ATen/ATen.h>
#include <spdlog/spdlog.h>

#include "common/device.h"
#include "common/error.h"
#include "common/fs.h"
#include "common/hdf5.h"
#include "common/version.h"
#include "eval/evaluate.h"
#include "launcher/cli.h"
#include "launcher/command_options.h"
#include "launcher/commands.h"
#include "report/eval_report.h"
#include "report/evaluation_events.h"
#include "tensorboard/summary_writer.h"
#include "trainer/run_models.h"

namespace uniad::commands {

namespace po = cli::po;
namespace fs = std::filesystem;

namespace {

// maps.h5 (--save-maps): every class's maps and cache rows, written under a temporary name and
// renamed when complete, so a failed evaluation leaves no complete-looking file.
class MapsFile {
 public:
  explicit MapsFile(const fs::path& path) : path_(path), tmp_(temporary_path_for(path)) {
    file_ = std::make_unique<h5::File>(h5::File::create(tmp_.string()));
  }
  ~MapsFile() {
    if (!file_) return;
    file_.reset();
    std::error_code ignored;
    fs::remove(tmp_, ignored);
  }
  void add(const std::string& class_name, const std::vector<std::int64_t>& rows, const at::Tensor& maps) {
    const at::Tensor m = maps.contiguous();
    file_->write<float>("/" + class_name + "/maps", {hsize_t(m.size(0)), hsize_t(m.size(1)), hsize_t(m.size(2))},
                        std::vector<float>(m.data_ptr<float>(), m.data_ptr<float>() + m.numel()));
    file_->write<std::int64_t>("/" + class_name + "/rows", {rows.size()}, rows);
  }
  void finish() {
    file_->flush();
    file_->close();
    file_.reset();
    fs::rename(tmp_, path_);
  }

 private:
  fs::path path_, tmp_;
  std::unique_ptr<h5::File> file_;
};

// What the report records beside the metrics: the run's provenance, the cache and the protocol.
nlohmann::ordered_json evaluation_provenance(const trainer::RunModels& models, const feature_cache::FeatureCache& cache,
                                             const std::string& cache_path, const eval::EvalOptions& o) {
  nlohmann::ordered_json provenance = models.provenance;
  provenance["cache_path"] = cache_path;
  provenance["cache_identity"] = cache.identity();
  provenance["backbone"] = cache.attributes().value("backbone_description", "unknown");
  // A cache written by another tool (bench/common.py's random caches) may record no backbone:
  // unknown (null) in the report, not a reason to refuse the evaluation.
  const auto backbone = cache.identity().find("backbone");
  provenance["random_features"] =
      backbone != cache.identity().end() ? backbone->value("random_features", nlohmann::json()) : nlohmann::json();
  provenance["protocol"] = {{"resolution", o.map.size},
                            {"mask_binarisation", "mask > 0"},
                            {"image_score", eval::to_string(o.score.kind)},
                            {"pool_window", o.score.pool_window},
                            {"smoothing_sigma", o.map.smoothing_sigma},
                            {"aupro_max_fpr", o.max_fpr},
                            {"checkpoint", report::checkpoint_description(models.provenance)},
                            {"map_upsampling", "bilinear, align_corners=true"}};
  provenance["evaluated_at_version"] = project_version();
  return provenance;
}

// The metrics and panels as TensorBoard events in `dir`, at the step the checkpoints were
// written (the latest, for the separate setting's), so that they line up with the training's.
// A new session at that step replaces an earlier evaluation's points.
void write_evaluation_events(const fs::path& dir, const trainer::RunModels& models, const eval::Evaluation& evaluation,
                             const report::Panels& panels) {
  std::int64_t step = 0;
  for (const auto& c : models.provenance.value("checkpoints", nlohmann::json::array())) {
    step = std::max<std::int64_t>(step, c.value("global_step", 0));
  }
  tensorboard::SummaryWriter tb(dir);
  tb.start_session(step);
  report::log_evaluation(tb, step, evaluation, panels);
  spdlog::info("TensorBoard events: {}", tb.path().string());
}

}  // namespace

int evaluate(int argc, char** argv) {
  const cli::Command command{
      "eval", "uniad eval --run DIR --cache CACHE.h5 [options]",
      "Evaluates the run's last checkpoint (unified, or one per class for the separate setting) on the\n"
      "cache's test split: anomaly maps, image scores, and per class image AUROC/AP/F1-max and pixel\n"
      "AUROC/AP/F1-max/AUPRO@0.3 with the mean over classes. Writes report.md, report.csv, report.json,\n"
      "scores.csv, pictures/, index.html and TensorBoard events (tb/) into --out (default: DIR/eval)."};
  eval::EvalOptions o;
  po::options_description options("eval options");
  add_eval_options(options, o);
  cli::add_logging_options(options);
  const auto vm = cli::parse_command(command, options, argc, argv);
  if (!vm) return 0;
  cli::configure_logging(*vm);
  configure_compute_threads((*vm)["threads"].as<int>());
  o.score.kind = eval::parse_image_score((*vm)["image-score"].as<std::string>());
  const fs::path run = (*vm)["run"].as<std::string>();
  const fs::path out = (*vm)["out"].as<std::string>().empty() ? run / "eval" : fs::path((*vm)["out"].as<std::string>());
  const std::string cache_path = (*vm)["cache"].as<std::string>();

  const feature_cache::FeatureCache cache = feature_cache::FeatureCache::open(cache_path);
  const trainer::RunModels models =
      trainer::load_run_models(run.string(), cache, resolve_device((*vm)["device"].as<std::string>()));
  o.map.size = cache.shape().mask_size;
  o.classes = models.class_indices;
  fs::create_directories(out / "pictures");
  const int pictures = (*vm)["pictures"].as<int>();
  report::KeptMaps kept;  // per class: the maps for its panel
  std::unique_ptr<MapsFile> maps_file;
  if ((*vm)["save-maps"].as<bool>()) maps_file = std::make_unique<MapsFile>(out / "maps.h5");
  spdlog::info("evaluating {} on {} ({} classes)", run.string(), cache_path, o.classes.size());
  const eval::Evaluation evaluation = eval::evaluate(
      [&](int c) -> model::ReconstructionNet& { return models.for_class(c); }, cache, o,
      [&](int c, const std::vector<std::int64_t>& rows, const at::Tensor& maps) {
        if (pictures > 0) kept[c] = {rows, maps};
        if (maps_file) maps_file->add(cache.classes()[c], rows, maps);
        spdlog::info("  {}: {} test images", cache.classes()[c], rows.size());
      });
  if (maps_file) maps_file->finish();
  const report::Panels panels = report::class_panels(cache, evaluation, kept, pictures, o.score);
  report::write_eval_report(out, run, evaluation, evaluation_provenance(models, cache, cache_path, o), panels);
  if (tensorboard_requested(*vm)) {
    write_evaluation_events(out / "tb", models, evaluation, panels);
  }
  return 0;
}

}  // namespace uniad::commands
