#pragma once
// Frozen backbones: a TorchScript module that returns a tuple (or list) of feature maps,
// or the built-in random-feature network (the embedded default, no downloads).
//
// A TorchScript file written by scripts/export_backbone.py describes itself in the extra
// file `uniad.json` (architecture, strides and channels, default layers, the input sizes it
// takes, preprocessing, the source of its weights): its default layers are used when none
// are asked for, and an input it cannot take is refused before extraction starts.
//
// Backbones run in evaluation mode under inference mode, and only as deep as the deepest
// selected output: a TorchScript module whose `features` child is a sequence of blocks
// (torchvision style) is run block by block up to the last block needed, after checking on
// the first batch that this gives exactly the module's own outputs.
#include <array>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>
#include <nlohmann/json.hpp>

namespace uniad::feature_cache {

struct BackboneOptions {
  std::string file;            // TorchScript file; empty = the built-in random-feature backbone
  std::string contents;        // the file's bytes, when they come from elsewhere (a model file); `file` names them
  std::vector<int> layers;     // which outputs to use; empty = the backbone's default (strides 4, 8, 16)
  std::uint64_t builtin_seed = 20221128;  // weights of the built-in backbone
};

class Backbone {
 public:
  virtual ~Backbone() = default;
  // images [B, 3, H, W] (normalised, on any device) -> the selected maps, in `layers` order,
  // on the backbone's device.
  virtual std::vector<at::Tensor> forward(const at::Tensor& images) = 0;
  // Moves the weights to `device` (common/device.h); forward() then runs there.
  virtual void to(const c10::Device& device) = 0;
  const c10::Device& device() const { return device_; }
  // Plain words for reports: "MobileNetV2 ... (TorchScript, pretrained?)" or "random-feature backbone ...".
  virtual std::string description() const = 0;
  // True for the built-in random-feature network (reports say so plainly).
  virtual bool random_features() const = 0;
  // Identifies the weights: file content hash, or the built-in design and seed.
  virtual std::string identity() const = 0;
  const std::vector<int>& layers() const { return layers_; }
  // How much of the network runs per batch: built-in stages, or TorchScript `features`
  // blocks (after the first batch); -1 when a TorchScript module runs whole.
  virtual int depth_used() const = 0;
  // The file's own description (`uniad.json`), or null when it has none.
  virtual nlohmann::json metadata() const { return nullptr; }
  // Throws UsageError when the backbone's description rules out this input: a side it
  // cannot take, or another normalisation than the extraction's.
  void check_input(int size, const std::array<float, 3>& mean, const std::array<float, 3>& std) const;

 protected:
  std::vector<int> layers_;
  c10::Device device_ = c10::kCPU;
};

std::unique_ptr<Backbone> load_backbone(const BackboneOptions& options);

// The built-in backbone's contract: four maps at strides 4, 8, 16, 32 with these channels
// (the same as ../shared/weights/mobilenet_v2_imagenet), so layers 0,1,2 give 152 channels.
inline constexpr int kBuiltinChannels[4] = {24, 32, 96, 320};

// Hex xxh64 of a file's bytes ("xxh64:..."), and of bytes in memory (the same for the same bytes).
std::string file_hash(const std::string& path);
std::string bytes_hash(const std::string& bytes);

}  // namespace uniad::feature_cache
