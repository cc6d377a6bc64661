#include "common/subprocess.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <mutex>
#include <sstream>

#include "common/error.h"

extern char** environ;

namespace uniad {

namespace {

// The process groups of the running children (0 = free slot), for the forwarding handler.
// Several threads may each run a child (a sweep's parallel jobs).
constexpr int kMaxChildren = 64;
volatile sig_atomic_t g_child_groups[kMaxChildren] = {};
volatile sig_atomic_t g_forwarded = 0;

extern "C" void forward_signal(int signal) {
  g_forwarded = signal;
  for (int i = 0; i < kMaxChildren; ++i)
    if (g_child_groups[i] > 0) kill(-g_child_groups[i], signal);  // async-signal-safe
}

// Forwards SIGTERM and SIGINT while any child runs or a StopSignals lives; restores the
// previous handlers after the last user. Also hands out the children's slots.
class SignalForwarding {
 public:
  static void hold() {
    std::lock_guard<std::mutex> lock(mutex());
    if (users()++ == 0) {
      g_forwarded = 0;
      struct sigaction action {};
      action.sa_handler = forward_signal;
      sigemptyset(&action.sa_mask);
      sigaction(SIGTERM, &action, &previous_term());
      sigaction(SIGINT, &action, &previous_int());
    }
  }
  static void unhold() {
    std::lock_guard<std::mutex> lock(mutex());
    if (--users() == 0) {
      sigaction(SIGTERM, &previous_term(), nullptr);
      sigaction(SIGINT, &previous_int(), nullptr);
    }
  }
  static int acquire() {
    hold();
    {
      std::lock_guard<std::mutex> lock(mutex());
      for (int i = 0; i < kMaxChildren; ++i) {
        if (g_child_groups[i] == 0) {
          g_child_groups[i] = -1;  // taken, no child yet
          return i;
        }
      }
    }
    unhold();
    throw RuntimeError("more than 64 child processes at once");
  }
  static void release(int slot) {
    {
      std::lock_guard<std::mutex> lock(mutex());
      g_child_groups[slot] = 0;
    }
    unhold();
  }

 private:
  static std::mutex& mutex() {
    static std::mutex m;
    return m;
  }
  static int& users() {
    static int n = 0;
    return n;
  }
  static struct sigaction& previous_term() {
    static struct sigaction a {};
    return a;
  }
  static struct sigaction& previous_int() {
    static struct sigaction a {};
    return a;
  }
};

bool plain_word(const std::string& word) {
  if (word.empty()) return false;
  for (const char c : word) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || std::strchr("_@%+=:,./-", c))) return false;
  }
  return true;
}

}  // namespace

namespace {

// Starts argv with its stdout either appended to `output_path`, sent to `stdout_fd`, or left
// as this process's; waits for it while forwarding stop signals. `while_running` runs after
// the start (reading a pipe the child writes).
ProcessResult spawn_and_wait(const std::vector<std::string>& argv, const std::string& output_path, int stdout_fd,
                             const std::function<void()>& while_running) {
  if (argv.empty()) throw RuntimeError("run_process: no program given");
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);

  // The child leads its own process group, so forwarding reaches everything it starts
  // (mpirun's ranks) and nothing else.
  posix_spawnattr_t attributes;
  posix_spawnattr_init(&attributes);
  posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETPGROUP);
  posix_spawnattr_setpgroup(&attributes, 0);

  posix_spawn_file_actions_t files;
  posix_spawn_file_actions_init(&files);
  if (!output_path.empty()) {
    posix_spawn_file_actions_addopen(&files, 1, output_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawn_file_actions_adddup2(&files, 1, 2);
  } else if (stdout_fd >= 0) {
    posix_spawn_file_actions_adddup2(&files, stdout_fd, 1);
  }

  const int slot = SignalForwarding::acquire();
  pid_t pid = 0;
  const int error = posix_spawnp(&pid, args[0], &files, &attributes, args.data(), environ);
  posix_spawnattr_destroy(&attributes);
  posix_spawn_file_actions_destroy(&files);
  if (error != 0) {
    SignalForwarding::release(slot);
    throw RuntimeError("cannot start '" + argv[0] + "': " + std::strerror(error));
  }
  g_child_groups[slot] = pid;
  // A signal that arrived between the spawn and now reached nobody: pass it on.
  if (g_forwarded != 0) kill(-pid, g_forwarded);
  if (while_running) while_running();

  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) {
      SignalForwarding::release(slot);
      throw RuntimeError("waiting for '" + argv[0] + "' failed: " + std::strerror(errno));
    }
  }
  ProcessResult result;
  result.forwarded_signal = g_forwarded;
  SignalForwarding::release(slot);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : WIFSIGNALED(status) ? 128 + WTERMSIG(status) : -1;
  return result;
}

}  // namespace

ProcessResult run_process(const std::vector<std::string>& argv, const std::string& output_path) {
  return spawn_and_wait(argv, output_path, -1, nullptr);
}

CapturedOutput capture_output(const std::vector<std::string>& argv) {
  int pipe_fds[2];
  if (pipe2(pipe_fds, O_CLOEXEC) != 0) throw RuntimeError(std::string("cannot make a pipe: ") + std::strerror(errno));
  CapturedOutput captured;
  auto read_all = [&] {
    close(pipe_fds[1]);  // ours; the child holds its own copy until it exits
    pipe_fds[1] = -1;
    char buffer[4096];
    for (ssize_t n; (n = read(pipe_fds[0], buffer, sizeof buffer)) != 0;) {
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) break;
      captured.output.append(buffer, static_cast<std::size_t>(n));
    }
  };
  try {
    captured.exit_code = spawn_and_wait(argv, "", pipe_fds[1], read_all).exit_code;
  } catch (...) {
    close(pipe_fds[0]);
    if (pipe_fds[1] >= 0) close(pipe_fds[1]);
    throw;
  }
  close(pipe_fds[0]);
  return captured;
}

StopSignals::StopSignals() { SignalForwarding::hold(); }
StopSignals::~StopSignals() { SignalForwarding::unhold(); }
int StopSignals::received() { return g_forwarded; }

std::string shell_command_line(const std::vector<std::string>& argv) {
  std::string line;
  for (const auto& word : argv) {
    if (!line.empty()) line += ' ';
    if (plain_word(word)) {
      line += word;
      continue;
    }
    line += '\'';
    for (const char c : word) line += c == '\'' ? std::string("'\\''") : std::string(1, c);
    line += '\'';
  }
  return line;
}

std::string self_executable() {
  char buffer[4096];
  const ssize_t n = readlink("/proc/self/exe", buffer, sizeof buffer - 1);
  return n > 0 ? std::string(buffer, static_cast<std::size_t>(n)) : std::string("uniad");
}

bool program_available(const std::string& program) {
  if (program.find('/') != std::string::npos) return access(program.c_str(), X_OK) == 0;
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path ? path : "/usr/bin:/bin");
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    if (!dir.empty() && access((dir + "/" + program).c_str(), X_OK) == 0) return true;
  }
  return false;
}

}  // namespace uniad
