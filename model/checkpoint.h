#pragma once
// Model weights by name, and the checkpoint file: the contract between training,
// evaluation and import (layout in docs/model.md, "Checkpoint format").
//
// A checkpoint is a LibTorch archive holding the model options (JSON), the parameters by
// their reference names, provenance (JSON), and an optional "trainer" sub-archive
// (optimizer state, position and random states) that only the trainer reads.
#include <functional>
#include <map>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>
#include <torch/serialize/archive.h>

#include "model/reconstruction.h"

namespace uniad::model {

// The reference's full checkpoints (ModelHelper under DDP) prefix every name with this.
inline constexpr const char* kReferencePrefix = "module.reconstruction.";

// Reference state-dict name -> this project's parameter name (the identity once the DDP
// prefix is removed: the modules are named as the reference names them).
std::string canonical_parameter_name(const std::string& name);

// UniAD options that fit reference weights: channels, hidden and feed-forward sizes, grid,
// layer counts and query mode are read off the tensors' names and shapes; what shapes
// cannot tell (heads, neighbor window, jitter, dropout) comes from `base`.
// `source` names the weights' file in errors.
ModelOptions infer_uniad_options(const std::map<std::string, torch::Tensor>& weights, ModelOptions base,
                                 const std::string& source);

// Copies `weights` into the model's parameters, by name. Every parameter must be present
// with its exact shape and no name may be left over; otherwise a UsageError lists them
// (`source` names where the weights came from).
void load_parameters(ReconstructionNet& model, const std::map<std::string, torch::Tensor>& weights,
                     const std::string& source);

// The model's parameters by name (detached, contiguous, on the CPU).
std::map<std::string, torch::Tensor> named_parameters(const ReconstructionNet& model);

inline constexpr int kCheckpointVersion = 1;

// A checkpoint's bytes: options, meta and the weights (as CPU tensors), plus what `extra`
// adds (the trainer's sub-archives). Without `extra`, the weights-only file a model file holds.
std::string checkpoint_bytes(const ReconstructionNet& model, const nlohmann::json& meta,
                             const std::function<void(torch::serialize::OutputArchive&)>& extra = {});

// Writes a checkpoint atomically (temporary file, fsync, rename). `extra` may add the
// trainer's sub-archives.
void save_checkpoint(const std::string& path, const ReconstructionNet& model, const nlohmann::json& meta,
                     const std::function<void(torch::serialize::OutputArchive&)>& extra = {});

struct Checkpoint {
  std::shared_ptr<ReconstructionNet> model;  // built from the stored options, weights loaded
  nlohmann::json meta;
  std::shared_ptr<torch::serialize::InputArchive> archive;  // for the trainer's sub-archives
};

// Reads a checkpoint onto the CPU (the model too), whichever device's tensors it holds; the
// weights take the model's type (float32) whatever type they were saved in. A missing,
// truncated or foreign file is an InputError naming it.
Checkpoint load_checkpoint(const std::string& path);
// The same from a checkpoint file's bytes (held in a model file); `source` names it in errors.
Checkpoint load_checkpoint_bytes(const std::string& bytes, const std::string& source);

}  // namespace uniad::model
