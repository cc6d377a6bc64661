// The NCCL backend of the gradient exchange: CUDA tensors, one rank per GPU. Compiled only in
// the GPU build (-DUNIAD_CUDA=ON, cmake/cuda.cmake); the CPU build never includes this file.
//
// The communicator is non-blocking (NCCL's config.blocking = 0) so that no call can hang the
// process: every wait polls the GPU's progress and ncclCommGetAsyncError, and past
// --nccl-timeout aborts the communicator and throws. The error ends the job through MPI_Abort
// (launcher/mpi_session.cpp) with a non-zero exit code, so Slurm requeues or fails it instead
// of holding the allocation until its time limit while a peer is dead or stuck.
#include <cuda_runtime.h>
#include <nccl.h>

#include <chrono>
#include <thread>

#include <ATen/ATen.h>
#include <c10/cuda/CUDAStream.h>
#include <fmt/core.h>

#include "common/error.h"
#include "trainer/communicator.h"

namespace uniad::trainer {

namespace {

void check(cudaError_t result, const char* what) {
  if (result != cudaSuccess) throw RuntimeError(std::string("CUDA ") + what + ": " + cudaGetErrorString(result));
}

// An abortable NCCL communicator whose every wait is bounded by the timeout.
class NcclComm {
 public:
  NcclComm(int size, const ncclUniqueId& id, int rank, double timeout_seconds) : timeout_(timeout_seconds) {
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;
    enqueued(ncclCommInitRankConfig(&comm_, size, id, rank, &config), "communicator set-up");
  }
  ~NcclComm() {
    if (comm_ && !aborted_) ncclCommDestroy(comm_);
  }
  NcclComm(const NcclComm&) = delete;
  NcclComm& operator=(const NcclComm&) = delete;
  ncclComm_t get() const { return comm_; }

  // A non-blocking communicator may answer ncclInProgress while it still takes the call.
  void enqueued(ncclResult_t result, const char* what) {
    if (result != ncclSuccess && result != ncclInProgress) fail(fmt::format("{}: {}", what, ncclGetErrorString(result)));
    wait_while([](ncclResult_t state) { return state == ncclInProgress; }, what);
  }

  // True once `event` (recorded after NCCL work) has passed; raises the communicator's errors.
  bool passed(cudaEvent_t event, const char* what) {
    check_state(what);
    return event_passed(event);
  }

  // Waits for `event` within the timeout.
  void wait(cudaEvent_t event, const char* what) {
    wait_while([&](ncclResult_t state) { return state == ncclInProgress || !event_passed(event); }, what);
  }

 private:
  static bool event_passed(cudaEvent_t event) {
    const cudaError_t result = cudaEventQuery(event);
    if (result == cudaErrorNotReady) return false;
    check(result, "event query");
    return true;
  }

  ncclResult_t check_state(const char* what) {
    ncclResult_t state = ncclSuccess;
    const ncclResult_t queried = ncclCommGetAsyncError(comm_, &state);
    if (queried != ncclSuccess) state = queried;
    if (state != ncclSuccess && state != ncclInProgress) {
      fail(fmt::format("{}: {} ({})", what, ncclGetErrorString(state), ncclGetLastError(comm_)));
    }
    return state;
  }

  template <class Busy>
  void wait_while(Busy busy, const char* what) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_);
    while (busy(check_state(what))) {
      if (std::chrono::steady_clock::now() > deadline) {
        fail(fmt::format("{} did not complete within --nccl-timeout {:g} s: a rank died, hangs or runs far behind",
                         what, timeout_));
      }
      std::this_thread::sleep_for(std::chrono::microseconds(20));
    }
  }

  [[noreturn]] void fail(const std::string& message) {
    if (comm_ && !aborted_) ncclCommAbort(comm_);
    aborted_ = true;
    throw RuntimeError("NCCL " + message + "; the communicator was aborted");
  }

  ncclComm_t comm_{};
  double timeout_;
  bool aborted_ = false;
};

// An event recorded on `stream`; passing it means the exchange queued before it is done.
class Event {
 public:
  explicit Event(cudaStream_t stream) {
    check(cudaEventCreateWithFlags(&event_, cudaEventDisableTiming), "event");
    check(cudaEventRecord(event_, stream), "record");
  }
  ~Event() { cudaEventDestroy(event_); }
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  cudaEvent_t get() const { return event_; }

 private:
  cudaEvent_t event_{};
};

class Pending : public Communicator::PendingAverage {
 public:
  Pending(NcclComm& comm, cudaStream_t stream) : comm_(comm), done_(stream) {}
  bool done() override { return comm_.passed(done_.get(), "allreduce"); }
  void wait() override { comm_.wait(done_.get(), "allreduce"); }

