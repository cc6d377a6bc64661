// Sweep specs as a library: expansion order, run names, option lists, and the checks that
// turn a mistake into a usage error before anything runs (docs/sweeps.md); and the local
// executor's ETA.
#include <gtest/gtest.h>

#include "common/error.h"
#include "sweep/execute.h"
#include "sweep/spec.h"
#include "tests/test_support.h"

namespace uniad::sweep {
namespace {

namespace fs = std::filesystem;

SweepSpec spec_of(const test::TempDir& dir, const std::string& text) {
  test::write_text(dir / "spec.ini", text);
  return read_sweep_spec((dir / "spec.ini").string());
}

// The UsageError's message for a spec that must be refused ("" if it was accepted).
std::string refusal(const test::TempDir& dir, const std::string& text) {
  try {
    spec_of(dir, text);
  } catch (const UsageError& e) {
    return e.what();
  }
  return "";
}

TEST(SweepSpec, ExpansionOrderNamesAndOptions) {
  test::TempDir dir;
  const SweepSpec spec = spec_of(dir, R"([sweep]
seeds = 3, 1
ranks = 2
array-limit = 4
[train]
epochs = 6
hidden = 64
[grid]
lr = 1e-4, 1e-3
hidden = 16, 32
[variant no-jitter]
jitter-scale = 0
[variant small]
hidden = 8
epochs = 2
[slurm]
time = 1:00:00
)");
  EXPECT_EQ(spec.ranks, 2);
  EXPECT_EQ(spec.array_limit, 4);
  ASSERT_EQ(spec.slurm.size(), 1u);
  EXPECT_EQ(spec.slurm[0], std::make_pair(std::string("time"), std::string("1:00:00")));

  const std::vector<SweepRun> runs = spec.expand();
  // 3 configurations (base, two variants) x 4 grid points x 2 seeds.
  ASSERT_EQ(runs.size(), 24u);
  const std::vector<std::string> first = {"lr=1e-4,hidden=16/seed=3", "lr=1e-4,hidden=16/seed=1",
                                          "lr=1e-4,hidden=32/seed=3", "lr=1e-4,hidden=32/seed=1",
                                          "lr=1e-3,hidden=16/seed=3"};
  for (std::size_t i = 0; i < first.size(); ++i) EXPECT_EQ(runs[i].name(), first[i]) << i;
  EXPECT_EQ(runs[8].name(), "no-jitter,lr=1e-4,hidden=16/seed=3");
  EXPECT_EQ(runs[8].variant, "no-jitter");
  EXPECT_EQ(runs[23].name(), "small,lr=1e-3,hidden=32/seed=1");
  // Options: the base, then the variant's changes, then the grid point (the grid wins).
  const OptionList expected = {{"epochs", "2"}, {"hidden", "32"}, {"lr", "1e-3"}};
  EXPECT_EQ(runs[23].train, expected);
  EXPECT_EQ(runs[23].seed, 1u);
  // Deterministic: the same spec expands to the same runs.
  const std::vector<SweepRun> again = spec.expand();
  for (std::size_t i = 0; i < runs.size(); ++i) EXPECT_EQ(again[i].name(), runs[i].name());
}

TEST(SweepSpec, SeedMajorOrderRunsEveryConfigurationAtOneSeedFirst) {
  test::TempDir dir;
  const std::string body = "[train]\nepochs = 1\n[grid]\nlr = 1e-4, 1e-3\n[variant no-jitter]\njitter-scale = 0\n";
  const auto by_seed = spec_of(dir, "[sweep]\nseeds = 0, 1\norder = seeds\n" + body).expand();
  const std::vector<std::string> expected = {"lr=1e-4/seed=0", "lr=1e-3/seed=0", "no-jitter,lr=1e-4/seed=0",
                                             "no-jitter,lr=1e-3/seed=0", "lr=1e-4/seed=1", "lr=1e-3/seed=1",
                                             "no-jitter,lr=1e-4/seed=1", "no-jitter,lr=1e-3/seed=1"};
  ASSERT_EQ(by_seed.size(), expected.size());
  for (std::size_t i = 0; i < expected.size(); ++i) EXPECT_EQ(by_seed[i].name(), expected[i]) << i;
  // The same runs as the default order, with the same options.
  const auto by_configuration = spec_of(dir, "[sweep]\nseeds = 0, 1\n" + body).expand();
  EXPECT_EQ(by_configuration[1].name(), "lr=1e-4/seed=1");
  EXPECT_EQ(by_configuration[1].train, by_seed[4].train);
  EXPECT_THROW(spec_of(dir, "[sweep]\norder = random\n" + body), UsageError);
}

TEST(SweepSpec, WithoutGridOrVariantsTheRunIsTheBase) {
  test::TempDir dir;
  const auto runs = spec_of(dir, "[train]\nepochs = 1\n").expand();
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_EQ(runs[0].name(), "base/seed=0");
}

TEST(SweepSpec, MistakesAreUsageErrorsNamingTheFileAndOption) {
  test::TempDir dir;
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"[train]\nhiden = 32\n", "[train] unknown option 'hiden' for `uniad train`"},
      {"[grid]\nepochs = 2, two\n", "run epochs=two/seed=0"},
      {"[grid]\nlr = 1e-4\nlr = 1e-3\n", "[grid] lr appears twice"},
      {"[train]\nrun-dir = x\n", "set by the sweep"},
      {"[eval]\nout = x\n", "set by the sweep"},
      {"[eval]\nepochs = 3\n", "unknown option 'epochs' for `uniad eval`"},
      {"[sweep]\nseeds = 0, -1\n", "not a non-negative integer"},
      {"[sweep]\nrank-by = accuracy\n", "is not a metric"},
      {"[sweep]\nworkers = 2\n", "unknown key 'workers'"},
      {"[variant a/b]\nlr = 1e-3\n", "may not contain"},
      {"epochs = 3\n", "outside a section"},
      {"[slurm]\narray = 0-3\n", "sbatch --array is set by the sweep"},
      {"[slurm]\ncpus-per-task = 8\n", "set [sweep] threads"},
      {"[slurm]\nTIME = 1\n", "not an sbatch long option name"}};
  for (const auto& [text, expected] : cases) {
    const std::string message = refusal(dir, text);
    EXPECT_NE(message.find(expected), std::string::npos) << text << "-> '" << message << "'";
    EXPECT_NE(message.find("spec.ini"), std::string::npos) << message;
  }
  EXPECT_THROW(read_sweep_spec((dir / "missing.ini").string()), UsageError);
}

