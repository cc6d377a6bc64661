// Reports and aggregation over runs: mean +- std over seeds, comparisons of one setting, the
// paper's table format, CSV.
#include <nlohmann/json.hpp>

#include "common/error.h"
#include "eval/evaluate.h"
#include "report/aggregate.h"
#include "report/eval_report.h"
#include "report/tables.h"
#include "tests/test_support.h"

namespace uniad::report {
namespace {

namespace fs = std::filesystem;

// A report record as `uniad eval` writes it, with two classes and the given image AUROCs.
nlohmann::json fake_report(double a, double b, const nlohmann::json& config) {
  nlohmann::json report;
  report["provenance"] = {{"config", config}, {"run_dir", "runs/x"}, {"seed", config.value("seed", 0)}};
  for (auto [name, value] : {std::pair{"bottle", a}, std::pair{"cable", b}}) {
    nlohmann::json row = {{"name", name}};
    for (const auto& column : eval::metric_columns()) row[column.key] = value;
    report["classes"].push_back(row);
  }
  for (const auto& column : eval::metric_columns()) report["mean"][column.key] = (a + b) / 2;
  return report;
}

TEST(Report, MeanStdText) {
  EXPECT_EQ(mean_std_text({0.9, 0.95}), "92.5 +- 3.54");  // sample std over seeds
  EXPECT_EQ(mean_std_text({0.952}), "95.2");
  EXPECT_EQ(mean_std_text({NAN, NAN}), "n/a");
}

TEST(Report, SeedsAggregateToMeanAndStd) {
  const nlohmann::json base = {{"model", {{"jitter_scale", 20}}}, {"seed", 0}};
  std::vector<nlohmann::json> runs;
  for (int seed = 0; seed < 3; ++seed) {
    nlohmann::json config = base;
    config["seed"] = seed;
    runs.push_back(fake_report(0.90 + 0.02 * seed, 0.80, config));
  }
  const Aggregate a = aggregate_runs(runs, {"s0", "s1", "s2"});
  EXPECT_EQ(a.kind, "seeds");
  ASSERT_EQ(a.tables.size(), 1u);
  EXPECT_EQ(a.tables[0].rows[0][0], "bottle");
  EXPECT_EQ(a.tables[0].rows[0][1], "92.0 +- 2.00");
  EXPECT_EQ(a.tables[0].rows[1][1], "80.0 +- 0.00");
  EXPECT_EQ(a.tables[0].rows[2][0], "mean");
  EXPECT_EQ(a.tables[0].rows[2][1], "86.0 +- 1.00");
}

TEST(Report, OneDifferingSettingGivesAComparison) {
  std::vector<nlohmann::json> runs;
  for (double jitter : {20.0, 0.0})
    for (int seed = 0; seed < 2; ++seed)
      runs.push_back(fake_report(jitter > 0 ? 0.95 + 0.01 * seed : 0.85, 0.8,
                                 {{"model", {{"jitter_scale", jitter}}}, {"seed", seed}}));
  const Aggregate a = aggregate_runs(runs, {"a", "b", "c", "d"});
  EXPECT_EQ(a.kind, "comparison");
  EXPECT_EQ(a.setting, "/config/model/jitter_scale");
  ASSERT_EQ(a.tables.size(), eval::metric_columns().size());
  const auto& table = a.tables[0];  // image AUROC
  EXPECT_EQ(table.header.size(), 4u);  // class, two values, one difference
  EXPECT_EQ(table.rows[0][1], "95.5 +- 0.71");
  EXPECT_EQ(table.rows[0][2], "85.0 +- 0.00");
  EXPECT_EQ(table.rows[0][3], "-10.5");
}

TEST(Report, RefusesRunsThatDifferInSeveralSettings) {
  const auto a = fake_report(0.9, 0.9, {{"model", {{"jitter_scale", 20}, {"neighbor_window", 7}}}});
  const auto b = fake_report(0.9, 0.9, {{"model", {{"jitter_scale", 0}, {"neighbor_window", 0}}}});
  try {
    aggregate_runs({a, b}, {"a", "b"});
    ADD_FAILURE() << "aggregated";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("jitter_scale"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("neighbor_window"), std::string::npos) << e.what();
  }
}

TEST(Report, MarkdownTableInPaperFormat) {
  nlohmann::json report = fake_report(0.952, NAN, nlohmann::json::object());
  report["classes"][1]["image_auroc"] = nullptr;  // undefined
  report["mean"]["image_auroc"] = 0.952;
  const Table t = metrics_table(report);
  const std::string md = t.to_markdown();
  EXPECT_NE(md.find("| bottle "), std::string::npos) << md;
  EXPECT_NE(md.find("95.2"), std::string::npos) << md;
  EXPECT_NE(md.find("n/a"), std::string::npos) << md;
  EXPECT_NE(md.find("| mean "), std::string::npos) << md;
  EXPECT_EQ(table_csv(Table{{"a", "b"}, {{"x,y", "1"}}}), "a,b\n\"x,y\",1\n");
}

}  // namespace
}  // namespace uniad::report
