#include "trainer/run_models.h"

#include <fstream>
#include <map>

#include <spdlog/spdlog.h>

#include "common/device.h"
#include "common/error.h"
#include "common/fs.h"
#include "trainer/trainer.h"

namespace uniad::trainer {

model::ReconstructionNet& RunModels::for_class(int class_index) const {
  auto it = checkpoints.find(setting == "separate" ? class_index : -1);
  if (it == checkpoints.end()) throw RuntimeError("no model for class " + std::to_string(class_index));
  it->second.model->eval();
  return *it->second.model;
}

namespace {

void check_features_match(const std::string& checkpoint, const nlohmann::json& trained_on, const nlohmann::json& cache) {
  for (const char* key : {"backbone", "layers", "input_size", "grid", "mean", "std"}) {
    if (trained_on.value(key, nlohmann::json()) != cache.value(key, nlohmann::json())) {
      throw InputError(checkpoint, std::string("was trained on other features (") + key + ": " +
                                       trained_on.value(key, nlohmann::json()).dump() + " vs the cache's " +
                                       cache.value(key, nlohmann::json()).dump() + "); use a cache built with the same settings");
    }
  }
  if (trained_on.value("dataset", nlohmann::json::object()).value("file_list_hash", "") !=
      cache.value("dataset", nlohmann::json::object()).value("file_list_hash", "")) {
    spdlog::warn("{} was trained on another dataset's cache; evaluating on this one as asked", checkpoint);
  }
}

}  // namespace

RunModels load_run_models(const std::string& run_dir, const feature_cache::FeatureCache& cache,
                          const c10::Device& device) {
  RunModels run;
  const fs::path dir(run_dir);
  if (!fs::is_directory(dir)) throw InputError(run_dir, "run directory does not exist");
  auto add = [&](const std::string& path, int key) {
    model::Checkpoint checkpoint = model::load_checkpoint(path);  // on the CPU, whoever wrote it
    checkpoint.model->to(device);
    check_features_match(path, checkpoint.meta.value("cache_identity", nlohmann::json()), cache.identity());
    run.provenance["device"] = describe_device(device);
    run.provenance["checkpoints"].push_back({{"path", path},
                                             {"epoch", checkpoint.meta.value("epoch", 0)},
                                             {"global_step", checkpoint.meta.value("global_step", 0)},
                                             {"classes", checkpoint.meta.value("classes", nlohmann::json())}});
    if (run.provenance.find("config") == run.provenance.end()) run.provenance["config"] = checkpoint.meta.value("config", nlohmann::json());
    run.checkpoints.emplace(key, std::move(checkpoint));
  };
  const auto class_index = [&](const std::string& name) {
    const auto& classes = cache.classes();
    const auto it = std::find(classes.begin(), classes.end(), name);
    if (it == classes.end()) throw InputError(run_dir, "trained on class '" + name + "', which the cache does not have");
    return static_cast<int>(it - classes.begin());
  };
  if (fs::exists(dir / "separate.json")) {
    run.setting = "separate";
    const auto separate = nlohmann::json::parse(std::ifstream(dir / "separate.json"));
    for (const auto& name : separate.at("classes")) {
      const int c = class_index(name.get<std::string>());
      add(checkpoint_path((dir / name.get<std::string>()).string()), c);
      run.class_indices.push_back(c);
    }
    run.provenance["config"] = separate.at("config");
  } else {
    run.setting = "unified";
    const std::string path = checkpoint_path(run_dir);
    if (!fs::exists(path)) throw InputError(path, "no checkpoint in the run directory (has `uniad train` finished?)");
    add(path, -1);
    for (const auto& name : run.checkpoints.at(-1).meta.value("classes", std::vector<std::string>{})) {
      run.class_indices.push_back(class_index(name));
    }
    if (run.class_indices.empty())
      for (std::size_t c = 0; c < cache.classes().size(); ++c) run.class_indices.push_back(static_cast<int>(c));
  }
  run.provenance["run_dir"] = run_dir;
  run.provenance["setting"] = run.setting;
  run.provenance["seed"] = run.provenance["config"].value("seed", 0);
  return run;
}

}  // namespace uniad::trainer
