// The GPU path on a GPU (ctest starts this program with mpirun -np 2; scripts/gpu-check.sh
// runs it on the lent GPU machine): the parity model on CUDA against the CPU, forward and
// backward; the NCCL communicator on one rank (average, broadcast, type checks); and NCCL's
// timeout, which must abort a communicator whose peer never comes instead of hanging the job.
// Without a visible GPU every test says SKIPPED: nothing here passes without having run.
#include <mpi.h>
#include <nccl.h>

#include <chrono>

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/types.h>

#include "common/device.h"
#include "common/error.h"
#include "common/hdf5.h"
#include "model/checkpoint.h"
#include "tests/test_support.h"
#include "tests/trainer/mpi_environment.h"
#include "trainer/communicator.h"

namespace uniad {
namespace {

const auto* const kMpi = ::testing::AddGlobalTestEnvironment(new test::MpiEnvironment);
const char* kParity = "parity/uniad_official_eval.h5";

int world(int* rank = nullptr) {
  int size = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  if (rank) MPI_Comm_rank(MPI_COMM_WORLD, rank);
  return size;
}

class OnGpu : public ::testing::Test {
 protected:
  void SetUp() override {
    if (visible_gpus() == 0) {
      GTEST_SKIP() << "SKIPPED: no GPU visible (" << (cuda_built() ? "GPU build" : "CPU build") << ")";
    }
  }
  const c10::Device gpu_{c10::kCUDA, 0};
};

at::Tensor read_tensor(const h5::File& file, const std::string& name) {
  std::vector<hsize_t> shape;
  std::vector<float> values = file.read<float>(name, &shape);
  return at::from_blob(values.data(), std::vector<int64_t>(shape.begin(), shape.end()), at::kFloat).clone();
}

// The largest difference relative to the larger magnitude of the two (at least 1).
double relative_difference(const at::Tensor& cpu, const at::Tensor& gpu) {
  const at::Tensor g = gpu.cpu();
  EXPECT_EQ(cpu.sizes(), g.sizes());
  const double scale = std::max(1.0, std::max(cpu.abs().max().item<double>(), g.abs().max().item<double>()));
  return (cpu - g).abs().max().item<double>() / scale;
}

// The parity file's input (and the reference's weights, where it has them): reconstruction and
// anomaly map in evaluation, then a training step's gradients (dropout and jitter off, so both devices compute
// the same function), CUDA within 1e-4 of the CPU.
TEST_F(OnGpu, ParityModelForwardAndBackwardMatchTheCpu) {
  UNIAD_REQUIRE_SHARED(kParity);
  const h5::File file = h5::File::open((test::shared_dir() / kParity).string());
  model::ModelOptions options;
  options.dropout = 0;
  options.jitter_scale = 0;
  torch::manual_seed(0);
  auto cpu = model::make_model(options);
  // The reference's weights where the file has them (../shared); scripts/gpu-bundle.sh carries
  // the input alone, and then both models take the same seeded weights.
  if (file.exists("params")) {
    std::map<std::string, at::Tensor> weights;
    for (const auto& name : file.list("/params")) weights[name] = read_tensor(file, "/params/" + name);
    model::load_parameters(*cpu, weights, "parity /params");
  }
  auto cuda = model::make_model(options);
  model::load_parameters(*cuda, model::named_parameters(*cpu), "the CPU model");
  cuda->to(gpu_);
  const at::Tensor input = read_tensor(file, "/inputs/feature_align");
  {
    torch::NoGradGuard no_grad;
    cpu->eval(), cuda->eval();
    const at::Tensor x = input.to(gpu_);
    EXPECT_LT(relative_difference(cpu->forward(input), cuda->forward(x)), 1e-4);
    EXPECT_LT(relative_difference(cpu->anomaly_map(input), cuda->anomaly_map(x)), 1e-4);
  }
  cpu->train(), cuda->train();
  at::mse_loss(cpu->forward(input), input).backward();
  at::mse_loss(cuda->forward(input.to(gpu_)), input.to(gpu_)).backward();
  const auto cuda_parameters = cuda->named_parameters();
  for (const auto& item : cpu->named_parameters()) {
    ASSERT_TRUE(item.value().grad().defined()) << item.key();
    EXPECT_LT(relative_difference(item.value().grad(), cuda_parameters[item.key()].grad()), 1e-4) << item.key();
  }
}

TEST_F(OnGpu, NcclOneRankAveragesBroadcastsAndChecksTypes) {
  const auto comm = trainer::make_nccl_communicator(MPI_COMM_SELF, gpu_, 60);
  const at::Tensor x = at::randn({1 << 20}, at::TensorOptions().device(gpu_));
  const at::Tensor before = x.clone();
  comm->start_average(x)->wait();
  EXPECT_TRUE(at::equal(x, before)) << "the mean over one rank is the tensor itself";
  const at::Tensor half = at::randn({1000}, at::TensorOptions().device(gpu_).dtype(at::kBFloat16));
  comm->start_average(half)->wait();
  comm->broadcast({x, half, at::arange(10, at::TensorOptions().device(gpu_).dtype(at::kLong))});
  EXPECT_THROW(comm->start_average(at::ones({4}, at::TensorOptions().device(gpu_).dtype(at::kInt))), RuntimeError)
      << "integers cannot be averaged";
  EXPECT_THROW(comm->start_average(at::ones({4})), RuntimeError) << "a CPU tensor";
  EXPECT_THROW(comm->broadcast({at::ones({4}, at::TensorOptions().device(gpu_).dtype(at::kBool))}), RuntimeError);
}

// Rank 0 builds a two-rank NCCL communicator; rank 1 takes the unique id over MPI but never
// joins. Rank 0 must give up after --nccl-timeout, abort the communicator and throw.
TEST_F(OnGpu, NcclTimeoutAbortsInsteadOfHanging) {
  int rank = 0;
  if (world(&rank) != 2) GTEST_SKIP() << "SKIPPED: needs mpirun -np 2";
  if (rank == 1) {
    ncclUniqueId id;
    MPI_Bcast(&id, sizeof id, MPI_BYTE, 0, MPI_COMM_WORLD);  // the id, then nothing
  } else {
    const auto start = std::chrono::steady_clock::now();
    try {
      trainer::make_nccl_communicator(MPI_COMM_WORLD, gpu_, 5);
      ADD_FAILURE() << "a communicator whose peer never joined was built";
    } catch (const RuntimeError& e) {
      EXPECT_NE(std::string(e.what()).find("did not complete within --nccl-timeout 5 s"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("aborted"), std::string::npos) << e.what();
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    EXPECT_GE(seconds, 5.0);
    EXPECT_LT(seconds, 60.0) << "aborting took too long";
  }
  MPI_Barrier(MPI_COMM_WORLD);
}

}  // namespace
}  // namespace uniad
