#pragma once
// A small parallel-for over an index range, for I/O-bound work such as image decoding.
//
// Work is handed out one index at a time from a shared counter, so slow items (a big
// JPEG) do not stall a fixed partition. The first exception thrown by any worker is
// re-thrown in the caller after all workers stop; remaining items are abandoned.
#include <cstddef>
#include <functional>

namespace uniad {

// Calls fn(i) for i in [0, n) on up to `threads` threads (threads <= 1 runs inline).
void parallel_for(std::size_t n, int threads, const std::function<void(std::size_t)>& fn);

// The CPUs this process may run on (its affinity mask, as Slurm or taskset set it), at least 1:
// the one default every thread count derives from.
int default_threads();

}  // namespace uniad
