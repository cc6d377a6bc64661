#include "model/checkpoint.h"

#include <filesystem>
#include <set>
#include <sstream>

#include <torch/serialize.h>

#include "common/error.h"
#include "common/fs.h"

namespace uniad::model {

std::string canonical_parameter_name(const std::string& name) {
  const std::string prefix = kReferencePrefix;
  return name.rfind(prefix, 0) == 0 ? name.substr(prefix.size()) : name;
}

ModelOptions infer_uniad_options(const std::map<std::string, torch::Tensor>& weights, ModelOptions o,
                                 const std::string& source) {
  std::map<std::string, torch::Tensor> w;
  for (const auto& [name, tensor] : weights) w[canonical_parameter_name(name)] = tensor;
  auto get = [&](const std::string& name) -> const torch::Tensor& {
    const auto it = w.find(name);
    if (it == w.end()) throw InputError(source, "weights lack '" + name + "'; not a UniAD state dict?");
    return it->second;
  };
  o.kind = ModelKind::kUniAD;
  o.hidden = static_cast<int>(get("input_proj.weight").size(0));
  o.in_channels = static_cast<int>(get("input_proj.weight").size(1));
  o.grid_h = static_cast<int>(get("pos_embed.row_embed.weight").size(0));
  o.grid_w = static_cast<int>(get("pos_embed.col_embed.weight").size(0));
  o.feedforward = static_cast<int>(get("transformer.decoder.layers.0.linear1.weight").size(0));
  auto count_layers = [&](const std::string& stack) {
    int n = 0;
    while (w.count("transformer." + stack + ".layers." + std::to_string(n) + ".linear1.weight")) ++n;
    return n;
  };
  o.encoder_layers = count_layers("encoder");
  o.decoder_layers = count_layers("decoder");
  int tables = 0;
  for (int i = 0; i < o.decoder_layers; ++i)
    tables += w.count("transformer.decoder.layers." + std::to_string(i) + ".learned_embed.weight") > 0;
  o.query_mode = tables == 0 ? QueryMode::kNone : tables == 1 && o.decoder_layers > 1 ? QueryMode::kFirstLayer
                                                                                       : QueryMode::kLayerwise;
  o.validate();
  return o;
}

void load_parameters(ReconstructionNet& model, const std::map<std::string, torch::Tensor>& weights,
                     const std::string& source) {
  std::map<std::string, torch::Tensor> by_name;
  for (const auto& [name, tensor] : weights) by_name[canonical_parameter_name(name)] = tensor;
  std::vector<std::string> missing, wrong_shape, unexpected;
  std::set<std::string> model_names;
  torch::NoGradGuard no_grad;
  for (auto& item : model.named_parameters()) {
    model_names.insert(item.key());
    const auto it = by_name.find(item.key());
    if (it == by_name.end()) {
      missing.push_back(item.key());
    } else if (it->second.sizes() != item.value().sizes()) {
      wrong_shape.push_back(item.key() + " (model " + c10::str(item.value().sizes()) + ", file " +
                            c10::str(it->second.sizes()) + ")");
    } else {
      item.value().copy_(it->second);
    }
  }
  for (const auto& [name, tensor] : by_name)
    if (!model_names.count(name)) unexpected.push_back(name);
  auto list = [](const std::vector<std::string>& names) {
    std::string out;
    for (std::size_t i = 0; i < names.size() && i < 5; ++i) out += (i ? ", " : "") + names[i];
    if (names.size() > 5) out += ", ... (" + std::to_string(names.size()) + " in all)";
    return out;
  };
  std::string problems;
  if (!missing.empty()) problems += "\n  missing: " + list(missing);
  if (!wrong_shape.empty()) problems += "\n  wrong shape: " + list(wrong_shape);
  if (!unexpected.empty()) problems += "\n  not in the model: " + list(unexpected);
  if (!problems.empty()) {
    throw InputError(source, "weights do not fit the model (" + to_string(model.options().kind) +
                                 "; are the model options the same as the weights'?):" + problems);
  }
}

std::map<std::string, torch::Tensor> named_parameters(const ReconstructionNet& model) {
  std::map<std::string, torch::Tensor> out;
  for (const auto& item : model.named_parameters()) out[item.key()] = item.value().detach().cpu().contiguous();
  return out;
}

std::string checkpoint_bytes(const ReconstructionNet& model, const nlohmann::json& meta,
                             const std::function<void(torch::serialize::OutputArchive&)>& extra) {
  torch::serialize::OutputArchive archive;
  archive.write("format", c10::IValue(std::string("uniad-checkpoint")));
  archive.write("format_version", c10::IValue(int64_t(kCheckpointVersion)));
  archive.write("model_options", c10::IValue(to_json(model.options()).dump()));
  archive.write("meta", c10::IValue(meta.dump()));
  torch::serialize::OutputArchive weights;
  for (const auto& [name, tensor] : named_parameters(model)) weights.write(name, tensor);  // CPU copies
  archive.write("model", weights);
  if (extra) extra(archive);
  std::ostringstream bytes;
  archive.save_to(bytes);
  return bytes.str();
}

void save_checkpoint(const std::string& path, const ReconstructionNet& model, const nlohmann::json& meta,
                     const std::function<void(torch::serialize::OutputArchive&)>& extra) {
  if (const auto dir = std::filesystem::path(path).parent_path(); !dir.empty()) std::filesystem::create_directories(dir);
  // Serialised in memory first: LibTorch's file writer throws from its destructor when the
  // disk fills up (which ends the process); our own write reports it and cleans up.
  atomic_write_bytes(path, checkpoint_bytes(model, meta, extra));
}

namespace {

// Every tensor is read onto the CPU, whatever device wrote it: a run trained on a GPU is
// evaluated, exported and predicted on CPU nodes, and the caller moves what it needs.
const torch::Device kLoadDevice(torch::kCPU);

// Reads a checkpoint from an opened archive; `path` names it in errors.
Checkpoint read_checkpoint(std::shared_ptr<torch::serialize::InputArchive> archive, const std::string& path) {
  c10::IValue format, version, options_json, meta_json;
  if (!archive->try_read("format", format) || !format.isString() ||
      format.toStringRef() != "uniad-checkpoint") {
    throw InputError(path, "not a uniad checkpoint (no 'format' record)");
  }
  archive->read("format_version", version);
  if (version.toInt() != kCheckpointVersion) {
    throw InputError(path, "checkpoint format version " + std::to_string(version.toInt()) + ", this build reads " +
                               std::to_string(kCheckpointVersion));
  }
  archive->read("model_options", options_json);
  archive->read("meta", meta_json);
  Checkpoint checkpoint;
  checkpoint.meta = nlohmann::json::parse(meta_json.toStringRef());
  checkpoint.model = make_model(model_options_from_json(nlohmann::json::parse(options_json.toStringRef())));
  torch::serialize::InputArchive weights;
  archive->read("model", weights);
  std::map<std::string, torch::Tensor> tensors;
  for (const auto& item : checkpoint.model->named_parameters()) {
    torch::Tensor t;
    if (weights.try_read(item.key(), t)) tensors[item.key()] = t;
  }
  load_parameters(*checkpoint.model, tensors, path);
  checkpoint.archive = archive;
  return checkpoint;
}

}  // namespace

Checkpoint load_checkpoint(const std::string& path) {
  if (!std::filesystem::exists(path)) throw InputError(path, "checkpoint does not exist");
  auto archive = std::make_shared<torch::serialize::InputArchive>();
  try {
    archive->load_from(path, kLoadDevice);
  } catch (const c10::Error&) {
    throw InputError(path, "not a readable checkpoint (truncated, damaged, or not written by uniad)");
  }
  return read_checkpoint(archive, path);
}

Checkpoint load_checkpoint_bytes(const std::string& bytes, const std::string& source) {
  auto archive = std::make_shared<torch::serialize::InputArchive>();
  try {
    archive->load_from(bytes.data(), bytes.size(), kLoadDevice);
  } catch (const c10::Error&) {
    throw InputError(source, "holds an unreadable checkpoint (truncated or damaged)");
  }
  return read_checkpoint(archive, source);
}

}  // namespace uniad::model
