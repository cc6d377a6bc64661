#pragma once
// Running a sweep's runs (docs/sweeps.md): each run is its own `uniad train` (under mpirun on
// this machine, srun in a Slurm job) and `uniad eval` process, started with an argument vector
// (no shell), its output in RUN/train.log and RUN/eval.log. The local executor runs them
// `jobs` at a time; the Slurm executor (slurm.h) runs one per array task.
#include <cstddef>
#include <filesystem>
#include <string>
#include <vector>

#include "sweep/spec.h"

namespace uniad::sweep {

namespace fs = std::filesystem;

// How one run ended: trained and evaluated; already evaluated; failed (recorded in
// RUN/sweep-failed.json); stopped by a signal after checkpointing (the next sweep resumes it).
enum class RunState { kDone, kSkipped, kFailed, kStopped };

// How the runs of a sweep are started.
struct Launch {
  fs::path out;
  std::string cache, uniad;
  const SweepSpec* spec = nullptr;
  int threads = 1;
  std::vector<std::string> rank_launcher;  // what starts the training's ranks (mpirun, srun), or nothing
  bool gpus = false;  // the job holds a GPU per rank: train on it (--device cuda, unless the run says otherwise)
};

// What starts a run's ranks on this machine (mpirun when more than one), and in a Slurm job
// (srun, always, so the training is a job step and gets Slurm's signals; with a GPU per task,
// each rank bound to its own).
std::vector<std::string> mpirun_launcher(int ranks);
std::vector<std::string> srun_launcher(int ranks, int threads, bool gpus);
// Does the spec ask Slurm for a GPU per task ([slurm] gpus-per-task = 1)?
bool gpu_per_task(const SweepSpec& spec);

// Trains (or resumes) and evaluates one run.
RunState execute(const Launch& launch, const SweepRun& run);

// The wall time a sweep still needs: the runs left to train at the pace of the `trained` runs so
// far (wall time over them, so runs in parallel count as such). Runs skipped as already evaluated
// take no time and count on neither side, or a resumed sweep would divide its time by the skips.
double sweep_eta_seconds(double elapsed_seconds, std::size_t trained, std::size_t left_to_train);

// Runs every run on this machine, `jobs` at a time, then writes the leaderboard; returns the
// sweep's exit code (75 when stopped by a signal: run it again to resume; 1 when a run failed).
int run_locally(const Launch& launch, const std::vector<SweepRun>& runs, int jobs);

// The leaderboard of `runs` in `out` (report/leaderboard.h).
void write_sweep_leaderboard(const fs::path& out, const SweepSpec& spec, const std::vector<SweepRun>& runs);

}  // namespace uniad::sweep
