#include "common/blas.h"

#include <dlfcn.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace uniad {

const char* blas_kernel_name() {
  using CoreName = char* (*)();
  // Looked up at run time: the program links the generic BLAS interface, and the BLAS behind it
  // (chosen by update-alternatives) need not be OpenBLAS.
  const auto corename = reinterpret_cast<CoreName>(dlsym(RTLD_DEFAULT, "openblas_get_corename"));
  return corename ? corename() : "";
}

void use_fast_blas_kernels(char** argv) {
  if (std::getenv("OPENBLAS_CORETYPE")) return;
  if (std::strcmp(blas_kernel_name(), "Prescott") != 0) return;
  const char* kernels = __builtin_cpu_supports("avx512f") ? "SkylakeX" : __builtin_cpu_supports("avx2") ? "Haswell" : nullptr;
  if (!kernels) return;
  setenv("OPENBLAS_CORETYPE", kernels, 1);
  execv("/proc/self/exe", argv);
  // Still here: run on as we are (slower, but correct).
  std::fprintf(stderr, "uniad: warning: OpenBLAS chose its generic kernels; set OPENBLAS_CORETYPE=%s for ~4x faster matmuls\n",
               kernels);
}

}  // namespace uniad
