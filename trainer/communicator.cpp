#include "trainer/communicator.h"

#include <algorithm>

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

class MpiCommunicator : public Communicator {
 public:
  MpiCommunicator(MPI_Comm comm, std::size_t bucket_bytes) : Communicator(comm), bucket_bytes_(bucket_bytes) {}
  std::string backend() const override { return "mpi"; }

  void average(const std::vector<at::Tensor>& tensors) override {
    if (size_ == 1) return;
    // Consecutive tensors share one flat float buffer up to bucket_bytes; one allreduce each.
    std::size_t i = 0;
    while (i < tensors.size()) {
      std::size_t j = i, elements = 0;
      while (j < tensors.size() && (j == i || (elements + tensors[j].numel()) * 4 <= bucket_bytes_)) {
        elements += tensors[j].numel();
        ++j;
      }
      const std::vector<at::Tensor> group(tensors.begin() + i, tensors.begin() + j);
      if (group.size() == 1 && group.front().is_contiguous()) {
        reduce_in_place(flatten(group).front());  // e.g. the optimizer's flat gradient: no copies
        i = j;
        continue;
      }
      at::Tensor flat = at::cat(flatten(group));
      MPI_Allreduce(MPI_IN_PLACE, flat.data_ptr<float>(), static_cast<int>(flat.numel()), MPI_FLOAT, MPI_SUM, comm_);
      flat.div_(size_);
      std::int64_t offset = 0;
      for (const at::Tensor& t : group) {
        t.copy_(flat.narrow(0, offset, t.numel()).view_as(t));
        offset += t.numel();
      }
      i = j;
    }
  }

  // Sum, then divide, in chunks of at most bucket_bytes (MPI counts are ints).
  void reduce_in_place(const at::Tensor& flat) {
    const std::int64_t chunk = std::max<std::int64_t>(1, static_cast<std::int64_t>(bucket_bytes_ / 4));
    float* data = flat.data_ptr<float>();
    for (std::int64_t begin = 0; begin < flat.numel(); begin += chunk) {
      const std::int64_t count = std::min(chunk, flat.numel() - begin);
      MPI_Allreduce(MPI_IN_PLACE, data + begin, static_cast<int>(count), MPI_FLOAT, MPI_SUM, comm_);
    }
    flat.div_(size_);
  }

  void broadcast(const std::vector<at::Tensor>& tensors) override {
    if (size_ == 1) return;
    at::Tensor flat = at::cat(flatten(tensors));
    MPI_Bcast(flat.data_ptr<float>(), static_cast<int>(flat.numel()), MPI_FLOAT, 0, comm_);
    std::int64_t offset = 0;
    for (const at::Tensor& t : tensors) {
      t.copy_(flat.narrow(0, offset, t.numel()).view_as(t));
      offset += t.numel();
    }
  }

 private:
  static std::vector<at::Tensor> flatten(const std::vector<at::Tensor>& tensors) {
    std::vector<at::Tensor> flat;
    for (const at::Tensor& t : tensors) {
      if (t.scalar_type() != at::kFloat || !t.device().is_cpu()) {
        throw RuntimeError("the MPI backend exchanges float32 CPU tensors; use --device cpu or the NCCL backend");
      }
      flat.push_back(t.reshape({-1}));
    }
    return flat;
  }
  std::size_t bucket_bytes_;
};

}  // namespace

std::unique_ptr<Communicator> make_mpi_communicator(MPI_Comm comm, std::size_t bucket_bytes) {
  return std::make_unique<MpiCommunicator>(comm, bucket_bytes);
}

#ifndef UNIAD_WITH_NCCL
bool nccl_available() { return false; }
std::unique_ptr<Communicator> make_nccl_communicator(MPI_Comm, int) {
  throw UsageError("this uniad was built without NCCL (needs the CUDA toolkit, NCCL and a CUDA-built LibTorch); "
                   "use --device cpu");
}
#endif

}  // namespace uniad::trainer
