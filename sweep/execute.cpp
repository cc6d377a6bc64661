#include "sweep/execute.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <thread>

#include <fmt/core.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "common/error.h"
#include "common/fs.h"
#include "common/progress.h"
#include "common/subprocess.h"
#include "report/leaderboard.h"
#include "sweep/record.h"
#include "sweep/sweep_events.h"

namespace uniad::sweep {

namespace {

std::vector<std::string> train_command(const Launch& l, const SweepRun& run) {
  std::vector<std::string> argv = l.rank_launcher;
  argv.insert(argv.end(), {l.uniad, "train", "--cache", l.cache, "--run-dir", run_dir(l.out, run).string(), "--seed",
                           std::to_string(run.seed), "--threads", std::to_string(l.threads)});
  bool device_set = false;
  for (const auto& [n, v] : run.train) argv.push_back("--" + n + "=" + v), device_set |= n == "device";
  // A GPU was asked for: a job that cannot see it should fail, not train on the CPU for days.
  if (l.gpus && !device_set) argv.push_back("--device=cuda");
  return argv;
}

std::vector<std::string> eval_command(const Launch& l, const SweepRun& run) {
  std::vector<std::string> argv = {l.uniad, "eval", "--run", run_dir(l.out, run).string(), "--cache", l.cache,
                                   "--threads", std::to_string(l.threads)};
  for (const auto& [n, v] : run.eval) argv.push_back("--" + n + "=" + v);
  return argv;
}

std::string last_lines(const fs::path& path, int count) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  std::string out;
  for (std::size_t i = lines.size() > std::size_t(count) ? lines.size() - count : 0; i < lines.size(); ++i)
    out += "    " + lines[i] + "\n";
  return out;
}

}  // namespace

std::vector<std::string> mpirun_launcher(int ranks) {
  if (ranks <= 1) return {};
  std::vector<std::string> argv = {"mpirun"};
  if (geteuid() == 0) argv.insert(argv.end(), {"--allow-run-as-root", "--oversubscribe"});
  argv.insert(argv.end(), {"-np", std::to_string(ranks)});
  return argv;
}

bool gpu_per_task(const SweepSpec& spec) {
  for (const auto& [name, value] : spec.slurm)
    if (name == "gpus-per-task") return true;
  return false;
}

// Slurm sets each rank's CUDA_VISIBLE_DEVICES to its own GPU.
std::vector<std::string> srun_launcher(int ranks, int threads, bool gpus) {
  const char* mpi = std::getenv("UNIAD_MPI");
  std::vector<std::string> argv = {"srun", std::string("--mpi=") + (mpi && *mpi ? mpi : "pmix"), "--kill-on-bad-exit=1",
                                   "--ntasks=" + std::to_string(ranks), "--cpus-per-task=" + std::to_string(threads)};
  if (gpus) argv.insert(argv.end(), {"--gpus-per-task=1", "--gpu-bind=single:1"});
  return argv;
}

namespace {

// A run with an evaluation report is done: the sweep skips it (and its ETA does not count it).
bool already_evaluated(const fs::path& out, const SweepRun& run) { return fs::exists(run_report(out, run)); }

}  // namespace

RunState execute(const Launch& l, const SweepRun& run) {
  const fs::path dir = run_dir(l.out, run);
  if (already_evaluated(l.out, run)) return RunState::kSkipped;
  fs::create_directories(dir);
  fs::remove(dir / "sweep-failed.json");
  RunSession session(dir, run, *l.spec);  // the run in TensorBoard's HParams dashboard
  auto fail = [&](const char* stage, int code, const fs::path& log) {
    session.end(false);
    atomic_write_bytes(dir / "sweep-failed.json",
                       nlohmann::ordered_json({{"stage", stage}, {"exit_code", code}, {"log", log.string()}}).dump(2) + "\n");
    spdlog::error("{}: {} failed with exit code {}; last lines of {}:\n{}", run.name(), stage, code, log.string(),
                  last_lines(log, 8));
    return RunState::kFailed;
  };
  const auto trained = run_process(train_command(l, run), (dir / "train.log").string());
  if (trained.exit_code == static_cast<int>(ExitCode::kPreempted) || trained.forwarded_signal != 0) {
    return RunState::kStopped;  // checkpointed; the next `uniad sweep` resumes it
  }
  if (trained.exit_code != 0) return fail("train", trained.exit_code, dir / "train.log");
  const auto evaluated = run_process(eval_command(l, run), (dir / "eval.log").string());
  if (evaluated.forwarded_signal != 0) return RunState::kStopped;
  if (evaluated.exit_code != 0) return fail("eval", evaluated.exit_code, dir / "eval.log");
  session.end(true);
  return RunState::kDone;
}

