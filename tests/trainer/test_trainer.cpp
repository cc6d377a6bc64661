// The trainer, through the real `uniad` executable and real MPI ranks: data-parallel
// equivalence, exact resume (also after SIGTERM or on other threads), NaN handling, uneven
// shards, exchange buckets averaged during backward, the separate setting, other mask sizes,
// mismatch refusal and a dead rank; sharding and backend choice as unit tests.
#include <chrono>
#include <fstream>
#include <csignal>
#include <thread>

#include <ATen/ATen.h>
#include <torch/cuda.h>
#include <nlohmann/json.hpp>

#include "common/device.h"
#include "common/error.h"
#include "data/synth.h"
#include "eval/evaluate.h"
#include "feature_cache/cache.h"
#include "model/checkpoint.h"
#include "tests/tensorboard_oracle.h"
#include "tests/test_support.h"
#include "trainer/training_batches.h"
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
  // Start the same run, stop it with SIGTERM while it trains: once its first epoch is logged
  // (a fixed sleep raced the start-up on a loaded machine: the signal came before the handler).
  const fs::path run = dir() / "signal_cut";
  const std::string metrics = quote(run / "metrics.jsonl");
  const std::string command = uniad() + " train --cache " + quote(cache()) + " --run-dir " + quote(run) +
                              small_model(options) + options + " > /dev/null 2>&1 & pid=$!; " +
                              "for i in $(seq 600); do [ -s " + metrics + " ] && break; sleep 0.1; done; " +
                              "kill -TERM $pid; wait $pid; echo exit=$?";
  const auto r = test::run(command);
  ASSERT_NE(r.output.find("exit=75"), std::string::npos) << r.output;
  const auto meta = model::load_checkpoint(checkpoint_path(run.string())).meta;
  EXPECT_LT(meta["epoch"].get<int>(), 60) << "stopped before the end";
  const auto resumed = train(run, options);
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_TRUE(identical(dir() / "signal_full", run)) << "stopped mid-run and resumed = uninterrupted";
}

