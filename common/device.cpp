#include "common/device.h"

#include <unistd.h>

#include <algorithm>
#include <map>

#include <ATen/Parallel.h>
#include <omp.h>

#include <fmt/core.h>
#include <torch/cuda.h>

#ifdef UNIAD_WITH_CUDA
#include <cuda_runtime.h>
#endif

#include "common/error.h"
#include "common/parallel.h"

namespace uniad {

bool cuda_built() {
#ifdef UNIAD_WITH_CUDA
  return true;
#else
  return false;
#endif
}

int visible_gpus() { return cuda_built() ? static_cast<int>(torch::cuda::device_count()) : 0; }

void check_device_option(const std::string& requested) {
  if (requested != "auto" && requested != "cpu" && requested != "cuda") {
    throw UsageError("--device must be auto, cpu or cuda, not '" + requested + "'");
  }
}

c10::Device resolve_device(const std::string& requested, int gpu) {
  check_device_option(requested);
  if (requested == "cpu") return c10::Device(c10::kCPU);
  if (!cuda_built()) {
    if (requested == "auto") return c10::Device(c10::kCPU);
    throw UsageError("--device cuda, but this uniad is a CPU build; build it with -DUNIAD_CUDA=ON against a CUDA "
                     "LibTorch (README, 'On a GPU cluster'), or use --device cpu");
  }
  const int gpus = visible_gpus();
  if (gpus == 0) {
    if (requested == "auto") return c10::Device(c10::kCPU);
    throw UsageError("--device cuda, but no GPU is visible to this process (CUDA_VISIBLE_DEVICES, the driver, or "
                     "the job's GPU request); use --device cpu");
  }
  return c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(gpu % gpus));
}

namespace {

std::string host_name() {
  char name[256] = {};
  gethostname(name, sizeof name - 1);
  return name;
}

// The PCI bus id of a GPU: what tells two ranks' GPUs apart when each sees its own set.
std::string gpu_bus_id([[maybe_unused]] int index) {
#ifdef UNIAD_WITH_CUDA
  char id[64] = {};
  if (cudaDeviceGetPCIBusId(id, sizeof id, index) == cudaSuccess) return id;
#endif
  return "gpu" + std::to_string(index);
}

// Every rank's string, on every rank.
std::vector<std::string> all_gather(const std::string& mine, MPI_Comm world) {
  int size = 1;
  MPI_Comm_size(world, &size);
  const int length = static_cast<int>(mine.size());
  std::vector<int> lengths(size), offsets(size);
  MPI_Allgather(&length, 1, MPI_INT, lengths.data(), 1, MPI_INT, world);
  int total = 0;
  for (int r = 0; r < size; ++r) offsets[r] = total, total += lengths[r];
  std::string all(total, '\0');
  MPI_Allgatherv(mine.data(), length, MPI_CHAR, all.data(), lengths.data(), offsets.data(), MPI_CHAR, world);
  std::vector<std::string> out;
  for (int r = 0; r < size; ++r) out.push_back(all.substr(offsets[r], lengths[r]));
  return out;
}

}  // namespace

std::string shared_gpu_problem(const std::vector<RankGpu>& ranks, int local_size, int gpus_visible) {
  std::map<std::pair<std::string, std::string>, int> first_user;
  for (int r = 0; r < static_cast<int>(ranks.size()); ++r) {
    const auto [it, fresh] = first_user.emplace(std::make_pair(ranks[r].host, ranks[r].gpu), r);
    if (fresh) continue;
    return fmt::format(
        "{} ranks run on node {}, but {} GPU(s) are visible to each: ranks {} and {} would share GPU {}. Start at most "
        "one rank per GPU (mpirun -np, srun --ntasks-per-node with --gpus-per-task=1), or use --device cpu",
        local_size, ranks[r].host, gpus_visible, it->second, r, ranks[r].gpu);
  }
  return "";
}

c10::Device rank_device(const std::string& requested, MPI_Comm world, int local_rank, int local_size) {
  const c10::Device device = resolve_device(requested, local_rank);
  // Collective on every rank, also where the device is the CPU, so that no rank waits alone.
  const std::string mine = device.is_cuda() ? host_name() + "\n" + gpu_bus_id(device.index()) : "";
  const std::vector<std::string> all = all_gather(mine, world);
  std::vector<RankGpu> gpus;
  for (const auto& entry : all) {
    const auto newline = entry.find('\n');
    // A CPU rank uses no GPU; give it a key no GPU rank has.
    gpus.push_back(newline == std::string::npos ? RankGpu{"cpu", std::to_string(gpus.size())}
                                                : RankGpu{entry.substr(0, newline), entry.substr(newline + 1)});
  }
  if (const std::string problem = shared_gpu_problem(gpus, local_size, visible_gpus()); !problem.empty()) {
    throw UsageError(problem);
  }
#ifdef UNIAD_WITH_CUDA
  if (device.is_cuda() && cudaSetDevice(device.index()) != cudaSuccess) {
    throw RuntimeError("cannot make " + describe_device(device) + " the current GPU");
  }
#endif
  return device;
}

int configure_compute_threads(int requested, int ranks_on_node) {
  const int threads = requested > 0 ? requested : std::max(1, default_threads() / std::max(1, ranks_on_node));
  at::set_num_threads(threads);
  omp_set_num_threads(threads);
  return threads;
}

std::int64_t free_device_memory(const c10::Device& device) {
  if (!device.is_cuda()) return -1;
#ifdef UNIAD_WITH_CUDA
  int current = 0;
  cudaGetDevice(&current);
  cudaSetDevice(device.index());
  std::size_t free = 0, total = 0;
  const cudaError_t status = cudaMemGetInfo(&free, &total);
  cudaSetDevice(current);
  if (status != cudaSuccess) {
    throw RuntimeError(fmt::format("cannot query the memory of {}: {}", device.str(), cudaGetErrorString(status)));
  }
  return static_cast<std::int64_t>(free);
#else
  throw UsageError("this uniad is a CPU build; it has no GPU memory to query");
#endif
}

std::string describe_device(const c10::Device& device) {
  if (!device.is_cuda()) return device.str();
#ifdef UNIAD_WITH_CUDA
  cudaDeviceProp properties{};
  if (cudaGetDeviceProperties(&properties, device.index()) == cudaSuccess) {
    return device.str() + " (" + properties.name + ")";
  }
#endif
  return device.str();
}

}  // namespace uniad
