// `uniad demo`: the main job on the embedded default. Each stage reuses what an earlier run
// already finished, so an interrupted demo picks up where it stopped.
#include <fstream>
#include <iostream>
#include <sstream>
#include <unistd.h>

#include <fmt/core.h>
#include <spdlog/spdlog.h>

#include "common/error.h"
#include "common/fs.h"
#include "common/parallel.h"
#include "common/subprocess.h"
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
      spdlog::info("dataset: reusing {} (same generator settings)", dir.string());
      return;
    }
    if (!fs::exists(dir / "synth.json")) {  // never delete a folder the demo did not write
      throw InputError(dir.string(), "exists but is not a synthetic dataset; choose another --workdir");
    }
    spdlog::info("dataset: {}, regenerating {}", force ? "--force" : "settings changed", dir.string());
    fs::remove_all(dir);
  } else {
    spdlog::info("dataset: generating {} classes into {}", options.classes, dir.string());
  }
  data::write_synthetic_dataset(dir.string(), options, progress);
}

// Runs one stage as its own `uniad` process (mpirun for the training), without a shell,
// echoing the command as a shell would read it back. A SIGTERM/SIGINT to the demo reaches
// the stage (a training checkpoints); the demo then stops too, ready to be re-run. A stage
// that fails ends the demo (the stage printed why).
void run_stage(const std::string& label, const std::vector<std::string>& argv, std::vector<std::string>& ran) {
  std::cout << std::flush;  // keep this process's output before the stage's
  const std::string line = shell_command_line(argv);
  spdlog::info("{}: {}", label, line);
  ran.push_back(line);
  const ProcessResult result = run_process(argv);
  if (result.exit_code == 0) return;
  if (result.forwarded_signal != 0 || result.exit_code == static_cast<int>(ExitCode::kPreempted)) {
    throw Error(ExitCode::kPreempted, fmt::format("{} was stopped by a signal; run the demo again to continue", label));
  }
  throw RuntimeError(fmt::format("{} failed with exit code {} (see above)", label, result.exit_code));
}

// The `uniad synth` command that writes the same dataset (echoed for the user; the demo
// generates it in process).
std::vector<std::string> synth_command(const std::string& uniad, const fs::path& dir, const data::SynthOptions& synth) {
  return {uniad, "synth", "--out", dir.string(), "--classes", std::to_string(synth.classes), "--seed",
          std::to_string(synth.seed), "--train-good", std::to_string(synth.train_good), "--test-good",
          std::to_string(synth.test_good), "--test-anomalous", std::to_string(synth.test_anomalous)};
}

// The training stage: mpirun over `ranks` processes (one process if mpirun is missing) with
// a compact transformer and a higher learning rate than the reference (which trains 1000
// epochs at 1e-4), so the demo learns in minutes on two cores.
std::vector<std::string> training_command(const std::string& uniad, int ranks, const fs::path& cache, const fs::path& run,
                                          int epochs, std::uint64_t seed) {
  std::vector<std::string> train;
  if (ranks > 1 && program_available("mpirun")) {
    train = {"mpirun"};
    if (geteuid() == 0) train.insert(train.end(), {"--allow-run-as-root", "--oversubscribe"});
    train.insert(train.end(), {"-np", std::to_string(ranks)});
  } else if (ranks > 1) {
    spdlog::warn("mpirun not found; training on one process");
  }
  train.insert(train.end(), {uniad, "train", "--cache", cache.string(), "--run-dir", run.string(), "--epochs",
                             std::to_string(epochs), "--seed", std::to_string(seed), "--batch-size", "8", "--lr",
                             "5e-4", "--lr-step-epoch", std::to_string(std::max(1, epochs * 4 / 5)), "--hidden", "128",
                             "--heads", "4", "--feedforward", "512", "--encoder-layers", "2", "--decoder-layers", "2",
                             "--eval-every", std::to_string(std::max(1, epochs / 6)), "--checkpoint-every", "5"});
  return train;
}

}  // namespace

