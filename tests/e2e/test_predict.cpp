// `uniad export` and `uniad predict` on real images (real3-small, the pretrained MobileNetV2):
// predict's scores and maps equal `uniad eval`'s on the same images (to 1e-5), thresholds come
// from the model file, unreadable images are skipped by name with exit code 65, and a damaged
// or newer model file is refused. A cache from another tool, without the backbone record
// `uniad extract` writes, is evaluated (its report says so) but cannot be exported.
#include <fstream>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>
#include <torch/serialize/archive.h>

#include "deploy/model_file.h"
#include "tests/test_support.h"

namespace uniad {
namespace {

namespace fs = std::filesystem;
using test::quote;

const char* kBackbone = "weights/mobilenet_v2_imagenet/features.pt";

std::string uniad() { return quote(test::uniad_binary()); }

// One column of a CSV file (no quoted commas), by the row's "path".
std::map<std::string, std::string> csv_column(const fs::path& csv, const std::string& column) {
  std::ifstream in(csv);
  std::string header, line;
  std::getline(in, header);
  std::vector<std::string> names;
  for (std::size_t start = 0, end; start <= header.size(); start = end + 1) {
    end = std::min(header.find(',', start), header.size());
    names.push_back(header.substr(start, end - start));
  }
  const auto at = std::find(names.begin(), names.end(), column) - names.begin();
  const auto key = std::find(names.begin(), names.end(), "path") - names.begin();
  std::map<std::string, std::string> values;
  while (std::getline(in, line)) {
    std::vector<std::string> fields;
    for (std::size_t start = 0, end; start <= line.size(); start = end + 1) {
      end = std::min(line.find(',', start), line.size());
      fields.push_back(line.substr(start, end - start));
    }
    values[fields[key]] = fields[at];
  }
  return values;
}

TEST(Predict, EqualsEvalAndHandlesBadInput) {
  UNIAD_REQUIRE_SHARED(kBackbone);
  UNIAD_REQUIRE_SHARED("data/real3-small");
  test::TempDir dir;
  const std::string backbone = quote(test::shared_dir() / kBackbone), cache = quote(dir / "cache.h5");
  // A float32 cache, so evaluation sees the features predict computes (float16 would round them).
  auto r = test::run(uniad() + " extract -q --dtype float32 --data " + quote(test::shared_dir() / "data/real3-small") +
                     " --backbone " + backbone + " --out " + cache);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = test::run(uniad() + " train -q --threads 2 --epochs 2 --hidden 32 --heads 4 --feedforward 64 --encoder-layers 1 "
                          "--decoder-layers 1 --cache " + cache + " --run-dir " + quote(dir / "run"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = test::run(uniad() + " eval -q --pictures 0 --save-maps --run " + quote(dir / "run") + " --cache " + cache);
  ASSERT_EQ(r.exit_code, 0) << r.output;

  // The model file: refused without the backbone the cache was built with.
  const fs::path model = dir / "model.uniad";
  r = test::run(uniad() + " export -q --run " + quote(dir / "run") + " --cache " + cache + " --out " + quote(model));
  EXPECT_EQ(r.exit_code, 64) << r.output;
  EXPECT_NE(r.output.find("--backbone"), std::string::npos) << r.output;
  r = test::run(uniad() + " export -q --run " + quote(dir / "run") + " --cache " + cache + " --backbone " + backbone +
                " --out " + quote(model));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const deploy::ModelFile file = deploy::read_model_file(model.string());
  EXPECT_EQ(file.metadata["setting"], "unified");
  EXPECT_EQ(file.metadata["classes"], (std::vector<std::string>{"ball_screw", "commutator", "magnetic_tile"}));
  EXPECT_EQ(file.metadata["threshold_set"]["images"], 60);
  EXPECT_TRUE(file.metadata["metrics_at_export"]["image_auroc"].is_number());
  EXPECT_FALSE(file.backbone.empty()) << "the backbone travels inside the file";

  // Every test image of the cache, in the cache's order, plus one corrupt and one missing file.
  r = test::run(std::string(test::python()) + " -c \"import h5py; f = h5py.File('" + (dir / "cache.h5").string() +
                "', 'r'); print('\\n'.join(p.decode() if isinstance(p, bytes) else p for p in f['test/path'][:]))\"");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const fs::path corrupt = dir / "corrupt.jpg";
  {
    std::ifstream good(r.output.substr(0, r.output.find('\n')), std::ios::binary);
    std::string bytes(std::istreambuf_iterator<char>(good), {});
    test::write_text(corrupt, bytes.substr(0, 200));  // a truncated JPEG
  }
  test::write_text(dir / "list.txt", r.output + corrupt.string() + "\n" + (dir / "missing.png").string() + "\n");
  r = test::run(uniad() + " predict -q --model " + quote(model) + " @" + quote(dir / "list.txt") + " --out " +
                quote(dir / "pred") + " --save-maps --maps");
  EXPECT_EQ(r.exit_code, 65) << "images were skipped: " << r.output;
  r = test::run(std::string(test::python()) + " " + quote(test::oracle_script("compare_predictions.py")) + " " + cache +
                " " + quote(dir / "run/eval") + " " + quote(dir / "pred"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto compared = nlohmann::json::parse(r.output);
  EXPECT_EQ(compared["images"], 60) << "every readable image predicted";
  EXPECT_EQ(compared["maps"], 60);
  EXPECT_EQ(compared["skipped"], (std::vector<std::string>{corrupt.string(), (dir / "missing.png").string()}));
  EXPECT_LE(compared["score_diff"].get<double>(), 1e-5) << r.output;
  EXPECT_LE(compared["map_diff"].get<double>(), 1e-5 * std::max(1.0, compared["max_map"].get<double>())) << r.output;
  EXPECT_EQ(std::distance(fs::directory_iterator(dir / "pred/maps"), fs::directory_iterator()), 60);
  EXPECT_EQ(std::distance(fs::directory_iterator(dir / "pred/overlays"), fs::directory_iterator()), 60);
  const auto error = csv_column(dir / "pred/predictions.csv", "error");
  EXPECT_NE(error.at(corrupt.string()).find("corrupt.jpg"), std::string::npos) << "the error names the file";

  // Thresholds: all classes without --class, that class's with it; an unknown class is refused.
  const double all = file.metadata["thresholds"]["all"], commutator = file.metadata["thresholds"]["classes"]["commutator"];
  for (const auto& [path, t] : csv_column(dir / "pred/predictions.csv", "threshold")) {
    if (t.empty()) continue;  // a skipped image
    EXPECT_NEAR(std::stod(t), all, 1e-6 * all) << path;
  }
  r = test::run(uniad() + " predict -q --model " + quote(model) + " --class commutator " +
                quote(test::shared_dir() / "data/real3-small/commutator/test") + " --out " + quote(dir / "pred-c"));
  // (the folder holds subfolders only: no images there is a usage error)
  EXPECT_EQ(r.exit_code, 64) << r.output;
  const fs::path one = test::shared_dir() / "data/real3-small/commutator/test/good";
  r = test::run(uniad() + " predict -q --model " + quote(model) + " --class commutator " + quote(one) + " --out " +
                quote(dir / "pred-c"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto thresholds = csv_column(dir / "pred-c/predictions.csv", "threshold");
  EXPECT_EQ(thresholds.size(), 8u);
  for (const auto& [path, t] : thresholds) EXPECT_NEAR(std::stod(t), commutator, 1e-6 * commutator) << path;
  r = test::run(uniad() + " predict -q --model " + quote(model) + " --class screw " + quote(one));
  EXPECT_EQ(r.exit_code, 64) << r.output;

  // The separate setting: one model per class in the file; --class picks it (and is required).
  const fs::path separate = dir / "separate.uniad";
  r = test::run(uniad() + " train -q --threads 2 --epochs 1 --setting separate --hidden 32 --heads 4 --feedforward 64 "
                          "--encoder-layers 1 --decoder-layers 1 --cache " + cache + " --run-dir " + quote(dir / "sep"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = test::run(uniad() + " eval -q --pictures 0 --run " + quote(dir / "sep") + " --cache " + cache);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = test::run(uniad() + " export -q --run " + quote(dir / "sep") + " --cache " + cache + " --backbone " + backbone +
                " --out " + quote(separate));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(deploy::read_model_file(separate.string()).models.size(), 3u);
  r = test::run(uniad() + " predict -q --model " + quote(separate) + " " + quote(one));
  EXPECT_EQ(r.exit_code, 64) << r.output;
  EXPECT_NE(r.output.find("--class"), std::string::npos) << r.output;
  r = test::run(uniad() + " predict -q --model " + quote(separate) + " --class commutator " + quote(one) + " --out " +
                quote(dir / "pred-sep"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto evaluated = csv_column(dir / "sep/eval/scores.csv", "score");
  const auto predicted = csv_column(dir / "pred-sep/predictions.csv", "score");
  ASSERT_EQ(predicted.size(), 8u);
  for (const auto& [path, score] : predicted) {
    EXPECT_NEAR(std::stod(score), std::stod(evaluated.at(path)), 1e-5) << path << ": the commutator model's score";
  }

  // A damaged file and a file from a newer format are refused, by name.
  {
    std::ifstream in(model, std::ios::binary);
    std::string bytes(std::istreambuf_iterator<char>(in), {});
    test::write_text(dir / "damaged.uniad", bytes.substr(0, bytes.size() / 2));
  }
  r = test::run(uniad() + " predict -q --model " + quote(dir / "damaged.uniad") + " " + quote(one));
  EXPECT_EQ(r.exit_code, 65) << r.output;
  EXPECT_NE(r.output.find("damaged.uniad"), std::string::npos) << r.output;
  {
    torch::serialize::OutputArchive archive;
    archive.write("format", c10::IValue(std::string("uniad-model")));
    archive.write("format_version", c10::IValue(int64_t(deploy::kModelFileVersion + 1)));
    archive.save_to((dir / "newer.uniad").string());
  }
  r = test::run(uniad() + " predict -q --model " + quote(dir / "newer.uniad") + " " + quote(one));
  EXPECT_EQ(r.exit_code, 65) << r.output;
  EXPECT_NE(r.output.find("newer than this uniad reads"), std::string::npos) << r.output;
}

// A cache written by another tool may lack the backbone record of its identity (the benchmarks'
// random caches did): the evaluation records the backbone as unknown instead of dying on a JSON
// lookup, and export, which must put the backbone in the model file, refuses it by name (65).
TEST(Export, ACacheWithoutABackboneRecordIsEvaluatedButNotExported) {
  test::TempDir dir;
  auto r = test::make_small_cache(dir.path());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const fs::path cache = dir / "cache.h5";
  r = test::run(std::string(test::python()) + " -c \"import h5py, json; f = h5py.File('" + cache.string() +
                "', 'r+'); i = json.loads(f.attrs['identity_json']); del i['backbone']; "
                "f.attrs['identity_json'] = json.dumps(i)\"");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = test::run(uniad() + " train -q --threads 2 --epochs 1 --hidden 32 --heads 4 --feedforward 64 --encoder-layers 1 "
                          "--decoder-layers 1 --no-tensorboard --cache " + quote(cache) + " --run-dir " + quote(dir / "run"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = test::run(uniad() + " eval -q --pictures 0 --no-tensorboard --run " + quote(dir / "run") + " --cache " + quote(cache));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto report = nlohmann::json::parse(test::read_bytes(dir / "run" / "eval" / "report.json"));
  EXPECT_TRUE(report["provenance"]["random_features"].is_null());
  EXPECT_NE(test::read_bytes(dir / "run" / "eval" / "report.md").find("records no backbone"), std::string::npos);

  r = test::run(uniad() + " export -q --run " + quote(dir / "run") + " --cache " + quote(cache) + " --out " +
                quote(dir / "model.uniad"));
  EXPECT_EQ(r.exit_code, 65) << r.output;
  EXPECT_NE(r.output.find(cache.string() + ": the cache records no backbone"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(dir / "model.uniad"));
}

}  // namespace
}  // namespace uniad
