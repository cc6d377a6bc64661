#pragma once
// The run's TensorBoard events (docs/tensorboard.md): rank 0 writes RUN/tb/ while it trains,
// so that `tensorboard --logdir RUN` (or a sweep's folder) shows the run live:
//   train/loss, train/lr, train/grad_norm every `every` steps (the loss: the mean over ranks;
//                                         the gradient's norm before clipping)
//   train/epoch_loss, train/samples_per_s, train/exchange_share, train/epoch_seconds
//                                         at each epoch's last step
//   eval/..., panels/...                  at each periodic evaluation (report/evaluation_events.h)
// The x axis is the global optimizer step. A resumed run opens a new event file whose session
// starts right after its checkpoint's step: TensorBoard then drops what the stopped process
// logged after the checkpoint, and every step keeps exactly one point.
#include <cstdint>
#include <filesystem>
#include <memory>

#include <nlohmann/json.hpp>

#include "trainer/metrics_log.h"

namespace uniad::tensorboard {
class SummaryWriter;
}

namespace uniad::trainer {

class TrainingEvents {
 public:
  // `checkpoint_step`: the global step the run resumes from (0: a fresh run).
  TrainingEvents(const std::filesystem::path& run_dir, std::int64_t checkpoint_step, int every);
  ~TrainingEvents();

  void step(std::int64_t global_step, double loss, double lr, double grad_norm);
  // The metrics log's line of an epoch (trainer/metrics_log.h). This and evaluation() flush:
  // their points are on disk when they return (the per-step points at the latest then too).
  void epoch(const nlohmann::ordered_json& line);
  void evaluation(std::int64_t global_step, const PeriodicEvaluation& evaluation,
                  const feature_cache::FeatureCache& cache);

  // Rows of each class's panel (its top anomalous images and its hardest normal one).
  static constexpr int kPanelRows = 3;

 private:
  std::unique_ptr<tensorboard::SummaryWriter> tb_;
  int every_;
};

}  // namespace uniad::trainer
