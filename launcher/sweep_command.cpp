// `uniad sweep`: options and the choice of mode; the work is in sweep/ (spec, record,
// executors) and report/leaderboard.h (docs/sweeps.md). Three modes, each a small function:
//   run     --spec SPEC --cache CACHE --out DIR [--backend local|slurm]
//   report  --report DIR                      the leaderboard of a sweep, at any time
//   task    --out DIR --task I                one run, for the Slurm job array's script
#include <algorithm>
#include <iostream>
#include <string>
#include <vector>

#include <fmt/core.h>
#include <spdlog/spdlog.h>

#include "common/error.h"
#include "common/parallel.h"
#include "common/subprocess.h"
#include "launcher/cli.h"
#include "launcher/commands.h"
#include "sweep/execute.h"
#include "sweep/record.h"
#include "sweep/slurm.h"
#include "sweep/spec.h"

namespace uniad::commands {

namespace po = cli::po;
namespace fs = std::filesystem;

namespace {

// The options of one mode may not be mixed with another's.
void refuse_mixed_modes(const po::variables_map& vm, const char* mode, const std::vector<const char*>& allowed) {
  for (const char* name : {"spec", "cache", "out", "backend", "jobs", "array-limit", "sbatch", "dry-run", "report", "task"}) {
    if (vm.count(name) == 0 || vm[name].defaulted()) continue;
    if (std::find_if(allowed.begin(), allowed.end(), [&](const char* a) { return std::string(a) == name; }) == allowed.end())
      throw UsageError(fmt::format("--{} does not go with {} (see `uniad sweep --help`)", name, mode));
  }
}

// --report DIR: the runs as the sweep recorded them, not a spec file as it is now.
int report_mode(const po::variables_map& vm) {
  refuse_mixed_modes(vm, "--report", {"report"});
  const fs::path out = vm["report"].as<std::string>();
  const sweep::SweepRecord record = sweep::recorded_sweep(out);
  sweep::write_sweep_leaderboard(out, record.spec, record.runs);
  return 0;
}

// --out DIR --task I: what the Slurm array's task script runs.
int task_mode(const po::variables_map& vm) {
  refuse_mixed_modes(vm, "--task", {"task", "out"});
  if (!vm.count("out")) throw UsageError("--task needs --out (the sweep folder)");
  return sweep::run_slurm_task(fs::absolute(vm["out"].as<std::string>()), vm["task"].as<long long>());
}

void print_dry_run(const sweep::SweepSpec& spec, const std::vector<sweep::SweepRun>& runs) {
  std::cout << fmt::format("{} runs: {} configuration(s) x {} seed(s)\n", runs.size(), runs.size() / spec.seeds.size(),
                           spec.seeds.size());
  for (const auto& run : runs) {
    std::string line = run.name() + ":";
    for (const auto& [n, v] : run.train) line += " --" + n + " " + v;
    std::cout << "  " << line << "\n";
  }
}

// --spec SPEC --cache CACHE --out DIR: check, record, then run here or submit to Slurm.
int run_mode(const po::variables_map& vm) {
  refuse_mixed_modes(vm, "--spec", {"spec", "cache", "out", "backend", "jobs", "array-limit", "sbatch", "dry-run"});
  const std::string backend = vm["backend"].as<std::string>();
  if (backend != "local" && backend != "slurm") throw UsageError("--backend must be local or slurm, not '" + backend + "'");
  std::vector<std::string> sbatch_options;
  if (vm.count("sbatch")) {
    if (backend != "slurm") throw UsageError("--sbatch is for --backend slurm");
    for (const auto& o : vm["sbatch"].as<std::vector<std::string>>()) sbatch_options.push_back(sweep::sbatch_option(o));
  }
  const sweep::SweepSpec spec = sweep::read_sweep_spec(vm["spec"].as<std::string>());
  const std::vector<sweep::SweepRun> runs = spec.expand();
  if (vm["dry-run"].as<bool>()) {
    print_dry_run(spec, runs);
    return 0;
  }
  if (!vm.count("cache") || !vm.count("out")) throw UsageError("--cache and --out are required to run a sweep");
  const std::string cache = fs::absolute(vm["cache"].as<std::string>()).string();
  if (!fs::exists(cache)) throw InputError(cache, "feature cache does not exist; build it with `uniad extract`");
  const fs::path out = fs::absolute(vm["out"].as<std::string>());
  // Slurm tasks read their runs from the folder's record: never rewrite it under queued ones.
  if (program_available("squeue")) sweep::refuse_if_still_queued(out);
  sweep::prepare_sweep_folder(out, spec, runs, cache);

  sweep::Launch launch;
  launch.out = out;
  launch.cache = cache;
  launch.uniad = self_executable();
  launch.spec = &spec;
  const std::size_t configs = runs.size() / spec.seeds.size();
  if (backend == "slurm") {
    const int limit = vm.count("array-limit") ? vm["array-limit"].as<int>() : spec.array_limit;
    if (limit < 0) throw UsageError("--array-limit must be 0 (no limit) or more");
    spdlog::info("sweep: {} runs ({} configurations x {} seeds) to Slurm, {} rank(s) x {} thread(s) per task, into {}",
                 runs.size(), configs, spec.seeds.size(), spec.ranks, std::max(1, spec.threads), out.string());
    return sweep::submit_to_slurm(launch, runs, limit, sbatch_options);
  }
  const int jobs = std::max(1, vm["jobs"].as<int>());
  launch.threads = spec.threads > 0 ? spec.threads : std::max(1, default_threads() / (spec.ranks * jobs));
  launch.rank_launcher = sweep::mpirun_launcher(spec.ranks);
  spdlog::info("sweep: {} runs ({} configurations x {} seeds), {} at a time, {} rank(s) x {} thread(s) each, into {}",
               runs.size(), configs, spec.seeds.size(), jobs, spec.ranks, launch.threads, out.string());
  return sweep::run_locally(launch, runs, jobs);
}

}  // namespace

int sweep(int argc, char** argv) {
  const cli::Command command{
      "sweep",
      "uniad sweep --spec SWEEP.ini --cache CACHE.h5 --out DIR [--jobs N] [--dry-run]          (run here)\n"
      "       uniad sweep --spec SWEEP.ini --cache CACHE.h5 --out DIR --backend slurm [--array-limit N] [--sbatch OPT]...\n"
      "       uniad sweep --report DIR                                                          (leaderboard)\n"
      "       uniad sweep --out DIR --task I                          (one run: the Slurm job array's tasks call this)",
      "Runs a sweep: every configuration of the spec's grid and variants, once per seed, each trained by\n"
      "`uniad train` and evaluated by `uniad eval` as child processes (logs in RUN/train.log, RUN/eval.log).\n"
      "--backend local (default): on this machine, --jobs runs at a time (mpirun when [sweep] ranks > 1).\n"
      "--backend slurm: one job array (a task per run not yet evaluated, at most --array-limit at once; each\n"
      "task trains with srun, requeues itself when stopped, then evaluates) and a report job after it;\n"
      "prints the job ids. DIR/sweep.json records every run with its full options: re-running skips\n"
      "evaluated runs, resumes interrupted ones from their checkpoints and refuses a spec that would reuse\n"
      "a run folder with other options. SIGTERM/SIGINT reach the running trainings (they checkpoint); the\n"
      "local sweep then writes its leaderboard and exits 75.\n"
      "The leaderboard (mean +- std over seeds, ranked by [sweep] rank-by) and the ablation view go to\n"
      "DIR/leaderboard.{md,csv,json} and DIR/index.html; --report DIR writes them at any time from the\n"
      "runs recorded in DIR/sweep.json. Spec format: docs/sweeps.md."};
  po::options_description options("sweep options");
  options.add_options()
      ("spec", po::value<std::string>(), "run: sweep spec (INI: [sweep], [train], [eval], [grid], [variant NAME], [slurm])")
      ("cache", po::value<std::string>(), "run: feature cache every run trains and evaluates on")
      ("out", po::value<std::string>(), "run, task: sweep folder (one run folder per configuration and seed, the record, the leaderboard)")
      ("backend", po::value<std::string>()->default_value("local"), "run: local (this machine) or slurm (a job array)")
      ("jobs", po::value<int>()->default_value(1), "run, local: runs at a time")
      ("array-limit", po::value<int>(), "run, slurm: array tasks at once (the array's %; default [sweep] array-limit, 0 = no limit)")
      ("sbatch", po::value<std::vector<std::string>>()->composing(),
       "run, slurm: one more sbatch option for the array tasks, as NAME=VALUE or --NAME=VALUE (repeatable; after [slurm])")
      ("dry-run", po::value<bool>()->implicit_value(true)->default_value(false), "run: print the runs and exit")
      ("report", po::value<std::string>(), "report: write the leaderboard of the sweep in this folder and exit")
      ("task", po::value<long long>(), "task: run this run of the sweep recorded in --out (the Slurm array's task script calls it)");
  cli::add_logging_options(options);
  const auto vm = cli::parse_command(command, options, argc, argv);
  if (!vm) return 0;
  cli::configure_logging(*vm);
  if (vm->count("report")) return report_mode(*vm);
  if (vm->count("task")) return task_mode(*vm);
  if (!vm->count("spec")) throw UsageError("--spec is required (or --report DIR); see `uniad sweep --help`");
  return run_mode(*vm);
}

}  // namespace uniad::commands
