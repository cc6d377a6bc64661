#pragma once
// The option sets of `uniad train` and `uniad eval`, shared with `uniad sweep`, which checks
// every option name and value of a sweep spec against them before anything runs.
#include "eval/evaluate.h"
#include "launcher/cli.h"
#include "trainer/trainer.h"

namespace uniad::commands {

// `uniad train`'s own options (the model options are cli::add_model_options).
void add_train_options(cli::po::options_description& options, trainer::TrainOptions& o);
// How maps and image scores are made (`uniad eval`, `uniad export`): --image-score, its
// window or share, --smoothing-sigma.
void add_map_and_score_options(cli::po::options_description& options, eval::EvalOptions& o);
// `uniad eval`'s options.
void add_eval_options(cli::po::options_description& options, eval::EvalOptions& o);

// Whether the command writes TensorBoard events: --tensorboard (default on), unless
// --no-tensorboard (both commands take the pair).
bool tensorboard_requested(const cli::po::variables_map& vm);

}  // namespace uniad::commands
