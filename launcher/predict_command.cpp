// `uniad predict`: a portable model file (`uniad export`) on new images: a decision and a
// score per image in predictions.csv / .jsonl, optionally the anomaly maps as 16-bit PNGs,
// overlays and a float maps.h5.
#include <fstream>
#include <iostream>

#include <ATen/ATen.h>
#include <fmt/core.h>
#include <spdlog/spdlog.h>

#include "common/device.h"
#include "common/error.h"
#include "common/fs.h"
#include "common/hdf5.h"
#include "common/progress.h"
#include "data/dataset.h"
#include "deploy/model_file.h"
#include "deploy/predict.h"
#include "report/pictures.h"
#include "launcher/cli.h"
#include "launcher/commands.h"

namespace uniad::commands {

namespace po = cli::po;

namespace {

// IMAGE, DIR (its images, sorted, not recursive) or @LIST (one path per line), in order.
std::vector<std::string> gather_inputs(const std::vector<std::string>& arguments) {
  std::vector<std::string> paths;
  for (const auto& a : arguments) {
    if (!a.empty() && a[0] == '@') {
      std::ifstream list(a.substr(1));
      if (!list) throw InputError(a.substr(1), "cannot read the image list (@LIST: one path per line)");
      for (std::string line; std::getline(list, line);)
        if (!line.empty() && line[0] != '#') paths.push_back(line);
    } else if (fs::is_directory(a)) {
      for (const auto& f : list_files(a))
        if (data::is_image_extension(lower_extension(f))) paths.push_back(f.string());
    } else {
      paths.push_back(a);  // a missing file is reported (and skipped) like a corrupt one
    }
  }
  return paths;
}

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string quoted = "\"";
  for (char c : s) quoted += c == '"' ? std::string("\"\"") : std::string(1, c);
  return quoted + "\"";
}

}  // namespace

