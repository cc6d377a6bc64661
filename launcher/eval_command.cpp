// `uniad eval`: evaluate a training run's checkpoint on a feature cache's test split and
// write the report (Markdown, CSV, JSON, per-image scores, pictures, HTML).
#include <fstream>
#include <iostream>
#include <limits>

#include <ATen/ATen.h>
#include <fmt/core.h>
#include <spdlog/spdlog.h>

#include "common/device.h"
#include "common/error.h"
#include "common/fs.h"
#include "common/version.h"
#include "eval/evaluate.h"
#include "eval/pictures.h"
#include "eval/report.h"
#include "launcher/cli.h"
#include "launcher/command_options.h"
#include "launcher/commands.h"
#include "launcher/run_files.h"
#include "model/checkpoint.h"

namespace uniad::commands {

namespace po = cli::po;

namespace {

// Up to `count` test images of a class for the qualitative panel: the highest-scoring
// anomalous ones first, then the highest-scoring normal one (the hardest false alarm).
std::vector<std::size_t> panel_picks(const std::vector<std::int64_t>& rows, const at::Tensor& scores,
                                     const feature_cache::SplitIndex& index, int count) {
  std::vector<std::size_t> order(rows.size());
  std::iota(order.begin(), order.end(), 0);
  const float* s = scores.data_ptr<float>();
  std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return s[a] > s[b]; });
  std::vector<std::size_t> picks;
  for (std::size_t i : order)
    if (index.label[rows[i]] == 1 && static_cast<int>(picks.size()) < std::max(1, count - 1)) picks.push_back(i);
  for (std::size_t i : order)
    if (index.label[rows[i]] == 0) {
      picks.push_back(i);
      break;
    }
  return picks;
}

// Which training state was evaluated, from the checkpoints' own epoch counts: "last-epoch
// checkpoint (epoch 40)" only when every checkpoint finished its run's epochs.
std::string checkpoint_description(const nlohmann::ordered_json& provenance) {
  const nlohmann::json config = provenance.value("config", nlohmann::json());
  if (config.value("model", nlohmann::json()).value("kind", "") == "memory-bank") {
    return "memory bank of training patches (nearest-neighbour reference, no training)";
  }
  const int planned = config.value("epochs", 0);
  int lowest = std::numeric_limits<int>::max(), highest = 0;
  for (const auto& c : provenance.value("checkpoints", nlohmann::json::array())) {
    lowest = std::min(lowest, c.value("epoch", 0));
    highest = std::max(highest, c.value("epoch", 0));
  }
  if (highest == 0) return "checkpoint before any finished epoch";
  const std::string epochs = lowest == highest ? std::to_string(lowest) : fmt::format("{}-{}", lowest, highest);
  if (lowest == planned) return "last-epoch checkpoint (epoch " + epochs + ")";
  return fmt::format("checkpoint at epoch {} of {} (training unfinished)", epochs, planned);
}

}  // namespace

