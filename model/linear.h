#pragma once
// The model's linear layers at inference: x W^T + b with the operation that follows it in the
// transformer (a residual addition or a ReLU) in one oneDNN product (common/matmul.h), instead of
// a BLAS product and an element-wise pass over its output; and the LayerNorm that follows them.
//
// Why: at inference (eval mode, no autograd) the forward is matrix products and the passes
// between them; a pass over a 1568 x 1024 activation costs 2-4% of the product that made it
// (bench_matmul: "linear ..., ReLU" and "+ residual" rows). With autograd (training), off the
// CPU or for other dtypes, each function is the LibTorch expression it stands for, so training
// and its parity with the reference are untouched.
#include <ATen/core/Tensor.h>

namespace uniad::model {

// True where the fused products apply to an input: float32 on the CPU, no autograd recording.
bool fused_linear_applies(const at::Tensor& x);

// x W^T + b (+ residual, if defined) (then ReLU, if relu). x [..., K], W [N, K], b [N], residual
// [..., N] with the same leading size; the result has the residual's shape, else [..., N].
at::Tensor linear(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias, const at::Tensor& residual = {},
                  bool relu = false);

// LayerNorm over the last dimension, (x - mean) / sqrt(var + eps) * weight + bias, in one
// vectorised kernel at inference (where fused_linear_applies(x)): two passes over each row for
// the moments while it is in L1, one for the output. LibTorch's CPU layer_norm took ~4% of the
// eval forward (2.3 ns per element). Elsewhere it is at::layer_norm.
at::Tensor layer_norm(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias, double eps);

}  // namespace uniad::model
