// `uniad sweep` through the real executable: expansion, naming and option checking; a local
// sweep (2 x 2 grid x 2 seeds, tiny model) whose leaderboard equals the runs' own reports;
// stopped halfway with SIGTERM and re-run: nothing finished is recomputed, the interrupted
// run resumes, and the final leaderboard equals the uninterrupted one.
#include <cmath>
#include <fstream>

#include <nlohmann/json.hpp>

#include "tests/tensorboard_oracle.h"
#include "tests/test_support.h"

namespace uniad {
namespace {

namespace fs = std::filesystem;
using test::quote;

std::string uniad() { return quote(test::uniad_binary()); }

const char* kSpec = R"(# 2 x 2 grid x 2 seeds of a tiny model
[sweep]
seeds = 0, 1
rank-by = pixel_auroc
threads = 1

[train]
epochs = 6
batch-size = 4
heads = 4
feedforward = 64
encoder-layers = 1
decoder-layers = 1

[eval]
pictures = 0

[grid]
lr = 1e-4, 1e-3
hidden = 16, 32
)";

class Sweep : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new test::TempDir();
    auto r = test::make_small_cache(dir());
    ASSERT_EQ(r.exit_code, 0) << r.output;
    test::write_text(dir() / "sweep.ini", kSpec);
  }
  static void TearDownTestSuite() { delete dir_; }
  static fs::path dir() { return dir_->path(); }
  static std::string sweep(const fs::path& spec, const fs::path& out, const std::string& extra = "") {
    return uniad() + " sweep --spec " + quote(spec) + " --cache " + quote(dir() / "cache.h5") + " --out " + quote(out) +
           " " + extra;
  }
  static nlohmann::json json_of(const fs::path& path) { return nlohmann::json::parse(std::ifstream(path)); }
  static inline test::TempDir* dir_ = nullptr;
};

