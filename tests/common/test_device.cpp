// common/device.h: --device, one GPU per rank, and the thread count every command derives.
#include <sched.h>

#include <ATen/Parallel.h>
#include <omp.h>

#include "common/device.h"
#include "common/error.h"
#include "common/parallel.h"
#include "tests/test_support.h"

namespace uniad {
namespace {

TEST(Device, CpuAlwaysAutoFallsBackCudaIsRefusedWithoutAGpu) {
  EXPECT_EQ(resolve_device("cpu"), c10::Device(c10::kCPU));
  EXPECT_THROW(check_device_option("gpu"), UsageError);
  EXPECT_THROW(resolve_device("GPU"), UsageError);
  if (visible_gpus() > 0) {
    EXPECT_EQ(resolve_device("auto"), c10::Device(c10::kCUDA, 0));
    EXPECT_EQ(resolve_device("cuda", visible_gpus()), c10::Device(c10::kCUDA, 0)) << "index wraps round the GPUs";
    return;
  }
  EXPECT_EQ(resolve_device("auto"), c10::Device(c10::kCPU));
  try {
    resolve_device("cuda");
    ADD_FAILURE() << "--device cuda accepted without a GPU";
  } catch (const UsageError& e) {
    // Says which of the two is missing: the GPU build, or a visible GPU.
    const std::string expected = cuda_built() ? "no GPU is visible" : "this uniad is a CPU build";
    EXPECT_NE(std::string(e.what()).find(expected), std::string::npos) << e.what();
  }
}

TEST(Device, RanksOfOneNodeMustNotShareAGpu) {
  EXPECT_EQ(shared_gpu_problem({{"n1", "0000:01:00.0"}, {"n1", "0000:02:00.0"}}, 2, 2), "");
  EXPECT_EQ(shared_gpu_problem({{"n1", "0000:01:00.0"}, {"n2", "0000:01:00.0"}}, 1, 1), "")
      << "the same bus id on two nodes is two GPUs";
  // Slurm's --gpu-bind: each rank sees one GPU (index 0 for all), but they are different GPUs.
  EXPECT_EQ(shared_gpu_problem({{"n1", "0000:01:00.0"}, {"n1", "0000:41:00.0"}}, 2, 1), "");
  const std::string problem =
      shared_gpu_problem({{"n1", "0000:01:00.0"}, {"n1", "0000:02:00.0"}, {"n1", "0000:01:00.0"}}, 3, 2);
  EXPECT_NE(problem.find("3 ranks run on node n1, but 2 GPU(s) are visible to each"), std::string::npos) << problem;
  EXPECT_NE(problem.find("ranks 0 and 2 would share GPU 0000:01:00.0"), std::string::npos) << problem;
}

// Threads default to the CPUs this process may run on (Slurm's cgroup, taskset), not the
// machine's count, and one call sets LibTorch's and OpenMP's.
TEST(Threads, DefaultIsTheAffinityMaskAndGovernsOpenMp) {
  cpu_set_t all;
  ASSERT_EQ(sched_getaffinity(0, sizeof all, &all), 0);
  EXPECT_EQ(default_threads(), CPU_COUNT(&all));
  int first = 0;
  while (!CPU_ISSET(first, &all)) ++first;
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(first, &one);
  ASSERT_EQ(sched_setaffinity(0, sizeof one, &one), 0);
  EXPECT_EQ(default_threads(), 1);
  EXPECT_EQ(configure_compute_threads(0), 1);
  EXPECT_EQ(at::get_num_threads(), 1);
  ASSERT_EQ(sched_setaffinity(0, sizeof all, &all), 0);
  EXPECT_EQ(configure_compute_threads(0, CPU_COUNT(&all)), 1) << "the CPUs shared among the node's ranks";
  EXPECT_EQ(configure_compute_threads(3), 3);
  EXPECT_EQ(at::get_num_threads(), 3);
  EXPECT_EQ(omp_get_max_threads(), 3) << "our kernels' OpenMP runtime follows --threads";
}

}  // namespace
}  // namespace uniad
