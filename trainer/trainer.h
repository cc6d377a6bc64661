#pragma once
// Data-parallel training of a reconstruction model from a feature cache.
//
// Every rank trains the same model on its own shard of each epoch's shuffle (equal shard
// sizes; the shuffle is padded as PyTorch's DistributedSampler does so every sample is seen
// at least once), gradients are averaged through the Communicator, and rank 0 writes
// checkpoints, the metrics log and the resolved config. See docs/training.md.
#include <string>
#include <vector>

#include <c10/core/Device.h>
#include <nlohmann/json.hpp>

#include "model/options.h"
#include "trainer/communicator.h"
#include "trainer/gradient_exchange.h"
#include "trainer/precision.h"
#include "trainer/training_batches.h"

namespace uniad::trainer {

enum class LrScaling { kNone, kLinear, kSqrt };

struct TrainOptions {
  std::string cache;
  std::string run_dir;
  model::ModelOptions model;       // in_channels and grid are taken from the cache
  std::vector<std::string> classes;  // restrict training to these classes (empty: all)
  std::string setting = "unified";   // unified | separate (one model per class, in run_dir/<class>)

  int epochs = 1000;
  int batch_size = 8;  // per rank
  double lr = 1e-4;
  double weight_decay = 1e-4;
  double beta1 = 0.9, beta2 = 0.999;
  int lr_step_epoch = 800;  // StepLR: lr x lr_gamma at this epoch (and its multiples)
  double lr_gamma = 0.1;
  double clip_grad_norm = 0.1;  // 0 = off
  LrScaling lr_scaling = LrScaling::kNone;
  int reference_global_batch = 64;  // the global batch `lr` is given for
  std::uint64_t seed = 0;

  int checkpoint_every = 10;  // epochs; a final checkpoint is always written
  int eval_every = 0;         // epochs; 0 = off
  bool eval_pixel_metrics = true;
  bool resume = true;         // continue from run_dir/checkpoint.pt when present
  bool preload = true;        // keep the training features in memory
  bool progress = true;
  std::string device = "auto";  // auto | cpu | cuda (the request; rank_device resolves it)
  Precision precision = Precision::kFloat32;  // the step's arithmetic (precision.h)
  // How the gradients travel and where the batches come from, not what is trained: recorded
  // in config.json, free to change on resume, like the thread count.
  ExchangeOptions exchange;
  Residency resident = Residency::kAuto;  // training features resident on the device (training_batches.h)
  // TensorBoard event files in run_dir/tb (rank 0, trainer/training_events.h): how the run is
  // watched, not what is trained, so also free to change on resume.
  bool tensorboard = true;
  int tensorboard_every = 1;  // steps between the train/loss points

  double effective_lr(int world_size) const;
  void validate() const;
};

std::string to_string(LrScaling scaling);
LrScaling parse_lr_scaling(const std::string& text);
nlohmann::ordered_json to_json(const TrainOptions& options);

struct TrainResult {
  int epochs_done = 0;
  std::int64_t steps = 0;
  double final_loss = 0;
  bool stopped_by_signal = false;  // a checkpoint was written; exit with ExitCode::kPreempted
};

// Trains (or resumes) on every rank of `comm`, this rank on `device` (common/device.h:
// rank_device). Throws InputError for a mismatched cache or checkpoint, RuntimeError for a
// non-finite loss (the last good checkpoint is kept).
TrainResult train(const TrainOptions& options, Communicator& comm, c10::Device device);

// Installs SIGTERM/SIGUSR1 handlers that ask training to stop after the current step.
void install_stop_signal_handlers();
bool stop_requested();

// The gradient exchange for this rank's device: "auto" -> NCCL on a GPU, MPI on the CPU. MPI
// exchanges CPU tensors and NCCL CUDA tensors, so "mpi" on a GPU and "nccl" on the CPU are
// UsageErrors that say what to use instead, as is anything else.
std::string choose_backend(const std::string& requested, const c10::Device& device);

// This epoch's rows for this rank: a seeded shuffle of `rows`, padded to a multiple of `size`
// by repeating its first rows (as PyTorch's DistributedSampler does, so every rank gets as
// many rows and every row is seen), then every size-th row starting at `rank`.
std::vector<std::int64_t> epoch_shard(const std::vector<std::int64_t>& rows, std::uint64_t seed, int epoch, int rank,
                                      int size);

// The checkpoint file of a run directory.
std::string checkpoint_path(const std::string& run_dir);

}  // namespace uniad::trainer
