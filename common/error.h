#pragma once
// Errors that carry enough context for a user to act on them.
//
// Every failure the user can cause (a bad option, a missing folder, a corrupt image) is
// reported as one of these, with the file it concerns and what to do. The launcher maps
// the kind to the process exit code (see ExitCode), so scripts and Slurm can tell a
// usage mistake from bad data from an internal failure.
#include <stdexcept>
#include <string>

namespace uniad {

// Process exit codes (documented in README.md). Values follow BSD sysexits.h where one fits.
enum class ExitCode : int {
  kOk = 0,
  kRuntime = 1,      // anything else that went wrong while running
  kUsage = 64,       // bad command line or config file (EX_USAGE)
  kInput = 65,       // bad input data: dataset, image, cache, checkpoint (EX_DATAERR)
  kOutput = 74,      // an output could not be written: disk full, no permission (EX_IOERR)
  kPreempted = 75,   // stopped by a signal after checkpointing; requeue and resume (EX_TEMPFAIL)
};

class Error : public std::runtime_error {
 public:
  Error(ExitCode code, const std::string& message) : std::runtime_error(message), code_(code) {}
  ExitCode code() const { return code_; }

 private:
  ExitCode code_;
};

// A mistake in how the program was called.
struct UsageError : Error {
  explicit UsageError(const std::string& message) : Error(ExitCode::kUsage, message) {}
};

// A problem with an input file or folder. The message always starts with the path.
struct InputError : Error {
  InputError(const std::string& path, const std::string& problem)
      : Error(ExitCode::kInput, path + ": " + problem), path_(path) {}
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// An output file that could not be written (full file system, permissions). The message
// starts with the file the user asked for; nothing half-written is left under that name.
struct OutputError : Error {
  OutputError(const std::string& path, const std::string& problem)
      : Error(ExitCode::kOutput, path + ": " + problem), path_(path) {}
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// A failure while running that is not the input's fault.
struct RuntimeError : Error {
  explicit RuntimeError(const std::string& message) : Error(ExitCode::kRuntime, message) {}
};

}  // namespace uniad