// A key given twice in any section is an error naming the section, the key and both lines -
// never "the last one wins" in silence (a [variant] may be split over two headers: one section).
TEST(SweepSpec, DuplicateKeysAreRefusedNamingBothLines) {
  test::TempDir dir;
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"[train]\nepochs = 3\nlr = 1e-3\nepochs = 4\n", "[train] epochs appears twice (lines 2 and 4)"},
      {"[eval]\npictures = 1\n\npictures = 2\n", "[eval] pictures appears twice (lines 2 and 4)"},
      {"[variant a]\nlr = 1e-3\n[train]\nepochs = 1\n[variant a]\nlr = 1e-4\n",
       "[variant a] lr appears twice (lines 2 and 6)"},
      {"[sweep]\nseeds = 0\nseeds = 1\n", "[sweep] seeds appears twice (lines 2 and 3)"},
      {"[slurm]\ntime = 1:00:00\n# later\ntime = 2:00:00\n", "[slurm] time appears twice (lines 2 and 4)"},
      {"[grid]\nlr = 1e-4\nlr = 1e-3\n", "[grid] lr appears twice (lines 2 and 3)"}};
  for (const auto& [text, expected] : cases) {
    const std::string message = refusal(dir, text);
    EXPECT_NE(message.find(expected), std::string::npos) << text << "-> '" << message << "'";
    EXPECT_NE(message.find("spec.ini"), std::string::npos) << message;
  }
  // The same key in two sections is two settings, not a duplicate.
  EXPECT_EQ(refusal(dir, "[train]\nlr = 1e-3\n[variant a]\nlr = 1e-4\n[grid]\nlr = 1e-4, 1e-3\n"), "");
  // A line that is neither is an error with its number.
  EXPECT_NE(refusal(dir, "[train]\nepochs 3\n").find("spec.ini:2: malformed line 'epochs 3'"), std::string::npos);
}