void write_sweep_leaderboard(const fs::path& out, const SweepSpec& spec, const std::vector<SweepRun>& runs) {
  report::LeaderboardInput input{spec.rank_by, spec.to_json(), spec.path, {}};
  for (const auto& run : runs) {
    report::LeaderboardRun r{run.config, run.variant, {}, run_dir(out, run)};
    for (const auto& [name, values] : spec.grid)
      for (const auto& [n, v] : run.train)
        if (n == name) r.grid_point.emplace_back(n, v);
    input.runs.push_back(std::move(r));
  }
  const std::string markdown = report::write_leaderboard(out, input);
  const std::string name = spec.path.empty() ? out.filename().string() : fs::path(spec.path).stem().string();
  write_sweep_events(out, name, runs, markdown);
}

double sweep_eta_seconds(double elapsed_seconds, std::size_t trained, std::size_t left_to_train) {
  if (trained == 0) return 0.0;
  return elapsed_seconds / static_cast<double>(trained) * static_cast<double>(left_to_train);
}

int run_locally(const Launch& launch, const std::vector<SweepRun>& runs, int jobs) {
  // Caught for the whole sweep: a stop between two runs still ends with a leaderboard.
  StopSignals stop_signals;
  std::size_t to_train = 0;  // the runs without an evaluation now: what this process will work on
  for (const SweepRun& run : runs) to_train += !already_evaluated(launch.out, run);
  std::atomic<std::size_t> next{0}, finished{0}, trained{0};
  std::atomic<bool> stop{false};
  std::atomic<int> done{0}, skipped{0}, failed{0};
  std::mutex log_mutex;
  const auto start = std::chrono::steady_clock::now();
  auto worker = [&] {
    for (std::size_t i; !stop && !StopSignals::received() && (i = next++) < runs.size();) {
      const SweepRun& run = runs[i];
      const auto run_start = std::chrono::steady_clock::now();
      RunState state;
      try {
        state = execute(launch, run);
      } catch (const std::exception& e) {
        std::lock_guard<std::mutex> lock(log_mutex);
        spdlog::error("{}: {}", run.name(), e.what());
        state = RunState::kFailed;
      }
      const std::size_t n = ++finished;
      const std::size_t worked = state == RunState::kSkipped ? trained.load() : ++trained;
      const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - run_start).count();
      const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      std::lock_guard<std::mutex> lock(log_mutex);
      switch (state) {
        case RunState::kSkipped: ++skipped; spdlog::info("[{}/{}] {}: already evaluated, skipped", n, runs.size(), run.name()); break;
        case RunState::kFailed: ++failed; spdlog::warn("[{}/{}] {}: FAILED (the sweep goes on)", n, runs.size(), run.name()); break;
        case RunState::kStopped: stop = true; spdlog::warn("[{}/{}] {}: stopped; checkpointed for resumption", n, runs.size(), run.name()); break;
        case RunState::kDone:
          ++done;
          spdlog::info("[{}/{}] {}: trained and evaluated in {} (sweep ETA {})", n, runs.size(), run.name(),
                       format_duration(seconds),
                       format_duration(sweep_eta_seconds(elapsed, worked, to_train - std::min(worked, to_train))));
          break;
      }
    }
  };
  std::vector<std::thread> workers;
  for (int j = 0; j < jobs; ++j) workers.emplace_back(worker);
  for (auto& w : workers) w.join();
  if (StopSignals::received()) stop = true;
  spdlog::info("sweep: {} trained and evaluated, {} skipped (already evaluated), {} failed{}", done.load(),
               skipped.load(), failed.load(), stop ? ", stopped early" : "");
  write_sweep_leaderboard(launch.out, *launch.spec, runs);
  if (stop) {
    spdlog::warn("the sweep was stopped; run the same command again to resume it");
    return static_cast<int>(ExitCode::kPreempted);
  }
  return failed > 0 ? static_cast<int>(ExitCode::kRuntime) : 0;
}

}  // namespace uniad::sweep
