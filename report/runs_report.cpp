#include "report/runs_report.h"

#include <fstream>

#include <fmt/core.h>
#include <fmt/ranges.h>

#include "common/error.h"
#include "report/aggregate.h"
#include "report/curves.h"
#include "report/tables.h"

namespace uniad::report {

namespace fs = std::filesystem;

nlohmann::json read_eval_report(const fs::path& path, const std::string& remedy) {
  std::ifstream in(path);
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception&) {
    throw InputError(path.string(), "not a readable report.json; " + remedy);
  }
}

namespace {

// RUN, RUN/eval or RUN/eval/report.json -> the report file, which must exist.
fs::path report_path(const std::string& run) {
  fs::path path = run;
  if (fs::is_directory(path / "eval")) path /= "eval";
  if (fs::is_directory(path)) path /= "report.json";
  if (!fs::exists(path)) throw InputError(path.string(), "no evaluation report; run `uniad eval --run " + run + " --cache ...` first");
  return path;
}

// "config/seed=N": the last two folders of a run, one curve label per run.
std::string curve_label(const std::string& run_dir) {
  const fs::path path = fs::path(run_dir).lexically_normal();
  const fs::path run = path.filename().empty() ? path.parent_path() : path;
  return (run.parent_path().filename() / run.filename()).string();
}

}  // namespace

std::string write_runs_report(const std::vector<std::string>& runs, const fs::path& out) {
  std::vector<nlohmann::json> reports;
  std::vector<std::string> run_dirs, labels;
  for (const auto& run : runs) {
    reports.push_back(read_eval_report(report_path(run), "re-run `uniad eval` for that run"));
    run_dirs.push_back(reports.back().at("provenance").value("run_dir", run));
    labels.push_back(curve_label(run_dirs.back()));
  }
  const Aggregate aggregate = aggregate_runs(reports, runs);
  fs::create_directories(out);

  std::string markdown = "# UniAD report\n\nRuns: " + fmt::format("{}", fmt::join(runs, ", ")) + "\n\n";
  std::string html;
  for (std::size_t t = 0; t < aggregate.tables.size(); ++t) {
    markdown += "## " + aggregate.table_titles[t] + "\n\n" + aggregate.tables[t].to_markdown() + "\n";
    html += "<h3>" + html_escape(aggregate.table_titles[t]) + "</h3>" + html_table(aggregate.tables[t]);
  }
  const bool curves = write_training_curves(run_dirs, labels, (out / "pictures").string());
  std::string provenance;
  for (std::size_t i = 0; i < reports.size(); ++i) {
    provenance += "<h3>" + html_escape(runs[i]) + "</h3><pre>" + html_escape(reports[i].at("provenance").dump(2)) + "</pre>";
  }
  write_document(out, {"report", markdown, std::nullopt, aggregate.json, "UniAD report (" + aggregate.kind + ")",
                       {{aggregate.kind == "seeds" ? "Mean +- std over seeds" : "Comparison: " + aggregate.setting, html},
                        {"Training curves", curves_html(curves, "<p>no metrics logs</p>")},
                        {"Runs", provenance}}});
  return markdown;
}

}  // namespace uniad::report
