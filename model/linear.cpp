#include "model/linear.h"

#include <ATen/ATen.h>
#include <ATen/record_function.h>
#include <c10/core/GradMode.h>

#include <cmath>

#include "common/matmul.h"

namespace uniad::model {

bool fused_linear_applies(const at::Tensor& x) {
  return !c10::GradMode::is_enabled() && x.device().is_cpu() && x.scalar_type() == at::kFloat;
}

at::Tensor linear(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias, const at::Tensor& residual,
                  bool relu) {
  if (!fused_linear_applies(x) || !weight.is_contiguous() || !bias.defined()) {
    at::Tensor y = at::linear(x, weight, bias);
    if (residual.defined()) y = residual + y.view(residual.sizes());
    return relu ? at::relu(y) : y;
  }
  RECORD_USER_SCOPE("uniad::linear");  // for bench/profile_step.py
  const int64_t k = x.size(-1), n = weight.size(0), m = x.numel() / k;
  const at::Tensor a = x.reshape({m, k}).contiguous();
  const at::Tensor added = residual.defined() ? residual.reshape({m, n}).contiguous() : residual;
  std::vector<int64_t> shape = x.sizes().vec();
  shape.back() = n;
  at::Tensor y = at::empty(residual.defined() ? residual.sizes() : at::IntArrayRef(shape), x.options());
  const at::Tensor b = bias.contiguous();
  matmul::Product p;
  p.m = m, p.k = k, p.n = n;
  p.a = {a.data_ptr<float>(), 0, k, 1};
  p.b = {weight.data_ptr<float>(), 0, 1, k};  // W^T: element (k, n) at n * K + k
  p.c = y.data_ptr<float>(), p.c_row_stride = n;
  p.bias = b.data_ptr<float>();
  if (added.defined()) p.addend = {added.data_ptr<float>(), 0, n, 1};
  p.relu = relu;
  matmul::run(p);
  return y;
}

namespace {

// Each row's mean, then the mean square of its deviations (two passes: no cancellation), then
// (x * rstd + (-mean * rstd)) * weight + bias, the order LibTorch's kernel evaluates it in.
// `omp simd` lets the compiler vectorise the two sums; the clones give it AVX-512 and AVX2.
__attribute__((target_clones("avx512f", "avx2,fma", "default"))) void layer_norm_rows(
    const float* __restrict x, float* __restrict y, int64_t rows, int64_t cols, const float* __restrict weight,
    const float* __restrict bias, float eps) {
  for (int64_t r = 0; r < rows; ++r, x += cols, y += cols) {
    float sum = 0;
#pragma omp simd reduction(+ : sum)
    for (int64_t c = 0; c < cols; ++c) sum += x[c];
    const float mean = sum / static_cast<float>(cols);
    float squares = 0;
#pragma omp simd reduction(+ : squares)
    for (int64_t c = 0; c < cols; ++c) squares += (x[c] - mean) * (x[c] - mean);
    const float rstd = 1.0f / std::sqrt(squares / static_cast<float>(cols) + eps);
    const float shift = -mean * rstd;
#pragma omp simd
    for (int64_t c = 0; c < cols; ++c) y[c] = (x[c] * rstd + shift) * weight[c] + bias[c];
  }
}

}  // namespace

at::Tensor layer_norm(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias, double eps) {
  const int64_t cols = x.size(-1);
  if (weight.defined() && x.scalar_type() != weight.scalar_type()) {
    // Under bfloat16 autocast (trainer/precision.h) the input is bfloat16 and the weights
    // float32: normalise in float32, as CUDA's autocast does (LibTorch 1.13's CPU kernel takes
    // no mixed types).
    return at::layer_norm(x.to(weight.scalar_type()), {cols}, weight, bias, eps);
  }
  if (!fused_linear_applies(x) || !weight.defined() || !bias.defined() || weight.numel() != cols) {
    return at::layer_norm(x, {cols}, weight, bias, eps);
  }
  RECORD_USER_SCOPE("uniad::layer_norm");  // for bench/profile_step.py
  const at::Tensor input = x.contiguous(), w = weight.contiguous(), b = bias.contiguous();
  at::Tensor y = at::empty_like(input);
  layer_norm_rows(input.data_ptr<float>(), y.data_ptr<float>(), input.numel() / cols, cols, w.data_ptr<float>(),
                  b.data_ptr<float>(), static_cast<float>(eps));
  return y;
}

}  // namespace uniad::model
