#include "model/fused_dropout.h"

#include <algorithm>
#include <cmath>
#include <mutex>

#include <immintrin.h>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <ATen/record_function.h>
#include <torch/csrc/autograd/custom_function.h>

#include "model/softmax.h"

namespace uniad::model {
namespace fused {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::tensor_list;

// ---- Philox4x32-10 ------------------------------------------------------------------------
// Element i of a tensor gets 32 bits: word i % 4 of block i / 4, the block's counter being
// (low, high 32 bits of i / 4, 0, 0) and the key the call's 64-bit key.

constexpr int kBlocksPerChunk = 16;
constexpr int64_t kChunk = 4 * kBlocksPerChunk;  // elements per generated chunk
constexpr std::uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u, kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;

std::array<std::uint32_t, 4> philox_block(std::array<std::uint32_t, 4> c, std::array<std::uint32_t, 2> key) {
  for (int round = 0; round < 10; ++round) {
    const std::uint64_t p0 = std::uint64_t{kM0} * c[0], p1 = std::uint64_t{kM1} * c[2];
    c = {static_cast<std::uint32_t>(p1 >> 32) ^ c[1] ^ key[0], static_cast<std::uint32_t>(p1),
         static_cast<std::uint32_t>(p0 >> 32) ^ c[3] ^ key[1], static_cast<std::uint32_t>(p0)};
    key[0] += kW0;
    key[1] += kW1;
  }
  return c;
}

// The chunk's 16 blocks one after the other (CPUs without AVX2).
void philox_chunk_plain(std::uint64_t chunk, std::uint64_t key, std::uint32_t out[kChunk]) {
  for (int j = 0; j < kBlocksPerChunk; ++j) {
    const std::uint64_t block = chunk * kBlocksPerChunk + j;
    const auto words = philox_block({static_cast<std::uint32_t>(block), static_cast<std::uint32_t>(block >> 32), 0, 0},
                                    {static_cast<std::uint32_t>(key), static_cast<std::uint32_t>(key >> 32)});
    std::copy(words.begin(), words.end(), out + 4 * j);
  }
}

// The chunk's 16 blocks side by side, one block per 64-bit vector lane: the round's two
// 32 x 32 -> 64-bit products are one vpmuludq each. V is __m256i (AVX2, 4 lanes) or __m512i
// (AVX-512, 8 lanes); the macro writes the round once for both.
#define UNIAD_PHILOX_CHUNK(NAME, TARGET, V, LANES, SET1, AND, XOR, SRL, MUL, STORE)                             \
  __attribute__((target(TARGET))) void NAME(std::uint64_t chunk, std::uint64_t key, std::uint32_t out[kChunk]) { \
    constexpr int kGroups = kBlocksPerChunk / LANES;                                                            \
    const V low = SET1(0xFFFFFFFFll), m0 = SET1(kM0), m1 = SET1(kM1);                                        \
    V c0[kGroups], c1[kGroups], c2[kGroups], c3[kGroups];                                                      \
    alignas(64) std::uint64_t lane_block[kBlocksPerChunk];                                                     \
    for (int j = 0; j < kBlocksPerChunk; ++j) lane_block[j] = chunk * kBlocksPerChunk + j;                      \
    for (int g = 0; g < kGroups; ++g) {                                                                         \
      const V block = *reinterpret_cast<const V*>(lane_block + g * LANES);                                      \
      c0[g] = AND(block, low);                                                                                  \
      c1[g] = SRL(block, 32);                                                                                   \
      c2[g] = SET1(0);                                                                                          \
      c3[g] = SET1(0);                                                                                          \
    }                                                                                                           \
    std::uint32_t k0 = static_cast<std::uint32_t>(key), k1 = static_cast<std::uint32_t>(key >> 32);             \
    for (int round = 0; round < 10; ++round) {                                                                  \
      const V key0 = SET1(k0), key1 = SET1(k1);                                                                 \
      for (int g = 0; g < kGroups; ++g) {                                                                       \
        const V p0 = MUL(c0[g], m0), p1 = MUL(c2[g], m1);                                                       \
        c0[g] = XOR(XOR(SRL(p1, 32), c1[g]), key0);                                                             \
        c2[g] = XOR(XOR(SRL(p0, 32), c3[g]), key1);                                                             \
        c1[g] = AND(p1, low);                                                                                   \
        c3[g] = AND(p0, low);                                                                                   \
      }                                                                                                         \
      k0 += kW0;                                                                                                \
      k1 += kW1;                                                                                                \
    }                                                                                                           \
    alignas(64) std::uint64_t words[4][kBlocksPerChunk];                                                       \
    for (int g = 0; g < kGroups; ++g) {                                                                         \
      STORE(reinterpret_cast<V*>(words[0] + g * LANES), c0[g]);                                                 \
      STORE(reinterpret_cast<V*>(words[1] + g * LANES), c1[g]);                                                 \
      STORE(reinterpret_cast<V*>(words[2] + g * LANES), c2[g]);                                                 \
      STORE(reinterpret_cast<V*>(words[3] + g * LANES), c3[g]);                                                 \
    }                                                                                                           \
    for (int j = 0; j < kBlocksPerChunk; ++j)                                                                   \
      for (int w = 0; w < 4; ++w) out[4 * j + w] = static_cast<std::uint32_t>(words[w][j]);                    \
  }

// GCC 12 warns about the AVX-512 header's own deliberately undefined registers (_mm512_undefined).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
UNIAD_PHILOX_CHUNK(philox_chunk_avx2, "avx2", __m256i, 4, _mm256_set1_epi64x, _mm256_and_si256,
                   _mm256_xor_si256, _mm256_srli_epi64, _mm256_mul_epu32, _mm256_store_si256)
UNIAD_PHILOX_CHUNK(philox_chunk_avx512, "avx512f", __m512i, 8, _mm512_set1_epi64, _mm512_and_si512,
                   _mm512_xor_si512, _mm512_srli_epi64, _mm512_mul_epu32, _mm512_store_si512)
#pragma GCC diagnostic pop
#undef UNIAD_PHILOX_CHUNK

// The widest generator this CPU runs, chosen on first use (__builtin_cpu_init first: a
// namespace-scope initializer may run before libgcc has read the CPU's features).
using ChunkGenerator = void (*)(std::uint64_t, std::uint64_t, std::uint32_t*);
ChunkGenerator pick_chunk_generator() {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) return philox_chunk_avx512;
  if (__builtin_cpu_supports("avx2")) return philox_chunk_avx2;
  return philox_chunk_plain;
}
void philox_chunk(std::uint64_t chunk, std::uint64_t key, std::uint32_t out[kChunk]) {
  static const ChunkGenerator generator = pick_chunk_generator();
  generator(chunk, key, out);
}

// Element i is kept when its 32 bits are below this: probability (1 - p) to within 2^-32.
std::uint32_t keep_threshold(double p) {
  return static_cast<std::uint32_t>(std::min(4294967295.0, std::floor((1.0 - p) * 4294967296.0)));
}

// Calls visit(begin, end, random) over the n elements in parallel, where random[k] holds the 32
// bits of element begin + k; visit sees at most kChunk elements at once.
template <typename Visit>
void for_each_random(int64_t n, std::uint64_t key, const Visit& visit) {
  RECORD_USER_SCOPE("uniad::fused_dropout");  // for bench/profile_step.py
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  at::parallel_for(0, chunks, /*grain_size=*/256, [&](int64_t first, int64_t last) {
    std::uint32_t random[kChunk];
    for (int64_t c = first; c < last; ++c) {
      philox_chunk(static_cast<std::uint64_t>(c), key, random);
      visit(c * kChunk, std::min(n, (c + 1) * kChunk), random);
    }
  });
}

float keep_scale(double p) { return static_cast<float>(1.0 / (1.0 - p)); }

// The element loops: restrict pointers and values (not references) so that they vectorise, one
// clone per instruction set. Element k is kept when random[k] < threshold, compared as signed
// numbers after flipping the top bit (the same order; SSE2 and AVX2 compare only signed).
#define UNIAD_VECTOR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
inline std::int32_t ordered(std::uint32_t u) { return static_cast<std::int32_t>(u ^ 0x80000000u); }

UNIAD_VECTOR_CLONES void scale_kept_span(const float* __restrict in, float* __restrict out, int64_t n,
                                         const std::uint32_t* __restrict random, std::uint32_t threshold, float scale) {
  const std::int32_t limit = ordered(threshold);
  for (int64_t k = 0; k < n; ++k) out[k] = ordered(random[k]) < limit ? in[k] * scale : 0.0f;
}
UNIAD_VECTOR_CLONES void relu_scale_kept_span(const float* __restrict in, float* __restrict out, int64_t n,
                                              const std::uint32_t* __restrict random, std::uint32_t threshold,
                                              float scale) {
  const std::int32_t limit = ordered(threshold);
  for (int64_t k = 0; k < n; ++k) out[k] = ordered(random[k]) < limit ? std::max(in[k], 0.0f) * scale : 0.0f;
}
UNIAD_VECTOR_CLONES void add_scale_kept_span(const float* __restrict x, const float* __restrict y, float* __restrict out,
                                             int64_t n, const std::uint32_t* __restrict random, std::uint32_t threshold,
                                             float scale) {
  const std::int32_t limit = ordered(threshold);
  for (int64_t k = 0; k < n; ++k) out[k] = ordered(random[k]) < limit ? x[k] + y[k] * scale : x[k];
}
UNIAD_VECTOR_CLONES void relu_dropout_grad_span(const float* __restrict y, const float* __restrict grad_y,
                                                float* __restrict grad_x, int64_t n, float scale) {
  for (int64_t k = 0; k < n; ++k) grad_x[k] = y[k] > 0.0f ? grad_y[k] * scale : 0.0f;
}
// The softmax's backward on one row, in place: g (the upstream gradient, already dropped and
// scaled) becomes grad = y (g - sum(g y)), as LibTorch's softmax backward computes it. The sum
// runs in 16 lanes (a fixed order, so the result does not depend on threads) that the compiler
// can vectorise.
UNIAD_VECTOR_CLONES void softmax_grad_row(const float* __restrict y, float* __restrict g, int64_t n) {
  constexpr int kLanes = 16;
  float lanes[kLanes] = {};
  int64_t k = 0;
  for (; k + kLanes <= n; k += kLanes)
    for (int l = 0; l < kLanes; ++l) lanes[l] += g[k + l] * y[k + l];
  float dot = 0;
  for (int l = 0; l < kLanes; ++l) dot += lanes[l];
  for (; k < n; ++k) dot += g[k] * y[k];
  for (k = 0; k < n; ++k) g[k] = y[k] * (g[k] - dot);
}
#undef UNIAD_VECTOR_CLONES

// out = where(kept, in * scale, 0), element by element.
void scale_kept(const float* in, float* out, int64_t n, double p, std::uint64_t key) {
  const std::uint32_t threshold = keep_threshold(p);
  const float scale = keep_scale(p);
  for_each_random(n, key, [=](int64_t begin, int64_t end, const std::uint32_t* random) {
    scale_kept_span(in + begin, out + begin, end - begin, random, threshold, scale);
  });
}

// out = where(kept, in * scale, 0) for elements [begin, end) of a tensor, on the calling thread:
// the same mask as scale_kept over the whole tensor (element i's bits depend on i and the key
// only). A chunk that straddles two ranges is generated for each.
void scale_kept_range(const float* in, float* out, int64_t begin, int64_t end, std::uint32_t threshold, float scale,
                      std::uint64_t key) {
  std::uint32_t random[kChunk];
  for (int64_t c = begin / kChunk; c * kChunk < end; ++c) {
    philox_chunk(static_cast<std::uint64_t>(c), key, random);
    const int64_t lo = std::max(begin, c * kChunk), hi = std::min(end, (c + 1) * kChunk);
    scale_kept_span(in + lo, out + lo, hi - lo, random + (lo - c * kChunk), threshold, scale);
  }
}

// Calls visit(r0, r1) for blocks of rows [r0, r1) in parallel. A block's logits, probabilities
// and output (3 x 20 rows of 196 floats = 47 KB at the reference size) stay in L1/L2 between the
// softmax and the dropout.
template <typename Visit>
void for_each_row_block(int64_t rows, int64_t cols, const Visit& visit) {
  RECORD_USER_SCOPE("uniad::fused_dropout");
  const int64_t block = std::max<int64_t>(1, 4096 / std::max<int64_t>(1, cols));
  at::parallel_for(0, (rows + block - 1) / block, 1, [&](int64_t first, int64_t last) {
    for (int64_t b = first; b < last; ++b) visit(b * block, std::min(rows, (b + 1) * block));
  });
}

// probabilities = softmax(logits + mask) and out = dropout(probabilities), row block by row
// block: one trip to memory instead of LibTorch's softmax followed by a separate dropout pass.
// mask: null, or an additive [mask_rows, cols] matrix; logits row r takes its row r % mask_rows.
void softmax_scale_kept(const float* logits, const float* mask, int64_t mask_rows, float* probabilities, float* out,
                        int64_t rows, int64_t cols, double p, std::uint64_t key) {
  const std::uint32_t threshold = keep_threshold(p);
  const float scale = keep_scale(p);
  for_each_row_block(rows, cols, [&](int64_t r0, int64_t r1) {
    softmax_rows(logits + r0 * cols, probabilities + r0 * cols, r1 - r0, cols, mask, mask_rows, r0);
    scale_kept_range(probabilities, out, r0 * cols, r1 * cols, threshold, scale, key);
  });
}

// The gradient of the above: the upstream gradient through the regenerated mask, then the
// softmax's backward, per row block while it is in cache.
void softmax_scale_kept_backward(const float* probabilities, const float* grad_out, float* grad_logits, int64_t rows,
                                 int64_t cols, double p, std::uint64_t key) {
  const std::uint32_t threshold = keep_threshold(p);
  const float scale = keep_scale(p);
  for_each_row_block(rows, cols, [&](int64_t r0, int64_t r1) {
    scale_kept_range(grad_out, grad_logits, r0 * cols, r1 * cols, threshold, scale, key);  // g, in place below
    for (int64_t r = r0; r < r1; ++r) softmax_grad_row(probabilities + r * cols, grad_logits + r * cols, cols);
  });
}

at::Tensor scale_kept(const at::Tensor& in, double p, std::uint64_t key) {
  const at::Tensor src = in.contiguous();
  at::Tensor out = at::empty_like(src);
  scale_kept(src.data_ptr<float>(), out.data_ptr<float>(), src.numel(), p, key);
  return out;
}

void save_key(AutogradContext* ctx, double p, std::uint64_t key) {
  ctx->saved_data["p"] = p;
  ctx->saved_data["key"] = static_cast<int64_t>(key);
}
double saved_p(AutogradContext* ctx) { return ctx->saved_data["p"].toDouble(); }
std::uint64_t saved_key(AutogradContext* ctx) { return static_cast<std::uint64_t>(ctx->saved_data["key"].toInt()); }

// ---- the three operators as autograd functions ---------------------------------------------

// y = dropout(softmax(x + mask)) in one pass over the rows (softmax_scale_kept). Saves the
// probabilities (their backward needs them, as the unfused one does) and the key; the dropout
// mask is regenerated for backward. The additive mask (empty: none) is a constant: no gradient.
struct SoftmaxDropout : torch::autograd::Function<SoftmaxDropout> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& logits, const at::Tensor& mask, double p,
                            int64_t key) {
    const at::Tensor x = logits.contiguous();
    const at::Tensor additive = mask.numel() > 0 ? mask.contiguous() : at::Tensor();
    at::Tensor probabilities = at::empty_like(x), out = at::empty_like(x);
    const int64_t cols = x.size(-1);
    softmax_scale_kept(x.data_ptr<float>(), additive.defined() ? additive.data_ptr<float>() : nullptr,
                       additive.defined() ? additive.numel() / cols : 1, probabilities.data_ptr<float>(),
                       out.data_ptr<float>(), cols == 0 ? 0 : x.numel() / cols, cols, p, static_cast<std::uint64_t>(key));
    ctx->save_for_backward({probabilities});
    save_key(ctx, p, static_cast<std::uint64_t>(key));
    return out;
  }
  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    const at::Tensor probabilities = ctx->get_saved_variables()[0];
    const at::Tensor g = grads[0].contiguous();
    at::Tensor grad = at::empty_like(probabilities);
    const int64_t cols = probabilities.size(-1);
    softmax_scale_kept_backward(probabilities.data_ptr<float>(), g.data_ptr<float>(), grad.data_ptr<float>(),
                                cols == 0 ? 0 : probabilities.numel() / cols, cols, saved_p(ctx), saved_key(ctx));
    return {grad, at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

// y = dropout(relu(x)). y > 0 exactly where x > 0 and the element was kept, so y alone (which the
// next linear layer keeps for its own backward anyway) gives the gradient: no mask, no key.
struct ReluDropout : torch::autograd::Function<ReluDropout> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, double p, int64_t key) {
    const at::Tensor src = x.contiguous();
    at::Tensor out = at::empty_like(src);
    const float* in = src.data_ptr<float>();
    float* y = out.data_ptr<float>();
    const std::uint32_t threshold = keep_threshold(p);
    const float scale = keep_scale(p);
    for_each_random(src.numel(), static_cast<std::uint64_t>(key), [=](int64_t begin, int64_t end, const std::uint32_t* random) {
      relu_scale_kept_span(in + begin, y + begin, end - begin, random, threshold, scale);
    });
    ctx->save_for_backward({out});
    ctx->saved_data["p"] = p;
    return out;
  }
  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    const at::Tensor y = ctx->get_saved_variables()[0];
    const at::Tensor g = grads[0].contiguous();
    at::Tensor grad = at::empty_like(y);
    const float* out = y.data_ptr<float>();
    const float* gy = g.data_ptr<float>();
    float* gx = grad.data_ptr<float>();
    const float scale = keep_scale(saved_p(ctx));
    at::parallel_for(0, y.numel(), 16384, [=](int64_t begin, int64_t end) {
      relu_dropout_grad_span(out + begin, gy + begin, gx + begin, end - begin, scale);
    });
    return {grad, at::Tensor(), at::Tensor()};
  }
};

