#include "sweep/slurm.h"

#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <fstream>
#include <iostream>

#include <fmt/core.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "common/error.h"
#include "common/fs.h"
#include "common/progress.h"
#include "common/subprocess.h"
#include "sweep/execute.h"
#include "sweep/record.h"

namespace uniad::sweep {

namespace {

// sbatch options that only say where a job may run; the report job gets these and nothing
// else from the user (it needs no GPUs and little time).
const char* const kPlacementOptions[] = {"partition", "account", "qos", "reservation", "clusters"};

std::string option_name(const std::string& option) {  // "--time=1:00" -> "time"
  const std::string body = option.substr(2);
  return body.substr(0, body.find('='));
}

// The task script: run one run of the sweep, requeue on 75 (checkpointed after a stop signal).
std::string task_script(const SlurmSubmission& s) {
  const int threads = std::max(1, s.spec->threads);
  return fmt::format(
      R"SH(#!/bin/bash
# One run of the sweep in {out} per array task, written by `uniad sweep --backend slurm`
# (its options and array are on the sbatch command line: see jobs.jsonl beside this file).
#SBATCH --job-name=uniad-sweep
#SBATCH --ntasks={ranks}
#SBATCH --cpus-per-task={threads}
#SBATCH --requeue
#SBATCH --signal=USR1@300
#
# Slurm sends SIGUSR1 5 minutes before the time limit and SIGTERM on preemption: the
# training checkpoints and exits 75, and the task requeues itself and resumes later.
set -u
echo "uniad-sweep: array task ${{SLURM_ARRAY_TASK_ID}} (job ${{SLURM_JOB_ID}}, restart ${{SLURM_RESTART_COUNT:-0}}) on $(hostname)"
{command} --task "$SLURM_ARRAY_TASK_ID"
rc=$?
if [ "$rc" -eq 75 ]; then
  echo "uniad-sweep: checkpointed after a stop signal; requeueing job $SLURM_JOB_ID"
  scontrol requeue "$SLURM_JOB_ID"
  exit 0
fi
exit "$rc"
)SH",
      fmt::arg("out", s.out.string()), fmt::arg("ranks", s.spec->ranks), fmt::arg("threads", threads),
      fmt::arg("command", shell_command_line({s.uniad, "sweep", "--out", s.out.string()})));
}

std::string report_script(const SlurmSubmission& s) {
  return fmt::format(R"SH(#!/bin/bash
# The leaderboard of the sweep in {out} once every array task has ended (afterany: failed
# runs are listed in it, never averaged over). Written by `uniad sweep --backend slurm`.
#SBATCH --job-name=uniad-sweep-report
#SBATCH --ntasks=1
exec {command}
)SH",
                     fmt::arg("out", s.out.string()),
                     fmt::arg("command", shell_command_line({s.uniad, "sweep", "--report", s.out.string()})));
}

void write_script(const fs::path& path, const std::string& text) {
  atomic_write_bytes(path, text);
  chmod(path.c_str(), 0755);
}

// The comma list of array indices ("0,2,5-7" is also valid Slurm, a plain list is enough).
std::string array_spec(const std::vector<std::size_t>& tasks, int limit) {
  std::string spec;
  for (const std::size_t t : tasks) spec += (spec.empty() ? "" : ",") + std::to_string(t);
  return limit > 0 ? spec + "%" + std::to_string(limit) : spec;
}

std::string submit(const std::vector<std::string>& argv) {
  const CapturedOutput r = capture_output(argv);
  std::string id = r.output.substr(0, r.output.find_first_of(";\n"));
  if (r.exit_code != 0 || id.empty() || id.find_first_not_of("0123456789") != std::string::npos) {
    throw RuntimeError(fmt::format("sbatch failed (exit code {}): {}\n  command: {}", r.exit_code, r.output,
                                   shell_command_line(argv)));
  }
  return id;
}

}  // namespace

std::string sbatch_option(const std::string& text) {
  const std::string option = text.rfind("--", 0) == 0 ? text : "--" + text;
  check_sbatch_option("--sbatch " + text, option_name(option));
  return option;
}

void refuse_if_still_queued(const fs::path& out) {
  std::ifstream in(out / "slurm" / "jobs.jsonl");
  std::vector<std::string> active;
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    const auto entry = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!entry.is_object()) continue;
    for (const char* key : {"array_job", "report_job"}) {
      const std::string id = entry.value(key, "");
      if (id.empty()) continue;
      // squeue lists a job (or any task of an array) while it is pending or running; a
      // finished or forgotten job prints nothing.
      const CapturedOutput q = capture_output({"squeue", "--noheader", "--format=%i %T", "--jobs=" + id});
      if (q.exit_code == 0 && q.output.find_first_not_of(" \n") != std::string::npos) active.push_back(id);
    }
  }
  if (!active.empty()) {
    std::string ids;
    for (const auto& id : active) ids += (ids.empty() ? "" : ", ") + id;
    throw UsageError(fmt::format("{}: the sweep's jobs {} are still queued or running; wait for them (squeue) or "
                                 "cancel them (scancel) before submitting it again",
                                 out.string(), ids));
  }
}

