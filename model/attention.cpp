#include "model/attention.h"

#include <algorithm>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include "common/matmul.h"
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
    matmul::run(scores);
    fused::softmax_rows(rows, rows, n * tq, tk, additive.defined() ? additive.data_ptr<float>() : nullptr, tq);
    // out[:, first + h, :] = probabilities[h] v[h], written straight into the [Tq, H, D] result.
    matmul::Product mix;
    mix.batch = n, mix.m = tq, mix.k = tk, mix.n = d;
    mix.a = {rows, tq * tk, tk, 1};
    mix.b = matrix_of(v.narrow(0, first, n));
    mix.c = out.data_ptr<float>() + first * d, mix.c_batch_stride = d, mix.c_row_stride = heads * d;
    matmul::run(mix);
  }
  return out;
}

}  // namespace uniad::model
