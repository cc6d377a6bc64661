// --device on every command that computes (extract, train, eval, export, predict) through the
// real CLI: the CPU is taken when asked for and recorded in the outputs, CUDA is refused with
// what is missing when this machine cannot give it, the CPU-and-NCCL / GPU-and-MPI pairings
// are refused, and `uniad export` writes weights only (no optimizer moments, no random states).
#include <ATen/ATen.h>
#include <nlohmann/json.hpp>
#include <torch/serialize/archive.h>

#include "common/device.h"
#include "deploy/model_file.h"
#include "model/checkpoint.h"
#include "tests/test_support.h"

namespace uniad {
namespace {

namespace fs = std::filesystem;
using test::quote;

std::string uniad() { return quote(test::uniad_binary()); }

nlohmann::json read_json(const fs::path& path) { return nlohmann::json::parse(test::read_bytes(path)); }

TEST(Device, EveryCommandTakesTheCpuAndRefusesAMissingGpu) {
  test::TempDir dir;
  auto r = test::make_small_cache(dir.path());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string cache = quote(dir / "cache.h5"), run = quote(dir / "run");
  const std::string small = " -q --threads 2 --epochs 1 --hidden 32 --heads 4 --feedforward 64 --encoder-layers 1 "
                            "--decoder-layers 1 --cache " + cache + " --run-dir " + run;

  // The CPU when asked for, recorded where the outputs keep their provenance.
  r = test::run(uniad() + " extract -q --device cpu --data " + quote(dir / "data") + " --out " + quote(dir / "cpu.h5"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = test::run(uniad() + " train --device cpu" + small);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(read_json(dir / "run" / "config.json").at("device"), "cpu");
  r = test::run(uniad() + " eval -q --pictures 0 --device cpu --run " + run + " --cache " + cache);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(read_json(dir / "run" / "eval" / "report.json").at("provenance").at("device"), "cpu");
  r = test::run(uniad() + " export -q --device cpu --run " + run + " --cache " + cache + " --out " + quote(dir / "m.uniad"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::string images;  // the test images, as an @LIST
  for (const auto& entry : fs::recursive_directory_iterator(dir / "data"))
    if (entry.path().extension() == ".png" && entry.path().string().find("/test/") != std::string::npos)
      images += entry.path().string() + "\n";
  test::write_text(dir / "images.txt", images);
  const std::string inputs = " @" + quote(dir / "images.txt");
  r = test::run(uniad() + " predict -q --device cpu --model " + quote(dir / "m.uniad") + " --out " +
                quote(dir / "pred") + inputs);
  ASSERT_EQ(r.exit_code, 0) << r.output;

  // The exchange must fit the device: NCCL moves CUDA tensors.
  r = test::run(uniad() + " train --device cpu --backend nccl" + small);
  EXPECT_EQ(r.exit_code, 64) << r.output;
  EXPECT_NE(r.output.find("--backend nccl exchanges CUDA tensors"), std::string::npos) << r.output;

  if (visible_gpus() > 0) GTEST_SKIP() << "SKIPPED (the rest): a GPU is visible, so --device cuda is not refused";
  const std::string missing = cuda_built() ? "no GPU is visible" : "this uniad is a CPU build";
  const std::vector<std::string> commands = {
      " extract -q --device cuda --data " + quote(dir / "data") + " --out " + quote(dir / "gpu.h5"),
      " train --device cuda" + small,
      " eval -q --device cuda --run " + run + " --cache " + cache,
      " export -q --device cuda --run " + run + " --cache " + cache + " --out " + quote(dir / "gpu.uniad"),
      " predict -q --device cuda --model " + quote(dir / "m.uniad") + " --out " + quote(dir / "gpu") + inputs};
  for (const auto& command : commands) {
    r = test::run(uniad() + command);
    EXPECT_EQ(r.exit_code, 64) << command << "\n" << r.output;
    EXPECT_NE(r.output.find(missing), std::string::npos) << command << "\n" << r.output;
  }
  EXPECT_FALSE(fs::exists(dir / "gpu.h5"));
  EXPECT_FALSE(fs::exists(dir / "gpu.uniad"));
}

TEST(Export, WritesWeightsOnly) {
  test::TempDir dir;
  auto r = test::make_small_cache(dir.path());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string cache = quote(dir / "cache.h5"), run = quote(dir / "run");
  r = test::run(uniad() + " train -q --threads 2 --epochs 1 --hidden 32 --heads 4 --feedforward 64 --encoder-layers 1 "
                          "--decoder-layers 1 --cache " + cache + " --run-dir " + run);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = test::run(uniad() + " export -q --run " + run + " --cache " + cache + " --out " + quote(dir / "m.uniad"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const deploy::ModelFile file = deploy::read_model_file((dir / "m.uniad").string());
  ASSERT_EQ(file.models.count("all"), 1u);
  const model::Checkpoint exported = model::load_checkpoint_bytes(file.models.at("all"), "m.uniad");
  torch::serialize::InputArchive trainer;
  EXPECT_FALSE(exported.archive->try_read("trainer", trainer)) << "the model file carries the optimizer state";
  const model::Checkpoint trained = model::load_checkpoint((dir / "run" / "checkpoint.pt").string());
  EXPECT_TRUE(trained.archive->try_read("trainer", trainer)) << "the run's checkpoint keeps it, for resuming";
  for (const auto& [name, t] : model::named_parameters(*trained.model)) {
    EXPECT_TRUE(at::equal(t, model::named_parameters(*exported.model).at(name))) << name;
  }
  EXPECT_EQ(exported.meta.dump(), trained.meta.dump());
  EXPECT_LT(file.models.at("all").size(), test::read_bytes(dir / "run" / "checkpoint.pt").size() / 2)
      << "weights alone are under half of weights + two optimizer moments";
}

}  // namespace
}  // namespace uniad
