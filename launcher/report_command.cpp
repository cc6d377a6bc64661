// `uniad report`: aggregate evaluated runs. Runs that differ only by seed give mean +- std
// per class and metric; runs that differ in one setting (unified vs separate, an ablation
// switch) give a comparison table with differences. Anything else is refused.
#include <iostream>

#include "common/fs.h"
#include "data/dataset.h"
#include "launcher/cli.h"
#include "launcher/commands.h"
#include "report/runs_report.h"

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

  const fs::path out = (*vm)["out"].as<std::string>();
  const std::string markdown = report::write_runs_report(data::split_list((*vm)["runs"].as<std::string>()), out);
  std::cout << markdown << "report: " << (out / "index.html").string() << "\n";
  return 0;
}

}  // namespace uniad::commands
