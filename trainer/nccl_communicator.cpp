// The NCCL backend of the gradient exchange: CUDA tensors, one rank per GPU. Compiled only
// where CUDA, NCCL and a CUDA-built LibTorch are found (UNIAD_WITH_NCCL); the CPU build
// never includes this file. tests/ also compiles it alone where the toolkit exists.
#include <cuda_runtime.h>
#include <nccl.h>

#include <ATen/ATen.h>

#include "common/error.h"
#include "trainer/communicator.h"

namespace uniad::trainer {

namespace {

void check(ncclResult_t result, const char* what) {
  if (result != ncclSuccess) throw RuntimeError(std::string("NCCL ") + what + ": " + ncclGetErrorString(result));
}

void check(cudaError_t result, const char* what) {
  if (result != cudaSuccess) throw RuntimeError(std::string("CUDA ") + what + ": " + cudaGetErrorString(result));
}

class NcclCommunicator : public Communicator {
 public:
  NcclCommunicator(MPI_Comm comm, int local_rank) : Communicator(comm) {
    int devices = 0;
    check(cudaGetDeviceCount(&devices), "device count");
    if (devices == 0) throw RuntimeError("NCCL backend: no CUDA device visible to this rank");
    check(cudaSetDevice(local_rank % devices), "set device");
    // Rank 0 creates the unique id; MPI carries it to the others.
    ncclUniqueId id;
    if (rank_ == 0) check(ncclGetUniqueId(&id), "unique id");
    MPI_Bcast(&id, sizeof id, MPI_BYTE, 0, comm_);
    check(ncclCommInitRank(&nccl_, size_, id, rank_), "init");
    check(cudaStreamCreate(&stream_), "stream");
  }
  ~NcclCommunicator() override {
    ncclCommDestroy(nccl_);
    cudaStreamDestroy(stream_);
  }
  std::string backend() const override { return "nccl"; }

  void average(const std::vector<at::Tensor>& tensors) override {
    check(cudaDeviceSynchronize(), "sync before allreduce");  // gradients complete on LibTorch's stream
    check(ncclGroupStart(), "group start");
    for (const at::Tensor& t : tensors) {
      check(ncclAllReduce(t.data_ptr(), t.data_ptr(), t.numel(), ncclFloat32, ncclAvg, nccl_, stream_), "allreduce");
    }
    check(ncclGroupEnd(), "group end");
    check(cudaStreamSynchronize(stream_), "sync after allreduce");
  }

  void broadcast(const std::vector<at::Tensor>& tensors) override {
    check(cudaDeviceSynchronize(), "sync before broadcast");
    check(ncclGroupStart(), "group start");
    for (const at::Tensor& t : tensors) {
      check(ncclBroadcast(t.data_ptr(), t.data_ptr(), t.numel(), ncclFloat32, 0, nccl_, stream_), "broadcast");
    }
    check(ncclGroupEnd(), "group end");
    check(cudaStreamSynchronize(stream_), "sync after broadcast");
  }

 private:
  ncclComm_t nccl_{};
  cudaStream_t stream_{};
};

}  // namespace

bool nccl_available() { return true; }

std::unique_ptr<Communicator> make_nccl_communicator(MPI_Comm comm, int local_rank) {
  return std::make_unique<NcclCommunicator>(comm, local_rank);
}

}  // namespace uniad::trainer
