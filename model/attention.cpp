#include "model/attention.h"

#include <algorithm>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/record_function.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/version.h>

#include "common/matmul.h"
#include "common/error.h"
#include "model/fused_dropout.h"
#include "model/softmax.h"

namespace uniad::model {

bool head_by_head_applies(const at::Tensor& q) {
  // Measured with bench/profile_step.py --eval (docs/benchmarks.md): 8-10% off the forward on one
  // thread. Inside a parallel region (UniAD's inference gives each thread a slice of the batch)
  // every kernel runs on one thread, so the path applies there too.
  const bool one_thread = at::get_num_threads() == 1 || at::in_parallel_region();
  return one_thread && q.device().is_cpu() && q.scalar_type() == at::kFloat && !q.requires_grad();
}

namespace {

// A [batch, rows, cols] view as a oneDNN operand (common/matmul.h): any strides.
matmul::Matrix matrix_of(const at::Tensor& t) {
  return {t.data_ptr<float>(), t.stride(0), t.stride(1), t.stride(2)};
}

}  // namespace

at::Tensor attention_head_by_head(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& mask,
                                  double scale) {
  const int64_t heads = q.size(0), tq = q.size(1), tk = k.size(1), d = v.size(2);
  // As many heads per group as keep the group's logits within ~1 MB (the core's L2 holds 1-2 MB).
  const int64_t group = std::max<int64_t>(1, (int64_t{1} << 20) / (tq * tk * int64_t{sizeof(float)}));
  const at::Tensor additive = mask.defined() ? mask.contiguous() : mask;
  at::Tensor out = at::empty({tq, heads, d}, q.options());
  at::Tensor logits = at::empty({std::min(group, heads), tq, tk}, q.options());
  float* rows = logits.data_ptr<float>();
  for (int64_t first = 0; first < heads; first += group) {
    const int64_t n = std::min(group, heads - first);
    // logits = scale q k^T for n heads; the mask is added in the softmax's pass over them.
    matmul::Product scores;
    scores.batch = n, scores.m = tq, scores.k = d, scores.n = tk;
    scores.a = matrix_of(q.narrow(0, first, n));
    scores.b = matrix_of(k.narrow(0, first, n).transpose(1, 2));
    scores.c = rows, scores.c_batch_stride = tq * tk, scores.c_row_stride = tk;
    scores.scale = static_cast<float>(scale);
    {
      RECORD_USER_SCOPE("uniad::attention_product");  // for bench/profile_step.py
      matmul::run(scores);
    }
    {
      RECORD_USER_SCOPE("uniad::softmax");
      fused::softmax_rows(rows, rows, n * tq, tk, additive.defined() ? additive.data_ptr<float>() : nullptr, tq);
    }
    // out[:, first + h, :] = probabilities[h] v[h], written straight into the [Tq, H, D] result.
    matmul::Product mix;
    mix.batch = n, mix.m = tq, mix.k = tk, mix.n = d;
    mix.a = {rows, tq * tk, tk, 1};
    mix.b = matrix_of(v.narrow(0, first, n));
    mix.c = out.data_ptr<float>() + first * d, mix.c_batch_stride = d, mix.c_row_stride = heads * d;
    RECORD_USER_SCOPE("uniad::attention_product");
    matmul::run(mix);
  }
  return out;
}

namespace {

bool product_applies(const at::Tensor& t) {
  return t.dim() == 3 && t.device().is_cpu() && t.scalar_type() == at::kFloat && (t.stride(2) == 1 || t.stride(1) == 1);
}

// [H, M, K] by [H, K, N] into a new contiguous [H, M, N].
at::Tensor product(const at::Tensor& a, const at::Tensor& b) {
  RECORD_USER_SCOPE("uniad::attention_product");
  at::Tensor c = at::empty({a.size(0), a.size(1), b.size(2)}, a.options());
  matmul::Product p;
  p.batch = a.size(0), p.m = a.size(1), p.k = a.size(2), p.n = b.size(2);
  p.a = matrix_of(a);
  p.b = matrix_of(b);
  p.c = c.data_ptr<float>(), p.c_batch_stride = p.m * p.n, p.c_row_stride = p.n;
  matmul::run(p);
  return c;
}

struct AttentionProduct : torch::autograd::Function<AttentionProduct> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& a, const at::Tensor& b) {
    ctx->save_for_backward({a, b});
    return product(a, b);
  }
  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                               torch::autograd::tensor_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor& a = saved[0];
    const at::Tensor& b = saved[1];
    const at::Tensor g = product_applies(grads[0]) ? grads[0] : grads[0].contiguous();
    at::Tensor grad_a, grad_b;
    if (ctx->needs_input_grad(0)) grad_a = product(g, b.transpose(1, 2));
    if (ctx->needs_input_grad(1)) grad_b = product(a.transpose(1, 2), g);
    return {grad_a, grad_b};
  }
};

}  // namespace

