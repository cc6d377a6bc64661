#pragma once
// Keeps freed tensor memory in the process instead of returning it to the kernel.
//
// LibTorch allocates and frees the same large buffers (im2col, activations) every batch.
// With glibc's defaults those above 128 KiB are fresh mmap()s, so every batch pays for
// page faults and zeroing: half the CPU time of feature extraction went to the kernel.
// Serving large blocks from the heap and trimming it rarely lets malloc reuse them instead.
#include <malloc.h>

namespace uniad {

inline void keep_freed_memory() {
  mallopt(M_MMAP_MAX, 0);                         // large blocks from the heap too (glibc caps the threshold at 32 MiB)
  mallopt(M_TRIM_THRESHOLD, 1024 * 1024 * 1024);  // give memory back only beyond 1 GiB free at the top
  mallopt(M_TOP_PAD, 64 * 1024 * 1024);
}

}  // namespace uniad
