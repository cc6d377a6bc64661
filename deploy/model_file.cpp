#include "deploy/model_file.h"

#include <cstring>
#include <filesystem>
#include <sstream>

#include <ATen/ATen.h>
#include <torch/serialize/archive.h>

#include "common/error.h"
#include "common/fs.h"

namespace uniad::deploy {

namespace {

at::Tensor bytes_tensor(const std::string& bytes) {
  at::Tensor t = at::empty({static_cast<std::int64_t>(bytes.size())}, at::kByte);
  if (!bytes.empty()) std::memcpy(t.data_ptr(), bytes.data(), bytes.size());
  return t;
}

std::string tensor_bytes(const at::Tensor& t) {
  const at::Tensor c = t.contiguous();
  return std::string(static_cast<const char*>(c.data_ptr()), static_cast<std::size_t>(c.numel()));
}

}  // namespace

void write_model_file(const std::string& path, const ModelFile& file) {
  torch::serialize::OutputArchive archive;
  archive.write("format", c10::IValue(std::string("uniad-model")));
  archive.write("format_version", c10::IValue(int64_t(kModelFileVersion)));
  archive.write("metadata", c10::IValue(file.metadata.dump()));
  if (!file.backbone.empty()) archive.write("backbone", bytes_tensor(file.backbone));
  for (const auto& [key, bytes] : file.models) archive.write("model." + key, bytes_tensor(bytes));
  std::ostringstream out;
  archive.save_to(out);
  if (const auto dir = std::filesystem::path(path).parent_path(); !dir.empty()) std::filesystem::create_directories(dir);
  atomic_write_bytes(path, out.str());
}

ModelFile read_model_file(const std::string& path) {
  if (!std::filesystem::exists(path)) throw InputError(path, "model file does not exist (write one with `uniad export`)");
  torch::serialize::InputArchive archive;
  try {
    archive.load_from(path, torch::Device(torch::kCPU));  // whatever device wrote it
  } catch (const c10::Error&) {
    throw InputError(path, "not a readable model file (truncated, damaged, or not written by `uniad export`)");
  }
  c10::IValue format, version, metadata;
  if (!archive.try_read("format", format) || !format.isString() || format.toStringRef() != "uniad-model") {
    throw InputError(path, "not a uniad model file (no 'format' record); `uniad export` writes them");
  }
  archive.read("format_version", version);
  if (version.toInt() > kModelFileVersion) {
    throw InputError(path, "model file format version " + std::to_string(version.toInt()) +
                               " is newer than this uniad reads (" + std::to_string(kModelFileVersion) + "); update uniad");
  }
  archive.read("metadata", metadata);
  ModelFile file;
  try {
    file.metadata = nlohmann::ordered_json::parse(metadata.toStringRef());
    at::Tensor t;
    if (archive.try_read("backbone", t)) file.backbone = tensor_bytes(t);
    for (const auto& key : file.metadata.at("model_keys")) {
      if (!archive.try_read("model." + key.get<std::string>(), t)) {
        throw InputError(path, "is missing the model '" + key.get<std::string>() + "' its metadata lists (damaged?)");
      }
      file.models[key.get<std::string>()] = tensor_bytes(t);
    }
  } catch (const nlohmann::json::exception& e) {
    throw InputError(path, std::string("has unreadable metadata: ") + e.what());
  }
  return file;
}

}  // namespace uniad::deploy
