// `uniad demo`: the main job on the embedded default. Each stage reuses what an earlier run
// already finished, so an interrupted demo picks up where it stopped.
#include <fstream>
#include <iostream>
#include <sstream>

#include <fmt/core.h>
#include <spdlog/spdlog.h>

#include "common/error.h"
#include "common/fs.h"
#include "common/parallel.h"
#include "data/synth.h"
#include "launcher/cli.h"
#include "launcher/commands.h"
#include "launcher/dataset_report.h"

namespace uniad::commands {

namespace po = cli::po;

namespace {

std::string read_text(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

// Generates the synthetic dataset unless the folder already holds the same one.
void ensure_synthetic_dataset(const fs::path& dir, const data::SynthOptions& options, bool force, bool progress) {
  if (fs::exists(dir)) {
    if (!force && read_text(dir / "synth.json") == data::synthetic_manifest(options)) {
      spdlog::info("[1/1] dataset: reusing {} (same generator settings)", dir.string());
      return;
    }
    if (!force && !fs::exists(dir / "synth.json")) {
      throw InputError(dir.string(), "exists but is not a synthetic dataset; choose another --workdir");
    }
    spdlog::info("[1/1] dataset: settings changed, regenerating {}", dir.string());
    fs::remove_all(dir);
  } else {
    spdlog::info("[1/1] dataset: generating {} classes into {}", options.classes, dir.string());
  }
  data::write_synthetic_dataset(dir.string(), options, progress);
}

}  // namespace

int demo(int argc, char** argv) {
  const cli::Command command{
      "demo", "uniad demo [--workdir DIR] [options]",
      "Runs the pipeline on the embedded default: a synthetic multi-class dataset generated on the\n"
      "spot (no downloads). Re-running reuses what is already computed unless --force is given."};
  data::SynthOptions synth;
  po::options_description options("demo options");
  options.add_options()
      ("workdir", po::value<std::string>()->default_value("uniad-demo"), "folder for everything the demo writes")
      ("classes", po::value<int>(&synth.classes)->default_value(synth.classes), "synthetic classes")
      ("seed", po::value<std::uint64_t>(&synth.seed)->default_value(synth.seed), "seed of the dataset")
      ("force", po::value<bool>()->implicit_value(true)->default_value(false), "recompute every stage");
  cli::add_logging_options(options);
  const auto vm = cli::parse_command(command, options, argc, argv);
  if (!vm) return 0;
  cli::configure_logging(*vm);

  const fs::path workdir = (*vm)["workdir"].as<std::string>();
  fs::create_directories(workdir);
  const fs::path data_dir = workdir / "data";
  ensure_synthetic_dataset(data_dir, synth, (*vm)["force"].as<bool>(), cli::show_progress(*vm));
  const auto report = print_dataset_report(data::scan_dataset(data_dir.string()), default_threads(), true, std::cout);
  if (report.problems) throw RuntimeError("the generated dataset has problems (see above); this is a bug");

  std::cout << "\nTo repeat this stage alone:\n"
            << fmt::format("  uniad synth --out DIR --classes {} --seed {}\n", synth.classes, synth.seed)
            << fmt::format("  uniad datasets --root {}\n", data_dir.string());
  return 0;
}

}  // namespace uniad::commands