TEST_F(Training, TensorBoardHasOnePointPerStepAfterAKillAndResume) {
  UNIAD_REQUIRE_TENSORBOARD();
  // 10 steps per epoch; a checkpoint every 2 epochs, an evaluation (with panels) every epoch.
  const std::string options = " --batch-size 2 --lr 1e-3 --epochs 6 --checkpoint-every 2 --eval-every 1";
  ASSERT_EQ(train(dir() / "tb_full", options).exit_code, 0);
  // The same run killed (SIGKILL: no checkpoint on the way out) once epoch 3 is logged, its
  // points on disk, while the checkpoint is still epoch 2's: steps 21-30 are orphans.
  const fs::path run = dir() / "tb_cut";
  const std::string lines = "$(cat " + quote(run / "metrics.jsonl") + " 2>/dev/null | wc -l)";
  const auto killed = test::run(uniad() + " train --cache " + quote(cache()) + " --run-dir " + quote(run) +
                                small_model(options) + options + " > /dev/null 2>&1 & pid=$!; " +
                                "for i in $(seq 3000); do [ " + lines + " -ge 3 ] && break; sleep 0.01; done; " +
                                "kill -KILL $pid; wait $pid; echo lines=" + lines);
  ASSERT_NE(killed.output.find("lines=3"), std::string::npos) << "killed in epoch 4: " << killed.output;
  ASSERT_EQ(model::load_checkpoint(checkpoint_path(run.string())).meta["global_step"], 20);
  // On disk: at least epoch 3's points (flushed before its line was written), maybe a few of
  // epoch 4's (a flush is due every 2 s).
  const std::size_t killed_points = test::read_tensorboard(run, false)["tb"]["scalars"]["train/loss"].size();
  ASSERT_GE(killed_points, 30u) << "the killed run's points up to epoch 3";
  ASSERT_EQ(train(run, options).exit_code, 0);  // resumes from epoch 2
  EXPECT_TRUE(identical(dir() / "tb_full", run));

  // Two event files; TensorBoard shows each step once, with the values of the uninterrupted run.
  const auto full = test::read_tensorboard(dir() / "tb_full"), cut = test::read_tensorboard(run);
  EXPECT_EQ(test::read_tensorboard(run, false)["tb"]["scalars"]["train/loss"].size(), killed_points + 40)
      << "the killed run's and the resumed 40: the orphans (steps 21-30 and later) are in the files";
  const auto& loss = cut["tb"]["scalars"]["train/loss"];
  ASSERT_EQ(loss.size(), 60u) << loss.dump();
  for (int step = 1; step <= 60; ++step) EXPECT_EQ(loss[step - 1][0], step);
  EXPECT_EQ(loss, full["tb"]["scalars"]["train/loss"]) << "resumed = uninterrupted, point by point";
  EXPECT_EQ(cut["tb"]["scalars"]["train/grad_norm"].size(), 60u);
  for (const char* tag : {"train/lr", "train/grad_norm", "train/epoch_loss", "eval/mean/image_auroc", "eval/mean/aupro", "eval/weave/pixel_auroc"}) {
    EXPECT_EQ(cut["tb"]["scalars"][tag], full["tb"]["scalars"][tag]) << tag;
  }
  // The epoch points are those of the metrics log, at each epoch's last step.
  std::ifstream log(run / "metrics.jsonl");
  std::vector<nlohmann::json> epochs;
  for (std::string line; std::getline(log, line);) epochs.push_back(nlohmann::json::parse(line));
  ASSERT_EQ(epochs.size(), 6u);
  const auto& epoch_loss = cut["tb"]["scalars"]["train/epoch_loss"];
  const auto& auroc = cut["tb"]["scalars"]["eval/mean/image_auroc"];
  ASSERT_EQ(epoch_loss.size(), 6u);
  ASSERT_EQ(auroc.size(), 6u);
  for (std::size_t e = 0; e < 6; ++e) {
    EXPECT_EQ(epoch_loss[e][0], epochs[e]["step"]);
    EXPECT_FLOAT_EQ(epoch_loss[e][1].get<float>(), epochs[e]["loss"].get<float>());
    EXPECT_FLOAT_EQ(auroc[e][1].get<float>(), epochs[e]["eval"]["mean"]["image_auroc"].get<float>());
  }
  // A panel per class at every evaluation: a PNG of 3 rows (image | truth | map | prediction).
  for (const char* cls : {"panels/bottle_cap", "panels/weave"}) {
    const auto& panels = cut["tb"]["images"][cls];
    ASSERT_EQ(panels.size(), 6u) << cls;
    EXPECT_EQ(panels[5][0], 60);
    EXPECT_GT(panels[5][2].get<int>(), 3 * 224) << "3 rows of 224-pixel tiles";
    EXPECT_EQ(panels[5][3].get<std::string>().substr(0, 4), "iVBO") << "base64 of a PNG signature";
  }
  // --no-tensorboard writes none.
  ASSERT_EQ(train(dir() / "tb_off", " --epochs 1 --no-tensorboard").exit_code, 0);
  EXPECT_FALSE(fs::exists(dir() / "tb_off" / "tb"));
}

