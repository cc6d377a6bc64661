#pragma once
// Gradient exchange across data-parallel ranks, behind one interface with two backends:
//  * MPI  (CPU tensors): MPI_Iallreduce in place, then a division by the number of ranks;
//  * NCCL (CUDA tensors): one communicator per job built from an ncclUniqueId broadcast
//    over MPI, one rank per GPU, ncclAllReduce(ncclAvg) on a stream of its own, bounded by a
//    timeout. Compiled only in the GPU build (-DUNIAD_CUDA=ON).
// Averages start and return at once, so the gradient exchange (gradient_exchange.h) can
// reduce one bucket while backward still computes the next. Small control values (loss,
// stop flags) and random states always travel over MPI.
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>
#include <mpi.h>

namespace uniad::trainer {

class Communicator {
 public:
  virtual ~Communicator() = default;
  int rank() const { return rank_; }
  int size() const { return size_; }
  MPI_Comm mpi() const { return comm_; }
  virtual std::string backend() const = 0;

  // An average in flight; wait() completes it.
  class PendingAverage {
   public:
    virtual ~PendingAverage() = default;
    // True once the transfer is complete. Also drives it forward: MPI moves data only
    // inside MPI calls (there is no progress thread), so the exchange polls while it waits.
    virtual bool done() = 0;
    // Blocks until the tensor holds the mean over the ranks.
    virtual void wait() = 0;
  };
  // Starts replacing `flat` (one contiguous float32 tensor) by its mean over the ranks, in
  // place, and returns at once. Every rank must start the same averages in the same order.
  virtual std::unique_ptr<PendingAverage> start_average(const at::Tensor& flat) = 0;
  // Copies rank 0's tensors to every rank (in place).
  virtual void broadcast(const std::vector<at::Tensor>& tensors) = 0;

  // Control values over MPI.
  std::vector<double> sum(std::vector<double> values) const;
  std::vector<double> max(std::vector<double> values) const;
  // Every rank's bytes, on rank 0 (empty elsewhere).
  std::vector<std::string> gather(const std::string& bytes) const;
  // Rank 0's `parts[r]` to rank r.
  std::string scatter(const std::vector<std::string>& parts) const;

 protected:
  explicit Communicator(MPI_Comm comm);
  MPI_Comm comm_;
  int rank_ = 0, size_ = 1;
};

// MPI backend (CPU tensors).
std::unique_ptr<Communicator> make_mpi_communicator(MPI_Comm comm);

// NCCL backend on `device` (this rank's GPU, common/device.h: rank_device). Every wait is
// bounded by `timeout_seconds`: past it the communicator is aborted and a RuntimeError thrown.
// Needs the GPU build (UNIAD_WITH_CUDA); otherwise throws with an explanation.
std::unique_ptr<Communicator> make_nccl_communicator(MPI_Comm comm, c10::Device device, double timeout_seconds);
bool nccl_available();
// ncclDataType_t of a tensor type (as an int, so this header needs no nccl.h); a RuntimeError
// for types NCCL cannot carry. GPU build only.
int nccl_data_type(at::ScalarType type);

}  // namespace uniad::trainer
