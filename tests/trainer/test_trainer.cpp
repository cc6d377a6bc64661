// The trainer, through the real `uniad` executable and real MPI ranks: data-parallel
// equivalence, exact resume (also after SIGTERM), NaN handling, mismatch refusal, a dead
// rank, and learning on the synthetic dataset.
#include <chrono>
#include <csignal>
#include <thread>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "data/synth.h"
#include "feature_cache/cache.h"
#include "model/checkpoint.h"
#include "tests/test_support.h"
#include "trainer/trainer.h"

namespace uniad::trainer {
namespace {

namespace fs = std::filesystem;
using test::quote;

std::string uniad() { return quote(test::uniad_binary()); }
std::string mpirun(int ranks) { return "mpirun --allow-run-as-root --oversubscribe -np " + std::to_string(ranks) + " "; }

// A small but real model, so the tests run in seconds.
// (--hidden and --feedforward are added unless a test gives its own.)
const std::string kSmallModel = " --heads 4 --encoder-layers 1 --decoder-layers 2 --threads 1 -q";

std::string small_model(const std::string& options) {
  return kSmallModel + (options.find("--hidden") == std::string::npos ? " --hidden 32 --feedforward 64" : "");
}

class Training : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new test::TempDir();
    data::SynthOptions o;
    o.classes = 2;
    o.train_good = 10;  // 20 training samples: divisible by every global batch used below
    o.test_good = 4;
    o.test_anomalous = 8;
    o.image_size = 128;
    data::write_synthetic_dataset((dir() / "data").string(), o, false);
    const auto r = test::run(uniad() + " extract -q --data " + quote(dir() / "data") + " --out " + quote(cache()));
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }
  static void TearDownTestSuite() { delete dir_; }
  static fs::path dir() { return dir_->path(); }
  static fs::path cache() { return dir() / "cache.h5"; }

  static test::CommandResult train(const fs::path& run, const std::string& options, int ranks = 1) {
    return test::run((ranks > 1 ? mpirun(ranks) : "") + uniad() + " train --cache " + quote(cache()) + " --run-dir " +
                     quote(run) + small_model(options) + " " + options);
  }
  static std::map<std::string, at::Tensor> weights(const fs::path& run) {
    return model::named_parameters(*model::load_checkpoint(checkpoint_path(run.string())).model);
  }
  static float max_difference(const fs::path& a, const fs::path& b) {
    const auto wa = weights(a), wb = weights(b);
    float diff = 0;
    for (const auto& [name, t] : wa) diff = std::max(diff, (t - wb.at(name)).abs().max().item<float>());
    return diff;
  }
  static bool identical(const fs::path& a, const fs::path& b) {
    const auto wa = weights(a), wb = weights(b);
    for (const auto& [name, t] : wa)
      if (!at::equal(t, wb.at(name))) return false;
    return true;
  }
  static inline test::TempDir* dir_ = nullptr;
};

TEST_F(Training, TwoRanksMatchOneRankWithDoubleBatch) {
  const std::string plain = " --jitter-scale 0 --dropout 0 --lr 1e-3 ";
  auto r = train(dir() / "one", plain + "--epochs 2 --batch-size 4");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = train(dir() / "two", plain + "--epochs 2 --batch-size 2", 2);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_LE(max_difference(dir() / "one", dir() / "two"), 1e-5) << "10 steps of the same global batches";
  const auto meta = model::load_checkpoint(checkpoint_path((dir() / "two").string())).meta;
  EXPECT_EQ(meta["world_size"], 2);
  EXPECT_EQ(meta["ranks_identical"], true) << "both ranks hold bitwise identical parameters";
  const auto config = nlohmann::json::parse(test::read_bytes(dir() / "two/config.json"));
  EXPECT_EQ(config["global_batch"], 4);
  // Training moved the weights (the comparison is not trivially between two initialisations).
  test::TempDir fresh;
  ASSERT_EQ(train(fresh.path(), " --jitter-scale 0 --dropout 0 --epochs 1 --batch-size 4 --lr 1e-12").exit_code, 0);
  EXPECT_GT(max_difference(dir() / "one", fresh.path()), 1e-3);
}

TEST_F(Training, ResumeEqualsUninterrupted) {
  const std::string options = " --batch-size 4 --lr 1e-3 --checkpoint-every 1 ";
  ASSERT_EQ(train(dir() / "full", options + "--epochs 4", 2).exit_code, 0);
  ASSERT_EQ(train(dir() / "split", options + "--epochs 2", 2).exit_code, 0);
  EXPECT_FALSE(identical(dir() / "full", dir() / "split"));
  const auto r = train(dir() / "split", options + "--epochs 4", 2);  // resumes automatically
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(identical(dir() / "full", dir() / "split")) << "jitter, dropout and shuffles continue exactly";
  // The metrics log has each epoch once.
  const std::string log = test::read_bytes(dir() / "split/metrics.jsonl");
  EXPECT_EQ(std::count(log.begin(), log.end(), '\n'), 4);
}

