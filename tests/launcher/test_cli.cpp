// The `uniad` command line: help, exit codes, option errors, config files with overrides.
#include <nlohmann/json.hpp>

#include "tests/test_support.h"

namespace uniad {
namespace {

namespace fs = std::filesystem;

using test::quote;
using test::run;

std::string uniad() { return quote(test::uniad_binary()); }

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

TEST(Cli, TopLevelHelpAndExitCodes) {
  auto r = run(uniad() + " --help");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_TRUE(contains(r.output, "synth")) << r.output;
  EXPECT_TRUE(contains(r.output, "exit codes"));
  EXPECT_EQ(run(uniad()).exit_code, 64);
  r = run(uniad() + " frobnicate");
  EXPECT_EQ(r.exit_code, 64);
  EXPECT_TRUE(contains(r.output, "unknown command 'frobnicate'")) << r.output;
  EXPECT_EQ(run(uniad() + " --version").exit_code, 0);
}

TEST(Cli, EveryCommandHasHelp) {
  const std::vector<std::string> commands = {"synth", "datasets", "demo",   "extract", "train",
                                             "eval",  "report",   "import", "sweep", "export", "predict"};
  const auto top = run(uniad() + " --help");
  for (const auto& command : commands) EXPECT_TRUE(contains(top.output, "  " + command + " ")) << command << top.output;
  for (const auto& command : commands) {
    const auto r = run(uniad() + " " + command + " --help");
    EXPECT_EQ(r.exit_code, 0) << command << ": " << r.output;
    EXPECT_TRUE(contains(r.output, "usage: uniad " + command) || contains(r.output, "uniad " + command + " ")) << r.output;
    EXPECT_TRUE(contains(r.output, "--config")) << command;
  }
}

TEST(Cli, UnknownAndMalformedOptionsNameTheOption) {
  auto r = run(uniad() + " synth --out x --colour red");
  EXPECT_EQ(r.exit_code, 64);
  EXPECT_TRUE(contains(r.output, "colour")) << r.output;
  r = run(uniad() + " synth --out x --classes many");
  EXPECT_EQ(r.exit_code, 64);
  EXPECT_TRUE(contains(r.output, "classes")) << r.output;
  r = run(uniad() + " synth");
  EXPECT_EQ(r.exit_code, 64);
  EXPECT_TRUE(contains(r.output, "out")) << r.output;
}

TEST(Cli, ConfigFileWithCommandLineOverride) {
  test::TempDir dir;
  test::write_text(dir / "run.ini",
                   "# shared settings\n"
                   "image-size = 64\n"
                   "[synth]\nclasses = 2\nseed = 3\ntrain-good = 1\ntest-good = 1\ntest-anomalous = 1\n"
                   "[train]\nepochs = 5\n");  // another command's section is ignored
  const auto r = run(uniad() + " synth --config " + quote(dir / "run.ini") + " --out " + quote(dir / "ds") + " --seed 4");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto manifest = nlohmann::json::parse(test::read_bytes(dir / "ds/synth.json"));
  EXPECT_EQ(manifest["seed"], 4) << "command line wins over the config file";
  EXPECT_EQ(manifest["classes"].size(), 2u) << "config file value used";
  EXPECT_EQ(manifest["image_size"], 64) << "top-level key used";
}

TEST(Cli, ConfigFileTypoIsAnError) {
  test::TempDir dir;
  test::write_text(dir / "bad.ini", "[synth]\nclases = 2\n");
  auto r = run(uniad() + " synth --config " + quote(dir / "bad.ini") + " --out " + quote(dir / "ds"));
  EXPECT_EQ(r.exit_code, 64);
  EXPECT_TRUE(contains(r.output, "clases")) << r.output;
  EXPECT_TRUE(contains(r.output, "bad.ini")) << r.output;
  r = run(uniad() + " synth --config " + quote(dir / "missing.ini") + " --out " + quote(dir / "ds"));
  EXPECT_EQ(r.exit_code, 64);
  EXPECT_TRUE(contains(r.output, "missing.ini")) << r.output;
  // A key twice in one section: an error naming both lines, not the last one winning.
  test::write_text(dir / "twice.ini", "[synth]\nclasses = 2\nseed = 1\nclasses = 3\n");
  r = run(uniad() + " synth --config " + quote(dir / "twice.ini") + " --out " + quote(dir / "ds"));
  EXPECT_EQ(r.exit_code, 64) << r.output;
  EXPECT_TRUE(contains(r.output, "twice.ini: [synth] classes appears twice (lines 2 and 4)")) << r.output;
}

TEST(Cli, DatasetsReportsProblemsWithExitCode65) {
  test::TempDir dir;
  auto r = run(uniad() + " synth --out " + quote(dir / "ds") +
               " --classes 2 --train-good 2 --test-good 1 --test-anomalous 4 --image-size 64");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = run(uniad() + " datasets --root " + quote(dir / "ds") + " --json " + quote(dir / "summary.json"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "no problems found")) << r.output;
  const auto summary = nlohmann::json::parse(test::read_bytes(dir / "summary.json"));
  EXPECT_EQ(summary["classes"][0]["train_good"], 2);
  EXPECT_EQ(summary["classes"][0]["masks"], 4);

  test::write_text(dir / "ds/weave/train/good/001.png", "corrupt");
  fs::remove(dir / "ds/weave/ground_truth/hole/000_mask.png");
  r = run(uniad() + " datasets --root " + quote(dir / "ds"));
  EXPECT_EQ(r.exit_code, 65) << r.output;
  EXPECT_TRUE(contains(r.output, "weave/train/good/001.png")) << r.output;
  EXPECT_TRUE(contains(r.output, "weave/test/hole/000.png")) << r.output;
  EXPECT_TRUE(contains(r.output, "2 problem(s)")) << r.output;
}

}  // namespace
}  // namespace uniad
