// The attention's softmax + dropout at the reference size (batch 8 x 8 heads: 64 x 196 x 196
// logits, a masked key), forward and backward, through uniad's fused operator and through the
// expression the reference runs (LibTorch's softmax, then its dropout), in the same run.
// Median of 20 after 5 warm-up calls; memory kept as the uniad executable keeps it. Then the
// inference softmax alone (model/softmax.h) per instruction set, on one head group of the
// head-by-head path (6 heads x 196 x 196, in L2) with the neighbor mask: ns per logit.
//
// Usage: bench_softmax_dropout [--threads T]      (prints one Markdown table row per operator)
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include "common/allocator.h"
#include "common/blas.h"
#include "model/fused_dropout.h"
#include "model/reconstruction.h"
#include "model/softmax.h"

namespace {

struct Timing {
  double forward_ms, backward_ms;
};

Timing time_operator(const std::function<at::Tensor(const at::Tensor&)>& op) {
  at::manual_seed(0);
  at::Tensor logits = at::randn({64, 196, 196});
  logits.select(2, 4).fill_(-INFINITY);  // a blocked key, as the neighbor mask makes them
  const at::Tensor upstream = at::randn({64, 196, 196});
  std::vector<double> forward, backward;
  for (int i = 0; i < 25; ++i) {
    const at::Tensor x = logits.clone().requires_grad_(true);
    const auto t0 = std::chrono::steady_clock::now();
    const at::Tensor y = op(x);
    const auto t1 = std::chrono::steady_clock::now();
    y.backward(upstream);
    const auto t2 = std::chrono::steady_clock::now();
    if (i < 5) continue;
    forward.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
    backward.push_back(std::chrono::duration<double, std::milli>(t2 - t1).count());
  }
  std::sort(forward.begin(), forward.end());
  std::sort(backward.begin(), backward.end());
  return {forward[forward.size() / 2], backward[backward.size() / 2]};
}

// ns per logit of softmax_rows with `set` on 6 heads' masked logits, median of 200 calls; < 0
// where this CPU lacks the set.
double softmax_rows_ns(const char* set) {
  at::manual_seed(0);
  const at::Tensor logits = at::randn({6, 196, 196}) * 3;
  const at::Tensor mask = uniad::model::neighbor_mask(14, 14, 7);
  at::Tensor out = at::empty_like(logits);
  auto call = [&] {
    return uniad::model::fused::softmax_rows_with(set, logits.data_ptr<float>(), out.data_ptr<float>(), 6 * 196, 196,
                                                  mask.data_ptr<float>(), 196);
  };
  if (!call()) return -1;
  std::vector<double> ns;
  for (int i = 0; i < 220; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    call();
    const auto t1 = std::chrono::steady_clock::now();
    if (i >= 20) ns.push_back(std::chrono::duration<double, std::nano>(t1 - t0).count() / logits.numel());
  }
  std::sort(ns.begin(), ns.end());
  return ns[ns.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  uniad::use_fast_blas_kernels(argv);
  uniad::keep_freed_memory();  // as the uniad executable does
  int threads = 1;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--threads") && i + 1 < argc) {
      threads = std::stoi(argv[++i]);
    } else {
      std::fprintf(stderr, "usage: bench_softmax_dropout [--threads T]\n");
      return 2;
    }
  }
  at::set_num_threads(threads);
  const double p = 0.1;
  const Timing libtorch = time_operator([&](const at::Tensor& x) { return at::dropout(at::softmax(x, -1), p, true); });
  const Timing fused = time_operator([&](const at::Tensor& x) { return uniad::model::softmax_dropout(x, p, true); });
  std::printf("| threads | operator | forward ms | backward ms | total ms |\n|---|---|---|---|---|\n");
  std::printf("| %d | LibTorch softmax, then dropout | %.2f | %.2f | %.2f |\n", threads, libtorch.forward_ms,
              libtorch.backward_ms, libtorch.forward_ms + libtorch.backward_ms);
  std::printf("| %d | uniad softmax_dropout | %.2f | %.2f | %.2f |\n", threads, fused.forward_ms, fused.backward_ms,
              fused.forward_ms + fused.backward_ms);
  std::printf("\n| instruction set | inference softmax, ns per logit (6 x 196 x 196, masked) |\n|---|---|\n");
  for (const char* set : {"avx512", "avx2", "sse2"}) {
    const double ns = softmax_rows_ns(set);
    if (ns >= 0) std::printf("| %s | %.3f |\n", set, ns);
  }
  return 0;
}
