#include "sweep/sweep_events.h"

#include <algorithm>
#include <cstdlib>
#include <map>

#include "eval/evaluate.h"
#include "tensorboard/event_file.h"

namespace uniad::sweep {

namespace {

// "5e-4" -> 0.0005, "true" -> true, anything else stays a string.
tensorboard::HParamValue parse_value(const std::string& text) {
  if (text == "true" || text == "false") return text == "true";
  char* end = nullptr;
  const double number = std::strtod(text.c_str(), &end);
  if (!text.empty() && end == text.c_str() + text.size()) return number;
  return text;
}

// The metrics the HParams table shows per session: the final evaluation's means, and the
// last periodic evaluation during training (unified runs; the separate setting trains one
// folder per class).
std::vector<tensorboard::HParamMetric> session_metrics() {
  std::vector<tensorboard::HParamMetric> metrics;
  for (const auto& column : eval::metric_columns()) {
    metrics.push_back({"eval/tb", std::string("eval/mean/") + column.key, column.title});
  }
  metrics.push_back({"tb", "eval/mean/image_auroc", "image AUROC (training's last periodic evaluation)"});
  metrics.push_back({"tb", "train/epoch_loss", "training loss (last epoch)"});
  return metrics;
}

}  // namespace

std::vector<std::string> swept_options(const std::vector<SweepRun>& runs) {
  std::vector<std::string> names;
  for (const auto& run : runs)
    for (const auto& [name, value] : run.train)
      if (std::find(names.begin(), names.end(), name) == names.end()) names.push_back(name);
  return names;
}

tensorboard::HParams run_hparams(const SweepRun& run, const std::vector<std::string>& options) {
  tensorboard::HParams hparams = {{"config", run.config}, {"seed", static_cast<double>(run.seed)}};
  for (const auto& name : options) {
    const auto set = std::find_if(run.train.begin(), run.train.end(), [&](const auto& o) { return o.first == name; });
    const std::string value = set != run.train.end() ? set->second : train_option_default(name);
    if (!value.empty()) hparams[name] = parse_value(value);
  }
  return hparams;
}

RunSession::RunSession(const std::filesystem::path& run_dir, const SweepRun& run, const SweepSpec& spec)
    : tb_(std::make_unique<tensorboard::SummaryWriter>(run_dir)) {
  tb_->start_session(0);
  tb_->hparams_session_start(run_hparams(run, swept_options(spec.expand())), run.config, tensorboard::wall_time_now());
  tb_->flush();
  tensorboard::remove_other_event_files(run_dir, tb_->path());  // an earlier start of this run
}

void RunSession::end(bool success) {
  tb_->hparams_session_end(success, tensorboard::wall_time_now());
  tb_->flush();
}

void write_sweep_events(const std::filesystem::path& out, const std::string& sweep_name,
                        const std::vector<SweepRun>& runs, const std::string& leaderboard_markdown) {
  // Every option with the values the runs give it, in the order they first appear.
  std::map<std::string, std::vector<tensorboard::HParamValue>> domains;
  const std::vector<std::string> options = swept_options(runs);
  for (const auto& run : runs) {
    for (const auto& [name, value] : run_hparams(run, options)) {
      auto& values = domains[name];
      if (std::find(values.begin(), values.end(), value) == values.end()) values.push_back(value);
    }
  }
  // Values of mixed types: no declared type or domain (the plugin then shows them as found).
  for (auto& [name, values] : domains) {
    const bool mixed = std::any_of(values.begin(), values.end(), [&](const auto& v) { return v.index() != values.front().index(); });
    if (mixed) values.clear();
  }
  tensorboard::SummaryWriter tb(out);
  tb.start_session(0);
  tb.hparams_experiment(sweep_name, domains, session_metrics(), tensorboard::wall_time_now());
  tb.text("leaderboard", leaderboard_markdown, 0);
  tb.flush();
  tensorboard::remove_other_event_files(out, tb.path());  // the previous experiment and leaderboard
}

}  // namespace uniad::sweep
