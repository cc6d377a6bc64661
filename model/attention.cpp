#include "model/attention.h"

#include <algorithm>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include "model/softmax.h"

namespace uniad::model {

bool head_by_head_applies(const at::Tensor& q) {
  // Measured with bench/profile_step.py --eval (docs/benchmarks.md): 8-10% off the forward on one
  // thread. Inside a parallel region (UniAD's inference gives each thread a slice of the batch)
  // every kernel runs on one thread, so the path applies there too.
  const bool one_thread = at::get_num_threads() == 1 || at::in_parallel_region();
  return one_thread && q.device().is_cpu() && q.scalar_type() == at::kFloat && !q.requires_grad();
}

at::Tensor attention_head_by_head(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& mask) {
  const int64_t heads = q.size(0), tq = q.size(1), tk = k.size(1), d = v.size(2);
  // As many heads per group as keep the group's logits within ~1 MB (the core's L2 holds 1-2 MB).
  const int64_t group = std::max<int64_t>(1, (int64_t{1} << 20) / (tq * tk * int64_t{sizeof(float)}));
  at::Tensor out = at::empty({tq, heads, d}, q.options());
  for (int64_t first = 0; first < heads; first += group) {
    const int64_t n = std::min(group, heads - first);
    const at::Tensor qs = q.narrow(0, first, n), ks = k.narrow(0, first, n).transpose(1, 2);
    at::Tensor logits = mask.defined() ? at::baddbmm(mask, qs, ks) : at::bmm(qs, ks);  // [n, Tq, Tk]
    float* rows = logits.data_ptr<float>();
    fused::softmax_rows(rows, rows, n * tq, tk);
    at::Tensor heads_out = out.narrow(1, first, n).transpose(0, 1);  // [n, Tq, D] view into [Tq, H, D]
    at::bmm_out(heads_out, logits, v.narrow(0, first, n));
  }
  return out;
}

}  // namespace uniad::model