 private:
  NcclComm& comm_;
  Event done_;
};

ncclUniqueId shared_unique_id(MPI_Comm comm, int rank) {
  // Rank 0 creates the id; MPI carries it to the others.
  ncclUniqueId id{};
  if (rank == 0) {
    const ncclResult_t result = ncclGetUniqueId(&id);
    if (result != ncclSuccess) throw RuntimeError(std::string("NCCL unique id: ") + ncclGetErrorString(result));
  }
  MPI_Bcast(&id, sizeof id, MPI_BYTE, 0, comm);
  return id;
}

class NcclCommunicator : public Communicator {
 public:
  NcclCommunicator(MPI_Comm comm, c10::Device device, double timeout_seconds)
      : Communicator(comm), device_(device), nccl_(size_, set_device_then(shared_unique_id(comm, rank_)), rank_, timeout_seconds) {
    // Non-blocking: a plain stream would wait for the legacy default stream's work and make it
    // wait in turn, which serialises the exchange with backward.
    check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "stream");
  }
  ~NcclCommunicator() override { cudaStreamDestroy(stream_); }
  std::string backend() const override { return "nccl"; }

  // The reduction runs on this communicator's own stream, after the work queued so far on
  // LibTorch's current stream of this GPU: an event orders the two without blocking the host,
  // so backward keeps queueing kernels.
  std::unique_ptr<PendingAverage> start_average(const at::Tensor& flat) override {
    require_on_device(flat);
    if (!flat.is_floating_point()) {
      throw RuntimeError(std::string("the NCCL exchange averages floating-point tensors, not ") +
                         c10::toString(flat.scalar_type()));
    }
    after_current_stream();
    nccl_.enqueued(ncclAllReduce(flat.data_ptr(), flat.data_ptr(), flat.numel(),
                                 static_cast<ncclDataType_t>(nccl_data_type(flat.scalar_type())), ncclAvg,
                                 nccl_.get(), stream_),
                   "allreduce");
    return std::make_unique<Pending>(nccl_, stream_);
  }

  void broadcast(const std::vector<at::Tensor>& tensors) override {
    for (const at::Tensor& t : tensors) require_on_device(t);
    after_current_stream();
    nccl_.enqueued(ncclGroupStart(), "group start");
    for (const at::Tensor& t : tensors) {
      nccl_.enqueued(ncclBroadcast(t.data_ptr(), t.data_ptr(), t.numel(),
                                   static_cast<ncclDataType_t>(nccl_data_type(t.scalar_type())), 0, nccl_.get(), stream_),
                     "broadcast");
    }
    nccl_.enqueued(ncclGroupEnd(), "broadcast");
    const Event done(stream_);
    nccl_.wait(done.get(), "broadcast");
  }

 private:
  // The GPU must be current before NCCL binds the communicator to it.
  const ncclUniqueId& set_device_then(const ncclUniqueId& id) {
    check(cudaSetDevice(device_.index()), "set device");
    return id;
  }

  void require_on_device(const at::Tensor& t) const {
    if (t.device() != device_ || !t.is_contiguous()) {
      throw RuntimeError("the NCCL exchange takes contiguous tensors on " + device_.str() + ", not " +
                         t.device().str() + (t.is_contiguous() ? "" : " (non-contiguous)"));
    }
  }

  // Makes this communicator's stream wait for what is queued on LibTorch's current stream.
  void after_current_stream() {
    const cudaStream_t current = c10::cuda::getCurrentCUDAStream(device_.index()).stream();
    const Event queued(current);
    check(cudaStreamWaitEvent(stream_, queued.get(), 0), "wait event");
  }

  c10::Device device_;
  NcclComm nccl_;
  cudaStream_t stream_{};
};

}  // namespace

int nccl_data_type(at::ScalarType type) {
  switch (type) {
    case at::kFloat: return ncclFloat32;
    case at::kDouble: return ncclFloat64;
    case at::kHalf: return ncclFloat16;
    case at::kBFloat16: return ncclBfloat16;
    case at::kInt: return ncclInt32;
    case at::kLong: return ncclInt64;
    case at::kByte: return ncclUint8;
    case at::kChar: return ncclInt8;
    default: throw RuntimeError(std::string("NCCL cannot exchange ") + c10::toString(type) + " tensors");
  }
}

bool nccl_available() { return true; }

std::unique_ptr<Communicator> make_nccl_communicator(MPI_Comm comm, c10::Device device, double timeout_seconds) {
  return std::make_unique<NcclCommunicator>(comm, device, timeout_seconds);
}

}  // namespace uniad::trainer
