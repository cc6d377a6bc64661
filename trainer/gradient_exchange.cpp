#include "trainer/gradient_exchange.h"

#include <algorithm>
#include <string>

#include <ATen/ATen.h>
#include <c10/util/irange.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/utils/lambda_post_hook.h>
#include <torch/csrc/autograd/variable.h>

#include "common/error.h"

namespace uniad::trainer {

// A post-hook on one parameter's AccumulateGrad node: it runs after backward has added the
// parameter's gradient (summed over all its uses) into .grad(), once per backward.
struct GradientExchange::Hook {
  std::shared_ptr<torch::autograd::Node> accumulator;  // kept alive: the parameter holds it weakly
  std::uintptr_t key = 0;
};

GradientExchange::GradientExchange(Communicator& comm, FlatAdamW& optimizer, ExchangeOptions options)
    : comm_(comm),
      optimizer_(optimizer),
      options_(options),
      training_thread_(std::this_thread::get_id()),
      start_on_any_thread_(comm.backend() != "mpi") {
  const auto& parameters = optimizer_.parameters();
  const std::int64_t bucket_elements =
      std::max<std::int64_t>(1, static_cast<std::int64_t>(options_.bucket_bytes / sizeof(float)));
  bucket_of_.resize(parameters.size());
  accumulated_.assign(parameters.size(), false);
  for (std::size_t i = parameters.size(); i-- > 0;) {
    const std::int64_t begin = optimizer_.offset(i), end = optimizer_.offset(i + 1);
    if (buckets_.empty() || buckets_.back().end - begin > bucket_elements) {
      buckets_.emplace_back();
      buckets_.back().end = end;
    }
    Bucket& bucket = buckets_.back();
    bucket.begin = begin;
    ++bucket.parameters;
    bucket_of_[i] = buckets_.size() - 1;
  }
  if (options_.overlap && comm_.size() > 1) install_hooks();
}

GradientExchange::~GradientExchange() {
  for (Hook& hook : hooks_) hook.accumulator->del_post_hook(hook.key);
}

void GradientExchange::install_hooks() {
  const auto& parameters = optimizer_.parameters();
  for (const auto i : c10::irange(parameters.size())) {
    Hook hook;
    hook.accumulator = torch::autograd::impl::grad_accumulator(parameters[i]);
    if (!hook.accumulator) throw RuntimeError("GradientExchange: parameter " + std::to_string(i) + " is not a leaf");
    hook.key = hook.accumulator->add_post_hook(std::make_unique<torch::autograd::utils::LambdaPostHook>(
        [this, i](const torch::autograd::variable_list& outputs, const torch::autograd::variable_list&) {
          on_gradient_accumulated(i);
          return outputs;
        }));
    hooks_.push_back(std::move(hook));
  }
}

void GradientExchange::begin_step() {
  if (comm_.size() == 1) return;
  if (options_.overlap) optimizer_.attach_gradients();  // backward must accumulate into the flat buffer
  for (Bucket& bucket : buckets_) {
    bucket.waiting = bucket.parameters;
    bucket.average.reset();
  }
  std::fill(accumulated_.begin(), accumulated_.end(), false);
  next_to_start_ = 0;
  first_unfinished_ = 0;
  started_during_backward_ = 0;
  in_place_ = true;
  armed_ = true;
}

void GradientExchange::on_gradient_accumulated(std::size_t parameter) {
  if (!armed_ || accumulated_[parameter]) return;  // a backward outside a training step
  accumulated_[parameter] = true;
  // Autograd adds into an existing dense .grad() in place; were it ever to replace it, this
  // bucket must wait until finish_step() has copied the gradient into the flat buffer.
  if (!optimizer_.gradient_in_buffer(parameter)) in_place_ = false;
  --buckets_[bucket_of_[parameter]].waiting;
  if (!start_on_any_thread_ && std::this_thread::get_id() != training_thread_) return;
  start_ready_buckets();
  // Let MPI move data: any test call progresses every request in flight, so testing the oldest
  // unfinished bucket is enough (and keeps a step's tests linear in the number of buckets).
  while (first_unfinished_ < next_to_start_ && buckets_[first_unfinished_].average->done()) ++first_unfinished_;
}

void GradientExchange::start_ready_buckets() {
  while (in_place_ && next_to_start_ < buckets_.size() && buckets_[next_to_start_].waiting == 0) {
    start(buckets_[next_to_start_++]);
    ++started_during_backward_;
  }
}

void GradientExchange::start(Bucket& bucket) {
  bucket.average = comm_.start_average(optimizer_.gradient_buffer().slice(0, bucket.begin, bucket.end));
}

void GradientExchange::finish_step() {
  armed_ = false;
  if (comm_.size() == 1) return;
  if (options_.overlap) {
    for (const auto i : c10::irange(accumulated_.size())) {
      if (accumulated_[i]) continue;
      throw RuntimeError("parameter " + std::to_string(i) + " (shape " + c10::str(optimizer_.parameters()[i].sizes()) +
                         ") received no gradient; every parameter of the model must take part in the loss");
    }
  }
  optimizer_.flat_gradient();  // copies in any gradient autograd did not accumulate in place
  while (next_to_start_ < buckets_.size()) start(buckets_[next_to_start_++]);
  for (Bucket& bucket : buckets_) bucket.average->wait();
}

}  // namespace uniad::trainer
