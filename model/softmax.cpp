#include "model/softmax.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include <immintrin.h>

namespace uniad::model::fused {
namespace {

// The row kernels of softmax_rows.inc, once per instruction set.
#pragma GCC push_options
#pragma GCC target("avx512f,fma")
namespace avx512 {
constexpr int kWidth = 16;
#define UNIAD_SOFTMAX_TAIL 512
#include "model/softmax_rows.inc"
#undef UNIAD_SOFTMAX_TAIL
}  // namespace avx512
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx2,fma")
namespace avx2 {
constexpr int kWidth = 8;
#define UNIAD_SOFTMAX_TAIL 256
#include "model/softmax_rows.inc"
#undef UNIAD_SOFTMAX_TAIL
}  // namespace avx2
#pragma GCC pop_options

namespace sse2 {
constexpr int kWidth = 4;
#define UNIAD_SOFTMAX_TAIL 0
#include "model/softmax_rows.inc"
#undef UNIAD_SOFTMAX_TAIL
}  // namespace sse2

struct Kernels {
  const char* name;
  void (*rows)(const float*, float*, int64_t, int64_t, const float*, int64_t, int64_t);
};

// The sets this CPU runs, widest first (__builtin_cpu_init first: see fused_dropout.cpp).
const std::vector<Kernels>& available_kernels() {
  static const std::vector<Kernels> sets = [] {
    __builtin_cpu_init();
    std::vector<Kernels> found;
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma")) found.push_back({"avx512", avx512::softmax_rows});
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) found.push_back({"avx2", avx2::softmax_rows});
    found.push_back({"sse2", sse2::softmax_rows});
    return found;
  }();
  return sets;
}

}  // namespace

void softmax_rows(const float* in, float* out, int64_t rows, int64_t cols, const float* mask, int64_t mask_rows,
                  int64_t first_row) {
  available_kernels().front().rows(in, out, rows, cols, mask, mask_rows, first_row);
}

const char* softmax_instruction_set() { return available_kernels().front().name; }

bool softmax_rows_with(const char* instruction_set, const float* in, float* out, int64_t rows, int64_t cols,
                       const float* mask, int64_t mask_rows, int64_t first_row) {
  for (const Kernels& k : available_kernels()) {
    if (std::strcmp(k.name, instruction_set)) continue;
    k.rows(in, out, rows, cols, mask, mask_rows, first_row);
    return true;
  }
  return false;
}

}  // namespace uniad::model::fused
