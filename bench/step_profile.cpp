// The training step `uniad train` runs (trainer::train_step: forward, MSE, backward, gradient
// exchange over MPI, clipping, AdamW) at the reference model size on random features, timed
// and optionally recorded by LibTorch's profiler for the breakdown in docs/benchmarks.md.
// Every rank prints one JSON line; bench/profile_step.py runs it and groups the trace.
// With --eval it times the eval forward instead (eval mode, inference, as `uniad eval` runs it),
// with the work the reference's timed forward also does: the anomaly map (the reconstruction
// error) upsampled bilinearly by the backbone stride, 14 x 14 -> 224 x 224 (align_corners, as
// its nn.UpsamplingBilinear2d).
// --device cuda runs it on this rank's GPU (exchange: NCCL when several ranks), --precision bf16
// under bfloat16 autocast (trainer/precision.h); GPU steps are timed between device syncs.
// Usage: [mpirun -np N] bench_step_profile [--threads T] [--batch B] [--steps S] [--trace PREFIX] [--eval]
//                                          [--overlap-exchange 0|1] [--bucket-bytes N]
//                                          [--device cpu|cuda] [--precision fp32|bf16]
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include <ATen/Parallel.h>
#include <ATen/ops/upsample_bilinear2d.h>
#include <ATen/record_function.h>
#include <torch/csrc/autograd/profiler_legacy.h>
#include <torch/cuda.h>
#include <torch/types.h>

#include "common/allocator.h"
#include "common/blas.h"
#include "common/device.h"
#include "trainer/precision.h"
#include "trainer/step.h"

using Clock = std::chrono::steady_clock;

int main(int argc, char** argv) {
  uniad::use_fast_blas_kernels(argv);  // as the uniad executable does
  MPI_Init(&argc, &argv);
  uniad::keep_freed_memory();
  int threads = 1, batch = 8, steps = 10, warmup = 2;
  std::string trace;
  bool eval = false;
  std::string device_name = "cpu";
  auto precision = uniad::trainer::Precision::kFloat32;
  uniad::trainer::ExchangeOptions exchange_options;
  for (int i = 1; i < argc; ++i) {
    const bool has_value = i + 1 < argc;
    if (!std::strcmp(argv[i], "--eval")) eval = true;
    else if (!std::strcmp(argv[i], "--threads") && has_value) threads = std::stoi(argv[++i]);
    else if (!std::strcmp(argv[i], "--batch") && has_value) batch = std::stoi(argv[++i]);
    else if (!std::strcmp(argv[i], "--steps") && has_value) steps = std::stoi(argv[++i]);
    else if (!std::strcmp(argv[i], "--trace") && has_value) trace = argv[++i];
    else if (!std::strcmp(argv[i], "--overlap-exchange") && has_value) exchange_options.overlap = std::stoi(argv[++i]) != 0;
    else if (!std::strcmp(argv[i], "--bucket-bytes") && has_value) exchange_options.bucket_bytes = std::stoull(argv[++i]);
    else if (!std::strcmp(argv[i], "--device") && has_value) device_name = argv[++i];
    else if (!std::strcmp(argv[i], "--precision") && has_value) precision = uniad::trainer::parse_precision(argv[++i]);
    else {
      std::fprintf(stderr, "bench_step_profile: unknown or incomplete option %s\n", argv[i]);
      return 2;
    }
  }
  if (eval && precision != uniad::trainer::Precision::kFloat32) {
    std::fprintf(stderr, "bench_step_profile: --eval times the float32 forward `uniad eval` runs; --precision is for training\n");
    return 2;
  }
  at::set_num_threads(threads);
  at::set_num_interop_threads(1);
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  const c10::Device device = uniad::rank_device(device_name, MPI_COMM_WORLD, rank, size);  // one node
  const auto comm = device.is_cuda() && size > 1 ? uniad::trainer::make_nccl_communicator(MPI_COMM_WORLD, device, 600)
                                                 : uniad::trainer::make_mpi_communicator(MPI_COMM_WORLD);
  torch::manual_seed(comm->rank());  // the trainer seeds each rank's generator apart
  uniad::model::ModelOptions options;  // reference size: 272 channels, 14x14, hidden 256, 4+4 layers
  auto model = uniad::model::make_model(options);
  model->to(device);
  uniad::trainer::TrainOptions train_options;
  auto optimizer = uniad::trainer::make_optimizer(*model, train_options, comm->size());
  uniad::trainer::GradientExchange exchange(*comm, *optimizer, exchange_options);
  const torch::Tensor features = torch::randn({batch, 272, 14, 14}).to(device);
  const auto sync = [&] {
    if (device.is_cuda()) torch::cuda::synchronize(device.index());
  };
  model->train(!eval);

  std::vector<double> step_seconds;
  double seconds = 0, exchange_total = 0;
  for (int step = 0; step < warmup + steps; ++step) {
    std::optional<torch::autograd::profiler::RecordProfile> profile;
    if (!trace.empty() && step >= warmup) {
      profile.emplace(trace + ".rank" + std::to_string(comm->rank()) + ".step" + std::to_string(step) + ".json");
    }
    sync();
    MPI_Barrier(MPI_COMM_WORLD);
    const auto start = Clock::now();
    double exchange_seconds = 0;
    if (eval) {
      c10::InferenceMode inference;  // float32, as `uniad eval` runs it (--precision is training's)
      RECORD_USER_SCOPE("uniad::forward");
      const torch::Tensor map = model->anomaly_map(features);
      at::upsample_bilinear2d(map, {map.size(2) * 16, map.size(3) * 16}, /*align_corners=*/true);
    } else {
      exchange_seconds = uniad::trainer::train_step(*model, *optimizer, exchange, features, train_options.clip_grad_norm,
                                                    false, precision)
                             .exchange_seconds;
    }
    sync();
    if (step >= warmup) {
      step_seconds.push_back(std::chrono::duration<double>(Clock::now() - start).count());
      seconds += step_seconds.back();
      exchange_total += exchange_seconds;
    }
  }
  // samples/s over all ranks at the median step, as bench_reference.py reports it.
  std::nth_element(step_seconds.begin(), step_seconds.begin() + steps / 2, step_seconds.end());
  const double median = step_seconds[steps / 2];
  std::printf("{\"device\": \"%s\", \"precision\": \"%s\", \"rank\": %d, \"ranks\": %d, \"threads\": %d, \"batch\": %d, \"steps\": %d, "
              "\"step_seconds\": %.5f, \"samples_per_s\": %.3f, \"exchange_share\": %.4f, \"overlap\": %s, "
              "\"buckets\": %zu, \"started_during_backward\": %zu}\n",
              uniad::describe_device(device).c_str(), uniad::trainer::to_string(precision).c_str(), comm->rank(),
              comm->size(), threads, batch, steps, median, batch * comm->size() / median,
              exchange_total / seconds, exchange_options.overlap ? "true" : "false", exchange.buckets(),
              exchange.started_during_backward());
  MPI_Finalize();
  return 0;
}
