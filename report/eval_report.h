#pragma once
// The report of one evaluation (`uniad eval`): JSON with full provenance, the metrics table
// in the format of the paper's tables (per-class rows and a mean row, values in %), and the
// per-image scores.
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>

#include "common/table.h"
#include "eval/evaluate.h"
#include "report/pictures.h"
#include "feature_cache/cache.h"

namespace uniad::report {

// The report record of one evaluation. `provenance` holds run config, seed, checkpoint,
// cache identity, backbone and the protocol choices.
nlohmann::ordered_json report_json(const eval::Evaluation& evaluation, const nlohmann::ordered_json& provenance);

// Per-class rows plus the mean row, metrics in % with one decimal ("n/a" where undefined).
Table metrics_table(const nlohmann::json& report);

// scores.csv: class, path, defect type, label and image score of every test image.
std::string scores_csv(const eval::Evaluation& evaluation);

// Which training state a run's provenance says was evaluated: "last-epoch checkpoint (epoch
// 40)" only when every checkpoint finished its run's epochs.
std::string checkpoint_description(const nlohmann::ordered_json& provenance);

// The maps of a class's test images kept for its qualitative panel: (cache rows, [N, S, S]).
using KeptMaps = std::map<int, std::pair<std::vector<std::int64_t>, at::Tensor>>;

// A class's qualitative panel, as the report draws it: the highest-scoring anomalous images
// and the hardest normal one (at most `pictures` rows; `rows` and `maps` are the class's test
// rows and their maps), the prediction binarised at the class's pixel F1-max threshold.
Picture class_panel(const feature_cache::FeatureCache& cache, const eval::ClassResult& result,
                    const std::vector<std::int64_t>& rows, const at::Tensor& maps, int pictures,
                    const eval::ScoreOptions& score);

// Each class's panel of `kept` (class_panel), in the cache's order, named by class.
using Panels = std::vector<std::pair<std::string, Picture>>;
Panels class_panels(const feature_cache::FeatureCache& cache, const eval::Evaluation& evaluation, const KeptMaps& kept,
                    int pictures, const eval::ScoreOptions& score);

// The evaluation's report in `out`: report.{md,csv,json}, scores.csv, index.html with the
// classes' qualitative panels (pictures/CLASS.png, from class_panels) and the run's training
// curves. Prints the table to stdout.
void write_eval_report(const std::filesystem::path& out, const std::filesystem::path& run,
                       const eval::Evaluation& evaluation, const nlohmann::ordered_json& provenance,
                       const Panels& panels);

}  // namespace uniad::report
