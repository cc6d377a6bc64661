#pragma once
// A sweep in TensorBoard (docs/tensorboard.md). `tensorboard --logdir OUT` then shows:
//   CONFIG/seed=N/tb        each run's training (trainer/training_events.h)
//   CONFIG/seed=N/eval/tb   its evaluation (`uniad eval`)
//   CONFIG/seed=N           its HParams session: the run's options, grouped by configuration
//                           (so the dashboard aggregates a configuration's seeds)
//   .                       the experiment (every option with the values it takes, the
//                           metrics) and the leaderboard as text
// Each of these folders has its own writer. A rerun starts a new file: in the training's and
// evaluation's folders its session replaces the earlier points from its step on; in the
// session's and the sweep's folders it replaces the earlier file, which it supersedes whole.
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "sweep/spec.h"
#include "tensorboard/summary_writer.h"

namespace uniad::sweep {

// A run's hyperparameters for the HParams plugin, as numbers, flags or strings: "config",
// "seed" and every `uniad train` option that some run of the sweep sets (`options`), with
// `uniad train`'s default where this run does not set it (so a filter on jitter-scale = 0.1
// also finds the runs that leave it at its default).
tensorboard::HParams run_hparams(const SweepRun& run, const std::vector<std::string>& options);
// The `uniad train` options the runs set, in the order they first appear.
std::vector<std::string> swept_options(const std::vector<SweepRun>& runs);

// The run's HParams session in its folder: started when the run starts, ended with its
// outcome (a run stopped for resumption is left open: its next start replaces it).
class RunSession {
 public:
  RunSession(const std::filesystem::path& run_dir, const SweepRun& run, const SweepSpec& spec);
  void end(bool success);

 private:
  std::unique_ptr<tensorboard::SummaryWriter> tb_;
};

// The experiment and the leaderboard's Markdown in OUT's own event file.
void write_sweep_events(const std::filesystem::path& out, const std::string& sweep_name,
                        const std::vector<SweepRun>& runs, const std::string& leaderboard_markdown);

}  // namespace uniad::sweep