TEST_F(Training, NonFiniteLossStopsAndKeepsTheLastCheckpoint) {
  // A copy of the cache (same identity) whose training features hold a NaN in one sample.
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
  // One good epoch with a checkpoint, then the run continues on the poisoned copy: the NaN
  // sample is met in epoch 2, after the checkpoint.
  const fs::path run = dir() / "nan_run";
  const std::string options = small_model("") + " --batch-size 4 --checkpoint-every 1";
  auto r = test::run(uniad() + " train --cache " + quote(cache()) + " --run-dir " + quote(run) + options + " --epochs 1");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string checkpoint = checkpoint_path(run.string());
  const std::string before = test::read_bytes(checkpoint);
  r = test::run(uniad() + " train --cache " + quote(bad) + " --run-dir " + quote(run) + options + " --epochs 3");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("loss is not finite"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("epoch 2"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find(checkpoint), std::string::npos) << "names the checkpoint it keeps: " << r.output;
  EXPECT_EQ(test::read_bytes(checkpoint), before) << "the last good checkpoint is kept unchanged";
  const auto kept = model::load_checkpoint(checkpoint);
  EXPECT_EQ(kept.meta["epoch"], 1);
  for (const auto& [name, t] : model::named_parameters(*kept.model)) EXPECT_TRUE(at::isfinite(t).all().item<bool>()) << name;
  for (const auto& entry : fs::directory_iterator(run))
    EXPECT_EQ(entry.path().filename().string().find(".tmp."), std::string::npos) << "temporary file left: " << entry.path();
}

TEST_F(Training, UnevenShardsArePaddedAndEveryBatchIsUsed) {
  // 20 samples over 3 ranks of batch 3: padded to 21 (7 per rank), steps of 3 + 3 + 1.
  const fs::path run = dir() / "uneven";
  const auto r = train(run, "--epochs 2 --batch-size 3", 3);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string log = test::read_bytes(run / "metrics.jsonl");
  const auto last = nlohmann::json::parse(log.substr(log.rfind('\n', log.size() - 2) + 1));
  EXPECT_EQ(last["step"], 6) << "3 steps per epoch (7 rows per rank, batch 3)";
  EXPECT_EQ(model::load_checkpoint(checkpoint_path(run.string())).meta["ranks_identical"], true);
}

TEST_F(Training, OverlappedBucketsGiveTheSameModelAsOneAverageAfterBackward) {
  // 1 KiB buckets averaged while backward runs, against one average of the whole gradient
  // after it: the sums are the same.
  const std::string options = " --epochs 1 --batch-size 2 --jitter-scale 0 --dropout 0 ";
  auto r = train(dir() / "one_bucket", options + "--lr 1e-3 --overlap-exchange false --bucket-bytes 1073741824", 2);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = train(dir() / "many_buckets", options + "--lr 1e-3 --bucket-bytes 1024", 2);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(identical(dir() / "one_bucket", dir() / "many_buckets"));
  ASSERT_EQ(train(dir() / "barely_trained", options + "--lr 1e-12", 2).exit_code, 0);
  EXPECT_GT(max_difference(dir() / "one_bucket", dir() / "barely_trained"), 1e-4) << "the models did train";

  // The runs record how their gradients travelled.
  const auto many = nlohmann::json::parse(test::read_bytes(dir() / "many_buckets/config.json"))["exchange"];
  EXPECT_EQ(many["overlap"], true);
  EXPECT_GT(many["buckets"].get<int>(), 10);
  const auto one = nlohmann::json::parse(test::read_bytes(dir() / "one_bucket/config.json"))["exchange"];
  EXPECT_EQ(one["buckets"], 1);
  const auto epoch_line = [&](const char* run) {
    const std::string log = test::read_bytes(dir() / run / "metrics.jsonl");
    return nlohmann::json::parse(log.substr(0, log.find('\n')));
  };
  EXPECT_EQ(epoch_line("many_buckets")["exchange_overlap"], 1.0) << "every bucket started during backward";
  EXPECT_EQ(epoch_line("one_bucket")["exchange_overlap"], 0.0);
}

TEST_F(Training, ResumeWithOtherThreadCount) {
  // Threads are not part of a run's identity: a run resumes on a node with other cores.
  const std::string options = " --batch-size 4 --lr 1e-3 --checkpoint-every 1 --jitter-scale 0 --dropout 0 ";
  ASSERT_EQ(train(dir() / "threads_full", options + "--epochs 3").exit_code, 0);
  ASSERT_EQ(train(dir() / "threads_split", options + "--epochs 1").exit_code, 0);
  const auto r = test::run(uniad() + " train --cache " + quote(cache()) + " --run-dir " + quote(dir() / "threads_split") +
                           " --heads 4 --encoder-layers 1 --decoder-layers 2 --hidden 32 --feedforward 64 -q --threads 2" +
                           options + "--epochs 3");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto config = nlohmann::json::parse(test::read_bytes(dir() / "threads_split/config.json"));
  EXPECT_EQ(config["threads_per_rank"], 2);
  EXPECT_LE(max_difference(dir() / "threads_full", dir() / "threads_split"), 1e-4)
      << "the same training up to the summation order of 2 threads";
}

TEST_F(Training, ResidentFeaturesGiveTheSameBatchesAndModel) {
  // The batches gathered from device-resident features (training_batches.h) against the host
  // reads, over every epoch's shard of two ranks and a class subset: value for value.
  const auto source = feature_cache::FeatureCache::open(cache().string());
  std::vector<std::int64_t> rows;
  for (std::int64_t r = 0; r < source.split(data::Split::kTrain).size(); ++r)
    if (source.split(data::Split::kTrain).class_index[r] == 1) rows.push_back(r);
  ASSERT_FALSE(rows.empty());
  TrainingBatches resident(source, rows, c10::kCPU, Residency::kOn), host(source, rows, c10::kCPU, Residency::kOff);
  ASSERT_TRUE(resident.resident());
  ASSERT_FALSE(host.resident());
  const auto& shape = source.shape();
  EXPECT_EQ(resident.resident_bytes(), static_cast<std::int64_t>(rows.size()) * shape.channels * shape.grid_h * shape.grid_w * 2)
      << "float16, as stored";
  for (int epoch = 0; epoch < 3; ++epoch) {
    for (int rank = 0; rank < 2; ++rank) {
      const auto shard = epoch_shard(rows, 7, epoch, rank, 2);
      resident.begin_epoch(shard);
      host.begin_epoch(shard);
      for (std::int64_t begin = 0; begin < static_cast<std::int64_t>(shard.size()); begin += 3) {
        const std::int64_t end = std::min<std::int64_t>(begin + 3, shard.size());
        const at::Tensor a = resident.batch(begin, end), b = host.batch(begin, end);
        ASSERT_EQ(a.scalar_type(), at::kFloat);
        ASSERT_TRUE(at::equal(a, b)) << "epoch " << epoch << " rank " << rank << " rows " << begin << "-" << end;
      }
    }
  }
  // A row outside the resident ones is refused, not read as garbage.
  EXPECT_THROW(resident.begin_epoch({rows.front() == 0 ? 1 : 0}), RuntimeError);
  EXPECT_THROW(parse_residency("yes"), UsageError);

  // A whole run: resident on two ranks equals host reads, bitwise; config.json says which ran.
  const std::string options = " --batch-size 2 --lr 1e-3 --epochs 2 ";
  ASSERT_EQ(train(dir() / "resident_off", options + "--resident off", 2).exit_code, 0);
  const auto r = train(dir() / "resident_on", options + "--resident on", 2);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(identical(dir() / "resident_off", dir() / "resident_on")) << "jitter, dropout and batches alike";
  const auto config = nlohmann::json::parse(test::read_bytes(dir() / "resident_on/config.json"));
  EXPECT_EQ(config["batches"]["resident"], true);
  EXPECT_EQ(nlohmann::json::parse(test::read_bytes(dir() / "resident_off/config.json"))["batches"]["resident"], false);
}

TEST_F(Training, PrecisionIsPartOfTheRunAndBf16Trains) {
  const std::string options = " --batch-size 4 --lr 1e-3 --checkpoint-every 1 ";
  const auto r = train(dir() / "bf16", options + "--epochs 2 --precision bf16");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto config = nlohmann::json::parse(test::read_bytes(dir() / "bf16/config.json"));
  EXPECT_EQ(config["config"]["precision"], "bf16");
  // Master weights stay float32.
  for (const auto& [name, t] : weights(dir() / "bf16")) EXPECT_EQ(t.scalar_type(), at::kFloat) << name;
  // The loss went down as in float32 (the bfloat16 tolerance is the step-parity test's business).
  const std::string log = test::read_bytes(dir() / "bf16/metrics.jsonl");
  const auto first = nlohmann::json::parse(log.substr(0, log.find('\n')));
  const auto last = nlohmann::json::parse(log.substr(log.find('\n') + 1));
  EXPECT_LT(last["loss"].get<double>(), first["loss"].get<double>());
  // Another precision is another run: resuming it in float32 is refused, naming the setting.
  const auto refused = train(dir() / "bf16", options + "--epochs 3 --precision fp32");
  EXPECT_EQ(refused.exit_code, 65) << refused.output;
  EXPECT_NE(refused.output.find("precision"), std::string::npos) << refused.output;
  EXPECT_NE(train(dir() / "bf16_typo", options + "--epochs 1 --precision fp16").exit_code, 0);
}

TEST_F(Training, SeparateSettingTrainsAndEvaluatesOneModelPerClass) {
  const fs::path run = dir() / "separate";
  auto r = train(run, "--epochs 1 --batch-size 4 --setting separate");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto classes = feature_cache::FeatureCache::open(cache().string()).classes();
  ASSERT_EQ(classes.size(), 2u);
  for (const auto& name : classes) {
    const auto meta = model::load_checkpoint(checkpoint_path((run / name).string())).meta;
    EXPECT_EQ(meta["classes"], nlohmann::json::array({name})) << "each model saw its own class only";
  }
  r = test::run(uniad() + " eval -q --pictures 0 --run " + quote(run) + " --cache " + quote(cache()));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto report = nlohmann::json::parse(test::read_bytes(run / "eval/report.json"));
  ASSERT_EQ(report["classes"].size(), 2u);
  EXPECT_EQ(report["provenance"]["setting"], "separate");
  for (const auto& c : report["classes"]) EXPECT_TRUE(c["image_auroc"].is_number()) << c.dump();
}

TEST_F(Training, MemoryBankMapsEqualABruteForceOracle) {
  // The nearest-neighbour reference through the same train and eval commands, on 2 ranks.
  const fs::path run = dir() / "bank";
  auto r = test::run(mpirun(2) + uniad() + " train -q --threads 1 --model memory-bank --epochs 5 --cache " +
                     quote(cache()) + " --run-dir " + quote(run));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto checkpoint = model::load_checkpoint(checkpoint_path(run.string()));
  EXPECT_EQ(checkpoint.meta["ranks_identical"], true);
  EXPECT_EQ(checkpoint.meta["epoch"], 1) << "fitted in one pass";
  const auto shape = feature_cache::FeatureCache::open(cache().string()).shape();
  EXPECT_EQ(checkpoint.model->options().bank_size, 20 * shape.grid_h * shape.grid_w) << "every training patch";
  r = test::run(uniad() + " eval -q --pictures 2 --save-maps --run " + quote(run) + " --cache " + quote(cache()));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = test::run(std::string(test::python()) + " " + quote(test::oracle_script("memory_bank_maps.py")) + " " +
                quote(cache()) + " " + quote(run / "eval/maps.h5") + " 3");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto oracle = nlohmann::json::parse(r.output);
  EXPECT_EQ(oracle["images"], 24);
  EXPECT_GT(oracle["max_value"].get<double>(), 0.1);
  EXPECT_LT(oracle["max_abs_diff"].get<double>(), 1e-5) << r.output;
  const auto report = nlohmann::json::parse(test::read_bytes(run / "eval/report.json"));
  EXPECT_TRUE(report["mean"]["image_auroc"].is_number());

  // A greedy coreset of a quarter of the patches; training again finds nothing left to do.
  const fs::path coreset = dir() / "bank-coreset";
  const std::string options = " train -q --threads 1 --model memory-bank --coreset greedy --coreset-ratio 0.25 --cache " +
                              quote(cache()) + " --run-dir " + quote(coreset);
  ASSERT_EQ(test::run(uniad() + options).exit_code, 0);
  const auto fitted = model::named_parameters(*model::load_checkpoint(checkpoint_path(coreset.string())).model);
  EXPECT_EQ(fitted.at("bank").size(0), (20 * shape.grid_h * shape.grid_w + 2) / 4);
  const auto written = fs::last_write_time(checkpoint_path(coreset.string()));
  r = test::run(uniad() + options);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(fs::last_write_time(checkpoint_path(coreset.string())), written) << "a fitted bank is not fitted again";
}

TEST_F(Training, CacheAt256PixelsEvaluatesAt256) {
  // Masks at 256 x 256: periodic evaluation and `uniad eval` both use the cache's size.
  const fs::path big = dir() / "cache256.h5";
  auto r = test::run(uniad() + " extract -q --image-size 256 --data " + quote(dir() / "data") + " --out " + quote(big));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const feature_cache::FeatureCache cache256 = feature_cache::FeatureCache::open(big.string());
  ASSERT_EQ(cache256.shape().mask_size, 256);
  const fs::path run = dir() / "run256";
  r = test::run(uniad() + " train --cache " + quote(big) + " --run-dir " + quote(run) + small_model("") +
                " --epochs 1 --batch-size 4 --eval-every 1");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto line = nlohmann::json::parse(test::read_bytes(run / "metrics.jsonl"));
  EXPECT_TRUE(line["eval"]["mean"]["pixel_auroc"].is_number()) << line.dump();
  // The recorded configuration is the model that was built: the cache's channels and grid.
  const auto model_config = nlohmann::json::parse(test::read_bytes(run / "config.json"))["config"]["model"];
  EXPECT_EQ(model_config["in_channels"], cache256.shape().channels);
  EXPECT_EQ(model_config["grid_h"], 16);
  EXPECT_EQ(model_config["grid_w"], 16);
  r = test::run(uniad() + " eval -q --pictures 1 --run " + quote(run) + " --cache " + quote(big));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto report = nlohmann::json::parse(test::read_bytes(run / "eval/report.json"));
  EXPECT_EQ(report["provenance"]["protocol"]["resolution"], 256);
  EXPECT_EQ(report["provenance"]["protocol"]["checkpoint"], "last-epoch checkpoint (epoch 1)");
  EXPECT_NE(test::read_bytes(run / "eval/report.md").find("256x256 maps"), std::string::npos);
  // Maps of another size than the masks are refused, naming both shapes.
  eval::EvalOptions options;
  options.map.size = 224;
  const auto model = model::load_checkpoint(checkpoint_path(run.string())).model;
  try {
    eval::evaluate([&](int) -> model::ReconstructionNet& { return *model; }, cache256, options);
    FAIL() << "expected an InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("256, 256]"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("224, 224]"), std::string::npos) << e.what();
  }
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