int predict(int argc, char** argv) {
  const cli::Command command{
      "predict", "uniad predict --model MODEL.uniad IMAGE|DIR|@LIST ... [--out DIR] [--class NAME] [--maps]",
      "Runs a model file written by `uniad export` on images: decode and resize as the reference, backbone,\n"
      "reconstruction, anomaly map, image score, and the decision against the file's threshold (--class NAME:\n"
      "that class's; otherwise the all-classes one, as the unified setting knows no class at test time).\n"
      "Writes DIR/predictions.csv and .jsonl (path, score, threshold, anomalous, the map's peak in image\n"
      "pixels); --maps adds maps/<n>_<name>.png (16-bit, 65535 = the export's largest test-set map value) and\n"
      "overlays/<n>_<name>.png; --save-maps a float maps.h5. Unreadable images are reported and skipped;\n"
      "the exit code is then 65."};
  po::options_description options("predict options");
  options.add_options()
      ("model", po::value<std::string>()->required(), "model file written by `uniad export`")
      ("inputs", po::value<std::vector<std::string>>()->multitoken(), "images, folders of images, or @LIST files")
      ("out", po::value<std::string>()->default_value("predictions"), "output folder")
      ("class", po::value<std::string>()->default_value(""), "apply this class's threshold (and model, if separate)")
      ("maps", po::bool_switch(), "write map PNGs and overlays")
      ("save-maps", po::bool_switch(), "write every map as floats (maps.h5)")
      ("batch-size", po::value<int>()->default_value(16), "images per forward pass")
      ("threads", po::value<int>()->default_value(0), "compute threads (0 = the CPUs this process may use)")
      ("device", po::value<std::string>()->default_value("auto"), "auto | cpu | cuda: where the backbone and the model run");
  cli::add_logging_options(options);
  const auto vm = cli::parse_command(command, options, argc, argv, "inputs");
  if (!vm) return 0;
  cli::configure_logging(*vm);
  configure_compute_threads((*vm)["threads"].as<int>());
  if (!vm->count("inputs")) throw UsageError("no images given (IMAGE, DIR or @LIST); see `uniad predict --help`");
  const std::vector<std::string> paths = gather_inputs((*vm)["inputs"].as<std::vector<std::string>>());
  if (paths.empty()) throw UsageError("the inputs hold no images");
  const std::string model_path = (*vm)["model"].as<std::string>(), class_name = (*vm)["class"].as<std::string>();
  const fs::path out = (*vm)["out"].as<std::string>();
  const bool maps = (*vm)["maps"].as<bool>(), save_maps = (*vm)["save-maps"].as<bool>();
  const int batch_size = std::max(1, (*vm)["batch-size"].as<int>());

  deploy::Predictor predictor(deploy::read_model_file(model_path), model_path, class_name,
                            resolve_device((*vm)["device"].as<std::string>()));
  fs::create_directories(out);
  if (maps) fs::create_directories(out / "maps"), fs::create_directories(out / "overlays");
  std::string csv = "path,score,threshold,anomalous,peak_x,peak_y,error\n", jsonl;
  std::vector<float> saved;  // maps for maps.h5, in order of the predicted images
  std::vector<std::string> saved_paths;
  std::size_t skipped = 0, anomalous = 0;
  Progress progress("predict", paths.size(), "images", cli::show_progress(*vm));
  for (std::size_t first = 0; first < paths.size(); first += batch_size) {
    const std::vector<std::string> batch(paths.begin() + first, paths.begin() + std::min(paths.size(), first + batch_size));
    const auto predictions = predictor.predict(batch, maps || save_maps);
    for (std::size_t k = 0; k < predictions.size(); ++k) {
      const auto& p = predictions[k];
      nlohmann::ordered_json line = {{"path", p.path}};
      if (!p.error.empty()) {
        ++skipped;
        spdlog::warn("skipped {}", p.error);
        csv += csv_field(p.path) + ",,,,,," + csv_field(p.error) + "\n";
        line["error"] = p.error;
        jsonl += line.dump() + "\n";
        continue;
      }
      anomalous += p.anomalous;
      csv += fmt::format("{},{:.8g},{:.8g},{},{},{},\n", csv_field(p.path), p.score, p.threshold, p.anomalous ? "yes" : "no",
                         p.peak_x, p.peak_y);
      line.update({{"score", p.score}, {"threshold", p.threshold}, {"anomalous", p.anomalous},
                   {"peak", {{"x", p.peak_x}, {"y", p.peak_y}}}});
      jsonl += line.dump() + "\n";
      const std::string stem = fmt::format("{:05d}_{}", first + k, fs::path(p.path).stem().string());
      if (maps) {
        report::write_map_png16((out / "maps" / (stem + ".png")).string(), p.map, predictor.map_max());
        report::write_overlay((out / "overlays" / (stem + ".png")).string(), p.path, p.map, predictor.map_max(), p.threshold,
                            fmt::format("score {:.3f} ({})", p.score, p.anomalous ? "anomalous" : "normal"));
      }
      if (save_maps) {
        saved.insert(saved.end(), p.map.data_ptr<float>(), p.map.data_ptr<float>() + p.map.numel());
        saved_paths.push_back(p.path);
      }
    }
    progress.advance(batch.size());
  }
  progress.finish();
  atomic_write_bytes(out / "predictions.csv", csv);
  atomic_write_bytes(out / "predictions.jsonl", jsonl);
  if (save_maps) {
    atomic_write(out / "maps.h5", [&](const fs::path& tmp) {
      h5::File file = h5::File::create(tmp.string());
      const hsize_t s = static_cast<hsize_t>(predictor.map_size());
      file.write<float>("/maps", {saved_paths.size(), s, s}, saved);
      file.write_strings("/paths", saved_paths);
      file.flush();
      file.close();
    });
  }
  std::cout << fmt::format("{} images: {} anomalous, {} normal{} (threshold {:.4g}{}); {}\n", paths.size(), anomalous,
                           paths.size() - skipped - anomalous, skipped ? fmt::format(", {} skipped", skipped) : "",
                           predictor.threshold(), class_name.empty() ? ", all classes" : ", class " + class_name,
                           (out / "predictions.csv").string());
  return skipped ? static_cast<int>(ExitCode::kInput) : 0;
}

}  // namespace uniad::commands