TEST_F(Training, StopSignalCheckpointsExitsWith75AndResumesExactly) {
  const std::string options = " --batch-size 2 --lr 1e-3 --checkpoint-every 0 --epochs 60 --hidden 64 --feedforward 128";
  ASSERT_EQ(train(dir() / "signal_full", options).exit_code, 0);
  // Start the same run, stop it with SIGTERM while it trains.
  const fs::path run = dir() / "signal_cut";
  const std::string command = uniad() + " train --cache " + quote(cache()) + " --run-dir " + quote(run) +
                              small_model(options) + options + " > /dev/null 2>&1 & pid=$!; sleep 3; kill -TERM $pid; "
                              "wait $pid; echo exit=$?";
  const auto r = test::run(command);
  ASSERT_NE(r.output.find("exit=75"), std::string::npos) << r.output;
  const auto meta = model::load_checkpoint(checkpoint_path(run.string())).meta;
  EXPECT_LT(meta["epoch"].get<int>(), 60) << "stopped before the end";
  const auto resumed = train(run, options);
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_TRUE(identical(dir() / "signal_full", run)) << "stopped mid-run and resumed = uninterrupted";
}

TEST_F(Training, NonFiniteLossStopsAndKeepsTheLastCheckpoint) {
  // A copy of the cache whose training features hold a NaN in one sample.
  const fs::path bad = dir() / "nan.h5";
  {
    const feature_cache::FeatureCache source = feature_cache::FeatureCache::open(cache().string());
    std::map<data::Split, feature_cache::SplitIndex> splits = {{data::Split::kTrain, source.split(data::Split::kTrain)},
                                                               {data::Split::kTest, source.split(data::Split::kTest)}};
    feature_cache::CacheWriter writer(bad.string(), source.identity(), source.classes(), source.shape(), splits);
    for (data::Split split : {data::Split::kTrain, data::Split::kTest}) {
      std::vector<int64_t> rows(source.split(split).size());
      std::iota(rows.begin(), rows.end(), 0);
      at::Tensor f = source.read_features(split, rows);
      if (split == data::Split::kTrain) f[7][0][0][0] = NAN;
      writer.write_features(split, 0, f.to(at::kHalf));
    }
    std::vector<int64_t> rows(source.split(data::Split::kTest).size());
    std::iota(rows.begin(), rows.end(), 0);
    const at::Tensor masks = source.read_masks(rows).contiguous();
    writer.write_masks(0, masks.size(0), masks.data_ptr<uint8_t>());
    writer.finish({});
  }
  const fs::path run = dir() / "nan_run";
  const auto r = test::run(uniad() + " train --cache " + quote(bad) + " --run-dir " + quote(run) + small_model("") +
                           " --batch-size 4 --epochs 3 --checkpoint-every 1");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("loss is"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("epoch 1"), std::string::npos) << "the NaN sample is met in the first epoch: " << r.output;
}

TEST_F(Training, MismatchedCheckpointOrCacheIsRefused) {
  const fs::path run = dir() / "mismatch";
  ASSERT_EQ(train(run, "--epochs 1 --batch-size 4").exit_code, 0);
  auto r = train(run, "--epochs 2 --batch-size 4 --hidden 48");
  EXPECT_EQ(r.exit_code, 65) << r.output;
  EXPECT_NE(r.output.find("hidden"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("checkpoint.pt"), std::string::npos) << r.output;
  // Another cache (other layers).
  const fs::path other = dir() / "other.h5";
  ASSERT_EQ(test::run(uniad() + " extract -q --data " + quote(dir() / "data") + " --layers 0,1 --out " + quote(other)).exit_code, 0);
  r = test::run(uniad() + " train --cache " + quote(other) + " --run-dir " + quote(run) + small_model("") +
                " --epochs 2 --batch-size 4");
  EXPECT_EQ(r.exit_code, 65) << r.output;
  EXPECT_NE(r.output.find("another feature cache"), std::string::npos) << r.output;
  // And a different number of ranks.
  r = train(run, "--epochs 2 --batch-size 4", 2);
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("same number of ranks"), std::string::npos) << r.output;
}

TEST_F(Training, DeadRankEndsTheJobQuickly) {
  const fs::path script = fs::path(UNIAD_SOURCE_DIR) / "tests/trainer/dead_rank.sh";
  const auto r = test::run("bash " + quote(script) + " " + uniad() + " " + quote(cache()) + " " + quote(dir() / "dead_rank_run"));
  EXPECT_EQ(r.output.find("HUNG"), std::string::npos) << r.output;
  ASSERT_NE(r.output.find("waited="), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("mpirun_exit=0"), std::string::npos) << "the job must fail, not succeed: " << r.output;
  EXPECT_LE(std::stoi(r.output.substr(r.output.find("waited=") + 7)), 30) << r.output;
}

TEST(TrainOptions, LearningRateScaling) {
  TrainOptions o;
  o.batch_size = 8;
  EXPECT_DOUBLE_EQ(o.effective_lr(8), 1e-4) << "none (the reference)";
  o.lr_scaling = LrScaling::kLinear;
  EXPECT_DOUBLE_EQ(o.effective_lr(2), 1e-4 * 16 / 64);
  o.lr_scaling = LrScaling::kSqrt;
  EXPECT_DOUBLE_EQ(o.effective_lr(2), 1e-4 * 0.5);
  EXPECT_THROW(parse_lr_scaling("cubic"), std::exception);
}

TEST(NcclBackend, CompilesWhereCudaAndNcclArePresent) {
#ifdef UNIAD_NCCL_COMPILE_CHECKED
  SUCCEED() << "trainer/nccl_communicator.cpp compiled against " << UNIAD_NCCL_COMPILE_CHECKED;
  std::cout << "[ NCCL     ] trainer/nccl_communicator.cpp compiled against " << UNIAD_NCCL_COMPILE_CHECKED << "\n";
#else
  GTEST_SKIP() << "SKIPPED: no CUDA toolkit with NCCL found (looked in /usr/local/cuda); the NCCL backend was not compiled";
#endif
}

}  // namespace
}  // namespace uniad::trainer
