#pragma once
// Helpers shared by the test suite: where ../shared and the uniad binary are, temporary
// folders, running commands (the CLI, the Python oracles) and capturing their output.
#include <gtest/gtest.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <sys/wait.h>

namespace uniad::test {

namespace fs = std::filesystem;

// The shared data folder: $UNIAD_SHARED, else ../shared beside the source tree.
inline fs::path shared_dir() {
  if (const char* env = std::getenv("UNIAD_SHARED")) return env;
  return UNIAD_SHARED_DIR;
}

// Skips (loudly) when ../shared is not there: the project builds and tests without it,
// but CI always has it, so these tests run there.
#define UNIAD_REQUIRE_SHARED(relative)                                                          \
  do {                                                                                          \
    if (!std::filesystem::exists(::uniad::test::shared_dir() / (relative)))                     \
      GTEST_SKIP() << "SKIPPED: " << (::uniad::test::shared_dir() / (relative)).string()        \
                   << " not found; set UNIAD_SHARED to the shared folder to run this test";     \
  } while (0)

// The Python that has Debian's torch, sklearn, h5py and OpenCV (the test oracles).
inline const char* python() { return "/usr/bin/python3"; }
inline fs::path oracle_script(const std::string& name) { return fs::path(UNIAD_SOURCE_DIR) / "tests" / "oracle" / name; }
inline fs::path uniad_binary() { return UNIAD_BINARY; }

// The Python with pip's `tensorboard` (the event files' oracle), which `scripts/setup.sh
// --tests` installs: $UNIAD_TENSORBOARD_PYTHON, else $UNIAD_CACHE/venv-tensorboard/bin/python
// (UNIAD_CACHE defaults to /var/cache/uniad).
inline fs::path tensorboard_python() {
  if (const char* env = std::getenv("UNIAD_TENSORBOARD_PYTHON")) return env;
  const char* cache = std::getenv("UNIAD_CACHE");
  return fs::path(cache ? cache : "/var/cache/uniad") / "venv-tensorboard" / "bin" / "python";
}

// Skips (loudly) when the TensorBoard oracle is not installed.
#define UNIAD_REQUIRE_TENSORBOARD()                                                              \
  do {                                                                                           \
    if (!std::filesystem::exists(::uniad::test::tensorboard_python()))                           \
      GTEST_SKIP() << "SKIPPED: " << ::uniad::test::tensorboard_python().string()                \
                   << " not found; run `bash scripts/setup.sh --tests` (pip's tensorboard, the " \
                   << "event files' oracle)";                                                    \
  } while (0)

// A fresh folder under the system temp dir, removed with its contents at scope exit.
class TempDir {
 public:
  TempDir() {
    std::random_device rd;
    path_ = fs::temp_directory_path() / ("uniad-test-" + std::to_string(rd()) + std::to_string(rd()));
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ignored;
    fs::remove_all(path_, ignored);
  }
  const fs::path& path() const { return path_; }
  fs::path operator/(const std::string& name) const { return path_ / name; }

 private:
  fs::path path_;
};

struct CommandResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr together
};

// Runs a shell command, capturing its output and exit code.
inline CommandResult run(const std::string& command) {
  CommandResult result;
  FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  if (!pipe) return result;
  std::array<char, 4096> buffer;
  while (std::fgets(buffer.data(), buffer.size(), pipe)) result.output += buffer.data();
  const int status = pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

// One shell word for `path`, whatever it holds (a ' is written as '\'').
inline std::string quote(const fs::path& path) {
  std::string out = "'";
  for (const char c : path.string()) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// A small synthetic dataset (2 classes, 8 + 4 + 4 images of 128 px) in dir/data and its
// feature cache dir/cache.h5, through the real `uniad synth` and `uniad extract`.
inline CommandResult make_small_cache(const fs::path& dir) {
  const std::string uniad = quote(uniad_binary());
  CommandResult r = run(uniad + " synth -q --out " + quote(dir / "data") +
                        " --classes 2 --train-good 8 --test-good 4 --test-anomalous 4 --image-size 128");
  if (r.exit_code != 0) return r;
  return run(uniad + " extract -q --data " + quote(dir / "data") + " --out " + quote(dir / "cache.h5"));
}

inline std::string read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

inline void write_text(const fs::path& path, const std::string& text) {
  fs::create_directories(path.parent_path());
  std::ofstream(path, std::ios::binary) << text;
}

}  // namespace uniad::test
