#pragma once
// Progress display for long work: done/total, items per second and time left.
//
// On a terminal it redraws one line; otherwise (logs, Slurm output files) it prints a
// line at most every few seconds, so job logs stay readable.
#include <chrono>
#include <cstddef>
#include <string>

namespace uniad {

class Progress {
 public:
  // `enabled = false` makes every call a no-op (non-zero MPI ranks, quiet mode).
  Progress(std::string label, std::size_t total, std::string unit = "items", bool enabled = true);
  ~Progress();

  void advance(std::size_t n = 1);
  // Prints the final line (total time and rate); called by the destructor if needed.
  void finish();

 private:
  void draw(bool final_line);

  std::string label_, unit_;
  std::size_t total_, done_ = 0;
  bool enabled_, tty_, finished_ = false;
  std::chrono::steady_clock::time_point start_, last_draw_;
};

// "1h02m", "3m05s", "12.3s": a duration for humans.
std::string format_duration(double seconds);

// The current time as "2026-11-29T15:04:05Z" (UTC, ISO 8601): when an output was made.
std::string utc_timestamp();

}  // namespace uniad
