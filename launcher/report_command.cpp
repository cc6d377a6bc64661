// `uniad report`: aggregate evaluated runs. Runs that differ only by seed give mean +- std
// per class and metric; runs that differ in one setting (unified vs separate, an ablation
// switch) give a comparison table with differences. Anything else is refused.
#include <fstream>
#include <iostream>

#include <fmt/core.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include "common/error.h"
#include "common/fs.h"
#include "data/dataset.h"
#include "launcher/cli.h"
#include "launcher/commands.h"
#include "report/aggregate.h"
#include "report/curves.h"
#include "report/tables.h"

namespace uniad::commands {

namespace po = cli::po;

int report(int argc, char** argv) {
  const cli::Command command{
      "report", "uniad report --runs RUN_DIR,RUN_DIR,... [--out DIR]",
      "Aggregates runs evaluated by `uniad eval` (RUN_DIR/eval/report.json). Runs differing only by seed\n"
      "give mean +- std (sample std over seeds) per class and metric in the paper's format; runs differing\n"
      "in exactly one setting give one comparison table per metric with the differences to the first\n"
      "value; runs differing in more settings are refused, naming them. Writes report.md, report.json\n"
      "and index.html (with training curves of every run) into --out."};
  po::options_description options("report options");
  options.add_options()
      ("runs", po::value<std::string>()->required(), "comma-separated run directories (or their eval/ folders)")
      ("out", po::value<std::string>()->default_value("report"), "output folder");
  cli::add_logging_options(options);
  const auto vm = cli::parse_command(command, options, argc, argv);
  if (!vm) return 0;
  cli::configure_logging(*vm);

  std::vector<nlohmann::json> reports;
  std::vector<std::string> names, run_dirs;
  for (const auto& run : data::split_list((*vm)["runs"].as<std::string>())) {
    fs::path path = run;
    if (fs::is_directory(path / "eval")) path /= "eval";
    if (fs::is_directory(path)) path /= "report.json";
    if (!fs::exists(path)) throw InputError(path.string(), "no evaluation report; run `uniad eval --run " + run + " --cache ...` first");
    std::ifstream in(path);
    try {
      reports.push_back(nlohmann::json::parse(in));
    } catch (const nlohmann::json::exception&) {
      throw InputError(path.string(), "not a readable report.json");
    }
    names.push_back(run);
    run_dirs.push_back(reports.back().at("provenance").value("run_dir", run));
  }
  const report::Aggregate aggregate = report::aggregate_runs(reports, names);
  const fs::path out = (*vm)["out"].as<std::string>();
  fs::create_directories(out);

  std::string markdown = "# UniAD report\n\nRuns: " + fmt::format("{}", fmt::join(names, ", ")) + "\n\n";
  std::string html;
  for (std::size_t t = 0; t < aggregate.tables.size(); ++t) {
    markdown += "## " + aggregate.table_titles[t] + "\n\n" + aggregate.tables[t].to_markdown() + "\n";
    html += "<h3>" + report::html_escape(aggregate.table_titles[t]) + "</h3>" + report::html_table(aggregate.tables[t]);
  }
  std::vector<std::string> labels;
  for (const auto& dir : run_dirs) {  // "config/seed=N": one line per run
    const fs::path path = fs::path(dir).lexically_normal();
    const fs::path run = path.filename().empty() ? path.parent_path() : path;
    labels.push_back((run.parent_path().filename() / run.filename()).string());
  }
  const bool curves = report::write_training_curves(run_dirs, labels, (out / "pictures").string());
  std::string provenance;
  for (std::size_t i = 0; i < reports.size(); ++i) {
    provenance += "<h3>" + report::html_escape(names[i]) + "</h3><pre>" +
                  report::html_escape(reports[i].at("provenance").dump(2)) + "</pre>";
  }
  report::write_document(
      out, {"report", markdown, std::nullopt, aggregate.json, "UniAD report (" + aggregate.kind + ")",
            {{aggregate.kind == "seeds" ? "Mean +- std over seeds" : "Comparison: " + aggregate.setting, html},
             {"Training curves", report::curves_html(curves, "<p>no metrics logs</p>")},
             {"Runs", provenance}}});
  std::cout << markdown << "report: " << (out / "index.html").string() << "\n";
  return 0;
}

}  // namespace uniad::commands
