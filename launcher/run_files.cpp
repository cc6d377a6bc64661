#include "launcher/run_files.h"

#include <fstream>
#include <map>

#include <spdlog/spdlog.h>

#include "common/device.h"
#include "common/error.h"
#include "common/fs.h"
#include "eval/pictures.h"
#include "trainer/trainer.h"

namespace uniad::commands {

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
  if (trained_on.value("dataset", nlohmann::json()).value("file_list_hash", "") !=
      cache.value("dataset", nlohmann::json()).value("file_list_hash", "")) {
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
      add(trainer::checkpoint_path((dir / name.get<std::string>()).string()), c);
      run.class_indices.push_back(c);
    }
    run.provenance["config"] = separate.at("config");
  } else {
    run.setting = "unified";
    const std::string path = trainer::checkpoint_path(run_dir);
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

std::vector<nlohmann::json> read_metrics_log(const std::string& run_dir) {
  std::vector<nlohmann::json> lines;
  std::ifstream in(fs::path(run_dir) / "metrics.jsonl");
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) lines.push_back(nlohmann::json::parse(line));
  return lines;
}

namespace {

// Mean over runs of y at each x that every run has (a curve per configuration from its seeds).
eval::Series mean_curve(const std::string& label, const std::vector<std::map<double, double>>& runs) {
  eval::Series out{label, {}, {}};
  if (runs.empty()) return out;
  for (const auto& [x, first] : runs.front()) {
    double sum = 0;
    std::size_t n = 0;
    for (const auto& run : runs) {
      const auto it = run.find(x);
      if (it == run.end()) break;
      sum += it->second;
      ++n;
    }
    if (n < runs.size()) continue;
    out.x.push_back(x);
    out.y.push_back(sum / static_cast<double>(n));
  }
  return out;
}

}  // namespace

bool write_training_curves(const std::vector<std::string>& run_dirs, const std::vector<std::string>& labels,
                           const std::string& out_dir) {
  // Runs with the same label (the seeds of one configuration) become one line: their mean.
  std::vector<std::string> order;
  std::map<std::string, std::vector<std::map<double, double>>> loss, image, pixel;
  for (std::size_t r = 0; r < run_dirs.size(); ++r) {
    const auto log = read_metrics_log(run_dirs[r]);
    if (log.empty()) continue;
    const std::string& label = labels[r];
    if (!loss.count(label) && !image.count(label)) order.push_back(label);
    std::map<double, double> l, i, p;
    for (const auto& line : log) {
      if (line.contains("loss")) l[line.at("epoch")] = line.at("loss");  // a memory bank logs no loss
      if (line.contains("eval")) {
        const auto& mean = line.at("eval").at("mean");
        i[line.at("epoch")] = mean.value("image_auroc", NAN);
        p[line.at("epoch")] = mean.value("pixel_auroc", NAN);
      }
    }
    if (!l.empty()) loss[label].push_back(l);
    if (!i.empty()) image[label].push_back(i), pixel[label].push_back(p);
  }
  // One colour per configuration in both figures; pixel AUROC is the thin line of its colour.
  std::vector<eval::Series> loss_series, auroc_series;
  for (std::size_t c = 0; c < order.size(); ++c) {
    const std::string& label = order[c];
    const auto count = std::max(loss[label].size(), image[label].size());
    const std::string name = count > 1 ? fmt::format("{} (mean of {})", label, count) : label;
    auto add = [&](std::vector<eval::Series>& to, eval::Series s, bool thin) {
      s.colour = static_cast<int>(c);
      s.thin = thin;
      to.push_back(std::move(s));
    };
    if (!loss[label].empty()) add(loss_series, mean_curve(name, loss[label]), false);
    if (!image[label].empty()) {
      add(auroc_series, mean_curve(name + " image", image[label]), false);
      add(auroc_series, mean_curve(name + " pixel", pixel[label]), true);
    }
  }
  if (loss_series.empty()) return false;
  fs::create_directories(out_dir);
  eval::write_line_plot((fs::path(out_dir) / "loss.png").string(), loss_series,
                        "training loss (MSE of reconstructed features)", "epoch", "loss", true);
  eval::write_line_plot((fs::path(out_dir) / "auroc.png").string(), auroc_series,
                        "mean image (thick) and pixel (thin) AUROC on the test split (periodic evaluation)", "epoch", "AUROC");
  return true;
}

}  // namespace uniad::commands