TEST(Sharding, PaddedLikeDistributedSampler) {
  std::vector<std::int64_t> rows(10);
  std::iota(rows.begin(), rows.end(), 100);
  std::vector<std::int64_t> seen;
  for (int rank = 0; rank < 3; ++rank) {
    const auto shard = epoch_shard(rows, 5, 0, rank, 3);
    EXPECT_EQ(shard.size(), 4u) << "ceil(10 / 3) rows per rank";
    seen.insert(seen.end(), shard.begin(), shard.end());
  }
  std::sort(seen.begin(), seen.end());
  EXPECT_EQ(std::unique(seen.begin(), seen.end()) - seen.begin(), 10) << "every row seen, 2 of them twice";
  EXPECT_NE(epoch_shard(rows, 5, 0, 0, 3), epoch_shard(rows, 5, 1, 0, 3)) << "a new shuffle every epoch";
  EXPECT_EQ(epoch_shard(rows, 5, 1, 2, 3), epoch_shard(rows, 5, 1, 2, 3)) << "deterministic";
}

TEST(Backend, NcclOnGpusMpiOnTheCpuAndNothingElse) {
  const c10::Device gpu(c10::kCUDA, 0), cpu(c10::kCPU);
  EXPECT_EQ(choose_backend("auto", gpu), "nccl");
  EXPECT_EQ(choose_backend("auto", cpu), "mpi");
  EXPECT_EQ(choose_backend("nccl", gpu), "nccl");
  EXPECT_EQ(choose_backend("mpi", cpu), "mpi");
  EXPECT_THROW(choose_backend("gloo", cpu), UsageError);
  // MPI exchanges CPU tensors: on a GPU it is refused with what to use instead.
  try {
    choose_backend("mpi", gpu);
    ADD_FAILURE() << "--device cuda --backend mpi was accepted";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("use --backend nccl (or auto)"), std::string::npos) << e.what();
  }
  EXPECT_THROW(choose_backend("nccl", cpu), UsageError);
}

// The NCCL backend's type check: every tensor type the trainer may exchange maps to NCCL's,
// the rest is refused. Needs the GPU build (nccl.h), not a GPU.
TEST(Backend, NcclDataTypes) {
  if (!cuda_built()) GTEST_SKIP() << "SKIPPED: a CPU build has no NCCL (configure with -DUNIAD_CUDA=ON)";
  EXPECT_EQ(nccl_data_type(at::kFloat), 7);      // ncclFloat32
  EXPECT_EQ(nccl_data_type(at::kBFloat16), 9);   // ncclBfloat16
  EXPECT_EQ(nccl_data_type(at::kHalf), 6);       // ncclFloat16
  EXPECT_EQ(nccl_data_type(at::kDouble), 8);     // ncclFloat64
  EXPECT_EQ(nccl_data_type(at::kLong), 4);       // ncclInt64
  EXPECT_THROW(nccl_data_type(at::kBool), RuntimeError);
  EXPECT_THROW(nccl_data_type(at::kComplexFloat), RuntimeError);
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

}  // namespace
}  // namespace uniad::trainer
