#pragma once
// The Slurm backend of `uniad sweep`: one job array (one task per run not yet evaluated,
// `%` concurrency limit) and a report job that runs after it (docs/sweeps.md).
//
// Each array task runs `uniad sweep --out DIR --task I`, which trains run I with `srun` on
// the task's ranks and evaluates it. On SIGUSR1 (time limit) or SIGTERM (preemption) the
// training checkpoints and exits 75; the task script then requeues itself, as
// slurm/train.sbatch does, and the restarted task resumes from the checkpoint. The report
// job depends on the array with `afterany`, so failed runs are listed in the leaderboard
// rather than cancelling it.
#include <filesystem>
#include <string>
#include <vector>

#include "sweep/execute.h"
#include "sweep/spec.h"

namespace uniad::sweep {

struct SlurmSubmission {
  std::filesystem::path out;                // the sweep folder (absolute; holds sweep.ini)
  std::string uniad;                        // the executable the jobs run (absolute)
  const SweepSpec* spec = nullptr;
  std::vector<std::size_t> tasks;           // indices into spec->expand() to run
  int array_limit = 0;                      // tasks at once (0: no limit)
  std::vector<std::string> sbatch_options;  // "--name=value", after the spec's [slurm] ones
};

struct SubmittedJobs {
  std::string array_job, report_job;
};

// Refuses (UsageError) a folder whose earlier submission still has jobs queued or running,
// so a sweep is never run twice at once.
void refuse_if_still_queued(const std::filesystem::path& out);

// Writes OUT/slurm/task.sbatch and report.sbatch, submits the array and the report job,
// and records them in OUT/slurm/jobs.jsonl. A failed sbatch is a RuntimeError with its output.
SubmittedJobs submit_slurm_sweep(const SlurmSubmission& submission);

// Submits the runs not yet evaluated as one job array plus the report job and prints their
// ids (when every run is evaluated: writes the leaderboard instead). Returns the exit code.
int submit_to_slurm(const Launch& launch, const std::vector<SweepRun>& runs, int array_limit,
                    const std::vector<std::string>& sbatch_options);

// One array task (`uniad sweep --out DIR --task I`): run I of the sweep recorded in DIR, its
// training under srun. Returns the exit code (75: stopped after checkpointing; the task
// script requeues it).
int run_slurm_task(const std::filesystem::path& out, long long index);

// "--name=value" for a command-line --sbatch value given as "--name=value", "name=value" or
// "--flag"; the name is checked like a spec's [slurm] key.
std::string sbatch_option(const std::string& text);

}  // namespace uniad::sweep
