#pragma once
// Float32 matrix products on the CPU through oneDNN (Debian's libdnnl, the library LibTorch
// itself links for its CPU convolutions).
//
// Why not the BLAS behind LibTorch: the model's products are small and oddly shaped (1568 x 256
// by 256 for a projection at batch 8; 196 x 32 by 32 x 196 per attention head). Measured on these
// VMs with bench_matmul, OpenBLAS runs them at 60-95% of its own peak and its per-call setup is a
// visible share of a 1-2 ms product; oneDNN's JIT kernels for the CPU's own ISA run the same
// products closer to the peak, and a product with a broadcast addend (the attention mask) or a
// bias is one call, not a product and an element-wise pass.
//
// Operands are described, not owned: a pointer and element strides. Primitives are built once
// per shape and layout (per thread) and reused, so a call costs what the product costs. Threads:
// oneDNN uses the OpenMP threads LibTorch set (at::set_num_threads); called inside a parallel
// region it runs on the calling thread only.
#include <cstdint>

namespace uniad::matmul {

// A [batch, rows, cols] float32 matrix in memory: element (b, r, c) at
// data[b * batch_stride + r * row_stride + c * col_stride]. batch_stride 0 broadcasts one
// matrix over the batch.
struct Matrix {
  const float* data = nullptr;
  std::int64_t batch_stride = 0, row_stride = 0, col_stride = 1;
};

// C[b] = scale A[b] B[b] (+ bias on every row) (+ addend on every batch), then max(0, .) if
// relu, for b < batch.
struct Product {
  std::int64_t batch = 1, m = 0, k = 0, n = 0;
  Matrix a;  // [batch, m, k]
  Matrix b;  // [batch, k, n]
  float* c = nullptr;  // [batch, m, n], unit column stride
  std::int64_t c_batch_stride = 0, c_row_stride = 0;
  const float* bias = nullptr;  // [n], or null
  Matrix addend;                // [m, n], the same for every b (batch_stride ignored), or data null
  bool relu = false;
  float scale = 1.0f;
};

// Runs the product. Throws std::runtime_error (with oneDNN's status) if oneDNN rejects it.
void run(const Product& p);

// The oneDNN version in use, "major.minor.patch".
const char* library_version();

}  // namespace uniad::matmul
