// The feature-cache stage: assembly parity, backbones, the HDF5 format read by h5py,
// MPI extraction identical to one rank, atomic and reusable files, the reader.
#include <chrono>
#include <map>
#include <thread>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "common/error.h"
#include "common/hdf5.h"
#include "data/image.h"
#include "data/synth.h"
#include "feature_cache/assemble.h"
#include "feature_cache/backbone.h"
#include "feature_cache/cache.h"
#include "tests/test_support.h"

namespace uniad::feature_cache {
namespace {

namespace fs = std::filesystem;
using data::Split;
using test::quote;

const char* kBackbone = "weights/mobilenet_v2_imagenet/features.pt";

at::Tensor read_tensor(const h5::File& file, const std::string& name) {
  std::vector<hsize_t> shape;
  std::vector<float> values = file.read<float>(name, &shape);
  return at::from_blob(values.data(), std::vector<int64_t>(shape.begin(), shape.end()), at::kFloat).clone();
}

std::string uniad() { return quote(test::uniad_binary()); }

TEST(Assembly, MatchesTheReferenceNeck) {
  UNIAD_REQUIRE_SHARED("parity/uniad_official_eval.h5");
  const h5::File file = h5::File::open((test::shared_dir() / "parity/uniad_official_eval.h5").string());
  std::vector<at::Tensor> maps;
  for (int i = 0; i < 4; ++i) maps.push_back(read_tensor(file, "/neck/features_" + std::to_string(i)));
  const at::Tensor assembled = assemble_features(maps, 14, 14);
  const at::Tensor expected = read_tensor(file, "/neck/feature_align");
  ASSERT_EQ(assembled.sizes(), expected.sizes());
  // LibTorch 1.13 lands within 1e-5 of the reference; 2.11's bilinear kernel computes the source
  // positions in float32 and moves values by up to 1.9e-5 (measured). 5e-5 is about 1e-5 of
  // these features' range (|x| <= 4.2): a few float32 roundings of the interpolation weights.
  EXPECT_LE((assembled - expected).abs().max().item<float>(), 5e-5);
}

TEST(Backbone, BuiltinContractDepthAndDeterminism) {
  BackboneOptions options;
  options.layers = {0, 1, 2, 3};
  auto backbone = load_backbone(options);
  EXPECT_TRUE(backbone->random_features());
  EXPECT_NE(backbone->description().find("random-feature backbone"), std::string::npos);
  const at::Tensor x = at::randn({2, 3, 224, 224});
  const auto maps = backbone->forward(x);
  ASSERT_EQ(maps.size(), 4u);
  const int strides[4] = {4, 8, 16, 32};
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(maps[i].sizes(), (std::vector<int64_t>{2, kBuiltinChannels[i], 224 / strides[i], 224 / strides[i]}));
  }
  EXPECT_EQ(backbone->depth_used(), 4);
  options.layers = {1};
  auto shallow = load_backbone(options);
  EXPECT_EQ(shallow->depth_used(), 2) << "runs only as deep as the deepest layer";
  EXPECT_TRUE(at::equal(shallow->forward(x)[0], maps[1])) << "same fixed weights";
  options.layers = {4};
  EXPECT_THROW(load_backbone(options), UsageError);
}

TEST(Backbone, TorchScriptRunsOnlyTheBlocksNeeded) {
  UNIAD_REQUIRE_SHARED(kBackbone);
  BackboneOptions options;
  options.file = (test::shared_dir() / kBackbone).string();
  auto backbone = load_backbone(options);
  EXPECT_FALSE(backbone->random_features());
  const at::Tensor x = at::randn({2, 3, 224, 224});
  const auto first = backbone->forward(x);  // whole module, and finds where the outputs end
  EXPECT_EQ(backbone->depth_used(), 14) << "MobileNetV2: stride-16 output ends after block 13 of 19";
  const auto second = backbone->forward(x);  // blocks 0..13 only
  ASSERT_EQ(first.size(), 3u);
  const int channels[3] = {24, 32, 96};
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(first[i].size(1), channels[i]);
    EXPECT_TRUE(at::equal(first[i], second[i])) << "partial run gives the module's own outputs";
  }
}

