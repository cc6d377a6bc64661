// Feature-cache read speed: random single-sample reads and random batches of 8, from a
// cache written by `uniad extract`. Prints one JSON object (see bench/extract.py).
// Usage: bench_cache --cache FILE [--reads N]
#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>

#include <ATen/ATen.h>

#include "feature_cache/cache.h"

#include "common/allocator.h"

using Clock = std::chrono::steady_clock;

int main(int argc, char** argv) {
  uniad::keep_freed_memory();  // as the uniad executable does
  std::string path;
  int reads = 2000;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--cache")) path = argv[i + 1];
    if (!std::strcmp(argv[i], "--reads")) reads = std::stoi(argv[i + 1]);
  }
  auto cache = uniad::feature_cache::FeatureCache::open(path);
  const auto split = uniad::data::Split::kTrain;
  const int64_t n = cache.split(split).size();
  std::mt19937 rng(0);
  std::uniform_int_distribution<int64_t> pick(0, n - 1);
  auto seconds_for = [&](int batch) {
    const auto start = Clock::now();
    for (int r = 0; r < reads / batch; ++r) {
      std::vector<int64_t> rows(batch);
      for (auto& row : rows) row = pick(rng);
      cache.read_features(split, rows);
    }
    return std::chrono::duration<double>(Clock::now() - start).count();
  };
  seconds_for(1);  // warm the page cache
  const double single = seconds_for(1), batched = seconds_for(8);
  std::printf("{\"samples\": %lld, \"dtype\": \"%s\", \"random_reads_per_s\": %.1f, \"random_batch8_samples_per_s\": %.1f}\n",
              static_cast<long long>(n), uniad::feature_cache::to_string(cache.shape().dtype).c_str(), reads / single,
              (reads / 8 * 8) / batched);
  return 0;
}
