#pragma once
// Softmax of float rows: the attention probabilities of inference (model/attention.h) and of
// training, where the dropout follows in the same pass (model/fused_dropout.h).
//
// One max pass, one exp-and-sum pass and one scaling pass over a row, with exp inlined (a
// Cephes-style polynomial, about 1 ulp; LibTorch uses Sleef's, 1 ulp), for AVX-512, AVX2 or
// SSE2, chosen at run time. On rows already in cache it is ~20% faster than LibTorch's CPU
// softmax, and it is a plain function that a loop over heads calls without dispatch overhead.
#include <cstdint>

namespace uniad::model::fused {

// out = softmax(in + mask) row by row, for `rows` contiguous rows of `cols` floats (in == out is
// allowed), on the calling thread. `mask`, if not null, is an additive [mask_rows, cols] matrix
// (e.g. the neighbor mask's 0 / -inf): row r of `in` takes its row (first_row + r) % mask_rows,
// which is how the attention of several heads, each [Tq, Tk], shares one [Tq, Tk] mask; first_row
// is the index of in's first row among all the heads' rows, for a caller that works on a slice.
void softmax_rows(const float* in, float* out, std::int64_t rows, std::int64_t cols, const float* mask = nullptr,
                  std::int64_t mask_rows = 1, std::int64_t first_row = 0);

// The instruction set the kernels run with on this CPU: "avx512", "avx2" or "sse2".
const char* softmax_instruction_set();

// The row kernel of one instruction set, for the tests that check every variant; false (nothing
// written) where this CPU lacks that set.
bool softmax_rows_with(const char* instruction_set, const float* in, float* out, std::int64_t rows, std::int64_t cols,
                       const float* mask = nullptr, std::int64_t mask_rows = 1, std::int64_t first_row = 0);

}  // namespace uniad::model::fused
