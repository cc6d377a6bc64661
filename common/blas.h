#pragma once
// OpenBLAS picks its matrix kernels from the CPU model when it is loaded. Debian's 0.3.21 does
// not know recent Xeons (e.g. family 6 model 207) and falls back to its generic "Prescott"
// kernels: no AVX, about a quarter of the machine's matmul speed (measured 20-30 vs 90-125
// GFLOP/s single-threaded on such a VM). The choice cannot be changed once the library is
// loaded, only by OPENBLAS_CORETYPE in the environment of a new process.

namespace uniad {

// The kernel family OpenBLAS chose ("Haswell", "SkylakeX", ...), or "" when the BLAS in use is
// not OpenBLAS.
const char* blas_kernel_name();

// When OpenBLAS fell back to its generic kernels on a CPU with AVX2 or AVX-512 and the user set
// no OPENBLAS_CORETYPE, restarts this program (same pid, same arguments) with OPENBLAS_CORETYPE
// naming the matching kernels; returns otherwise. Call first thing in main(), before any thread
// or MPI starts. Setting OPENBLAS_CORETYPE yourself (to anything) turns this off.
void use_fast_blas_kernels(char** argv);

}  // namespace uniad
