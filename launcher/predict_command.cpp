// `uniad predict`: a portable model file (`uniad export`) on new images: a decision and a
// score per image in predictions.csv / .jsonl, optionally the anomaly maps as 16-bit PNGs,
// overlays and a float maps.h5.
#include <fstream>
#include <iostream>

#include <fmt/core.h>

#include "common/device.h"
#include "common/error.h"
#include "common/fs.h"
#include "common/progress.h"
#include "data/dataset.h"
#include "deploy/model_file.h"
#include "deploy/predict.h"
#include "deploy/prediction_writer.h"
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
  const deploy::PredictionOutputs outputs{(*vm)["out"].as<std::string>(), (*vm)["maps"].as<bool>(),
                                          (*vm)["save-maps"].as<bool>()};
  const std::size_t batch_size = std::max(1, (*vm)["batch-size"].as<int>());

  deploy::Predictor predictor(deploy::read_model_file(model_path), model_path, class_name,
                              resolve_device((*vm)["device"].as<std::string>()));
  deploy::PredictionWriter writer(outputs, predictor.map_max(), predictor.map_size());
  Progress progress("predict", paths.size(), "images", cli::show_progress(*vm));
  for (std::size_t first = 0; first < paths.size(); first += batch_size) {
    const std::vector<std::string> batch(paths.begin() + first, paths.begin() + std::min(paths.size(), first + batch_size));
    const auto predictions = predictor.predict(batch, outputs.map_pictures || outputs.float_maps);
    for (std::size_t k = 0; k < predictions.size(); ++k) writer.add(first + k, predictions[k]);
    progress.advance(batch.size());
  }
  progress.finish();
  writer.finish();
  const std::size_t skipped = writer.skipped(), anomalous = writer.anomalous();
  std::cout << fmt::format("{} images: {} anomalous, {} normal{} (threshold {:.4g}{}); {}\n", paths.size(), anomalous,
                           paths.size() - skipped - anomalous, skipped ? fmt::format(", {} skipped", skipped) : "",
                           predictor.threshold(), class_name.empty() ? ", all classes" : ", class " + class_name,
                           (outputs.dir / "predictions.csv").string());
  return skipped ? static_cast<int>(ExitCode::kInput) : 0;
}

}  // namespace uniad::commands