int demo(int argc, char** argv) {
  const cli::Command command{
      "demo", "uniad demo [--workdir DIR] [--backbone FILE] [options]",
      "Runs the whole pipeline on the embedded default: a synthetic multi-class dataset generated on\n"
      "the spot -> feature cache (built-in random-feature backbone, or --backbone FILE) -> unified\n"
      "training on 2 MPI ranks -> evaluation -> report (Markdown here, HTML with pictures on disk).\n"
      "Re-running reuses what is finished (dataset, cache, training) and resumes an interrupted run;\n"
      "--force recomputes everything. It ends with the exact command of every stage."};
  data::SynthOptions synth;
  int epochs = 40, ranks = 2;
  po::options_description options("demo options");
  options.add_options()
      ("workdir", po::value<std::string>()->default_value("uniad-demo"), "folder for everything the demo writes")
      ("classes", po::value<int>(&synth.classes)->default_value(synth.classes), "synthetic classes")
      ("train-good", po::value<int>(&synth.train_good)->default_value(synth.train_good), "normal training images per class")
      ("test-good", po::value<int>(&synth.test_good)->default_value(synth.test_good), "normal test images per class")
      ("test-anomalous", po::value<int>(&synth.test_anomalous)->default_value(synth.test_anomalous), "anomalous test images per class")
      ("seed", po::value<std::uint64_t>(&synth.seed)->default_value(synth.seed), "seed of the dataset and the training")
      ("backbone", po::value<std::string>()->default_value(""), "TorchScript backbone (default: built-in random features)")
      ("epochs", po::value<int>(&epochs)->default_value(epochs), "training epochs")
      ("ranks", po::value<int>(&ranks)->default_value(ranks), "MPI ranks for training")
      ("force", po::value<bool>()->implicit_value(true)->default_value(false), "recompute every stage");
  cli::add_logging_options(options);
  const auto vm = cli::parse_command(command, options, argc, argv);
  if (!vm) return 0;
  cli::configure_logging(*vm);
  const bool force = (*vm)["force"].as<bool>();
  const std::string backbone = (*vm)["backbone"].as<std::string>();

  const fs::path workdir = fs::absolute((*vm)["workdir"].as<std::string>());
  fs::create_directories(workdir);
  const fs::path data_dir = workdir / "data", cache = workdir / "features.h5", run = workdir / "run";
  const std::string uniad = self_executable();
  std::vector<std::string> ran;

  spdlog::info("[1/4] dataset");
  ensure_synthetic_dataset(data_dir, synth, force, cli::show_progress(*vm));
  ran.push_back(shell_command_line(synth_command(uniad, data_dir, synth)));
  print_dataset_report(data::scan_dataset(data_dir.string()), default_threads(), false, std::cout);

  spdlog::info("[2/4] features");
  std::vector<std::string> extract = {uniad, "extract", "--data", data_dir.string(), "--out", cache.string()};
  if (!backbone.empty()) extract.insert(extract.end(), {"--backbone", fs::absolute(backbone).string()});
  if (force) extract.push_back("--force");
  run_stage("extract", extract, ran);

  spdlog::info("[3/4] training (unified: one model for all classes)");
  if (force) fs::remove_all(run);
  const std::vector<std::string> train = training_command(uniad, ranks, cache, run, epochs, synth.seed);
  run_stage("train", train, ran);

  spdlog::info("[4/4] evaluation and report");
  run_stage("eval", {uniad, "eval", "--run", run.string(), "--cache", cache.string()}, ran);
  std::cout << "\nThe report with pictures: " << (run / "eval" / "index.html").string()
            << "\n(also report.md, report.csv, report.json, scores.csv in " << (run / "eval").string() << ")\n"
            << "Training curves, metrics and panels in TensorBoard: " << shell_command_line({"tensorboard", "--logdir", workdir.string()})
            << "\n"
            << "\nEach stage alone (change any option and re-run it):\n";
  for (const auto& c : ran) std::cout << "  " << c << "\n";
  return 0;
}

}  // namespace uniad::commands
