#pragma once
// The portable model file (`uniad export`, read by `uniad predict`): everything inference
// needs in one file, so a trained run can leave the machine it was trained on.
//
// A LibTorch archive with
//   format = "uniad-model", format_version = 1
//   metadata       JSON: classes, setting, image size and normalisation, backbone (layers,
//                  grid, identity, its uniad.json), image-score rule, map options, decision
//                  thresholds (per class and one for all classes, with the set they were
//                  chosen on), the map range for pictures, provenance and metrics at export
//   backbone       the TorchScript file's bytes (absent for the built-in backbone)
//   model.<key>    each reconstruction model's checkpoint bytes ("all" for the unified
//                  setting, the class name for the separate one)
// A file from a newer format version, or a damaged one, is refused with an InputError.
#include <map>
#include <string>

#include <nlohmann/json.hpp>

namespace uniad::deploy {

inline constexpr int kModelFileVersion = 1;

struct ModelFile {
  nlohmann::ordered_json metadata;
  std::string backbone;                       // TorchScript bytes; empty = the built-in backbone
  std::map<std::string, std::string> models;  // key -> checkpoint bytes
};

// Writes atomically (temporary file, fsync, rename); an OutputError names the file.
void write_model_file(const std::string& path, const ModelFile& file);
ModelFile read_model_file(const std::string& path);

}  // namespace uniad::deploy
