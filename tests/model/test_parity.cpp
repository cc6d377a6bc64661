// Parity with the reference implementation (../shared/parity/uniad_official_eval.h5): the
// model loaded with the reference's weights reproduces its reconstruction, anomaly map,
// intermediate positional embedding and neighbor mask; the image scores match too.
#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include "common/hdf5.h"
#include "eval/anomaly_map.h"
#include "model/checkpoint.h"
#include "tests/test_support.h"

namespace uniad::model {
namespace {

const char* kParity = "parity/uniad_official_eval.h5";

torch::Tensor read_tensor(const h5::File& file, const std::string& name) {
  std::vector<hsize_t> shape;
  std::vector<float> values = file.read<float>(name, &shape);
  std::vector<int64_t> sizes(shape.begin(), shape.end());
  return torch::from_blob(values.data(), sizes, torch::kFloat32).clone();
}

std::map<std::string, torch::Tensor> read_group(const h5::File& file, const std::string& group) {
  std::map<std::string, torch::Tensor> out;
  for (const auto& name : file.list(group)) out[name] = read_tensor(file, group + "/" + name);
  return out;
}

float max_abs_diff(const torch::Tensor& a, const torch::Tensor& b) {
  EXPECT_EQ(a.sizes(), b.sizes());
  return (a - b).abs().max().item<float>();
}

class Parity : public ::testing::Test {
 protected:
  void SetUp() override {
    UNIAD_REQUIRE_SHARED(kParity);
    file_ = std::make_unique<h5::File>(h5::File::open((test::shared_dir() / kParity).string()));
    torch::manual_seed(123);  // a different initialisation than the reference's: loading must overwrite it
    model_ = std::make_shared<UniAD>(ModelOptions{});
    load_parameters(*model_, read_group(*file_, "/params"), "parity /params");
    model_->eval();
  }
  std::unique_ptr<h5::File> file_;
  std::shared_ptr<UniAD> model_;
};

TEST_F(Parity, ReconstructionAndAnomalyMap) {
  torch::NoGradGuard no_grad;
  const torch::Tensor input = read_tensor(*file_, "/inputs/feature_align");
  // Three inference paths must match: one thread (head-by-head attention, model/attention.h),
  // more threads on the batch (a slice per thread, each head by head), and more threads on one
  // sample at a time (the batched operators, whose threads split the heads).
  const int threads = at::get_num_threads();
  for (const auto& [t, per_sample] : {std::pair{1, false}, {std::max(2, threads), false}, {std::max(2, threads), true}}) {
    at::set_num_threads(t);
    std::vector<torch::Tensor> parts;
    for (const auto& slice : per_sample ? input.split(1) : std::vector<torch::Tensor>{input})
      parts.push_back(model_->forward(slice));
    const torch::Tensor rec = torch::cat(parts);
    const std::string path = std::to_string(t) + " thread(s)" + (per_sample ? ", one sample at a time" : "");
    EXPECT_LE(max_abs_diff(rec, read_tensor(*file_, "/outputs/feature_rec")), 1e-4) << path;
    const torch::Tensor lowres = reconstruction_error(rec, input);
    EXPECT_LE(max_abs_diff(lowres, read_tensor(*file_, "/intermediates/pred_lowres")), 1e-4) << path;
    const torch::Tensor pred = eval::upsample_maps(lowres, eval::MapOptions{}).unsqueeze(1);
    EXPECT_LE(max_abs_diff(pred, read_tensor(*file_, "/outputs/pred")), 1e-4) << path;
  }
  at::set_num_threads(threads);
}

TEST_F(Parity, PerturbedBiasesNormsAndQueryTables) {
  // Non-zero biases, LayerNorm affine and per-layer query tables: catches ignored biases,
  // a wrong layer index, or layer 0's query table used everywhere.
  load_parameters(*model_, read_group(*file_, "/params"), "parity /params");
  auto overrides = read_group(*file_, "/perturbed/params_override");
  auto all = read_group(*file_, "/params");
  for (auto& [name, tensor] : overrides) all[name] = tensor;
  load_parameters(*model_, all, "parity perturbed");
  torch::NoGradGuard no_grad;
  const torch::Tensor input = read_tensor(*file_, "/inputs/feature_align");
  const torch::Tensor rec = model_->forward(input);
  EXPECT_LE(max_abs_diff(rec, read_tensor(*file_, "/perturbed/outputs/feature_rec")), 1e-4);
  const torch::Tensor pred = eval::upsample_maps(reconstruction_error(rec, input), eval::MapOptions{}).unsqueeze(1);
  EXPECT_LE(max_abs_diff(pred, read_tensor(*file_, "/perturbed/outputs/pred")), 1e-4);
}

TEST_F(Parity, NeighborMaskIsExact) {
  const torch::Tensor expected = read_tensor(*file_, "/neighbor_mask");
  ASSERT_TRUE(model_->mask().defined());
  EXPECT_TRUE(torch::equal(model_->mask(), expected));
  EXPECT_TRUE(torch::equal(neighbor_mask(14, 14, 7), expected));
}

TEST_F(Parity, PositionalEmbedding) {
  torch::NoGradGuard no_grad;
  EXPECT_LE(max_abs_diff(model_->pos_embed->forward(), read_tensor(*file_, "/intermediates/pos_embed")), 0.0);
}

TEST_F(Parity, ParameterCountAndNames) {
  EXPECT_EQ(parameter_count(*model_), 7717392);
  const auto params = read_group(*file_, "/params");
  EXPECT_EQ(named_parameters(*model_).size(), params.size());
}

TEST_F(Parity, ImageScores) {
  const torch::Tensor maps = read_tensor(*file_, "/image_score/anomaly_map");
  eval::ScoreOptions options;
  EXPECT_LE(max_abs_diff(eval::image_scores(maps, options), read_tensor(*file_, "/image_score/max")), 1e-6);
  options.kind = eval::ImageScore::kMean;
  EXPECT_LE(max_abs_diff(eval::image_scores(maps, options), read_tensor(*file_, "/image_score/mean")), 1e-6);
  options.kind = eval::ImageScore::kStd;
  EXPECT_LE(max_abs_diff(eval::image_scores(maps, options), read_tensor(*file_, "/image_score/std")), 1e-6);
}

TEST_F(Parity, ImportedCheckpointReproducesTheReference) {
  test::TempDir dir;
  const std::string path = (dir / "imported.ckpt").string();
  // Names as a full reference checkpoint carries them (DDP prefix).
  std::map<std::string, torch::Tensor> prefixed;
  for (const auto& [name, t] : read_group(*file_, "/params")) prefixed[kReferencePrefix + name] = t;
  auto fresh = std::make_shared<UniAD>(ModelOptions{});
  load_parameters(*fresh, prefixed, "prefixed");
  save_checkpoint(path, *fresh, {{"source", "test"}});
  const Checkpoint loaded = load_checkpoint(path);
  loaded.model->eval();
  torch::NoGradGuard no_grad;
  const torch::Tensor rec = loaded.model->forward(read_tensor(*file_, "/inputs/feature_align"));
  EXPECT_LE(max_abs_diff(rec, read_tensor(*file_, "/outputs/feature_rec")), 1e-4);
  EXPECT_EQ(loaded.meta["source"], "test");
}

TEST_F(Parity, ImportCommandWithOverrides) {
  test::TempDir dir;
  const auto r = test::run(test::quote(test::uniad_binary()) + " import --weights " +
                           test::quote(test::shared_dir() / kParity) +
                           " --overrides /perturbed/params_override --out " + test::quote(dir / "p.ckpt"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const Checkpoint loaded = load_checkpoint((dir / "p.ckpt").string());
  loaded.model->eval();
  torch::NoGradGuard no_grad;
  const torch::Tensor rec = loaded.model->forward(read_tensor(*file_, "/inputs/feature_align"));
  EXPECT_LE(max_abs_diff(rec, read_tensor(*file_, "/perturbed/outputs/feature_rec")), 1e-4);
  // A group that holds no UniAD weights is bad input (65), naming the file.
  const auto bad = test::run(test::quote(test::uniad_binary()) + " import --weights " +
                             test::quote(test::shared_dir() / kParity) + " --group /inputs --out " +
                             test::quote(dir / "x.ckpt"));
  EXPECT_EQ(bad.exit_code, 65) << bad.output;
  EXPECT_NE(bad.output.find("uniad_official_eval.h5"), std::string::npos) << bad.output;
}

}  // namespace
}  // namespace uniad::model
