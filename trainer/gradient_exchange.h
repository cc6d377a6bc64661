#pragma once
// Averaging the gradient over the data-parallel ranks, overlapped with backward.
//
// Backward produces the gradients output layer first. Waiting for all of them and then
// reducing the whole flat gradient would add the exchange to every step; instead the flat
// gradient is cut into buckets of consecutive parameters, numbered from the last parameter
// backwards (roughly the order in which backward completes them, as DDP assumes), and a
// bucket's average starts as soon as backward has accumulated every parameter in it. Hooks
// on the parameters' gradient accumulators count the parameters down. On GPU nodes the
// transfer then runs beside the rest of backward; finish_step() waits for what is left.
//
// Collectives need one order on every rank, so buckets start strictly in their numbering
// order (a bucket ready early waits for the ones before it). Each element's sum over ranks
// is taken exactly as a reduction of the whole buffer after backward would take it, so
// overlapped and after-backward exchanges give the same averages (bitwise at two ranks).
//
// What a bucket may average and when follows the flat-buffer rule stated in flat_adamw.h.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <thread>
#include <vector>

#include "trainer/communicator.h"
#include "trainer/flat_adamw.h"

namespace uniad::trainer {

struct ExchangeOptions {
  bool overlap = true;                  // start buckets while backward runs (else all after it)
  std::size_t bucket_bytes = 4u << 20;  // gradient bytes per bucket; a larger parameter is a bucket alone
};

class GradientExchange {
 public:
  // Cuts `optimizer`'s flat gradient into buckets and, with options.overlap and more than one
  // rank, hooks every parameter's gradient accumulator. Both must outlive this object.
  GradientExchange(Communicator& comm, FlatAdamW& optimizer, ExchangeOptions options);
  ~GradientExchange();
  GradientExchange(const GradientExchange&) = delete;
  GradientExchange& operator=(const GradientExchange&) = delete;

  Communicator& communicator() const { return comm_; }
  std::size_t buckets() const { return buckets_.size(); }

  // Before backward (after zero_grad): arms the hooks for one step.
  void begin_step();
  // After backward: starts the buckets not started yet and waits for all of them; the flat
  // gradient then holds the mean over the ranks. Throws if, with overlap, a parameter
  // received no gradient (it would be averaged as zeros and decayed by AdamW).
  void finish_step();
  // Of the last step: the buckets whose average started before backward had finished.
  std::size_t started_during_backward() const { return started_during_backward_; }

 private:
  struct Bucket {
    std::int64_t begin = 0, end = 0;  // elements of the flat gradient
    int parameters = 0;               // how many parameters it holds
    int waiting = 0;                  // of those, not accumulated yet in this step
    std::unique_ptr<Communicator::PendingAverage> average;
  };

  void install_hooks();
  void on_gradient_accumulated(std::size_t parameter);
  void start_ready_buckets();
  void start(Bucket& bucket);

  Communicator& comm_;
  FlatAdamW& optimizer_;
  ExchangeOptions options_;
  std::vector<Bucket> buckets_;            // in starting order: the last parameters first
  std::vector<std::size_t> bucket_of_;     // parameter -> bucket
  std::vector<bool> accumulated_;          // parameter -> backward has accumulated it this step
  std::size_t next_to_start_ = 0;
  std::size_t first_unfinished_ = 0;     // buckets before it have completed their transfer
  std::size_t started_during_backward_ = 0;
  bool armed_ = false;
  bool in_place_ = true;  // every gradient so far landed in the flat buffer
  // MPI is initialised MPI_THREAD_FUNNELED: hooks start MPI transfers only on this thread
  // (LibTorch runs a CPU backward on the thread that calls backward()); NCCL's on any.
  std::thread::id training_thread_;
  bool start_on_any_thread_;

  struct Hook;
  std::vector<Hook> hooks_;
};

}  // namespace uniad::trainer
