// Child processes without a shell: arguments pass through untouched, exit codes and signals
// come back, SIGTERM/SIGINT reach the child's whole process group, commands print quoted.
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include "common/error.h"
#include "common/subprocess.h"
#include "tests/test_support.h"

namespace uniad {
namespace {

namespace fs = std::filesystem;

// Arguments a shell would have split, expanded or executed (one would create dir/pwned).
std::vector<std::string> nasty_arguments(const fs::path& dir) {
  return {"it's", "$(touch '" + (dir / "pwned").string() + "')", "a b", "$HOME", "`id`", "semi;colon", ""};
}

TEST(Subprocess, ArgumentsArriveExactlyAsGiven) {
  test::TempDir dir;
  const fs::path out = dir / "args.txt";
  std::vector<std::string> argv = {"/bin/sh", "-c", "cd \"$(dirname \"$0\")\" && printf '%s\\n' \"$@\" > \"$0\"",
                                   out.string()};
  const auto nasty = nasty_arguments(dir.path());
  argv.insert(argv.end(), nasty.begin(), nasty.end());
  ASSERT_EQ(run_process(argv).exit_code, 0);
  std::string expected;
  for (const auto& a : nasty) expected += a + "\n";
  EXPECT_EQ(test::read_bytes(out), expected);
  EXPECT_FALSE(fs::exists(dir / "pwned")) << "an argument was executed";
}

TEST(Subprocess, ExitCodesAndSignals) {
  EXPECT_EQ(run_process({"sh", "-c", "exit 3"}).exit_code, 3);
  EXPECT_EQ(run_process({"sh", "-c", "kill -9 $$"}).exit_code, 128 + 9);
  EXPECT_THROW(run_process({"no-such-program-uniad-test"}), RuntimeError);
  EXPECT_TRUE(program_available("sh"));
  EXPECT_FALSE(program_available("no-such-program-uniad-test"));
}

TEST(Subprocess, StopSignalReachesTheChildAndItsChildren) {
  // The child starts a grandchild (like mpirun its ranks) and reports how it was stopped.
  test::TempDir dir;
  const fs::path pid_file = dir / "grandchild.pid";
  // The stop comes once the child has set its trap and started the grandchild (it writes the
  // pid file last), not after a fixed delay that a loaded machine can outlast.
  std::thread stopper([&pid_file] {
    for (int i = 0; i < 300 && !fs::exists(pid_file); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    kill(getpid(), SIGTERM);  // as Slurm or a user would stop the parent
  });
  const ProcessResult r = run_process({"sh", "-c",
                                       "trap 'exit 42' TERM; sleep 30 & echo $! > \"$0.tmp\"; mv \"$0.tmp\" \"$0\"; wait",
                                       pid_file.string()});
  stopper.join();
  EXPECT_EQ(r.exit_code, 42) << "the child got SIGTERM and chose how to end";
  EXPECT_EQ(r.forwarded_signal, SIGTERM);
  const pid_t grandchild = std::stoi(test::read_bytes(pid_file));
  bool gone = false;
  for (int i = 0; i < 50 && !gone; ++i) {
    gone = kill(grandchild, 0) != 0;
    if (!gone) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_TRUE(gone) << "the grandchild (an mpirun rank, say) was left running";
  // Outside run_process the previous (default) handling is back: nothing left installed.
  struct sigaction current {};
  sigaction(SIGTERM, nullptr, &current);
  EXPECT_EQ(current.sa_handler, SIG_DFL);
}

TEST(Subprocess, StopSignalsKeepTheProcessAliveBetweenChildren) {
  // A sweep between two runs: no child, yet SIGTERM must not end it before its leaderboard.
  {
    StopSignals stop_signals;
    EXPECT_EQ(StopSignals::received(), 0);
    raise(SIGTERM);
    EXPECT_EQ(StopSignals::received(), SIGTERM) << "the signal was remembered";
    // A child started after the stop (a race the sweep cannot rule out) hears of it at once.
    EXPECT_EQ(run_process({"sleep", "5"}).exit_code, 128 + SIGTERM);
  }
  struct sigaction current {};
  sigaction(SIGTERM, nullptr, &current);
  EXPECT_EQ(current.sa_handler, SIG_DFL) << "the default handling is back once no StopSignals lives";
}

TEST(Subprocess, CapturedOutputIsStdoutOnly) {
  const CapturedOutput r = capture_output({"sh", "-c", "echo 1234; echo a warning >&2; exit 3"});
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_EQ(r.output, "1234\n");
  // Large outputs are read while the child runs (no pipe deadlock).
  EXPECT_EQ(capture_output({"sh", "-c", "head -c 1000000 /dev/zero"}).output.size(), 1000000u);
  EXPECT_THROW(capture_output({"no-such-program-uniad-test"}), RuntimeError);
}

TEST(Subprocess, CommandLinesReadBackByAShell) {
  test::TempDir dir;
  const fs::path out = dir / "echo.txt";
  std::vector<std::string> argv = {"printf", "%s\\n"};
  const auto nasty = nasty_arguments(dir.path());
  argv.insert(argv.end(), nasty.begin(), nasty.end());
  const std::string line = shell_command_line(argv);
  EXPECT_EQ(shell_command_line({"uniad", "eval", "--run", "/tmp/a-b_c/run.1"}), "uniad eval --run /tmp/a-b_c/run.1")
      << "plain words stay unquoted";
  ASSERT_EQ(run_process({"sh", "-c", "cd \"$0\" && " + line + " > echo.txt", dir.path().string()}).exit_code, 0);
  std::string expected;
  for (const auto& a : nasty) expected += a + "\n";
  EXPECT_EQ(test::read_bytes(out), expected);
  EXPECT_FALSE(fs::exists(dir / "pwned"));
}

}  // namespace
}  // namespace uniad