int evaluate(int argc, char** argv) {
  const cli::Command command{
      "eval", "uniad eval --run DIR --cache CACHE.h5 [options]",
      "Evaluates the run's last checkpoint (unified, or one per class for the separate setting) on the\n"
      "cache's test split: anomaly maps, image scores, and per class image AUROC/AP/F1-max and pixel\n"
      "AUROC/AP/F1-max/AUPRO@0.3 with the mean over classes. Writes report.md, report.csv, report.json,\n"
      "scores.csv, pictures/ and index.html into --out (default: DIR/eval)."};
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
  const RunModels models = load_run_models(run.string(), cache, resolve_device((*vm)["device"].as<std::string>()));
  o.map.size = cache.shape().mask_size;
  o.classes = models.class_indices;
  fs::create_directories(out / "pictures");

  // Per class: maps for the panel; pixel threshold from that class's F1-max.
  const int pictures = (*vm)["pictures"].as<int>();
  std::map<int, std::pair<std::vector<std::int64_t>, at::Tensor>> kept_maps;
  // maps.h5 is written under a temporary name and renamed when complete.
  std::unique_ptr<h5::File> maps_file;
  const fs::path maps_path = out / "maps.h5", maps_tmp = temporary_path_for(maps_path);
  if ((*vm)["save-maps"].as<bool>()) maps_file = std::make_unique<h5::File>(h5::File::create(maps_tmp.string()));
  spdlog::info("evaluating {} on {} ({} classes)", run.string(), cache_path, o.classes.size());
  eval::Evaluation evaluation;
  try {
    evaluation = eval::evaluate(
        [&](int c) -> model::ReconstructionNet& { return models.for_class(c); }, cache, o,
        [&](int c, const std::vector<std::int64_t>& rows, const at::Tensor& maps) {
          if (pictures > 0) kept_maps[c] = {rows, maps};
          if (maps_file) {
            const std::string name = "/" + cache.classes()[c];
            const at::Tensor m = maps.contiguous();
            maps_file->write<float>(name + "/maps", {hsize_t(m.size(0)), hsize_t(m.size(1)), hsize_t(m.size(2))},
                                    std::vector<float>(m.data_ptr<float>(), m.data_ptr<float>() + m.numel()));
            maps_file->write<std::int64_t>(name + "/rows", {rows.size()}, rows);
          }
          spdlog::info("  {}: {} test images", cache.classes()[c], rows.size());
        });
    if (maps_file) {
      maps_file->flush();
      maps_file->close();
      fs::rename(maps_tmp, maps_path);
    }
  } catch (...) {
    maps_file.reset();
    std::error_code ignored;
    fs::remove(maps_tmp, ignored);
    throw;
  }

  nlohmann::ordered_json provenance = models.provenance;
  provenance["cache_path"] = cache_path;
  provenance["cache_identity"] = cache.identity();
  provenance["backbone"] = cache.attributes().value("backbone_description", "unknown");
  provenance["random_features"] = cache.identity().at("backbone").at("random_features");
  provenance["protocol"] = {{"resolution", o.map.size},
                            {"mask_binarisation", "mask > 0"},
                            {"image_score", eval::to_string(o.score.kind)},
                            {"pool_window", o.score.pool_window},
                            {"smoothing_sigma", o.map.smoothing_sigma},
                            {"aupro_max_fpr", o.max_fpr},
                            {"checkpoint", checkpoint_description(models.provenance)},
                            {"map_upsampling", "bilinear, align_corners=true"}};
  provenance["evaluated_at_version"] = project_version();
  const nlohmann::ordered_json report = eval::report_json(evaluation, provenance);
  const Table table = eval::metrics_table(report);

  // Pictures: one panel per class.
  std::vector<std::string> panels;
  const auto& index = cache.split(data::Split::kTest);
  for (const auto& [c, kept] : kept_maps) {
    const auto& [rows, maps] = kept;
    const at::Tensor scores = eval::image_scores(maps, o.score).contiguous();
    const at::Tensor masks = cache.read_masks(rows);
    std::vector<eval::PanelRow> panel;
    for (std::size_t i : panel_picks(rows, scores, index, pictures)) {
      panel.push_back({index.path[rows[i]], maps[i], masks[i],
                       fmt::format("{} ({})  score {:.3f}", index.defect_type[rows[i]],
                                   index.label[rows[i]] ? "anomalous" : "normal", scores.data_ptr<float>()[i])});
    }
    nlohmann::ordered_json row;
    for (const auto& r : report["classes"])
      if (r["name"] == cache.classes()[c]) row = r;
    const float threshold = row["pixel_f1_threshold"].is_number() ? row["pixel_f1_threshold"].get<float>() : maps.max().item<float>();
    const std::string name = "pictures/" + cache.classes()[c] + ".png";
    eval::write_panel((out / name).string(), panel, maps.min().item<float>(), maps.max().item<float>(), threshold,
                      fmt::format("{}: image | ground truth | anomaly map | prediction at the pixel F1-max threshold",
                                  cache.classes()[c]));
    panels.push_back(name);
  }
  // Training curves from the run's metrics log, when there is one.
  std::string curves;
  if (write_training_curves(run.string(), (out / "pictures").string(), run.filename().string())) {
    curves = "<img src=\"pictures/loss.png\"><img src=\"pictures/auroc.png\">";
  }

  atomic_write_bytes(out / "report.json", report.dump(2) + "\n");
  atomic_write_bytes(out / "report.csv", eval::table_csv(table));
  atomic_write_bytes(out / "scores.csv", eval::scores_csv(evaluation));
  const std::string backbone_note =
      provenance["random_features"].get<bool>()
          ? "Features from the built-in random-feature backbone (fixed random weights, NOT pretrained)."
          : "Features from the pretrained backbone " + provenance["backbone"].get<std::string>() + ".";
  const std::string markdown = "# UniAD evaluation: " + run.string() + "\n\n" + backbone_note +
                               "\nMetrics in %, " + checkpoint_description(models.provenance) + ", " +
                               eval::to_string(o.score.kind) + " image score, " + std::to_string(o.map.size) + "x" +
                               std::to_string(o.map.size) + " maps.\n\n" + table.to_markdown();
  atomic_write_bytes(out / "report.md", markdown);
  std::string pictures_html;
  for (const auto& p : panels) pictures_html += "<img src=\"" + p + "\">\n";
  atomic_write_bytes(out / "index.html",
                     eval::html_page("UniAD evaluation: " + run.string(),
                                     {{"Results (%)", "<p class=\"note\">" + eval::html_escape(backbone_note) + "</p>" +
                                                          eval::html_table(table)},
                                      {"Qualitative results", pictures_html},
                                      {"Training curves", curves.empty() ? "<p>no metrics log</p>" : curves},
                                      {"Provenance", "<pre>" + eval::html_escape(provenance.dump(2)) + "</pre>"}}));
  std::cout << "\n" << backbone_note << "\n\n" << table.to_markdown() << "\nreport: " << (out / "index.html").string()
            << " (also report.md, report.csv, report.json, scores.csv)\n";
  return 0;
}

}  // namespace uniad::commands
