#pragma once
// The core of scaled dot-product attention for inference, one head at a time.
//
// Why: batched over all heads, the attention logits of a reference-size batch are 64 x 196 x
// 196 floats = 10 MB, written by the q k^T product, read and written by the softmax and read by
// the product with v: three trips to memory, which on these CPUs cost as much as the arithmetic
// (the softmax alone ran at ~1 ns per element, bound by memory bandwidth). One head's logits
// (150 KB) stay in the core's cache from the product through the softmax to the product with v.
//
// The two products run through oneDNN (common/matmul.h: 1.5-1.7x OpenBLAS's speed on these
// 196 x 32 by 32 x 196 and 196 x 196 by 196 x 32 shapes, bench_matmul), and the mask is added in
// the softmax's pass rather than in a pass of its own.
//
// For tensors without gradients on the CPU in float32 on one thread (or inside a parallel
// region: UniAD's inference on more threads gives each thread a slice of the batch); the
// training path keeps the batched operators.
#include <ATen/core/Tensor.h>

namespace uniad::model {

// The attention of a multi-head layer, with the choice of kernel made here and nowhere else:
//   kHeadByHead  CPU inference in float32 on one thread (below): one head's logits in cache;
//   kSdpa        at::scaled_dot_product_attention (LibTorch 2.x): on CUDA a fused kernel that
//                takes the additive neighbor mask and dropout (memory-efficient attention),
//                never materialising the [B*H, T, T] logits for backward;
//   kExplicit    softmax(q k^T + mask) with dropout, times v, as the reference writes it (the
//                CPU training path: oneDNN products, the fused softmax-dropout; the float32
//                parity tests hold it to the reference's rounding).
// kAuto picks kHeadByHead where it applies, kSdpa on CUDA when LibTorch has it, else kExplicit.
enum class AttentionKernel { kAuto, kHeadByHead, kSdpa, kExplicit };

// softmax(q k^T / sqrt(D) + mask) v with dropout `p` on the probabilities when `training`.
// q: [B*H, Tq, D] unscaled, k and v: [B*H, Tk, D], mask: additive [Tq, Tk] or undefined.
// Returns [Tq, B*H, D], contiguous. Another kernel than kAuto is for tests and benchmarks;
// one that cannot run here is a RuntimeError.
at::Tensor attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& mask, double p,
                     bool training, AttentionKernel kernel = AttentionKernel::kAuto);

// The kernel attention() runs for these arguments (never kAuto).
AttentionKernel choose_attention_kernel(const at::Tensor& q, bool training);

// Whether this LibTorch has at::scaled_dot_product_attention (2.0 and later).
bool sdpa_available();

// softmax(scale q k^T + mask) v per head. q: [H, Tq, D], k and v: [H, Tk, D] (any strides with a unit
// last stride), mask: additive [Tq, Tk] or undefined. Returns [Tq, H, D] (contiguous), the layout
// the output projection reads as [Tq * B, E] when H = B * heads.
at::Tensor attention_head_by_head(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& mask,
                                  double scale = 1);

// True where attention_head_by_head applies.
bool head_by_head_applies(const at::Tensor& q);

// a b for batched matrices, [H, M, K] by [H, K, N], with gradients: the attention's two products
// in training. On float32 CPU tensors forward and backward (grad a = g b^T, grad b = a^T g) are
// oneDNN products that read transposed operands through their strides (no copies); elsewhere
// at::bmm.
at::Tensor attention_product(const at::Tensor& a, const at::Tensor& b);

}  // namespace uniad::model
