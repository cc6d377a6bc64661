#pragma once
// Reports of evaluations: JSON with full provenance, Markdown in the format of the paper's
// tables (per-class rows and a mean row, values in %), CSV, per-image scores, HTML pages,
// and the aggregation of several runs (seeds -> mean +- std; one differing setting ->
// comparison table with differences).
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/table.h"
#include "eval/evaluate.h"

namespace uniad::eval {

// The report record of one evaluation. `provenance` holds run config, seed, checkpoint,
// cache identity, backbone and the protocol choices.
nlohmann::ordered_json report_json(const Evaluation& evaluation, const nlohmann::ordered_json& provenance);

// Per-class rows plus the mean row, metrics in % with one decimal ("n/a" where undefined).
Table metrics_table(const nlohmann::json& report);
std::string scores_csv(const Evaluation& evaluation);
std::string table_csv(const Table& table);

// A static HTML page: a title, sections of (heading, HTML body), and nothing external.
std::string html_page(const std::string& title, const std::vector<std::pair<std::string, std::string>>& sections);
std::string html_table(const Table& table);
std::string html_escape(const std::string& text);

// Several runs' report records: the settings in which they differ (seed excluded),
// "setting.path: value" per run.
struct RunDifferences {
  std::vector<std::string> differing;  // flattened config keys, e.g. "/model/jitter_scale"
};
RunDifferences compare_runs(const std::vector<nlohmann::json>& reports);

// Aggregation: runs that differ only by seed -> one table of mean +- std per class and
// metric. Runs that differ in one setting -> a comparison table (mean +- std per value of
// the setting and the difference to the first value). More settings -> UsageError naming them.
struct Aggregate {
  std::string kind;     // "seeds" or "comparison"
  std::string setting;  // the differing setting, for comparisons
  std::vector<Table> tables;  // one for "seeds"; one per metric for "comparison"
  std::vector<std::string> table_titles;
  nlohmann::ordered_json json;
};
Aggregate aggregate_runs(const std::vector<nlohmann::json>& reports, const std::vector<std::string>& names);

// Mean and sample standard deviation (n - 1) of the values that are not NaN; the mean is NaN
// when none is left, the std 0 for a single value.
struct MeanStd {
  double mean = 0, std = 0;
  std::size_t count = 0;
};
MeanStd mean_std(const std::vector<double>& values);

// "95.2 +- 0.11" (values in [0,1] shown in %).
std::string mean_std_text(const std::vector<double>& values);

}  // namespace uniad::eval
