#include "trainer/step.h"

#include <chrono>
#include <cmath>
#include <limits>

#include <ATen/ATen.h>
#include <ATen/record_function.h>
#include <torch/nn/utils/clip_grad.h>

namespace uniad::trainer {

double learning_rate(const TrainOptions& o, int world_size, int epoch) {
  const int decays = epoch < 1 ? 0 : (epoch - 1) / o.lr_step_epoch;
  return o.effective_lr(world_size) * std::pow(o.lr_gamma, decays);
}

std::unique_ptr<torch::optim::AdamW> make_optimizer(model::ReconstructionNet& model, const TrainOptions& o,
                                                    int world_size) {
  torch::optim::AdamWOptions adamw(o.effective_lr(world_size));
  adamw.betas({o.beta1, o.beta2}).weight_decay(o.weight_decay);
  return std::make_unique<torch::optim::AdamW>(model.parameters(), adamw);
}

void set_learning_rate(torch::optim::AdamW& optimizer, double lr) {
  for (auto& group : optimizer.param_groups()) static_cast<torch::optim::AdamWOptions&>(group.options()).lr(lr);
}

StepResult train_step(model::ReconstructionNet& model, torch::optim::AdamW& optimizer, const at::Tensor& features,
                      Communicator& comm, double clip_grad_norm, bool stop_here) {
  // Each phase is a profiler scope (bench/profile_step.py groups the step's time by them).
  at::Tensor loss;
  {
    RECORD_USER_SCOPE("uniad::forward");
    loss = at::mse_loss(model.forward(features), features);  // target: the clean features
  }
  {
    RECORD_USER_SCOPE("uniad::backward");
    optimizer.zero_grad();
    loss.backward();
  }
  std::vector<at::Tensor> parameters = model.parameters(), grads;
  for (auto& p : parameters)
    if (p.grad().defined()) grads.push_back(p.grad());
  StepResult result;
  {
    RECORD_USER_SCOPE("uniad::exchange");
    const auto exchange_start = std::chrono::steady_clock::now();
    comm.average(grads);
    result.exchange_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - exchange_start).count();
  }
  {
    RECORD_USER_SCOPE("uniad::clip");
    // clip_grad_norm_ returns the norm before clipping; with clipping off it only measures.
    const double max_norm = clip_grad_norm > 0 ? clip_grad_norm : std::numeric_limits<double>::infinity();
    result.grad_norm = torch::nn::utils::clip_grad_norm_(parameters, max_norm);
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
