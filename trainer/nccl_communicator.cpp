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

// An allreduce queued on `stream`: an event behind it tells when it is complete.
class Pending : public Communicator::PendingAverage {
 public:
  explicit Pending(cudaStream_t stream) {
    check(cudaEventCreateWithFlags(&done_, cudaEventDisableTiming), "event");
    check(cudaEventRecord(done_, stream), "record");
  }
  ~Pending() override { cudaEventDestroy(done_); }
  bool done() override { return cudaEventQuery(done_) == cudaSuccess; }
  void wait() override { check(cudaEventSynchronize(done_), "wait for allreduce"); }

 private:
  cudaEvent_t done_{};
};

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
    // Non-blocking: a plain stream would wait for the legacy default stream's work and make it
    // wait in turn, which serialises the exchange with backward.
    check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "stream");
  }
  ~NcclCommunicator() override {
    ncclCommDestroy(nccl_);
    cudaStreamDestroy(stream_);
  }
  std::string backend() const override { return "nccl"; }

  // The reduction runs on this communicator's own stream, after the work queued so far on
  // LibTorch's stream (the legacy default stream, which LibTorch uses unless told otherwise):
  // an event orders the two without blocking the host, so backward keeps queueing kernels.
  std::unique_ptr<PendingAverage> start_average(const at::Tensor& flat) override {
    if (!flat.is_cuda() || flat.scalar_type() != at::kFloat || !flat.is_contiguous()) {
      throw RuntimeError("the NCCL backend exchanges contiguous float32 CUDA tensors");
    }
    cudaEvent_t gradients_ready{};
    check(cudaEventCreateWithFlags(&gradients_ready, cudaEventDisableTiming), "event");
    check(cudaEventRecord(gradients_ready, cudaStreamLegacy), "record");
    check(cudaStreamWaitEvent(stream_, gradients_ready, 0), "wait event");
    check(cudaEventDestroy(gradients_ready), "destroy event");  // released once the stream has passed it
    check(ncclAllReduce(flat.data_ptr(), flat.data_ptr(), flat.numel(), ncclFloat32, ncclAvg, nccl_, stream_),
          "allreduce");
    return std::make_unique<Pending>(stream_);
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