TEST_F(Sweep, ExpansionNamesAndOptionChecks) {
  test::write_text(dir() / "ablation.ini", std::string(kSpec) + "\n[variant no-jitter]\njitter-scale = 0\n");
  auto r = test::run(uniad() + " sweep --dry-run --spec " + quote(dir() / "ablation.ini"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("16 runs: 8 configuration(s) x 2 seed(s)"), std::string::npos) << r.output;
  // The base first, then the variant; the grid's first key slowest; seeds innermost.
  const std::vector<std::string> order = {"lr=1e-4,hidden=16/seed=0:", "lr=1e-4,hidden=16/seed=1:",
                                          "lr=1e-4,hidden=32/seed=0:", "lr=1e-3,hidden=16/seed=0:",
                                          "no-jitter,lr=1e-4,hidden=16/seed=0:", "no-jitter,lr=1e-3,hidden=32/seed=1:"};
  std::size_t at = 0;
  for (const auto& name : order) {
    const std::size_t found = r.output.find(name, at);
    ASSERT_NE(found, std::string::npos) << name << " missing or out of order:\n" << r.output;
    at = found;
  }
  EXPECT_NE(r.output.find("no-jitter,lr=1e-3,hidden=32/seed=1: --epochs 6 --batch-size 4 --heads 4 --feedforward 64 "
                          "--encoder-layers 1 --decoder-layers 1 --jitter-scale 0 --lr 1e-3 --hidden 32"),
            std::string::npos)
      << r.output;
  // The ready-made specs in sweeps/ are valid.
  for (const auto& entry : fs::directory_iterator(fs::path(UNIAD_SOURCE_DIR) / "sweeps")) {
    r = test::run(uniad() + " sweep --dry-run --spec " + quote(entry.path()));
    EXPECT_EQ(r.exit_code, 0) << entry.path() << "\n" << r.output;
  }
  // Mistakes are usage errors naming the file and the option, before anything runs.
  const std::vector<std::pair<std::string, std::string>> broken = {
      {"[train]\nhiden = 32\n", "unknown option 'hiden'"},
      {"[grid]\nlr = 1e-4, fast\n", "run lr=fast/seed=0"},
      {"[train]\nseed = 3\n", "set by the sweep"},
      {"[eval]\nimage-score = median\n", "image-score"},
      {"[sweep]\nrank-by = accuracy\n", "rank-by"},
      {"[mystery]\nx = 1\n", "unknown section [mystery]"},
      {"[sweep]\narray-limit = -2\n", "array-limit"},
      {"[slurm]\nntasks = 4\n", "sbatch --ntasks is set by the sweep"},
      {"[slurm]\nTime = 60\n", "not an sbatch long option"}};
  for (const auto& [text, expected] : broken) {
    test::write_text(dir() / "broken.ini", text);
    r = test::run(uniad() + " sweep --dry-run --spec " + quote(dir() / "broken.ini"));
    EXPECT_EQ(r.exit_code, 64) << text << r.output;
    EXPECT_NE(r.output.find(expected), std::string::npos) << text << r.output;
    EXPECT_NE(r.output.find("broken.ini"), std::string::npos) << r.output;
  }
  // sbatch options from the command line: checked the same way, and only for the Slurm backend.
  r = test::run(uniad() + " sweep --dry-run --backend slurm --sbatch output=x.out --spec " + quote(dir() / "sweep.ini"));
  EXPECT_EQ(r.exit_code, 64) << r.output;
  EXPECT_NE(r.output.find("--sbatch output=x.out: sbatch --output is set by the sweep"), std::string::npos) << r.output;
  r = test::run(uniad() + " sweep --dry-run --sbatch time=60 --spec " + quote(dir() / "sweep.ini"));
  EXPECT_EQ(r.exit_code, 64) << r.output;
  EXPECT_NE(r.output.find("--sbatch is for --backend slurm"), std::string::npos) << r.output;
}

// A spec that asks Slurm for a GPU per task gets it: sbatch is given --gpus-per-task=1, each
// array task's srun binds one GPU per rank, and the training is told --device cuda (so a job
// that cannot see its GPU fails instead of training on the CPU). sbatch and srun are stand-ins
// on PATH that record their arguments; the real cluster test (tests/slurm) has no GPUs.
TEST_F(Sweep, SlurmGpuTasksAskForAndBindOneGpuPerRank) {
  test::TempDir scratch;
  const fs::path bin = scratch / "bin";
  fs::create_directories(bin);
  for (const char* tool : {"sbatch", "srun"}) {
    test::write_text(bin / tool, std::string("#!/bin/sh\necho \"$*\" >> \"$(dirname \"$0\")/") + tool +
                                     ".log\"\necho 4242\n");
    fs::permissions(bin / tool, fs::perms::owner_all);
  }
  std::string spec = kSpec;
  spec += "\n[slurm]\ngpus-per-task = 1\n";
  spec.replace(spec.find("threads = 1"), 11, "threads = 1\nranks = 2");
  test::write_text(scratch / "gpu.ini", spec);
  const std::string path = "PATH=" + quote(bin) + ":\"$PATH\" ";
  auto r = test::run(path + sweep(scratch / "gpu.ini", scratch / "out", "--backend slurm"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string sbatch = test::read_bytes(bin / "sbatch.log");
  EXPECT_NE(sbatch.find("--gpus-per-task=1"), std::string::npos) << sbatch;

  // An array task: srun starts the two ranks, one GPU each, and training runs on it.
  r = test::run(path + "SLURM_JOB_ID=4242 SLURM_CPUS_PER_TASK=1 " + uniad() + " sweep --out " +
                quote(scratch / "out") + " --task 0");
  const std::string srun = test::read_bytes(bin / "srun.log");
  EXPECT_NE(srun.find("--ntasks=2 --cpus-per-task=1 --gpus-per-task=1 --gpu-bind=single:1 "), std::string::npos)
      << srun << r.output;
  EXPECT_NE(srun.find(" train "), std::string::npos) << srun;
  EXPECT_NE(srun.find("--device=cuda"), std::string::npos) << srun;

  // One rank per GPU: a task holding two GPUs is refused at once.
  spec.replace(spec.find("gpus-per-task = 1"), 17, "gpus-per-task = 2");
  test::write_text(scratch / "two.ini", spec);
  r = test::run(uniad() + " sweep --dry-run --backend slurm --spec " + quote(scratch / "two.ini"));
  EXPECT_EQ(r.exit_code, 64) << r.output;
  EXPECT_NE(r.output.find("uniad runs one rank per GPU"), std::string::npos) << r.output;
}

// sweep.json is the single record of the runs: an array task runs the run recorded there even
// after the folder's sweep.ini was edited (a re-expansion would give other runs), and a later
// `uniad sweep` of the edited spec into the folder is refused, naming the run and the option.
TEST_F(Sweep, TasksRunTheRecordedRunsAndAnEditedSpecIsRefused) {
  test::TempDir scratch;
  const fs::path bin = scratch / "bin", out = scratch / "out";
  fs::create_directories(bin);
  for (const char* tool : {"sbatch", "srun"}) {
    test::write_text(bin / tool, std::string("#!/bin/sh\necho \"$*\" >> \"$(dirname \"$0\")/") + tool +
                                     ".log\"\necho 4242\n");
    fs::permissions(bin / tool, fs::perms::owner_all);
  }
  test::write_text(bin / "squeue", "#!/bin/sh\nexit 0\n");  // the jobs have ended
  fs::permissions(bin / "squeue", fs::perms::owner_all);
  const std::string path = "PATH=" + quote(bin) + ":\"$PATH\" ";
  auto r = test::run(path + sweep(dir() / "sweep.ini", out, "--backend slurm"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto record = json_of(out / "sweep.json");
  ASSERT_EQ(record["runs"].size(), 8u);
  EXPECT_EQ(record["runs"][1]["name"], "lr=1e-4,hidden=16/seed=1");
  EXPECT_EQ(record["runs"][1]["train"]["epochs"], "6");
  EXPECT_EQ(record["runs"][1]["eval"]["pictures"], "0");

  // Edited in the folder: other epochs, the grid's values swapped, a variant in front.
  std::string edited = test::read_bytes(out / "sweep.ini");
  edited.replace(edited.find("epochs = 6"), 10, "epochs = 7");
  edited.replace(edited.find("lr = 1e-4, 1e-3"), 15, "lr = 1e-3, 1e-4");
  test::write_text(out / "sweep.ini", edited);
  r = test::run(path + "SLURM_JOB_ID=4242 SLURM_CPUS_PER_TASK=1 " + uniad() + " sweep --out " + quote(out) + " --task 1");
  const std::string srun = test::read_bytes(bin / "srun.log");
  EXPECT_NE(srun.find(" --run-dir " + (out / "lr=1e-4,hidden=16" / "seed=1").string() + " --seed 1 "), std::string::npos)
      << srun << r.output;
  EXPECT_NE(srun.find("--epochs=6 "), std::string::npos) << srun;
  EXPECT_EQ(srun.find("--epochs=7"), std::string::npos) << srun;

  // The task made that run's folder: the edited spec may not reuse it.
  ASSERT_TRUE(fs::exists(out / "lr=1e-4,hidden=16" / "seed=1"));
  r = test::run(path + sweep(out / "sweep.ini", out, "--backend slurm"));
  EXPECT_EQ(r.exit_code, 64) << r.output;
  EXPECT_NE(r.output.find("run lr=1e-4,hidden=16/seed=1"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("train --epochs: 6 in the folder, 7 now"), std::string::npos) << r.output;
  EXPECT_EQ(json_of(out / "sweep.json"), record) << "the record is unchanged by a refused sweep";
  // Adding a seed to the original spec extends the sweep; the record keeps every run.
  std::string more = kSpec;
  more.replace(more.find("seeds = 0, 1"), 12, "seeds = 0, 1, 2");
  test::write_text(scratch / "more.ini", more);
  r = test::run(path + sweep(scratch / "more.ini", out, "--backend slurm"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(json_of(out / "sweep.json")["runs"].size(), 12u);
}

TEST_F(Sweep, LocalSweepStoppedAndResumedEqualsUninterrupted) {
  // Uninterrupted.
  const fs::path full = dir() / "full";
  auto r = test::run(sweep(dir() / "sweep.ini", full, "--jobs 2"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto board = json_of(full / "leaderboard.json");
  ASSERT_EQ(board["configurations"].size(), 4u);
  EXPECT_TRUE(board["not_evaluated"].empty());
  // Each configuration's mean and std equal those of its runs' own reports.
  double previous = INFINITY;
  for (const auto& c : board["configurations"]) {
    const std::string config = c["configuration"];
    for (const char* metric : {"image_auroc", "pixel_auroc", "aupro"}) {
      std::vector<double> v;
      for (const char* seed : {"seed=0", "seed=1"}) v.push_back(json_of(full / config / seed / "eval/report.json")["mean"][metric]);
      const double mean = (v[0] + v[1]) / 2, sd = std::abs(v[0] - v[1]) / std::sqrt(2.0);
      EXPECT_NEAR(c["metrics"][metric]["mean"].get<double>(), mean, 1e-12) << config << " " << metric;
      EXPECT_NEAR(c["metrics"][metric]["std"].get<double>(), sd, 1e-12) << config << " " << metric;
    }
    const double ranked = c["metrics"]["pixel_auroc"]["mean"];
    EXPECT_LE(ranked, previous) << "sorted by the spec's rank-by";
    previous = ranked;
  }
  EXPECT_TRUE(fs::exists(full / "leaderboard.md") && fs::exists(full / "leaderboard.csv") && fs::exists(full / "index.html"));

  // The same sweep, stopped by SIGTERM once two runs are evaluated and the third is training
  // (its log shows a finished epoch), then run again.
  const fs::path cut = dir() / "cut";
  r = test::run(sweep(dir() / "sweep.ini", cut, "--jobs 1") + " > " + quote(dir() / "cut.log") +
                " 2>&1 & pid=$!; for i in $(seq 1 1200); do n=$(cat " + quote(cut) +
                "/*/seed=*/train.log 2>/dev/null | grep -c 'epoch 1/6'); [ \"$n\" -ge 3 ] && break; sleep 0.1; "
                "done; kill -TERM $pid; wait $pid; echo sweep_exit=$?");
  ASSERT_NE(r.output.find("sweep_exit=75"), std::string::npos) << r.output << test::read_bytes(dir() / "cut.log");
  std::map<std::string, fs::file_time_type> finished;
  for (const auto& entry : fs::recursive_directory_iterator(cut))
    if (entry.path().filename() == "report.json") finished[entry.path().string()] = fs::last_write_time(entry.path());
  ASSERT_EQ(finished.size(), 2u);
  // No orphans: no uniad process of this sweep left ("[u]" keeps pgrep's own shell out).
  EXPECT_EQ(test::run("pgrep -f '[u]niad.*" + cut.string() + "'").output, "") << "orphan processes of the stopped sweep";
  r = test::run(sweep(dir() / "sweep.ini", cut, "--jobs 1"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (const auto& [path, time] : finished) EXPECT_EQ(fs::last_write_time(path), time) << path << " was recomputed";
  EXPECT_NE(r.output.find("already evaluated, skipped"), std::string::npos) << r.output;
  bool resumed = false;
  for (const auto& entry : fs::recursive_directory_iterator(cut))
    if (entry.path().filename() == "train.log") resumed |= test::read_bytes(entry.path()).find("resuming") != std::string::npos;
  EXPECT_TRUE(resumed) << "the interrupted run continued from its checkpoint";
  EXPECT_EQ(json_of(cut / "leaderboard.json")["configurations"], board["configurations"])
      << "stopped and resumed = uninterrupted";

  // A changed spec that would reuse these folders is refused, naming the run and option.
  std::string changed = kSpec;
  changed.replace(changed.find("epochs = 6"), 10, "epochs = 7");
  test::write_text(dir() / "changed.ini", changed);
  r = test::run(sweep(dir() / "changed.ini", cut));
  EXPECT_EQ(r.exit_code, 64) << r.output;
  EXPECT_NE(r.output.find("lr=1e-4,hidden=16/seed=0"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("--epochs: 6 in the folder, 7 now"), std::string::npos) << r.output;
  // --report rebuilds the leaderboard from the folder at any time.
  fs::remove(cut / "leaderboard.json");
  r = test::run(uniad() + " sweep -q --report " + quote(cut));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(json_of(cut / "leaderboard.json")["configurations"], board["configurations"]);
  // The same runs expanded seed by seed (order = seeds) give the same leaderboard.
  std::string by_seed = test::read_bytes(cut / "sweep.ini");
  by_seed.replace(by_seed.find("[sweep]\n"), 8, "[sweep]\norder = seeds\n");
  test::write_text(cut / "sweep.ini", by_seed);
  r = test::run(uniad() + " sweep -q --report " + quote(cut));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(json_of(cut / "leaderboard.json")["configurations"], board["configurations"]);
}

TEST_F(Sweep, TensorBoardShowsEachRunItsSessionAndTheLeaderboardAfterAStop) {
  UNIAD_REQUIRE_TENSORBOARD();
  test::write_text(dir() / "tb.ini", R"([sweep]
seeds = 0, 1
threads = 1
[train]
epochs = 4
eval-every = 2
batch-size = 4
hidden = 16
heads = 4
feedforward = 32
encoder-layers = 1
decoder-layers = 1
[eval]
pictures = 2
[variant no-jitter]
jitter-scale = 0
)");
  const fs::path full = dir() / "tb_full", cut = dir() / "tb_cut";
  auto r = test::run(sweep(dir() / "tb.ini", full, "--jobs 2"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  // Stopped (SIGTERM) while its second run trains, then resumed.
  r = test::run(sweep(dir() / "tb.ini", cut, "--jobs 1") + " > /dev/null 2>&1 & pid=$!; for i in $(seq 1 1200); do " +
                "n=$(cat " + quote(cut) + "/*/seed=*/train.log 2>/dev/null | grep -c 'epoch 1/4'); [ \"$n\" -ge 2 ] && break; " +
                "sleep 0.05; done; kill -TERM $pid; wait $pid; echo sweep_exit=$?");
  ASSERT_NE(r.output.find("sweep_exit=75"), std::string::npos) << r.output;
  r = test::run(sweep(dir() / "tb.ini", cut, "--jobs 1"));
  ASSERT_EQ(r.exit_code, 0) << r.output;

  const auto runs = test::read_tensorboard(cut), reference = test::read_tensorboard(full);
  ASSERT_EQ(runs.size(), 1u + 4 * 3) << "the sweep, and per run its session, training and evaluation";
  for (const char* config : {"base", "no-jitter"}) {
    for (int seed : {0, 1}) {
      const std::string name = std::string(config) + "/seed=" + std::to_string(seed);
      const auto& session = runs[name]["hparams"];
      const auto& start = session["_hparams_/session_start_info"];
      EXPECT_EQ(start["group_name"], config) << name;
      EXPECT_EQ(start["hparams"]["config"], config) << name;
      EXPECT_EQ(start["hparams"]["seed"], seed) << name;
      EXPECT_EQ(start["hparams"]["epochs"], 4) << name;
      // The variant's option, and uniad train's default where the base leaves it.
      EXPECT_EQ(start["hparams"]["jitter-scale"], std::string(config) == "no-jitter" ? 0.0 : 20.0) << name;
      EXPECT_EQ(session["_hparams_/session_end_info"]["status"], "STATUS_SUCCESS") << name;
      // 16 steps (4 per epoch) once each, as in the uninterrupted sweep.
      const auto& loss = runs[name + "/tb"]["scalars"]["train/loss"];
      ASSERT_EQ(loss.size(), 16u) << name;
      for (int step = 1; step <= 16; ++step) EXPECT_EQ(loss[step - 1][0], step) << name;
      EXPECT_EQ(loss, reference[name + "/tb"]["scalars"]["train/loss"]) << name;
      // The evaluation at the last step: the report's figures, and the panels.
      const auto report = json_of(cut / name / "eval/report.json");
      const auto& eval = runs[name + "/eval/tb"];
      for (const char* metric : {"image_auroc", "pixel_auroc", "aupro"}) {
        const auto& points = eval["scalars"][std::string("eval/mean/") + metric];
        ASSERT_EQ(points.size(), 1u) << name << " " << metric;
        EXPECT_EQ(points[0][0], 16);
        EXPECT_FLOAT_EQ(points[0][1].get<float>(), report["mean"][metric].get<float>()) << name << " " << metric;
      }
      EXPECT_EQ(eval["images"].size(), 2u) << "a panel per class";
    }
  }
  // The experiment: the options with their values, the metrics; the leaderboard as text.
  const auto& experiment = runs["."]["hparams"]["_hparams_/experiment"];
  EXPECT_EQ(experiment["name"], "tb");
  std::map<std::string, nlohmann::json> domains;
  for (const auto& info : experiment["hparam_infos"]) domains[info["name"]] = info["domain_discrete"];
  EXPECT_EQ(domains["config"], nlohmann::json::parse(R"(["base", "no-jitter"])"));
  EXPECT_EQ(domains["seed"], nlohmann::json::parse("[0, 1]"));
  EXPECT_EQ(domains["jitter-scale"], nlohmann::json::parse("[20, 0]"));
  EXPECT_EQ(experiment["metric_infos"][0]["name"], nlohmann::json::parse(R"({"group": "eval/tb", "tag": "eval/mean/image_auroc"})"));
  const auto& text = runs["."]["text"]["leaderboard"];
  ASSERT_EQ(text.size(), 1u) << "the last leaderboard replaces the stopped sweep's";
  EXPECT_NE(test::read_bytes(cut / "leaderboard.md").find(text[0][1].get<std::string>()), std::string::npos);
}

}  // namespace
}  // namespace uniad