at::Tensor attention_product(const at::Tensor& a, const at::Tensor& b) {
  if (!product_applies(a) || !product_applies(b)) return at::bmm(a, b);
  return AttentionProduct::apply(a, b);
}

bool sdpa_available() { return TORCH_VERSION_MAJOR >= 2; }

AttentionKernel choose_attention_kernel(const at::Tensor& q, bool training) {
  if (!training && head_by_head_applies(q)) return AttentionKernel::kHeadByHead;
  if (q.is_cuda() && sdpa_available()) return AttentionKernel::kSdpa;
  return AttentionKernel::kExplicit;
}

namespace {

at::Tensor sdpa(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& mask, double p,
                double scale) {
#if TORCH_VERSION_MAJOR >= 2
  // [B*H, T, D] -> [1, B*H, T, D]: the fused CUDA kernels take 4-d tensors; the mask must be of
  // the query's type (under bfloat16 autocast too).
  const at::Tensor additive = mask.defined() ? mask.to(q.scalar_type()) : mask;
  const at::Tensor out = at::scaled_dot_product_attention(q.unsqueeze(0), k.unsqueeze(0), v.unsqueeze(0),
                                                          additive.defined() ? std::optional<at::Tensor>(additive)
                                                                             : std::optional<at::Tensor>(),
                                                          p, /*is_causal=*/false, scale);
  return out.squeeze(0).transpose(0, 1).contiguous();  // [Tq, B*H, D]
#else
  (void)q, (void)k, (void)v, (void)mask, (void)p, (void)scale;
  throw RuntimeError("scaled_dot_product_attention needs LibTorch 2.0 or later");
#endif
}

}  // namespace

at::Tensor attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& mask, double p,
                     bool training, AttentionKernel kernel) {
  if (kernel == AttentionKernel::kAuto) kernel = choose_attention_kernel(q, training);
  const double root_d = std::sqrt(static_cast<double>(q.size(2))), scale = 1 / root_d;
  switch (kernel) {
    case AttentionKernel::kHeadByHead:
      if (training || !head_by_head_applies(q)) throw RuntimeError("head-by-head attention is for CPU float32 inference");
      return attention_head_by_head(q, k, v, mask, scale);  // 1 / sqrt(d) goes into the scores product
    case AttentionKernel::kSdpa:
      return sdpa(q, k, v, mask, training ? p : 0.0, scale);
    default: {
      // Scaled as the reference does (q / sqrt(d), after the head split), for the same rounding;
      // the additive -inf mask removes blocked keys inside the softmax's pass.
      const at::Tensor logits = attention_product(q / root_d, k.transpose(1, 2));
      const at::Tensor probabilities = softmax_dropout(logits, p, training, mask);
      return attention_product(probabilities, v).transpose(0, 1).contiguous();
    }
  }
}

}  // namespace uniad::model
