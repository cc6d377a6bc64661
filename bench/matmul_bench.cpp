// The model's matrix products at the reference size (batch 8: 1568 tokens, hidden 256, feed-forward
// 1024, 8 heads of 32), through LibTorch's BLAS path (OpenBLAS: at::addmm, at::baddbmm, at::bmm)
// and through oneDNN (common/matmul.h), in the same run. Median of 30 after 5 warm-up calls.
//
// Usage: bench_matmul [--threads T]     (prints a Markdown table: GFLOP/s of each, and the ratio)
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include "common/blas.h"
#include "common/matmul.h"

namespace {

double median_ms(const std::function<void()>& f) {
  std::vector<double> ms;
  for (int i = 0; i < 35; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    const auto t1 = std::chrono::steady_clock::now();
    if (i >= 5) ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
  }
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

void report(const char* name, double flop, const std::function<void()>& blas, const std::function<void()>& onednn) {
  const double blas_ms = median_ms(blas), onednn_ms = median_ms(onednn);
  std::printf("| %s | %.1f | %.1f | %.2fx |\n", name, flop / blas_ms / 1e6, flop / onednn_ms / 1e6, blas_ms / onednn_ms);
}

// y = x W^T + b, x [M, K], W [N, K]: a projection or a feed-forward layer.
void linear(int64_t m, int64_t k, int64_t n) {
  const at::Tensor x = at::randn({m, k}), w = at::randn({n, k}), b = at::randn({n});
  at::Tensor y = at::empty({m, n});
  uniad::matmul::Product p;
  p.m = m, p.k = k, p.n = n;
  p.a = {x.data_ptr<float>(), 0, k, 1};
  p.b = {w.data_ptr<float>(), 0, 1, k};  // W^T: element (k, n) at n * K + k
  p.c = y.data_ptr<float>(), p.c_row_stride = n;
  p.bias = b.data_ptr<float>();
  const std::string name = "linear " + std::to_string(m) + " x " + std::to_string(k) + " by " + std::to_string(n);
  report(name.c_str(), 2.0 * m * k * n, [&] { at::addmm_out(y, b, x, w.t()); }, [&] { uniad::matmul::run(p); });
  // The same with the operation that follows it in the model: ReLU, or a residual addition.
  p.relu = true;
  report((name + ", ReLU").c_str(), 2.0 * m * k * n, [&] { at::addmm_out(y, b, x, w.t()).relu_(); },
         [&] { uniad::matmul::run(p); });
  p.relu = false;
  const at::Tensor residual = at::randn({m, n});
  p.addend = {residual.data_ptr<float>(), 0, n, 1};
  report((name + ", + residual").c_str(), 2.0 * m * k * n, [&] { at::add_out(y, residual, at::addmm(b, x, w.t())); },
         [&] { uniad::matmul::run(p); });
}

// The attention of `heads` heads, 196 tokens of 32: logits = mask + q k^T, then out =
// probabilities v, as the head-by-head inference path runs them (8 heads per call). q, k and v
// are [H, T, D] views whose rows lie `row_stride` floats apart: D when each head is contiguous,
// B x E = 2048 for the sequence-first [T, B, E] projections of a batch of 8, E = 256 (or a padded
// 272) for batch-first [B, T, E] ones. Rows 2048 or 256 floats apart fall into few L1 sets.
void attention(int64_t heads, int64_t tokens, int64_t d, int64_t row_stride) {
  const int64_t head_stride = row_stride == d ? tokens * d : d;
  auto make = [&] {
    const at::Tensor storage = at::randn({heads * tokens * row_stride});
    return storage.as_strided({heads, tokens, d}, {head_stride, row_stride, 1});
  };
  const at::Tensor q = make(), k = make(), v = make();
  const at::Tensor mask = at::randn({tokens, tokens});
  at::Tensor logits = at::empty({heads, tokens, tokens}), out = at::empty({heads, tokens, d});
  uniad::matmul::Product qk;
  qk.batch = heads, qk.m = tokens, qk.k = d, qk.n = tokens;
  qk.a = {q.data_ptr<float>(), q.stride(0), q.stride(1), 1};
  qk.b = {k.data_ptr<float>(), k.stride(0), 1, k.stride(1)};  // k^T
  qk.c = logits.data_ptr<float>(), qk.c_batch_stride = tokens * tokens, qk.c_row_stride = tokens;
  qk.addend = {mask.data_ptr<float>(), 0, tokens, 1};
  const std::string layout = row_stride == d ? "" : " (rows " + std::to_string(row_stride) + " apart)";
  const std::string n1 = std::to_string(heads) + " heads: mask + q k^T" + layout;
  report(n1.c_str(), 2.0 * heads * tokens * tokens * d, [&] { at::baddbmm_out(logits, mask, q, k.transpose(1, 2)); },
         [&] { uniad::matmul::run(qk); });
  qk.addend = {};
  const std::string n0 = std::to_string(heads) + " heads: q k^T" + layout;
  report(n0.c_str(), 2.0 * heads * tokens * tokens * d, [&] { at::bmm_out(logits, q, k.transpose(1, 2)); },
         [&] { uniad::matmul::run(qk); });
  uniad::matmul::Product pv;
  pv.batch = heads, pv.m = tokens, pv.k = tokens, pv.n = d;
  pv.a = {logits.data_ptr<float>(), tokens * tokens, tokens, 1};
  pv.b = {v.data_ptr<float>(), v.stride(0), v.stride(1), 1};
  pv.c = out.data_ptr<float>(), pv.c_batch_stride = tokens * d, pv.c_row_stride = d;
  const std::string n2 = std::to_string(heads) + " heads: probabilities v" + layout;
  report(n2.c_str(), 2.0 * heads * tokens * tokens * d, [&] { at::bmm_out(out, logits, v); }, [&] { uniad::matmul::run(pv); });
}

}  // namespace

int main(int argc, char** argv) {
  uniad::use_fast_blas_kernels(argv);
  int threads = 1;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--threads") && i + 1 < argc) {
      threads = std::stoi(argv[++i]);
    } else {
      std::fprintf(stderr, "usage: bench_matmul [--threads T]\n");
      return 2;
    }
  }
  at::set_num_threads(threads);
  at::manual_seed(0);
  std::printf("OpenBLAS kernels: %s, oneDNN %s, %d thread(s)\n\n", uniad::blas_kernel_name(),
              uniad::matmul::library_version(), threads);
  std::printf("| product | OpenBLAS GFLOP/s | oneDNN GFLOP/s | oneDNN / OpenBLAS |\n|---|---|---|---|\n");
  linear(1568, 256, 256);   // one of q, k, v; out_proj; input_proj at hidden 256 (K = 272 there)
  linear(1568, 256, 768);   // q, k and v together
  linear(1568, 256, 1024);  // feed-forward, first layer
  linear(1568, 1024, 256);  // feed-forward, second layer
  attention(8, 196, 32, 32);    // the head-by-head path's group (~1 MB of logits), heads contiguous
  attention(8, 196, 32, 2048);  // the same, q, k, v as sequence-first projections lay them out
  attention(8, 196, 32, 256);   // batch-first
  attention(8, 196, 32, 272);   // batch-first, rows padded by one cache line
  attention(64, 196, 32, 32);   // all heads of a batch of 8
  return 0;
}
