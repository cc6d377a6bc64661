// End to end: a smaller `uniad demo` (2 synthetic classes, fewer images and epochs) runs the
// whole chain - dataset, feature cache, 2-rank training, evaluation, report - and its report
// must show the method working, so a break anywhere in the chain fails CI. Its work folder's
// name holds an apostrophe and a `$`, which only a shell-free launcher passes through.
//
// Thresholds. With these settings the chain reaches image AUROC 58 / 70 and pixel AUROC
// 72 / 92 (bottle_cap / weave; deterministic for a given build). The same model untrained
// scores image 48 / pixel 43 on average (chance or worse: its error follows feature
// magnitude, not defects). So: mean pixel AUROC >= 0.75, mean image AUROC >= 0.60, and every
// class's pixel AUROC >= 0.65 - well above chance and the untrained model, with margin for
// numerical differences between machines.
#include <fstream>

#include <nlohmann/json.hpp>

#include "tests/test_support.h"

namespace uniad {
namespace {

namespace fs = std::filesystem;
using test::quote;

TEST(EndToEnd, SmallDemoChainDetectsDefects) {
  test::TempDir dir;
  // A folder name a shell would mangle: every stage must get it as it is (no shell between).
  const fs::path work = dir / "demo it's $HOME";
  const std::string demo = quote(test::uniad_binary()) + " demo --workdir " + quote(work) +
                           " --classes 2 --train-good 40 --test-good 10 --test-anomalous 16 --epochs 30";
  const auto r = test::run(demo);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  // The report, in every form, with provenance and an honest backbone statement.
  const fs::path eval = work / "run/eval";
  for (const char* file : {"report.md", "report.csv", "report.json", "scores.csv", "index.html",
                           "pictures/bottle_cap.png", "pictures/weave.png", "pictures/loss.png", "pictures/auroc.png"}) {
    EXPECT_TRUE(fs::exists(eval / file)) << file;
  }
  EXPECT_NE(r.output.find("random-feature backbone"), std::string::npos);
  EXPECT_NE(r.output.find("Each stage alone"), std::string::npos);
  EXPECT_FALSE(fs::exists(dir / "demo it")) << "the name was split at the apostrophe";
  // The printed commands are quoted so a shell reads them back: the eval command re-runs.
  const std::string::size_type at = r.output.find(" eval --run ", r.output.find("Each stage alone"));
  ASSERT_NE(at, std::string::npos) << r.output;
  const std::string::size_type line_start = r.output.rfind('\n', at) + 1;
  const std::string eval_line = r.output.substr(line_start, r.output.find('\n', at) - line_start);
  EXPECT_NE(eval_line.find("it'\\''s $HOME"), std::string::npos) << eval_line;
  const auto rerun = test::run(eval_line + " -q --pictures 0 --out " + quote(dir / "rerun eval"));
  EXPECT_EQ(rerun.exit_code, 0) << eval_line << "\n" << rerun.output;
  const auto report = nlohmann::json::parse(std::ifstream(eval / "report.json"));
  EXPECT_EQ(report["provenance"]["random_features"], true);
  EXPECT_EQ(report["provenance"]["protocol"]["image_score"], "avgpool-max");
  EXPECT_EQ(report["provenance"]["config"]["epochs"], 30);
  ASSERT_EQ(report["classes"].size(), 2u);
  for (const auto& row : report["classes"]) {
    EXPECT_GE(row["pixel_auroc"].get<double>(), 0.65) << row.dump();
    EXPECT_GT(row["image_auroc"].get<double>(), 0.5) << row.dump();
  }
  EXPECT_GE(report["mean"]["pixel_auroc"].get<double>(), 0.75) << report["mean"].dump();
  EXPECT_GE(report["mean"]["image_auroc"].get<double>(), 0.60) << report["mean"].dump();
  // Training curves: one log line per epoch, with periodic evaluations.
  std::ifstream log(work / "run/metrics.jsonl");
  int lines = 0, evaluations = 0;
  for (std::string line; std::getline(log, line); ++lines) evaluations += nlohmann::json::parse(line).contains("eval");
  EXPECT_EQ(lines, 30);
  EXPECT_GE(evaluations, 5);
  // TensorBoard event files of the training and the evaluation (`tensorboard --logdir WORK`).
  for (const char* folder : {"run/tb", "run/eval/tb"}) {
    int files = 0;
    for (const auto& entry : fs::directory_iterator(work / folder))
      files += entry.path().filename().string().rfind("events.out.tfevents.", 0) == 0;
    EXPECT_EQ(files, 1) << folder;
  }

  // Running it again reuses the dataset, the cache and the finished training.
  const auto again = test::run(demo);
  ASSERT_EQ(again.exit_code, 0) << again.output;
  EXPECT_NE(again.output.find("reusing"), std::string::npos) << again.output;
  EXPECT_NE(again.output.find("trained 30 epochs"), std::string::npos) << again.output;
  EXPECT_EQ(nlohmann::json::parse(std::ifstream(eval / "report.json"))["mean"], report["mean"]) << "same numbers";

  // The report command aggregates it (one seed).
  const auto aggregated = test::run(quote(test::uniad_binary()) + " report --runs " + quote(work / "run") + " --out " +
                                    quote(dir / "aggregate"));
  ASSERT_EQ(aggregated.exit_code, 0) << aggregated.output;
  EXPECT_TRUE(fs::exists(dir / "aggregate/index.html"));
}

}  // namespace
}  // namespace uniad
