// `uniad import`: turn reference UniAD weights stored in HDF5 into a project checkpoint, so
// a model trained by the reference code can be evaluated here.
#include <iostream>

#include <spdlog/spdlog.h>
#include <torch/types.h>

#include "common/error.h"
#include "common/hdf5.h"
#include "common/version.h"
#include "launcher/cli.h"
#include "launcher/commands.h"
#include "model/checkpoint.h"

namespace uniad::commands {

namespace po = cli::po;

namespace {

std::map<std::string, torch::Tensor> read_weights(const h5::File& file, const std::string& group) {
  std::map<std::string, torch::Tensor> weights;
  for (const auto& name : file.list(group)) {
    std::vector<hsize_t> shape;
    std::vector<float> values = file.read<float>(group + "/" + name, &shape);
    weights[name] = torch::from_blob(values.data(), std::vector<int64_t>(shape.begin(), shape.end())).clone();
  }
  if (weights.empty()) throw InputError(file.path(), "group '" + group + "' holds no weights");
  return weights;
}

}  // namespace

int import_weights(int argc, char** argv) {
  const cli::Command command{
      "import", "uniad import --weights FILE.h5 --out CHECKPOINT [options]",
      "Reads reference UniAD weights from HDF5 (one dataset per state-dict entry, named as the\n"
      "reference names them, with or without the 'module.reconstruction.' prefix) and writes a\n"
      "uniad checkpoint. Sizes, layer counts and query mode are read off the tensors; heads and the\n"
      "neighbor window come from the file's 'nhead'/'neighbor_size' attributes when present."};
  po::options_description options("import options");
  options.add_options()
      ("weights", po::value<std::string>()->required(), "HDF5 file with the reference weights")
      ("group", po::value<std::string>()->default_value("/params"), "group holding the weights")
      ("overrides", po::value<std::string>()->default_value(""), "optional group whose tensors replace same-named ones")
      ("out", po::value<std::string>()->required(), "checkpoint to write")
      ("heads", po::value<int>()->default_value(8), "attention heads, if the file does not say")
      ("neighbor-window", po::value<int>()->default_value(7), "neighbor mask window, if the file does not say");
  cli::add_logging_options(options);
  const auto vm = cli::parse_command(command, options, argc, argv);
  if (!vm) return 0;
  cli::configure_logging(*vm);

  const std::string path = (*vm)["weights"].as<std::string>();
  const h5::File file = h5::File::open(path);
  auto weights = read_weights(file, (*vm)["group"].as<std::string>());
  if (const std::string overrides = (*vm)["overrides"].as<std::string>(); !overrides.empty()) {
    for (auto& [name, tensor] : read_weights(file, overrides)) weights[name] = tensor;
  }
  model::ModelOptions base;
  base.heads = file.has_attribute("/", "nhead") ? static_cast<int>(file.int_attribute("/", "nhead"))
                                                : (*vm)["heads"].as<int>();
  base.neighbor_window = file.has_attribute("/", "neighbor_size")
                             ? static_cast<int>(file.int_array_attribute("/", "neighbor_size").at(0))
                             : (*vm)["neighbor-window"].as<int>();
  const model::ModelOptions options_found = model::infer_uniad_options(weights, base, path);
  auto net = model::make_model(options_found);
  model::load_parameters(*net, weights, path);
  const nlohmann::json meta = {{"source", "import"},
                               {"weights_file", path},
                               {"group", (*vm)["group"].as<std::string>()},
                               {"overrides", (*vm)["overrides"].as<std::string>()},
                               {"project_version", project_version()},
                               {"source_revision", source_revision()}};
  const std::string out = (*vm)["out"].as<std::string>();
  model::save_checkpoint(out, *net, meta);
  std::cout << "imported " << weights.size() << " tensors (" << model::parameter_count(*net) << " parameters) from "
            << path << " into " << out << "\nmodel: " << model::to_json(options_found).dump() << "\n";
  return 0;
}

}  // namespace uniad::commands