// out = x + dropout(y): the gradient reaches x unchanged and y through the regenerated mask.
struct AddDropout : torch::autograd::Function<AddDropout> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& y, double p, int64_t key) {
    const at::Tensor a = x.contiguous(), b = y.contiguous();
    at::Tensor out = at::empty_like(a);
    const float* xa = a.data_ptr<float>();
    const float* yb = b.data_ptr<float>();
    float* o = out.data_ptr<float>();
    const std::uint32_t threshold = keep_threshold(p);
    const float scale = keep_scale(p);
    for_each_random(a.numel(), static_cast<std::uint64_t>(key), [=](int64_t begin, int64_t end, const std::uint32_t* random) {
      add_scale_kept_span(xa + begin, yb + begin, o + begin, end - begin, random, threshold, scale);
    });
    save_key(ctx, p, static_cast<std::uint64_t>(key));
    return out;
  }
  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    return {grads[0], scale_kept(grads[0], saved_p(ctx), saved_key(ctx)), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

std::array<std::uint32_t, 4> philox4x32_10(std::array<std::uint32_t, 4> counter, std::array<std::uint32_t, 2> key) {
  return philox_block(counter, key);
}

std::vector<std::uint32_t> random_words(std::int64_t first, std::int64_t count, std::uint64_t key) {
  std::vector<std::uint32_t> words;
  std::uint32_t random[kChunk];
  for (std::int64_t i = first; i < first + count; ++i) {
    if (i == first || i % kChunk == 0) philox_chunk(static_cast<std::uint64_t>(i / kChunk), key, random);
    words.push_back(random[i % kChunk]);
  }
  return words;
}

bool supported(const at::Tensor& t) {
  return t.device().is_cpu() && t.scalar_type() == at::kFloat && t.layout() == at::kStrided;
}

std::uint64_t next_key() {
  auto* generator = at::check_generator<at::CPUGeneratorImpl>(at::detail::getDefaultCPUGenerator());
  std::lock_guard<std::mutex> lock(generator->mutex_);
  return generator->random64();
}

at::Tensor softmax_dropout(const at::Tensor& logits, double p, std::uint64_t key, const at::Tensor& mask) {
  // No mask goes in as an empty tensor: an autograd function's inputs must be defined.
  return SoftmaxDropout::apply(logits, mask.defined() ? mask : at::empty({0}), p, static_cast<int64_t>(key));
}
at::Tensor relu_dropout(const at::Tensor& x, double p, std::uint64_t key) {
  return ReluDropout::apply(x, p, static_cast<int64_t>(key));
}
at::Tensor add_dropout(const at::Tensor& x, const at::Tensor& y, double p, std::uint64_t key) {
  return AddDropout::apply(x, y, p, static_cast<int64_t>(key));
}
at::Tensor dropout_mask(at::IntArrayRef shape, double p, std::uint64_t key) {
  return scale_kept(at::ones(shape, at::kFloat), p, key);
}

}  // namespace fused

