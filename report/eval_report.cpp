#include "report/eval_report.h"

#include <algorithm>
#include <cmath>
#include <iostream>
#include <limits>
#include <numeric>

#include <ATen/ATen.h>
#include <fmt/core.h>

#include "common/fs.h"
#include "report/curves.h"
#include "report/pictures.h"
#include "report/tables.h"

namespace uniad::report {

namespace {

nlohmann::ordered_json number_or_null(double v) { return std::isnan(v) ? nlohmann::ordered_json() : nlohmann::ordered_json(v); }

std::string percent(const nlohmann::json& v) { return v.is_number() ? fmt::format("{:.1f}", 100 * v.get<double>()) : "n/a"; }

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


}  // namespace

nlohmann::ordered_json report_json(const eval::Evaluation& evaluation, const nlohmann::ordered_json& provenance) {
  nlohmann::ordered_json report;
  report["provenance"] = provenance;
  report["classes"] = nlohmann::ordered_json::array();
  for (const auto& c : evaluation.classes) {
    nlohmann::ordered_json row = {{"name", c.name}, {"images", c.images}, {"anomalous", c.anomalous},
                                  {"regions", c.pixel.regions}};
    for (const auto& column : eval::metric_columns()) row[column.key] = number_or_null(column.get(c));
    row["pixel_f1_threshold"] = number_or_null(c.pixel.binary.f1_threshold);
    report["classes"].push_back(row);
  }
  report["mean"] = evaluation.mean();
  return report;
}

Table metrics_table(const nlohmann::json& report) {
  Table table;
  table.header = {"class"};
  for (const auto& column : eval::metric_columns()) table.header.push_back(column.title);
  for (const auto& row : report.at("classes")) {
    std::vector<std::string> cells = {row.at("name").get<std::string>()};
    for (const auto& column : eval::metric_columns()) cells.push_back(percent(row.at(column.key)));
    table.rows.push_back(cells);
  }
  std::vector<std::string> mean = {"mean"};
  for (const auto& column : eval::metric_columns()) mean.push_back(percent(report.at("mean").at(column.key)));
  table.rows.push_back(mean);
  return table;
}

std::string scores_csv(const eval::Evaluation& evaluation) {
  Table table{{"class", "path", "defect_type", "label", "score"}, {}};
  for (const auto& image : evaluation.images) {
    table.rows.push_back({image.class_name, image.path, image.defect_type, std::to_string(image.label),
                          fmt::format("{:.8g}", image.score)});
  }
  return table_csv(table);
}

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

Picture class_panel(const feature_cache::FeatureCache& cache, const eval::ClassResult& result,
                    const std::vector<std::int64_t>& rows, const at::Tensor& maps, int pictures,
                    const eval::ScoreOptions& score) {
  const auto& index = cache.split(data::Split::kTest);
  const at::Tensor scores = eval::image_scores(maps, score).contiguous();
  const at::Tensor masks = cache.read_masks(rows);
  std::vector<PanelRow> panel;
  for (std::size_t i : panel_picks(rows, scores, index, pictures)) {
    panel.push_back({index.path[rows[i]], maps[i], masks[i],
                     fmt::format("{} ({})  score {:.3f}", index.defect_type[rows[i]],
                                 index.label[rows[i]] ? "anomalous" : "normal", scores.data_ptr<float>()[i])});
  }
  const double f1_threshold = result.pixel.binary.f1_threshold;
  const float threshold = std::isnan(f1_threshold) ? maps.max().item<float>() : static_cast<float>(f1_threshold);
  return draw_panel(panel, maps.min().item<float>(), maps.max().item<float>(), threshold,
                    fmt::format("{}: image | ground truth | anomaly map | prediction at the pixel F1-max threshold",
                                result.name));
}

Panels class_panels(const feature_cache::FeatureCache& cache, const eval::Evaluation& evaluation, const KeptMaps& kept,
                    int pictures, const eval::ScoreOptions& score) {
  Panels panels;
  for (const auto& [c, class_maps] : kept) {
    for (const auto& result : evaluation.classes) {
      if (result.name != cache.classes()[c]) continue;
      Picture panel = class_panel(cache, result, class_maps.first, class_maps.second, pictures, score);
      if (!panel.png.empty()) panels.emplace_back(result.name, std::move(panel));
    }
  }
  return panels;
}

void write_eval_report(const std::filesystem::path& out, const std::filesystem::path& run,
                       const eval::Evaluation& evaluation, const nlohmann::ordered_json& provenance,
                       const Panels& panels) {
  const nlohmann::ordered_json report = report_json(evaluation, provenance);
  const Table table = metrics_table(report);

  // Pictures: one panel per class.
  std::vector<std::string> pictures;
  for (const auto& [name, panel] : panels) {
    pictures.push_back("pictures/" + name + ".png");
    atomic_write_bytes(out / pictures.back(), panel.png);
  }
  // Training curves from the run's metrics log, when there is one.
  const bool curves = write_training_curves(run.string(), (out / "pictures").string(), run.filename().string());

  atomic_write_bytes(out / "scores.csv", scores_csv(evaluation));
  const nlohmann::json& random_features = provenance.at("random_features");  // null: the cache does not say
  const std::string backbone_note =
      random_features.is_null()
          ? "Features from a cache that records no backbone (not made by `uniad extract`)."
      : random_features.get<bool>()
          ? "Features from the built-in random-feature backbone (fixed random weights, NOT pretrained)."
          : "Features from the pretrained backbone " + provenance.at("backbone").get<std::string>() + ".";
  const nlohmann::json& protocol = provenance.at("protocol");
  const int size = protocol.at("resolution");
  const std::string markdown = "# UniAD evaluation: " + run.string() + "\n\n" + backbone_note + "\nMetrics in %, " +
                               protocol.at("checkpoint").get<std::string>() + ", " +
                               protocol.at("image_score").get<std::string>() + " image score, " + std::to_string(size) +
                               "x" + std::to_string(size) + " maps.\n\n" + table.to_markdown();
  std::string pictures_html;
  for (const auto& p : pictures) pictures_html += "<img src=\"" + p + "\">\n";
  write_document(out, {"report", markdown, table, report, "UniAD evaluation: " + run.string(),
                       {{"Results (%)", "<p class=\"note\">" + html_escape(backbone_note) + "</p>" + html_table(table)},
                        {"Qualitative results", pictures_html},
                        {"Training curves", curves_html(curves, "<p>no metrics log</p>")},
                        {"Provenance", "<pre>" + html_escape(provenance.dump(2)) + "</pre>"}}});
  std::cout << "\n" << backbone_note << "\n\n" << table.to_markdown() << "\nreport: " << (out / "index.html").string()
            << " (also report.md, report.csv, report.json, scores.csv)\n";
}

}  // namespace uniad::report
