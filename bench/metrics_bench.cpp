// Pixel metrics speed on stored arrays: per class, exact pixel AUROC, AP, F1-max and AUPRO
// (bench/metrics.py runs sklearn on the same arrays in the same run).
// Usage: bench_metrics SCORES.f32 MASKS.u8 IMAGES_PER_CLASS(comma-separated) [SIZE]
#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "common/allocator.h"
#include "eval/metrics.h"

int main(int argc, char** argv) {
  uniad::keep_freed_memory();  // as the uniad executable does
  if (argc < 4) return 64;
  const int size = argc > 4 ? std::stoi(argv[4]) : 224;
  std::vector<long> per_class;
  std::stringstream list(argv[3]);
  for (std::string item; std::getline(list, item, ',');) per_class.push_back(std::stol(item));
  long total = 0;
  for (long n : per_class) total += n;
  const std::size_t pixels = static_cast<std::size_t>(total) * size * size;
  std::vector<float> scores(pixels);
  std::vector<std::uint8_t> masks(pixels);
  std::ifstream(argv[1], std::ios::binary).read(reinterpret_cast<char*>(scores.data()), pixels * 4);
  std::ifstream(argv[2], std::ios::binary).read(reinterpret_cast<char*>(masks.data()), pixels);
  const auto start = std::chrono::steady_clock::now();
  std::size_t offset = 0;
  std::printf("{\"classes\": [");
  for (std::size_t c = 0; c < per_class.size(); ++c) {
    const auto m = uniad::eval::pixel_metrics(scores.data() + offset, masks.data() + offset, per_class[c], size, size);
    offset += static_cast<std::size_t>(per_class[c]) * size * size;
    std::printf("%s{\"auroc\": %.9f, \"ap\": %.9f, \"f1_max\": %.9f, \"aupro\": %.9f}", c ? ", " : "",
                m.binary.auroc, m.binary.ap, m.binary.f1_max, m.aupro);
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("], \"pixels\": %zu, \"seconds\": %.3f}\n", pixels, seconds);
  return 0;
}
