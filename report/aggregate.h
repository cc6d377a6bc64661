#pragma once
// Aggregation over runs, the one place that computes it: mean and sample standard deviation
// over seeds, differences of means with their spread, and the aggregation of several runs'
// reports (`uniad report`: runs that differ only by seed -> mean +- std per class and metric;
// runs that differ in one setting -> a comparison table with differences). A sweep's
// leaderboard (leaderboard.h) uses the same functions.
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/table.h"

namespace uniad::report {

// Mean and sample standard deviation (n - 1) of the values that are not NaN; the mean is NaN
// when none is left, the std 0 for a single value.
struct MeanStd {
  double mean = 0, std = 0;
  std::size_t count = 0;
};
MeanStd mean_std(const std::vector<double>& values);

// "95.2 +- 0.11" (values in [0,1] shown in %).
std::string mean_std_text(const std::vector<double>& values);

// mean(a) - mean(b), with the std of that difference, sqrt(s_a^2/n_a + s_b^2/n_b), known only
// when both sides have at least two values (with one seed the spread is unknown, not zero).
struct Difference {
  double mean = 0, std = 0;
  bool spread_known = false;
};
Difference difference_of_means(const std::vector<double>& a, const std::vector<double>& b);
// "+1.2 +- 0.30" in %, "+1.2" without a known spread (or when `spread` is false), "n/a" for NaN.
std::string difference_text(const Difference& d, bool spread = true);

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

}  // namespace uniad::report
