#pragma once
// Gradient exchange across data-parallel ranks, behind one interface with two backends:
//  * MPI  (CPU tensors): gradients flattened into buckets, MPI_Allreduce in place;
//  * NCCL (CUDA tensors): one communicator per job built from an ncclUniqueId broadcast
//    over MPI, one rank per GPU. Compiled only where CUDA, NCCL and a CUDA LibTorch exist.
// Small control values (loss, stop flags) and random states always travel over MPI.
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <mpi.h>

namespace uniad::trainer {

class Communicator {
 public:
  virtual ~Communicator() = default;
  int rank() const { return rank_; }
  int size() const { return size_; }
  MPI_Comm mpi() const { return comm_; }
  virtual std::string backend() const = 0;

  // Replaces each tensor by its mean over the ranks (in place).
  virtual void average(const std::vector<at::Tensor>& tensors) = 0;
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

// MPI backend: `bucket_bytes` bounds the flattened buffer per MPI_Allreduce.
std::unique_ptr<Communicator> make_mpi_communicator(MPI_Comm comm, std::size_t bucket_bytes = 32u << 20);

// NCCL backend (needs a build with UNIAD_WITH_NCCL; otherwise throws with an explanation).
std::unique_ptr<Communicator> make_nccl_communicator(MPI_Comm comm, int local_rank);
bool nccl_available();

}  // namespace uniad::trainer
