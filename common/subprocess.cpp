#include "common/subprocess.h"

#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <sstream>

#include "common/error.h"

extern char** environ;

namespace uniad {

namespace {

// The running child's process group, for the forwarding handler (0: none running).
volatile sig_atomic_t g_child_group = 0;
volatile sig_atomic_t g_forwarded = 0;

extern "C" void forward_signal(int signal) {
  g_forwarded = signal;
  if (g_child_group > 0) kill(-g_child_group, signal);  // async-signal-safe
}

// Forwards SIGTERM and SIGINT while it lives; restores the previous handlers after.
class SignalForwarding {
 public:
  SignalForwarding() {
    struct sigaction action {};
    action.sa_handler = forward_signal;
    sigemptyset(&action.sa_mask);
    sigaction(SIGTERM, &action, &previous_term_);
    sigaction(SIGINT, &action, &previous_int_);
  }
  ~SignalForwarding() {
    sigaction(SIGTERM, &previous_term_, nullptr);
    sigaction(SIGINT, &previous_int_, nullptr);
  }

 private:
  struct sigaction previous_term_ {}, previous_int_ {};
};

bool plain_word(const std::string& word) {
  if (word.empty()) return false;
  for (const char c : word) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || std::strchr("_@%+=:,./-", c))) return false;
  }
  return true;
}

}  // namespace

ProcessResult run_process(const std::vector<std::string>& argv) {
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

  SignalForwarding forwarding;
  g_forwarded = 0;
  pid_t pid = 0;
  const int error = posix_spawnp(&pid, args[0], nullptr, &attributes, args.data(), environ);
  posix_spawnattr_destroy(&attributes);
  if (error != 0) throw RuntimeError("cannot start '" + argv[0] + "': " + std::strerror(error));
  g_child_group = pid;
  // A signal that arrived between the spawn and now reached nobody: pass it on.
  if (g_forwarded != 0) kill(-pid, g_forwarded);

  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) {
      g_child_group = 0;
      throw RuntimeError("waiting for '" + argv[0] + "' failed: " + std::strerror(errno));
    }
  }
  g_child_group = 0;
  ProcessResult result;
  result.forwarded_signal = g_forwarded;
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : WIFSIGNALED(status) ? 128 + WTERMSIG(status) : -1;
  return result;
}

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
