// uniad: the one entry point of uniad-cpp. `uniad <command> --help` describes each command.
#include <cstring>
#include <iostream>
#include <map>
#include <string>

#include <spdlog/spdlog.h>

#include "common/allocator.h"
#include "common/blas.h"
#include "common/error.h"
#include "common/version.h"
#include "launcher/commands.h"

namespace {

struct Entry {
  int (*run)(int, char**);
  const char* summary;
};

const std::map<std::string, Entry>& command_table() {
  static const std::map<std::string, Entry> table = {
      {"synth", {uniad::commands::synth, "write the synthetic multi-class dataset (MVTec layout)"}},
      {"datasets", {uniad::commands::datasets, "scan a dataset, check every file, and summarise it per class"}},
      {"demo", {uniad::commands::demo, "run the pipeline end to end on the embedded synthetic default"}},
      {"extract", {uniad::commands::extract, "run the frozen backbone over a dataset into an HDF5 feature cache"}},
      {"train", {uniad::commands::train, "train the reconstruction model from a feature cache (MPI data-parallel)"}},
      {"eval", {uniad::commands::evaluate, "evaluate a run on a cache's test split and write the report"}},
      {"report", {uniad::commands::report, "aggregate evaluated runs: mean +- std over seeds, or a one-setting comparison"}},
      {"sweep", {uniad::commands::sweep, "a grid of configurations x seeds (and ablation variants), resumable, with a leaderboard"}},
      {"export", {uniad::commands::export_model, "write one portable model file (backbone, model, thresholds) for predict"}},
      {"predict", {uniad::commands::predict, "run a model file on images: scores, decisions, maps"}},
      {"import", {uniad::commands::import_weights, "turn reference UniAD weights (HDF5) into a uniad checkpoint"}},
  };
  return table;
}

void print_usage(std::ostream& out) {
  out << "uniad " << uniad::project_version() << " (" << uniad::source_revision() << ")\n"
      << "Unified multi-class anomaly detection (UniAD) in C++.\n\n"
      << "usage: uniad <command> [options]     uniad <command> --help\n\ncommands:\n";
  for (const auto& [name, entry] : command_table()) out << "  " << name << std::string(10 - name.size(), ' ') << entry.summary << "\n";
  out << "\nexit codes: 0 success, 1 runtime failure, 64 usage error, 65 bad input data,\n"
         "            74 an output could not be written (disk full?), 75 stopped by a signal after\n"
         "            checkpointing (requeue and resume)\n";
}

}  // namespace

int main(int argc, char** argv) {
  uniad::use_fast_blas_kernels(argv);
  uniad::keep_freed_memory();
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h")) {
    print_usage(argc < 2 ? std::cerr : std::cout);
    return argc < 2 ? static_cast<int>(uniad::ExitCode::kUsage) : 0;
  }
  if (!std::strcmp(argv[1], "--version")) {
    std::cout << "uniad " << uniad::project_version() << " (" << uniad::source_revision() << ")\n";
    return 0;
  }
  const auto it = command_table().find(argv[1]);
  if (it == command_table().end()) {
    std::cerr << "uniad: unknown command '" << argv[1] << "'\n\n";
    print_usage(std::cerr);
    return static_cast<int>(uniad::ExitCode::kUsage);
  }
  try {
    return it->second.run(argc - 1, argv + 1);
  } catch (const uniad::Error& e) {
    std::cerr << "uniad " << argv[1] << ": error: " << e.what() << "\n";
    return static_cast<int>(e.code());
  } catch (const std::exception& e) {
    std::cerr << "uniad " << argv[1] << ": internal error: " << e.what() << "\n";
    return static_cast<int>(uniad::ExitCode::kRuntime);
  }
}
