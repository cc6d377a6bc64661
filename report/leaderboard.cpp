#include "report/leaderboard.h"

#include <algorithm>
#include <cmath>
#include <iostream>
#include <map>

#include <fmt/core.h>

#include "common/error.h"
#include "common/table.h"
#include "common/version.h"
#include "eval/evaluate.h"
#include "report/aggregate.h"
#include "report/curves.h"
#include "report/runs_report.h"
#include "report/tables.h"

namespace uniad::report {

namespace fs = std::filesystem;

namespace {

// Per configuration: its runs and one value per evaluated seed of each metric.
struct ConfigResult {
  std::string config, variant;
  std::vector<std::pair<std::string, std::string>> grid_point;  // for pairing variants with the base
  std::vector<fs::path> evaluated, missing, failed;
  std::map<std::string, std::vector<double>> values;  // metric -> one value per evaluated seed
};

const std::vector<double>& values_of(const ConfigResult& r, const std::string& metric) {
  static const std::vector<double> none;
  const auto it = r.values.find(metric);
  return it == r.values.end() ? none : it->second;
}

std::vector<ConfigResult> collect_results(const std::vector<LeaderboardRun>& runs) {
  std::vector<ConfigResult> results;  // in the order configurations first appear
  std::map<std::string, std::size_t> index;
  for (const auto& run : runs) {
    if (!index.count(run.config)) {  // the runs of a configuration need not be adjacent (order = seeds)
      index[run.config] = results.size();
      results.push_back({run.config, run.variant, run.grid_point, {}, {}, {}, {}});
    }
    ConfigResult& r = results[index.at(run.config)];
    const fs::path report = run.dir / "eval" / "report.json";
    if (fs::exists(report)) {
      const nlohmann::json mean = read_eval_report(report, "remove it to redo that run").at("mean");
      for (const auto& column : eval::metric_columns()) {
        const std::string metric = column.key;
        r.values[metric].push_back(mean.value(metric, nlohmann::json()).is_number() ? mean[metric].get<double>() : NAN);
      }
      r.evaluated.push_back(run.dir);
    } else if (fs::exists(run.dir / "sweep-failed.json")) {
      r.failed.push_back(run.dir);
    } else {
      r.missing.push_back(run.dir);
    }
  }
  return results;
}

struct Leaderboard {
  Table ranking, ablation;
  std::vector<std::string> not_evaluated;  // "name (missing|failed)"
  nlohmann::ordered_json json;
};

Leaderboard make_leaderboard(const std::string& rank_by, std::vector<ConfigResult> results) {
  Leaderboard board;
  // Ranked by the mean of the chosen metric; configurations without a result last.
  std::stable_sort(results.begin(), results.end(), [&](const ConfigResult& a, const ConfigResult& b) {
    const double ma = mean_std(values_of(a, rank_by)).mean, mb = mean_std(values_of(b, rank_by)).mean;
    if (std::isnan(ma) != std::isnan(mb)) return std::isnan(mb);
    return ma > mb;
  });
  board.ranking.header = {"rank", "configuration", "seeds"};
  for (const auto& c : eval::metric_columns()) board.ranking.header.push_back(c.title);
  board.json["rank_by"] = rank_by;
  board.json["configurations"] = nlohmann::ordered_json::array();
  int rank = 0;
  for (const auto& r : results) {
    const std::size_t seeds = r.evaluated.size() + r.missing.size() + r.failed.size();
    std::vector<std::string> row = {r.evaluated.empty() ? "-" : std::to_string(++rank), r.config,
                                    fmt::format("{}/{}", r.evaluated.size(), seeds)};
    nlohmann::ordered_json entry = {{"configuration", r.config}, {"variant", r.variant}, {"evaluated_seeds", r.evaluated.size()},
                                    {"seeds", seeds}};
    for (const auto& column : eval::metric_columns()) {
      const std::string metric = column.key;
      const auto& values = values_of(r, metric);
      const MeanStd m = mean_std(values);
      row.push_back(mean_std_text(values));
      entry["metrics"][metric] = {{"mean", m.count == 0 ? nlohmann::ordered_json() : nlohmann::ordered_json(m.mean)},
                                  {"std", m.count < 2 ? nlohmann::ordered_json() : nlohmann::ordered_json(m.std)},
                                  {"values", values}};
    }
    for (const auto& p : r.missing) board.not_evaluated.push_back(p.string() + " (missing)");
    for (const auto& p : r.failed) board.not_evaluated.push_back(p.string() + " (failed: see sweep-failed.json)");
    board.ranking.rows.push_back(row);
    board.json["configurations"].push_back(entry);
  }
  // Ablations: each variant against the base at the same grid point.
  board.ablation.header = {"variant", "against"};
  for (const auto& c : eval::metric_columns()) board.ablation.header.push_back(c.title);
  board.json["ablation"] = nlohmann::ordered_json::array();
  for (const auto& v : results) {
    if (v.variant.empty()) continue;
    auto base = std::find_if(results.begin(), results.end(),
                             [&](const ConfigResult& b) { return b.variant.empty() && b.grid_point == v.grid_point; });
    if (base == results.end() || base->evaluated.empty() || v.evaluated.empty()) continue;
    std::vector<std::string> row = {v.config, base->config};
    nlohmann::ordered_json entry = {{"variant", v.config}, {"against", base->config}};
    for (const auto& column : eval::metric_columns()) {
      const std::string metric = column.key;
      const Difference d = difference_of_means(values_of(v, metric), values_of(*base, metric));
      row.push_back(difference_text(d));
      entry["difference"][metric] = {{"mean", std::isnan(d.mean) ? nlohmann::ordered_json() : nlohmann::ordered_json(d.mean)},
                                     {"std", d.spread_known ? nlohmann::ordered_json(d.std) : nlohmann::ordered_json()}};
    }
    board.ablation.rows.push_back(row);
    board.json["ablation"].push_back(entry);
  }
  board.json["not_evaluated"] = board.not_evaluated;
  return board;
}

}  // namespace

std::string write_leaderboard(const fs::path& out, const LeaderboardInput& input) {
  const auto results = collect_results(input.runs);
  Leaderboard board = make_leaderboard(input.rank_by, results);
  board.json["spec"] = input.spec;
  board.json["spec_path"] = input.spec_path;
  board.json["project_version"] = project_version();
  std::string md = fmt::format("# Sweep leaderboard: {}\n\nRanked by the mean of {} over seeds (last epoch); metrics in %, "
                               "mean +- sample std over the evaluated seeds.\n\n{}",
                               out.string(), input.rank_by, board.ranking.to_markdown());
  if (!board.ablation.rows.empty()) {
    md += "\n## Ablations: each variant minus the base (difference of means +- its std)\n\n" + board.ablation.to_markdown();
  }
  if (!board.not_evaluated.empty()) {
    md += "\n## Not evaluated (never averaged over)\n\n";
    for (const auto& n : board.not_evaluated) md += "- " + n + "\n";
  }
  std::vector<std::string> dirs, labels;
  for (const auto& r : results)
    for (const auto& d : r.evaluated) dirs.push_back(d.string()), labels.push_back(r.config);  // one line per configuration
  const bool curves = !dirs.empty() && write_training_curves(dirs, labels, (out / "pictures").string());
  std::string missing_html;
  for (const auto& n : board.not_evaluated) missing_html += "<li>" + html_escape(n) + "</li>";
  write_document(
      out, {"leaderboard", md, board.ranking, board.json, "UniAD sweep: " + out.string(),
            {{"Leaderboard (ranked by " + input.rank_by + ", %)", html_table(board.ranking)},
             {"Ablations (variant minus base)", board.ablation.rows.empty() ? "<p>no variants</p>" : html_table(board.ablation)},
             {"Not evaluated", missing_html.empty() ? "<p>none</p>" : "<ul>" + missing_html + "</ul>"},
             {"Training curves", curves_html(curves, "<p>no metrics logs</p>")},
             {"Spec", "<pre>" + html_escape(input.spec.dump(2)) + "</pre>"}}});
  std::cout << "\n" << md << "\nleaderboard: " << (out / "index.html").string() << " (also leaderboard.md, .csv, .json)\n";
  return md;
}

}  // namespace uniad::report