SubmittedJobs submit_slurm_sweep(const SlurmSubmission& s) {
  if (!program_available("sbatch")) throw RuntimeError("--backend slurm: sbatch is not on PATH (is this a Slurm login node?)");
  const fs::path dir = s.out / "slurm";
  fs::create_directories(dir);
  write_script(dir / "task.sbatch", task_script(s));
  write_script(dir / "report.sbatch", report_script(s));

  std::vector<std::string> user;  // the spec's [slurm] options, then the command line's
  for (const auto& [name, value] : s.spec->slurm) user.push_back(value.empty() ? "--" + name : "--" + name + "=" + value);
  user.insert(user.end(), s.sbatch_options.begin(), s.sbatch_options.end());

  std::vector<std::string> array = {"sbatch", "--parsable", "--array=" + array_spec(s.tasks, s.array_limit),
                                    "--chdir=" + s.out.string(), "--open-mode=append",
                                    "--output=" + (dir / "task-%A_%a.out").string()};
  array.insert(array.end(), user.begin(), user.end());
  array.push_back((dir / "task.sbatch").string());
  SubmittedJobs jobs;
  jobs.array_job = submit(array);

  std::vector<std::string> report = {"sbatch", "--parsable", "--dependency=afterany:" + jobs.array_job,
                                     "--kill-on-invalid-dep=yes", "--chdir=" + s.out.string(),
                                     "--output=" + (dir / "report-%j.out").string()};
  for (const auto& option : user) {
    for (const char* placement : kPlacementOptions)
      if (option_name(option) == placement) report.push_back(option);
  }
  report.push_back((dir / "report.sbatch").string());
  jobs.report_job = submit(report);

  // One line per submission, appended (never rewritten): what ran where, for the next check.
  nlohmann::ordered_json entry = {{"submitted", utc_timestamp()},     {"array_job", jobs.array_job},
                                  {"report_job", jobs.report_job}, {"tasks", s.tasks},
                                  {"array_command", array},        {"report_command", report}};
  std::ofstream log(dir / "jobs.jsonl", std::ios::app);
  log << entry.dump() << "\n";
  if (!log.flush()) throw OutputError((dir / "jobs.jsonl").string(), "could not record the submitted jobs");
  return jobs;
}

// Submits the runs not yet evaluated as one job array plus the report job.
int submit_to_slurm(const Launch& launch, const std::vector<SweepRun>& runs, int array_limit,
                    const std::vector<std::string>& sbatch_options) {
  SlurmSubmission submission;
  submission.out = launch.out;
  submission.uniad = launch.uniad;
  submission.spec = launch.spec;
  submission.array_limit = array_limit;
  submission.sbatch_options = sbatch_options;
  for (std::size_t i = 0; i < runs.size(); ++i)
    if (!fs::exists(run_report(launch.out, runs[i]))) submission.tasks.push_back(i);
  if (submission.tasks.empty()) {
    spdlog::info("sweep: all {} runs are evaluated; nothing to submit", runs.size());
    write_sweep_leaderboard(launch.out, *launch.spec, runs);
    return 0;
  }
  const SubmittedJobs jobs = submit_slurm_sweep(submission);
  std::cout << fmt::format("array job {} ({} of {} runs{}), report job {} (after the array)\n", jobs.array_job,
                           submission.tasks.size(), runs.size(),
                           array_limit > 0 ? fmt::format(", at most {} at a time", array_limit) : "", jobs.report_job);
  std::cout << fmt::format("follow with: squeue -j {},{}; task logs in {}; the leaderboard will be {}\n", jobs.array_job,
                           jobs.report_job, (launch.out / "slurm").string(), (launch.out / "leaderboard.md").string());
  return 0;
}

// One array task of a Slurm sweep: run `index` of the sweep recorded in `out` (its sweep.json,
// never a re-expansion of sweep.ini, which a person may have edited since).
int run_slurm_task(const fs::path& out, long long index) {
  if (!std::getenv("SLURM_JOB_ID")) {
    throw UsageError("--task is for the job script of `uniad sweep --backend slurm` (no SLURM_JOB_ID here)");
  }
  const SweepRecord record = recorded_sweep(out);
  const SweepSpec& spec = record.spec;
  if (index < 0 || index >= static_cast<long long>(record.runs.size())) {
    throw UsageError(fmt::format("--task {}: the sweep in {} has runs 0 to {}", index, out.string(), record.runs.size() - 1));
  }
  const SweepRun& run = record.runs[static_cast<std::size_t>(index)];
  Launch launch;
  launch.out = out;
  launch.cache = record.cache;
  launch.uniad = self_executable();
  launch.spec = &spec;
  const char* cpus = std::getenv("SLURM_CPUS_PER_TASK");
  launch.threads = cpus ? std::max(1, std::atoi(cpus)) : std::max(1, spec.threads);
  launch.rank_launcher = srun_launcher(spec.ranks, launch.threads, gpu_per_task(spec));
  launch.gpus = gpu_per_task(spec);
  spdlog::info("sweep task {}: {} ({} rank(s) x {} thread(s))", index, run.name(), spec.ranks, launch.threads);
  StopSignals stop_signals;
  switch (execute(launch, run)) {
    case RunState::kSkipped: spdlog::info("{}: already evaluated", run.name()); return 0;
    case RunState::kDone: spdlog::info("{}: trained and evaluated", run.name()); return 0;
    case RunState::kStopped: return static_cast<int>(ExitCode::kPreempted);
    case RunState::kFailed: break;
  }
  return static_cast<int>(ExitCode::kRuntime);
}

}  // namespace uniad::sweep
