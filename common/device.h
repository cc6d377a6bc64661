#pragma once
// Where a command computes: the one place that turns `--device auto|cpu|cuda` into a device,
// and that gives each MPI rank its own GPU.
//
// "auto" means CUDA when this build has the GPU path (-DUNIAD_CUDA=ON, a CUDA LibTorch) and a
// GPU is visible, else the CPU. "cuda" without them is a UsageError that says which is missing.
// On CUDA, rank r of a node takes GPU (local rank mod visible GPUs); two ranks of one node on
// the same GPU is an error naming both counts, since they would silently halve each other's
// speed and memory (Slurm's --gpu-bind gives each rank one visible GPU: that is fine).
#include <cstdint>
#include <string>
#include <vector>

#include <c10/core/Device.h>
#include <mpi.h>

namespace uniad {

// Is the GPU path compiled in (UNIAD_WITH_CUDA)?
bool cuda_built();
// GPUs this process can see (0 in the CPU build or without a driver).
int visible_gpus();

// Checks the spelling of a --device value: auto, cpu or cuda.
void check_device_option(const std::string& requested);
// "auto" | "cpu" | "cuda" -> the CPU or CUDA's GPU `gpu` (UsageError when CUDA is asked for
// but missing).
c10::Device resolve_device(const std::string& requested, int gpu = 0);

// The device of this rank: resolve_device with GPU (local_rank mod visible GPUs), made the
// current CUDA device; collective over `world` (every rank must call it), so that GPUs shared
// between ranks of one node are found on every rank.
c10::Device rank_device(const std::string& requested, MPI_Comm world, int local_rank, int local_size);

// One rank's GPU as the sharing check sees it: its node and the GPU's PCI bus id.
struct RankGpu {
  std::string host, gpu;
};
// "" when no two ranks share a GPU, else the error to raise (naming the ranks per node and
// the GPUs visible to each). Pure: tested without a GPU.
std::string shared_gpu_problem(const std::vector<RankGpu>& ranks, int local_size, int gpus_visible);

// Compute threads of this process: `requested` if > 0, else default_threads() (the CPUs this
// process may run on) shared among the `ranks_on_node` ranks. Sets LibTorch's intra-op threads
// and OpenMP's (our kernels' parallel loops and oneDNN), which may be different runtimes with
// pip's LibTorch (docs/training.md, "Two LibTorch lines"); returns the count.
int configure_compute_threads(int requested, int ranks_on_node = 1);

// Free memory of a GPU in bytes (cudaMemGetInfo on that device); -1 for the CPU, whose
// memory the process does not budget.
std::int64_t free_device_memory(const c10::Device& device);

// "cpu", or "cuda:0 (NVIDIA H100 80GB HBM3)": for logs and the provenance of outputs.
std::string describe_device(const c10::Device& device);

}  // namespace uniad
