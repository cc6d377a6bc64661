#include "trainer/training_events.h"

#include <algorithm>

#include "report/eval_report.h"
#include "report/evaluation_events.h"
#include "tensorboard/summary_writer.h"

namespace uniad::trainer {

TrainingEvents::TrainingEvents(const std::filesystem::path& run_dir, std::int64_t checkpoint_step, int every)
    : tb_(std::make_unique<tensorboard::SummaryWriter>(run_dir / "tb")), every_(std::max(1, every)) {
  tb_->start_session(checkpoint_step + 1);
}

TrainingEvents::~TrainingEvents() = default;

void TrainingEvents::step(std::int64_t global_step, double loss, double lr, double grad_norm) {
  if (global_step % every_ == 0) {
    tb_->scalar("train/loss", loss, global_step);
    tb_->scalar("train/lr", lr, global_step);
    tb_->scalar("train/grad_norm", grad_norm, global_step);
  }
  tb_->flush_if_due();  // at most 2 s behind, however rarely points are logged
}

void TrainingEvents::epoch(const nlohmann::ordered_json& line) {
  const std::int64_t step = line.at("step").get<std::int64_t>();
  tb_->scalar("train/epoch_loss", line.at("loss").get<double>(), step);
  tb_->scalar("train/samples_per_s", line.at("samples_per_s").get<double>(), step);
  tb_->scalar("train/exchange_share", line.at("exchange_share").get<double>(), step);
  tb_->scalar("train/epoch_seconds", line.at("seconds").get<double>(), step);
  tb_->flush();
}

void TrainingEvents::evaluation(std::int64_t global_step, const PeriodicEvaluation& evaluation,
                                const feature_cache::FeatureCache& cache) {
  const report::Panels panels =
      report::class_panels(cache, evaluation.evaluation, evaluation.maps, kPanelRows, evaluation.score);
  report::log_evaluation(*tb_, global_step, evaluation.evaluation, panels);
}

}  // namespace uniad::trainer
