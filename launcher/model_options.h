#pragma once
// The model options on the command line (shared by `train` and `import`).
#include "launcher/cli.h"
#include "model/options.h"

namespace uniad::cli {

// Registers --model, --hidden, ..., --jitter-scale into `options`, bound to `target`.
// Call finish_model_options() after parsing to apply the string-valued ones.
void add_model_options(po::options_description& options, model::ModelOptions& target);
void finish_model_options(const po::variables_map& vm, model::ModelOptions& target);

}  // namespace uniad::cli