// sweep.json holds the spec and every run with its options; reading them back gives the same.
TEST(SweepSpec, JsonRecordRoundTrips) {
  test::TempDir dir;
  const SweepSpec spec = spec_of(dir, "[sweep]\nseeds = 2, 0\norder = seeds\nranks = 2\nrank-by = aupro\n"
                                      "[train]\nepochs = 3\nlr = 1e-3\nhidden = 16\n[eval]\npictures = 1\n"
                                      "[grid]\nhidden = 32, 16\n[variant b]\nlr = 1e-4\njitter-scale = 0\n"
                                      "[slurm]\ntime = 1:00:00\n");
  const SweepSpec back = SweepSpec::from_json(nlohmann::ordered_json::parse(spec.to_json().dump()), "x.ini");
  EXPECT_EQ(back.to_json().dump(), spec.to_json().dump());
  const auto runs = spec.expand(), again = back.expand();
  ASSERT_EQ(runs.size(), again.size());
  for (std::size_t i = 0; i < runs.size(); ++i) {
    const SweepRun r = run_from_json(nlohmann::ordered_json::parse(run_to_json(runs[i]).dump()));
    EXPECT_EQ(r.name(), runs[i].name());
    EXPECT_EQ(r.variant, runs[i].variant);
    EXPECT_EQ(r.train, runs[i].train) << "options in their order";
    EXPECT_EQ(r.eval, runs[i].eval);
    EXPECT_EQ(again[i].train, runs[i].train);
  }
  EXPECT_EQ(runs.back().eval, (OptionList{{"pictures", "1"}}));
}

TEST(SweepSpec, SbatchOptionNames) {
  EXPECT_NO_THROW(check_sbatch_option("here", "time"));
  EXPECT_NO_THROW(check_sbatch_option("here", "gres"));
  EXPECT_NO_THROW(check_sbatch_option("here", "mail-type"));
  EXPECT_THROW(check_sbatch_option("here", "ntasks"), UsageError);
  EXPECT_THROW(check_sbatch_option("here", "dependency"), UsageError);
  EXPECT_THROW(check_sbatch_option("here", "-t"), UsageError);
  EXPECT_THROW(check_sbatch_option("here", ""), UsageError);
}

// The ETA printed after each run. Resumed after 6 of 21 runs: the 6 are skipped in no time, the
// next takes 341 s and 14 are left, so 14 x 341 s (not 341 s / 7 finished x 14, which counted
// the skips as runs and printed 11 minutes for 80).
TEST(SweepEta, IsThePaceOfTheTrainedRunsTimesTheRunsLeftToTrain) {
  EXPECT_DOUBLE_EQ(sweep_eta_seconds(341.0, 1, 14), 14 * 341.0);
  // Two jobs at a time: 4 runs in 600 s of wall time is 150 s of wall time per run.
  EXPECT_DOUBLE_EQ(sweep_eta_seconds(600.0, 4, 6), 900.0);
  EXPECT_DOUBLE_EQ(sweep_eta_seconds(600.0, 4, 0), 0.0);
  EXPECT_DOUBLE_EQ(sweep_eta_seconds(0.0, 0, 5), 0.0);  // nothing trained yet: no pace to go by
}

}  // namespace
}  // namespace uniad::sweep
