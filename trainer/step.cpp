#include "trainer/step.h"

#include <chrono>
#include <cmath>

#include <ATen/ATen.h>
#include <ATen/record_function.h>

#include "trainer/precision.h"

namespace uniad::trainer {

double learning_rate(const TrainOptions& o, int world_size, int epoch) {
  const int decays = epoch < 1 ? 0 : (epoch - 1) / o.lr_step_epoch;
  return o.effective_lr(world_size) * std::pow(o.lr_gamma, decays);
}

std::unique_ptr<FlatAdamW> make_optimizer(model::ReconstructionNet& model, const TrainOptions& o, int world_size) {
  FlatAdamWOptions adamw;
  adamw.lr = o.effective_lr(world_size);
  adamw.beta1 = o.beta1;
  adamw.beta2 = o.beta2;
  adamw.weight_decay = o.weight_decay;
  return std::make_unique<FlatAdamW>(model.parameters(), adamw);
}

StepResult train_step(model::ReconstructionNet& model, FlatAdamW& optimizer, GradientExchange& exchange,
                      const at::Tensor& features, double clip_grad_norm, bool stop_here, Precision precision) {
  Communicator& comm = exchange.communicator();
  // Each phase is a profiler scope (bench/profile_step.py groups the step's time by them).
  at::Tensor loss;
  {
    RECORD_USER_SCOPE("uniad::forward");
    const AutocastScope autocast(features.device().type(), precision);
    // Target: the clean features; the loss in their type whatever the forward's precision.
    loss = at::mse_loss(model.forward(features).to(features.scalar_type()), features);
  }
  {
    RECORD_USER_SCOPE("uniad::backward");
    optimizer.zero_grad();
    exchange.begin_step();
    loss.backward();  // the exchange's hooks start averaging buckets along the way
  }
  StepResult result;
  {
    RECORD_USER_SCOPE("uniad::exchange");
    const auto exchange_start = std::chrono::steady_clock::now();
    exchange.finish_step();
    result.exchange_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - exchange_start).count();
    result.buckets_started_during_backward = exchange.started_during_backward();
  }
  {
    RECORD_USER_SCOPE("uniad::clip");
    // The norm before clipping; the clipping itself is applied inside the optimizer's update.
    result.grad_norm = optimizer.clip_grad_norm(clip_grad_norm);
  }
  const double value = loss.item<double>();
  const auto totals = comm.sum({value, std::isfinite(value) ? 0.0 : 1.0, stop_here ? 1.0 : 0.0});
  result.loss = totals[0] / comm.size();
  result.finite = totals[1] == 0;
  result.stop = totals[2] > 0;
  if (result.finite) {
    RECORD_USER_SCOPE("uniad::optimizer");
    optimizer.step();
  }
  return result;
}

}  // namespace uniad::trainer
