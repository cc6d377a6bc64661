#include "trainer/communicator.h"

#include <algorithm>
#include <limits>

#include <ATen/ATen.h>

#include "common/error.h"

namespace uniad::trainer {

Communicator::Communicator(MPI_Comm comm) : comm_(comm) {
  MPI_Comm_rank(comm, &rank_);
  MPI_Comm_size(comm, &size_);
}

std::vector<double> Communicator::sum(std::vector<double> values) const {
  MPI_Allreduce(MPI_IN_PLACE, values.data(), static_cast<int>(values.size()), MPI_DOUBLE, MPI_SUM, comm_);
  return values;
}

std::vector<double> Communicator::max(std::vector<double> values) const {
  MPI_Allreduce(MPI_IN_PLACE, values.data(), static_cast<int>(values.size()), MPI_DOUBLE, MPI_MAX, comm_);
  return values;
}

std::vector<std::string> Communicator::gather(const std::string& bytes) const {
  int length = static_cast<int>(bytes.size());
  std::vector<int> lengths(size_), offsets(size_, 0);
  MPI_Gather(&length, 1, MPI_INT, lengths.data(), 1, MPI_INT, 0, comm_);
  std::string all;
  if (rank_ == 0) {
    for (int r = 1; r < size_; ++r) offsets[r] = offsets[r - 1] + lengths[r - 1];
    all.resize(offsets.back() + lengths.back());
  }
  MPI_Gatherv(bytes.data(), length, MPI_BYTE, all.data(), lengths.data(), offsets.data(), MPI_BYTE, 0, comm_);
  std::vector<std::string> parts;
  if (rank_ == 0)
    for (int r = 0; r < size_; ++r) parts.push_back(all.substr(offsets[r], lengths[r]));
  return parts;
}

std::string Communicator::scatter(const std::vector<std::string>& parts) const {
  std::vector<int> lengths(size_, 0), offsets(size_, 0);
  std::string all;
  if (rank_ == 0) {
    for (int r = 0; r < size_; ++r) {
      lengths[r] = static_cast<int>(parts.at(r).size());
      offsets[r] = static_cast<int>(all.size());
      all += parts[r];
    }
  }
  int length = 0;
  MPI_Scatter(lengths.data(), 1, MPI_INT, &length, 1, MPI_INT, 0, comm_);
  std::string mine(length, '\0');
  MPI_Scatterv(all.data(), lengths.data(), offsets.data(), MPI_BYTE, mine.data(), length, MPI_BYTE, 0, comm_);
  return mine;
}

namespace {

void require_flat_cpu_float(const at::Tensor& t) {
  if (t.scalar_type() != at::kFloat || !t.device().is_cpu() || !t.is_contiguous()) {
    throw RuntimeError("the MPI backend exchanges contiguous float32 CPU tensors; use --device cpu or the NCCL backend");
  }
}

// MPI_Iallreduce(SUM) in place, in pieces of at most INT_MAX elements (MPI counts are ints),
// then the division: the same sum of each element as MPI_Allreduce gives.
class MpiPendingAverage : public Communicator::PendingAverage {
 public:
  MpiPendingAverage(at::Tensor flat, MPI_Comm comm, int ranks) : flat_(std::move(flat)), ranks_(ranks) {
    float* data = flat_.data_ptr<float>();
    const std::int64_t piece = std::numeric_limits<int>::max();
    for (std::int64_t begin = 0; begin < flat_.numel(); begin += piece) {
      const auto count = static_cast<int>(std::min(piece, flat_.numel() - begin));
      requests_.emplace_back();
      MPI_Iallreduce(MPI_IN_PLACE, data + begin, count, MPI_FLOAT, MPI_SUM, comm, &requests_.back());
    }
  }
  ~MpiPendingAverage() override {
    if (!divided_) MPI_Waitall(static_cast<int>(requests_.size()), requests_.data(), MPI_STATUSES_IGNORE);
  }
  bool done() override {
    int flag = 0;
    MPI_Testall(static_cast<int>(requests_.size()), requests_.data(), &flag, MPI_STATUSES_IGNORE);
    return flag != 0;
  }
  void wait() override {
    if (divided_) return;
    MPI_Waitall(static_cast<int>(requests_.size()), requests_.data(), MPI_STATUSES_IGNORE);
    flat_.div_(ranks_);
    divided_ = true;
  }

 private:
  at::Tensor flat_;
  int ranks_;
  std::vector<MPI_Request> requests_;
  bool divided_ = false;
};

// A world of one: the mean is the tensor itself.
class NothingToAverage : public Communicator::PendingAverage {
 public:
  bool done() override { return true; }
  void wait() override {}
};

class MpiCommunicator : public Communicator {
 public:
  explicit MpiCommunicator(MPI_Comm comm) : Communicator(comm) {}
  std::string backend() const override { return "mpi"; }

  std::unique_ptr<PendingAverage> start_average(const at::Tensor& flat) override {
    require_flat_cpu_float(flat);
    if (size_ == 1) return std::make_unique<NothingToAverage>();
    return std::make_unique<MpiPendingAverage>(flat, comm_, size_);
  }

  void broadcast(const std::vector<at::Tensor>& tensors) override {
    if (size_ == 1) return;
    std::vector<at::Tensor> flat;
    for (const at::Tensor& t : tensors) flat.push_back(t.reshape({-1}));
    at::Tensor all = at::cat(flat);
    require_flat_cpu_float(all);
    MPI_Bcast(all.data_ptr<float>(), static_cast<int>(all.numel()), MPI_FLOAT, 0, comm_);
    std::int64_t offset = 0;
    for (const at::Tensor& t : tensors) {
      t.copy_(all.narrow(0, offset, t.numel()).view_as(t));
      offset += t.numel();
    }
  }
};

}  // namespace

std::unique_ptr<Communicator> make_mpi_communicator(MPI_Comm comm) { return std::make_unique<MpiCommunicator>(comm); }

#ifndef UNIAD_WITH_CUDA
bool nccl_available() { return false; }
std::unique_ptr<Communicator> make_nccl_communicator(MPI_Comm, c10::Device, double) {
  throw UsageError("this uniad is a CPU build, without NCCL (build with -DUNIAD_CUDA=ON against a CUDA LibTorch); "
                   "use --device cpu");
}
int nccl_data_type(at::ScalarType) { throw UsageError("this uniad is a CPU build, without NCCL"); }
#endif

}  // namespace uniad::trainer
