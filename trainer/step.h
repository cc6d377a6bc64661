#pragma once
// One optimisation step and the learning-rate schedule, exactly as the reference's
// tools/train_val.py does them; `uniad train` runs these, and the training-step parity test
// (tests/trainer/test_step_parity.cpp) drives the same functions against the reference's
// recorded trajectory (../shared/parity/uniad_official_train.h5).
#include <memory>

#include <ATen/core/Tensor.h>

#include "model/reconstruction.h"
#include "trainer/communicator.h"
#include "trainer/flat_adamw.h"
#include "trainer/gradient_exchange.h"
#include "trainer/trainer.h"

namespace uniad::trainer {

// The learning rate of 0-based `epoch`. The reference calls `lr_scheduler.step(epoch)` after
// each epoch, which sets the next epoch's rate to lr * gamma^(epoch // step): epoch e runs at
// lr * gamma^((e - 1) // step) for e >= 1, so the first decay comes one epoch later than a
// plain StepLR.step() would give (MVTec config: epoch 801, not 800). `lr` is the effective
// rate for `world_size` ranks (see TrainOptions::lr_scaling).
double learning_rate(const TrainOptions& options, int world_size, int epoch);

// AdamW with the options' rate, betas and decoupled weight decay (on every parameter, biases
// and LayerNorm included, as the reference does), over one flat buffer (flat_adamw.h). Call it
// after the model is on its device: the model's parameters become views of the buffer.
std::unique_ptr<FlatAdamW> make_optimizer(model::ReconstructionNet& model, const TrainOptions& options, int world_size);

struct StepResult {
  double loss = 0;       // the mean over ranks of each rank's batch loss, before the update
  double grad_norm = 0;  // total 2-norm of the averaged gradient, before clipping
  bool finite = true;    // false if any rank's loss was not finite: no update was made
  bool stop = false;     // some rank was asked to stop (the update was made)
  double exchange_seconds = 0;  // time spent waiting for the gradient average after backward
  std::size_t buckets_started_during_backward = 0;
};

// loss = MSE(model(x), x) against the clean features (the model jitters its own input in
// training mode) -> zero_grad -> backward, with the gradients averaged over the ranks as
// it goes (`exchange`, made for `optimizer`) -> clip to `clip_grad_norm` (0 = off) -> AdamW
// step, unless a rank's loss is not finite. One small allreduce carries the loss, the
// finiteness and `stop_here` of every rank.
// `precision`: the forward (and so the backward) in float32, or under bfloat16 autocast
// (precision.h); the update is float32 either way.
StepResult train_step(model::ReconstructionNet& model, FlatAdamW& optimizer, GradientExchange& exchange,
                      const at::Tensor& features, double clip_grad_norm, bool stop_here = false,
                      Precision precision = Precision::kFloat32);

}  // namespace uniad::trainer