TEST(Extract, RealImagesMatchPythonOracleAndH5pyReadsTheFile) {
  UNIAD_REQUIRE_SHARED(kBackbone);
  UNIAD_REQUIRE_SHARED("data/real3-small");
  test::TempDir dir;
  const auto cache = dir / "real.h5";
  auto r = test::run(uniad() + " extract -q --data " + quote(test::shared_dir() / "data/real3-small") +
                     " --backbone " + quote(test::shared_dir() / kBackbone) + " --dtype float32 --out " + quote(cache));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = test::run(std::string(test::python()) + " " + quote(test::oracle_script("check_cache.py")) + " " + quote(cache) +
                " " + quote(test::shared_dir() / kBackbone) + " 3");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto report = nlohmann::json::parse(r.output.substr(r.output.find('{')));
  EXPECT_EQ(report["classes"], (std::vector<std::string>{"ball_screw", "commutator", "magnetic_tile"}));
  EXPECT_EQ(report["dtype"], "float32");
  EXPECT_EQ(report["train_shape"], (std::vector<int>{60, 152, 14, 14}));
  EXPECT_EQ(report["test_shape"], (std::vector<int>{60, 152, 14, 14}));
  EXPECT_EQ(report["mask_shape"], (std::vector<int>{60, 224, 224}));
  EXPECT_EQ(report["mask_dtype"], "uint8");
  EXPECT_EQ(report["complete"], 1);
  EXPECT_GT(report["mask_pixels"].get<int>(), 1000);
  EXPECT_GT(report["max_feature"].get<double>(), 1.0);
  // Same float32 arithmetic in a different program: agreement to rounding.
  EXPECT_LE(report["max_abs_diff"].get<double>(), 1e-4) << r.output;
  // The labels: per class 8 normal then 12 anomalous test images.
  EXPECT_EQ(report["labels"][0], 0);
  EXPECT_EQ(report["labels"][8], 1);
}

// The second pretrained backbone (ResNet18, layer1-layer3: 64 + 128 + 256 channels at strides
// 4, 8, 16) goes through the same assembly and is recorded by its own identity, so caches of the
// two backbones can never be mistaken for each other (docs/RESULTS.md, "Second backbone").
TEST(Extract, ResNet18AssembledAndIdentifiedAsMobileNetV2Is) {
  const char* resnet18 = "weights/resnet18_imagenet/features.pt";
  UNIAD_REQUIRE_SHARED(resnet18);
  UNIAD_REQUIRE_SHARED(kBackbone);
  UNIAD_REQUIRE_SHARED("data/real3-small");
  test::TempDir dir;
  std::map<std::string, nlohmann::json> reports;
  for (const char* backbone : {resnet18, kBackbone}) {
    const auto cache = dir / (std::string(backbone).substr(8, 8) + ".h5");
    auto r = test::run(uniad() + " extract -q --data " + quote(test::shared_dir() / "data/real3-small") + " --backbone " +
                       quote(test::shared_dir() / backbone) + " --dtype float32 --out " + quote(cache));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    r = test::run(std::string(test::python()) + " " + quote(test::oracle_script("check_cache.py")) + " " + quote(cache) +
                  " " + quote(test::shared_dir() / backbone) + " 2");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    reports[backbone] = nlohmann::json::parse(r.output.substr(r.output.find('{')));
  }
  const auto& report = reports[resnet18];
  EXPECT_EQ(report["train_shape"], (std::vector<int>{60, 448, 14, 14}));
  EXPECT_EQ(report["layers"], (std::vector<int>{0, 1, 2}));
  EXPECT_LE(report["max_abs_diff"].get<double>(), 1e-4) << report.dump();
  EXPECT_GT(report["max_feature"].get<double>(), 1.0);
  const std::string identity = report["backbone_hash_attr"];
  EXPECT_EQ(identity.rfind("xxh64:", 0), 0u) << identity;
  EXPECT_NE(identity, reports[kBackbone]["backbone_hash_attr"].get<std::string>()) << "two backbones, two identities";
}