// The public operators: fused where the kernels apply, LibTorch's expressions elsewhere.
at::Tensor softmax_dropout(const at::Tensor& logits, double p, bool train, const at::Tensor& mask) {
  const bool fits = fused::supported(logits) && (!mask.defined() || (fused::supported(mask) && mask.dim() == 2 &&
                                                                      mask.size(1) == logits.size(-1) &&
                                                                      logits.numel() / logits.size(-1) % mask.size(0) == 0));
  if (train && p > 0 && fits) return fused::softmax_dropout(logits, p, fused::next_key(), mask);
  const at::Tensor masked = mask.defined() ? logits + mask : logits;
  if (!train || p <= 0) return at::softmax(masked, -1);
  return at::dropout(at::softmax(masked, -1), p, true);
}

at::Tensor relu_dropout(const at::Tensor& x, double p, bool train) {
  if (!train || p <= 0) return at::relu(x);
  if (!fused::supported(x)) return at::dropout(at::relu(x), p, true);
  return fused::relu_dropout(x, p, fused::next_key());
}

at::Tensor add_dropout(const at::Tensor& x, const at::Tensor& y, double p, bool train) {
  if (!train || p <= 0) return x + y;
  if (!fused::supported(x) || !fused::supported(y) || x.sizes() != y.sizes()) return x + at::dropout(y, p, true);
  return fused::add_dropout(x, y, p, fused::next_key());
}

}  // namespace uniad::model
