#pragma once
// Starting child processes (another `uniad` stage, `mpirun`) without a shell.
//
// Arguments go to the child as an argument vector (posix_spawnp), so a path with an
// apostrophe, a space or a `$` is passed through as it is and can never run another
// command. While the child runs, SIGTERM and SIGINT sent to this process are forwarded to
// it (and to its process group: an `mpirun` and its ranks), so stopping the parent leaves
// no orphan ranks; the child decides how to stop (a training checkpoints and exits 75).
#include <string>
#include <vector>

namespace uniad {

struct ProcessResult {
  int exit_code = -1;          // the child's exit status, or 128 + signal if a signal ended it
  int forwarded_signal = 0;    // the last SIGTERM/SIGINT this process received and passed on (0: none)
};

// Runs argv[0] (looked up in PATH when it has no '/') with `argv`, waits for it, and returns
// how it ended. With `output_path`, the child's stdout and stderr are appended to that file
// (created if needed) instead of this process's. A program that cannot be started is a
// RuntimeError naming it. Safe to call from several threads at once.
ProcessResult run_process(const std::vector<std::string>& argv, const std::string& output_path = "");

// Runs `argv` like run_process and returns what it wrote to stdout (stderr stays this
// process's): for asking other programs (sbatch --parsable, squeue) for an answer.
struct CapturedOutput {
  int exit_code = -1;
  std::string output;
};
CapturedOutput capture_output(const std::vector<std::string>& argv);

// While one is alive, SIGTERM and SIGINT never end this process: they are forwarded to the
// running children (if any) and remembered, so a loop that starts one child after another
// (a sweep) can stop between two of them and still finish its own work (a leaderboard).
class StopSignals {
 public:
  StopSignals();
  ~StopSignals();
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;
  // The last SIGTERM/SIGINT received while signals were caught (0: none).
  static int received();
};

// The argument vector as a line a POSIX shell reads back to the same vector (for showing
// the commands a stage ran): words quoted only where needed, ' written as '\''.
std::string shell_command_line(const std::vector<std::string>& argv);

// The path of this process's executable (/proc/self/exe), or "uniad" if it cannot be read:
// stages start the same build that started them.
std::string self_executable();

// Whether `program` is found in PATH (or, with a '/', is executable).
bool program_available(const std::string& program);

}  // namespace uniad