// scripts/export_backbone.py: the paper's EfficientNet-b4 stages and ResNet-18 (seeded random
// weights) exported to TorchScript, extracted with their own default layers, and checked
// against torchvision's own forward (the oracle builds the network itself).
TEST(ExportedBackbone, EfficientNetB4AndResNet18MatchTorchvision) {
  UNIAD_REQUIRE_SHARED("data/real3-small");
  if (test::run(std::string(test::python()) + " -c 'import torchvision'").exit_code != 0) {
    GTEST_SKIP() << "SKIPPED: python3-torchvision is not installed (scripts/setup.sh installs it)";
  }
  test::TempDir dir;
  const fs::path exporter = fs::path(UNIAD_SOURCE_DIR) / "scripts/export_backbone.py";
  for (const auto& [arch, channels, layers] : {std::tuple{std::string("efficientnet_b4"), 272, std::vector<int>{0, 1, 2, 3}},
                                               std::tuple{std::string("resnet18"), 448, std::vector<int>{0, 1, 2}}}) {
    const fs::path file = dir / (arch + ".pt"), cache = dir / (arch + ".h5");
    auto r = test::run(std::string(test::python()) + " " + quote(exporter) + " " + arch + " --random --out " + quote(file));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    // The file describes itself.
    BackboneOptions options;
    options.file = file.string();
    const auto backbone = load_backbone(options);
    const nlohmann::json meta = backbone->metadata();
    EXPECT_EQ(meta["architecture"], arch);
    EXPECT_EQ(meta["weights"]["kind"], "random");
    EXPECT_EQ(meta["weights"]["seed"], 0);
    EXPECT_EQ(backbone->layers(), layers) << "the file's default layers, without flags";
    EXPECT_NE(backbone->description().find(arch), std::string::npos) << backbone->description();
    if (arch == "efficientnet_b4") {
      std::vector<int> strides, widths;
      for (const auto& o : meta["outputs"]) strides.push_back(o["stride"]), widths.push_back(o["channels"]);
      EXPECT_EQ(strides, (std::vector<int>{2, 4, 8, 16})) << "the reference UniAD's stages";
      EXPECT_EQ(widths, (std::vector<int>{24, 32, 56, 160}));
    }
    // Extraction with its default layers, against torchvision's own forward.
    r = test::run(uniad() + " extract -q --data " + quote(test::shared_dir() / "data/real3-small") + " --backbone " +
                  quote(file) + " --dtype float32 --out " + quote(cache));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    r = test::run(std::string(test::python()) + " " + quote(test::oracle_script("check_cache.py")) + " " + quote(cache) +
                  " torchvision:" + arch + ":0 2");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const auto report = nlohmann::json::parse(r.output.substr(r.output.find('{')));
    EXPECT_EQ(report["train_shape"], (std::vector<int>{60, channels, 14, 14})) << arch;
    EXPECT_EQ(report["layers"], layers);
    EXPECT_GT(report["max_feature"].get<double>(), 0.01) << arch;
    EXPECT_LE(report["max_abs_diff"].get<double>(), 1e-5 * std::max(1.0, report["max_feature"].get<double>()))
        << arch << ": " << r.output;
  }
  // --weights: a state dict saved elsewhere gives the same network as those weights, and the
  // file records its name and SHA-256; weights of another architecture are refused.
  auto r = test::run(std::string(test::python()) + " -c \"import torch, torchvision; torch.manual_seed(1); "
                     "torch.save(torchvision.models.resnet18(weights=None).state_dict(), '" + (dir / "r18-seed1.pth").string() +
                     "')\"");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (const auto& [name, source] : {std::pair{std::string("from-file"), "--weights " + quote(dir / "r18-seed1.pth")},
                                     std::pair{std::string("seed-1"), std::string("--random --seed 1")}}) {
    r = test::run(std::string(test::python()) + " " + quote(exporter) + " resnet18 " + source + " --out " +
                  quote(dir / (name + ".pt")));
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }
  BackboneOptions from_file, seeded;
  from_file.file = (dir / "from-file.pt").string();
  seeded.file = (dir / "seed-1.pt").string();
  const auto a = load_backbone(from_file), b = load_backbone(seeded);
  EXPECT_EQ(a->metadata()["weights"]["kind"], "file");
  EXPECT_EQ(a->metadata()["weights"]["file"], "r18-seed1.pth");
  EXPECT_EQ(a->metadata()["weights"]["sha256"].get<std::string>().size(), 64u);
  const at::Tensor x = at::randn({1, 3, 64, 64});
  const auto maps_a = a->forward(x), maps_b = b->forward(x);
  for (std::size_t k = 0; k < maps_a.size(); ++k) EXPECT_TRUE(at::equal(maps_a[k], maps_b[k])) << "stage " << k;
  r = test::run(std::string(test::python()) + " " + quote(exporter) + " mobilenet_v2 --weights " +
                quote(dir / "r18-seed1.pth") + " --out " + quote(dir / "wrong.pt"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("is not a mobilenet_v2 state dict"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(dir / "wrong.pt"));

  // An input side the network cannot take is refused before anything runs.
  r = test::run(uniad() + " extract -q --data " + quote(test::shared_dir() / "data/real3-small") + " --backbone " +
                quote(dir / "resnet18.pt") + " --image-size 200 --out " + quote(dir / "bad.h5"));
  EXPECT_EQ(r.exit_code, 64) << r.output;
  EXPECT_NE(r.output.find("resnet18 takes sides that are multiples of 32"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(dir / "bad.h5"));
}

// A small synthetic dataset for the extraction tests that need no ../shared.
class Extraction : public ::testing::Test {
 protected:
  void SetUp() override {
    data::SynthOptions o;
    o.classes = 2;
    o.train_good = 10;
    o.test_good = 3;
    o.test_anomalous = 5;
    o.image_size = 96;
    data_ = dir_ / "data";
    data::write_synthetic_dataset(data_.string(), o, false);
  }
  test::CommandResult extract(const fs::path& out, const std::string& extra = "", const std::string& launcher = "") {
    return test::run(launcher + uniad() + " extract -q --data " + quote(data_) + " --out " + quote(out) +
                     " --batch-size 4 " + extra);
  }
  test::TempDir dir_;
  fs::path data_;
};

std::string mpirun(int ranks) {
  return "mpirun --allow-run-as-root --oversubscribe -np " + std::to_string(ranks) + " ";
}

TEST_F(Extraction, TwoRanksWriteTheSameFileAsOne) {
  ASSERT_EQ(extract(dir_ / "one.h5", "--threads 1").exit_code, 0);
  const auto r = extract(dir_ / "two.h5", "--threads 1", mpirun(2));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const FeatureCache one = FeatureCache::open((dir_ / "one.h5").string());
  const FeatureCache two = FeatureCache::open((dir_ / "two.h5").string());
  EXPECT_EQ(two.attributes()["ranks"], 2);
  for (Split split : {Split::kTrain, Split::kTest}) {
    std::vector<int64_t> all(one.split(split).size());
    std::iota(all.begin(), all.end(), 0);
    EXPECT_TRUE(at::equal(one.read_features(split, all), two.read_features(split, all))) << data::split_name(split);
    EXPECT_EQ(one.split(split).path, two.split(split).path);
    EXPECT_EQ(one.split(split).label, two.split(split).label);
  }
  std::vector<int64_t> test_rows(one.split(Split::kTest).size());
  std::iota(test_rows.begin(), test_rows.end(), 0);
  EXPECT_TRUE(at::equal(one.read_masks(test_rows), two.read_masks(test_rows)));
  // Three ranks (an uneven split of the batches) too.
  ASSERT_EQ(extract(dir_ / "three.h5", "--threads 1", mpirun(3)).exit_code, 0);
  const FeatureCache three = FeatureCache::open((dir_ / "three.h5").string());
  std::vector<int64_t> train_rows(one.split(Split::kTrain).size());
  std::iota(train_rows.begin(), train_rows.end(), 0);
  EXPECT_TRUE(at::equal(one.read_features(Split::kTrain, train_rows), three.read_features(Split::kTrain, train_rows)));
}

TEST_F(Extraction, ReusedWhenSameRefusedWhenDifferentRebuiltWithForce) {
  const fs::path cache = dir_ / "c.h5";
  ASSERT_EQ(extract(cache).exit_code, 0);
  const auto first_time = fs::last_write_time(cache);
  auto r = test::run(uniad() + " extract --data " + quote(data_) + " --out " + quote(cache) + " --batch-size 4");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("reusing"), std::string::npos) << r.output;
  EXPECT_EQ(fs::last_write_time(cache), first_time) << "not rewritten";
  r = extract(cache, "--layers 1,2");
  EXPECT_EQ(r.exit_code, 65) << r.output;
  EXPECT_NE(r.output.find("c.h5"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("/layers"), std::string::npos) << "names the setting that differs: " << r.output;
  ASSERT_EQ(extract(cache, "--layers 1,2 --force").exit_code, 0);
  EXPECT_EQ(FeatureCache::open(cache.string()).shape().channels, 32 + 96);
}

TEST_F(Extraction, KilledRunLeavesNoCompleteLookingFile) {
  // Big enough to still be running when killed.
  data::SynthOptions o;
  o.classes = 4;
  o.train_good = 300;  // ~4 s of extraction here, killed after 1 s
  o.test_good = 4;
  o.test_anomalous = 4;
  o.image_size = 256;
  const fs::path big = dir_ / "big";
  data::write_synthetic_dataset(big.string(), o, false);
  const fs::path cache = dir_ / "killed.h5";
  test::run("timeout -s KILL 1 " + uniad() + " extract -q --data " + quote(big) + " --out " + quote(cache) +
            " --threads 1");
  EXPECT_FALSE(fs::exists(cache)) << "no file under the final name";
  // Whatever temporary is left is refused by the reader, and a rerun completes.
  for (const auto& entry : fs::directory_iterator(dir_.path())) {
    if (entry.path().filename().string().find(".killed.h5.tmp") == 0) {
      EXPECT_THROW(FeatureCache::open(entry.path().string()), InputError);
    }
  }
  std::this_thread::sleep_for(std::chrono::seconds(1));  // let the killed process be reaped
  const auto r = test::run(uniad() + " extract -q --data " + quote(big) + " --out " + quote(cache));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(FeatureCache::open(cache.string()).split(Split::kTrain).size(), 1200);
  for (const auto& entry : fs::directory_iterator(dir_.path())) {
    EXPECT_NE(entry.path().filename().string().find(".killed.h5.tmp"), 0u) << "the rerun removed the killed run's file";
  }
}

TEST_F(Extraction, TruncatedForeignAndIncompleteFilesAreClearErrors) {
  const fs::path cache = dir_ / "c.h5";
  ASSERT_EQ(extract(cache).exit_code, 0);
  const std::string bytes = test::read_bytes(cache);
  test::write_text(dir_ / "truncated.h5", bytes.substr(0, bytes.size() / 3));
  test::write_text(dir_ / "text.h5", "not hdf5");
  {
    h5::File foreign = h5::File::create((dir_ / "foreign.h5").string());
    foreign.write<float>("/x", {2}, {1.f, 2.f});
  }
  {
    // A writer that never finished (killed before the rename would have happened).
    CacheWriter writer((dir_ / "incomplete.h5").string(), {{"dtype", "float16"}}, {"a"}, CacheShape{8, 2, 2, 4},
                       {{Split::kTrain, {}}, {Split::kTest, {}}});
  }
  for (const char* name : {"truncated.h5", "text.h5", "foreign.h5", "incomplete.h5", "missing.h5"}) {
    try {
      FeatureCache::open((dir_ / name).string());
      ADD_FAILURE() << name << " opened";
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find(name), std::string::npos) << e.what();
    }
  }
  // The command line says so too, with the input-error exit code.
  const auto r = extract(dir_ / "text.h5");
  EXPECT_EQ(r.exit_code, 65) << r.output;
  EXPECT_NE(r.output.find("--force"), std::string::npos) << r.output;
}

TEST_F(Extraction, ReaderRandomAccessClassesPreloadAndMasks) {
  const fs::path cache = dir_ / "c.h5";
  ASSERT_EQ(extract(cache, "--dtype float32").exit_code, 0);
  FeatureCache reader = FeatureCache::open(cache.string());
  EXPECT_EQ(reader.classes(), (std::vector<std::string>{"bottle_cap", "weave"}));
  EXPECT_EQ(reader.shape().channels, 152);
  EXPECT_EQ(reader.attributes()["random_features"], true);
  const int64_t n = reader.split(Split::kTrain).size();
  ASSERT_EQ(n, 20);
  std::vector<int64_t> all(n);
  std::iota(all.begin(), all.end(), 0);
  const at::Tensor sequential = reader.read_features(Split::kTrain, all);
  const std::vector<int64_t> shuffled = {17, 3, 4, 5, 0, 19};
  const at::Tensor random = reader.read_features(Split::kTrain, shuffled);
  for (std::size_t i = 0; i < shuffled.size(); ++i) EXPECT_TRUE(at::equal(random[i], sequential[shuffled[i]]));
  EXPECT_EQ(reader.rows_of_class(Split::kTrain, 1), (std::vector<int64_t>{10, 11, 12, 13, 14, 15, 16, 17, 18, 19}));
  reader.preload(Split::kTrain);
  EXPECT_TRUE(at::equal(reader.read_features(Split::kTrain, shuffled), random));
  // Masks equal the data stage's own masks for the same images.
  const data::Dataset dataset = data::load_dataset(data_.string());
  const auto test_indices = dataset.indices(Split::kTest);
  const data::ImageBatch batch = data::load_batch(dataset, test_indices, data::ImageOptions{}, 2);
  std::vector<int64_t> test_rows(test_indices.size());
  std::iota(test_rows.begin(), test_rows.end(), 0);
  const at::Tensor masks = reader.read_masks(test_rows);
  EXPECT_TRUE(std::equal(batch.masks.begin(), batch.masks.end(), masks.data_ptr<uint8_t>()));
  EXPECT_GT(masks.sum().item<int64_t>(), 0);
  EXPECT_THROW(reader.read_features(Split::kTrain, {20}), InputError);
}

}  // namespace
}  // namespace uniad::feature_cache
