// What writing TensorBoard events costs the trainer per step: the three points it logs every
// step (train/loss, train/lr and train/grad_norm, trainer/training_events.h) through the real
// SummaryWriter into a real file, flushes included, over many steps. Compare with a training step's time
// (bench/train.py, bench_step_profile): docs/tensorboard.md.
//
//   bench_tensorboard [STEPS] [DIR]     (defaults: 200000, a temporary folder)
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include <unistd.h>

#include "tensorboard/summary_writer.h"

int main(int argc, char** argv) {
  namespace fs = std::filesystem;
  const long steps = argc > 1 ? std::atol(argv[1]) : 200000;
  const fs::path dir = argc > 2 ? fs::path(argv[2]) : fs::temp_directory_path() / ("bench-tensorboard-" + std::to_string(::getpid()));
  double seconds = 0;
  std::uintmax_t bytes = 0;
  {
    uniad::tensorboard::SummaryWriter tb(dir);
    const auto start = std::chrono::steady_clock::now();
    for (long step = 1; step <= steps; ++step) {
      tb.scalar("train/loss", 1.0 / step, step);
      tb.scalar("train/lr", 5e-4, step);
      tb.scalar("train/grad_norm", 0.5 / step, step);
      tb.flush_if_due();
    }
    tb.flush();
    seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    bytes = fs::file_size(tb.path());
  }
  if (argc <= 2) fs::remove_all(dir);
  std::printf("{\"steps\": %ld, \"seconds\": %.6f, \"us_per_step\": %.4f, \"bytes_per_step\": %.1f}\n", steps, seconds,
              1e6 * seconds / steps, static_cast<double>(bytes) / steps);
  return 0;
}
