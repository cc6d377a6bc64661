// Benchmark of the reconstruction model at the reference size: training steps (forward,
// MSE, backward, gradient clipping, AdamW) and evaluation forwards, in samples/s.
// Prints one JSON object; bench/model.py runs it beside the torch.nn version and
// reports the ratio. Usage: bench_model [--threads N] [--batch B] [--steps S] [--model uniad|mlp|cnn]
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>

#include <ATen/Parallel.h>
#include <torch/types.h>
#include <torch/nn/utils/clip_grad.h>
#include <torch/optim/adamw.h>

#include "model/reconstruction.h"

#include "common/allocator.h"
#include "common/blas.h"

using Clock = std::chrono::steady_clock;

int main(int argc, char** argv) {
  uniad::use_fast_blas_kernels(argv);  // as the uniad executable does
  uniad::keep_freed_memory();
  int threads = 1, batch = 8, steps = 10, warmup = 2;
  std::string kind = "uniad";
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--threads")) threads = std::stoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--batch")) batch = std::stoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--steps")) steps = std::stoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--model")) kind = argv[i + 1];
  }
  at::set_num_threads(threads);
  at::set_num_interop_threads(1);
  torch::manual_seed(0);
  uniad::model::ModelOptions options;  // reference size: 272 channels, 14x14, hidden 256, 4+4 layers
  options.kind = uniad::model::parse_model_kind(kind);
  auto model = uniad::model::make_model(options);
  torch::optim::AdamW optimizer(model->parameters(), torch::optim::AdamWOptions(1e-4).weight_decay(1e-4));
  const torch::Tensor features = torch::randn({batch, 272, 14, 14});

  model->train();
  double train_seconds = 0;
  for (int step = 0; step < warmup + steps; ++step) {
    const auto start = Clock::now();
    const torch::Tensor loss = torch::mse_loss(model->forward(features), features);
    optimizer.zero_grad();
    loss.backward();
    torch::nn::utils::clip_grad_norm_(model->parameters(), 0.1);
    optimizer.step();
    if (step >= warmup) train_seconds += std::chrono::duration<double>(Clock::now() - start).count();
  }
  model->eval();
  double eval_seconds = 0;
  {
    torch::NoGradGuard no_grad;
    for (int step = 0; step < warmup + steps; ++step) {
      const auto start = Clock::now();
      model->forward(features);
      if (step >= warmup) eval_seconds += std::chrono::duration<double>(Clock::now() - start).count();
    }
  }
  std::printf(
      "{\"impl\": \"uniad-cpp\", \"model\": \"%s\", \"threads\": %d, \"batch\": %d, \"steps\": %d, "
      "\"parameters\": %lld, \"train_samples_per_s\": %.3f, \"eval_samples_per_s\": %.3f}\n",
      kind.c_str(), threads, batch, steps, static_cast<long long>(uniad::model::parameter_count(*model)),
      steps * batch / train_seconds, steps * batch / eval_seconds);
  return 0;
}
