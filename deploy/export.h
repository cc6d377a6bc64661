#pragma once
// The assembly of a portable model file (`uniad export`, model_file.h) from a trained run:
// the backbone the cache was built with, the run's reconstruction model(s) (weights only), the
// preprocessing, the image-score rule, and decision thresholds chosen at the image F1-max on
// the cache's test split (per class, and one for all classes), with the metrics and
// provenance at export.
#include <string>

#include "deploy/model_file.h"
#include "eval/evaluate.h"
#include "feature_cache/cache.h"
#include "trainer/run_models.h"

namespace uniad::deploy {

// Evaluates `models` on the cache's test split (with `o`'s map and score options) to choose
// the thresholds. `backbone_file` is the TorchScript file the cache was built with ("" for the
// built-in backbone); another file is a UsageError. `run` and `cache_path` are recorded.
ModelFile assemble_model_file(const trainer::RunModels& models, const feature_cache::FeatureCache& cache,
                              const std::string& run, const std::string& cache_path, const std::string& backbone_file,
                              eval::EvalOptions o);

}  // namespace uniad::deploy
