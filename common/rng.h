#pragma once
// A small, fully specified random number generator (SplitMix64 seeding + xoshiro256**).
//
// std::mt19937 is portable but std::*_distribution is not: libstdc++ and libc++ draw
// different numbers. The synthetic dataset must be the same bytes everywhere for a
// seed, so its randomness comes from here, with distributions written out explicitly.
#include <cmath>
#include <cstdint>

namespace uniad {

class Rng {
 public:
  explicit Rng(std::uint64_t seed) {
    for (auto& word : s_) word = splitmix64(seed);
  }

  // A child stream for a named sub-task (e.g. one image), independent of draw order.
  static Rng derive(std::uint64_t seed, std::uint64_t a, std::uint64_t b = 0, std::uint64_t c = 0) {
    std::uint64_t x = seed;
    std::uint64_t h = splitmix64(x) ^ (a * 0x9E3779B97F4A7C15ull);
    h = splitmix64(h) ^ (b * 0xC2B2AE3D27D4EB4Full);
    h = splitmix64(h) ^ (c * 0x165667B19E3779F9ull);
    return Rng(splitmix64(h));
  }

  std::uint64_t next() {
    const std::uint64_t result = rotl(s_[1] * 5, 7) * 9;
    const std::uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
  }

  // Uniform in [0, 1) with 53 random bits.
  double uniform() { return (next() >> 11) * 0x1.0p-53; }
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  // Uniform integer in [lo, hi] (inclusive); the tiny modulo bias is irrelevant here.
  int integer(int lo, int hi) { return lo + static_cast<int>(next() % static_cast<std::uint64_t>(hi - lo + 1)); }
  bool chance(double p) { return uniform() < p; }
  // Standard normal by Box-Muller (one value per call, the second is dropped for simplicity).
  double normal() {
    const double u1 = 1.0 - uniform();  // (0, 1]
    const double u2 = uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }

 private:
  static std::uint64_t rotl(std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  static std::uint64_t splitmix64(std::uint64_t& x) {
    std::uint64_t z = (x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  std::uint64_t s_[4];
};

}  // namespace uniad
