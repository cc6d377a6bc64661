#include "feature_cache/backbone.h"

#include <cmath>
#include <fstream>
#include <sstream>

#include <ATen/ATen.h>
#include <fmt/core.h>
#include <spdlog/spdlog.h>
#include <torch/script.h>
#include <xxhash.h>

#include "common/error.h"

namespace uniad::feature_cache {

std::string bytes_hash(const std::string& bytes) {
  return fmt::format("xxh64:{:016x}", XXH64(bytes.data(), bytes.size(), 0));
}

std::string file_hash(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(path, "cannot read the file");
  XXH64_state_t* state = XXH64_createState();
  XXH64_reset(state, 0);
  std::vector<char> buffer(1 << 20);
  while (in) {
    in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
    XXH64_update(state, buffer.data(), static_cast<std::size_t>(in.gcount()));
  }
  const auto digest = XXH64_digest(state);
  XXH64_freeState(state);
  return fmt::format("xxh64:{:016x}", digest);
}

namespace {

std::vector<int> default_layers() { return {0, 1, 2}; }

void check_layers(const std::vector<int>& layers, int available, const std::string& where) {
  for (int l : layers) {
    if (l < 0 || l >= available) {
      throw UsageError(fmt::format("--layers asks for output {} but {} returns {} outputs (0..{})", l, where,
                                   available, available - 1));
    }
  }
}

// ---------------------------------------------------------------------------------------
// The built-in random-feature backbone: 3x3 convolutions with ReLU, each followed by 2x2
// average pooling, He-initialised from a fixed seed. Pooling (rather than strided
// convolution) keeps the maps smooth, so the bilinear resize to the grid does not alias
// away small defects. Honest about what it is: features, not pretrained knowledge.

class BuiltinBackbone : public Backbone {
 public:
  explicit BuiltinBackbone(const BackboneOptions& options) : seed_(options.builtin_seed) {
    layers_ = options.layers.empty() ? default_layers() : options.layers;
    check_layers(layers_, 4, "the built-in backbone");
    at::Generator generator = at::detail::createCPUGenerator(seed_);
    // (in, out) per convolution; each is followed by ReLU and a 2x2 average pool.
    const std::vector<std::vector<std::array<int, 2>>> stages = {
        {{3, 16}, {16, 24}},  // stride 4
        {{24, 32}},           // stride 8
        {{32, 96}},           // stride 16
        {{96, 320}},          // stride 32
    };
    for (const auto& stage : stages) {
      std::vector<Conv> convs;
      for (const auto& [in, out] : stage) {
        const double std = std::sqrt(2.0 / (in * 9));  // He (fan-in, ReLU)
        convs.push_back({at::normal(0.0, std, {out, in, 3, 3}, generator), at::zeros({out})});
      }
      stages_.push_back(std::move(convs));
    }
  }

  std::vector<at::Tensor> forward(const at::Tensor& images) override {
    const int deepest = *std::max_element(layers_.begin(), layers_.end());
    std::vector<at::Tensor> outputs;
    at::Tensor x = images.to(device_);
    for (int s = 0; s <= deepest; ++s) {  // only as deep as needed
      for (const Conv& conv : stages_[s]) x = at::avg_pool2d(at::relu(at::conv2d(x, conv.weight, conv.bias, 1, 1)), 2);
      outputs.push_back(x);
    }
    std::vector<at::Tensor> selected;
    for (int l : layers_) selected.push_back(outputs[l]);
    return selected;
  }

  void to(const c10::Device& device) override {
    device_ = device;
    for (auto& stage : stages_)
      for (Conv& conv : stage) conv.weight = conv.weight.to(device), conv.bias = conv.bias.to(device);
  }

  std::string description() const override {
    return fmt::format("random-feature backbone (built-in, fixed random weights, seed {}; NOT pretrained)", seed_);
  }
  bool random_features() const override { return true; }
  std::string identity() const override { return fmt::format("builtin-random-conv-pool-v2:seed={}", seed_); }
  int depth_used() const override { return *std::max_element(layers_.begin(), layers_.end()) + 1; }

 private:
  struct Conv {
    at::Tensor weight, bias;
  };
  std::uint64_t seed_;
  std::vector<std::vector<Conv>> stages_;
};

// ---------------------------------------------------------------------------------------

class TorchScriptBackbone : public Backbone {
 public:
  explicit TorchScriptBackbone(const BackboneOptions& options) : file_(options.file) {
    torch::jit::ExtraFilesMap extra{{"uniad.json", ""}};
    try {
      if (options.contents.empty()) {
        module_ = torch::jit::load(file_, c10::nullopt, extra);
      } else {
        std::istringstream in(options.contents);
        module_ = torch::jit::load(in, c10::nullopt, extra);
      }
    } catch (const c10::Error& e) {
      throw InputError(file_, "cannot load as a TorchScript module (torch.jit.save it first)");
    }
    module_.eval();
    hash_ = options.contents.empty() ? file_hash(file_) : bytes_hash(options.contents);
    if (!extra["uniad.json"].empty()) {
      metadata_ = nlohmann::json::parse(extra["uniad.json"], nullptr, /*allow_exceptions=*/false);
      if (!metadata_.is_object() || metadata_.value("format", "") != "uniad-backbone") {
        throw InputError(file_, "its uniad.json is not a valid backbone description (format uniad-backbone)");
      }
      if (metadata_.value("format_version", 0) > 1) {
        throw InputError(file_, "its description (uniad.json) is format version " +
                                    std::to_string(metadata_.value("format_version", 0)) +
                                    ", newer than this uniad reads (1); update uniad");
      }
    }
    layers_ = !options.layers.empty() ? options.layers
              : metadata_.is_object()  ? metadata_.at("default_layers").get<std::vector<int>>()
                                       : default_layers();
    if (metadata_.is_object()) check_layers(layers_, static_cast<int>(metadata_.at("outputs").size()), file_);
    for (const auto& child : module_.named_children()) {
      if (child.name != "features") continue;
      for (const auto& block : child.value.named_children()) blocks_.push_back(block.value);
    }
  }

  std::vector<at::Tensor> forward(const at::Tensor& images) override {
    const at::Tensor x = images.to(device_);
    if (!verified_) return verify_and_forward(x);
    if (!stage_ends_.empty()) return run_blocks(x);
    return select(run_module(x));
  }

  void to(const c10::Device& device) override {
    device_ = device;
    module_.to(device);
  }

  std::string description() const override {
    if (!metadata_.is_object()) return fmt::format("TorchScript backbone {} ({})", file_, hash_);
    const auto& weights = metadata_.at("weights");
    const std::string source = weights.value("kind", "") == "random"
                                   ? fmt::format("random weights, seed {}", weights.value("seed", 0))
                                   : "weights " + weights.value("file", std::string("?"));
    return fmt::format("TorchScript backbone {} ({}, {}; {})", file_, metadata_.value("architecture", "?"), source, hash_);
  }
  nlohmann::json metadata() const override { return metadata_; }
  int depth_used() const override {
    return stage_ends_.empty() ? -1 : static_cast<int>(*std::max_element(stage_ends_.begin(), stage_ends_.end())) + 1;
  }
  bool random_features() const override { return false; }
  std::string identity() const override { return hash_; }

 private:
  std::vector<at::Tensor> run_module(const at::Tensor& images) {
    const c10::IValue out = module_.forward({images});
    std::vector<at::Tensor> maps;
    if (out.isTuple()) {
      for (const auto& v : out.toTupleRef().elements()) maps.push_back(v.toTensor());
    } else if (out.isTensorList()) {
      for (const auto& t : out.toTensorVector()) maps.push_back(t);
    } else if (out.isList()) {
      for (const auto& v : out.toListRef()) maps.push_back(v.toTensor());
    } else {
      throw InputError(file_, "the module must return a tuple or list of feature maps");
    }
    check_layers(layers_, static_cast<int>(maps.size()), file_);
    return maps;
  }

  std::vector<at::Tensor> select(const std::vector<at::Tensor>& maps) const {
    std::vector<at::Tensor> selected;
    for (int l : layers_) selected.push_back(maps[l]);
    return selected;
  }

  // Runs blocks 0..last needed, taking the selected outputs where they end.
  std::vector<at::Tensor> run_blocks(const at::Tensor& images) {
    std::vector<at::Tensor> selected(layers_.size());
    at::Tensor x = images;
    const std::size_t last = *std::max_element(stage_ends_.begin(), stage_ends_.end());
    for (std::size_t b = 0; b <= last; ++b) {
      x = blocks_[b].forward({x}).toTensor();
      for (std::size_t k = 0; k < layers_.size(); ++k)
        if (stage_ends_[k] == b) selected[k] = x;
    }
    return selected;
  }

  // First batch: run the module whole and block by block on a noise image; use the blocks
  // from now on only if every selected output appears, bit for bit, as some block's output.
  // Noise, not the caller's images: on a blank image (extraction's channel probe) a randomly
  // initialised network gives all-zero maps, and the stem's output would "match" a later stage.
  std::vector<at::Tensor> verify_and_forward(const at::Tensor& images) {
    verified_ = true;
    if (blocks_.empty()) return select(run_module(images));
    at::Generator generator = at::detail::createCPUGenerator(0x6E6F697365ull /* "noise" */);
    const at::Tensor probe =
        at::randn({1, images.size(1), images.size(2), images.size(3)}, generator, images.options().device(at::kCPU))
            .to(device_);
    const std::vector<at::Tensor> expected = select(run_module(probe));
    std::vector<std::size_t> ends(layers_.size(), SIZE_MAX);
    at::Tensor x = probe;
    try {
      for (std::size_t b = 0; b < blocks_.size(); ++b) {
        x = blocks_[b].forward({x}).toTensor();
        for (std::size_t k = 0; k < expected.size(); ++k)
          if (ends[k] == SIZE_MAX && x.sizes() == expected[k].sizes() && at::equal(x, expected[k])) ends[k] = b;
        if (std::find(ends.begin(), ends.end(), SIZE_MAX) == ends.end()) break;  // deeper blocks not needed
      }
    } catch (const c10::Error&) {
      return select(run_module(images));  // blocks are not a plain sequence; keep running the whole module
    }
    if (std::find(ends.begin(), ends.end(), SIZE_MAX) == ends.end()) {
      stage_ends_ = ends;
      spdlog::debug("backbone: running blocks 0..{} of {} (the rest is not needed for layers)",
                    *std::max_element(ends.begin(), ends.end()), blocks_.size() - 1);
    }
    return select(run_module(images));
  }

  std::string file_, hash_;
  nlohmann::json metadata_;  // uniad.json, or null
  torch::jit::Module module_;
  std::vector<torch::jit::Module> blocks_;  // the `features` child's blocks, if any
  std::vector<std::size_t> stage_ends_;     // per selected layer, the block it ends at
  bool verified_ = false;
};

}  // namespace

void Backbone::check_input(int size, const std::array<float, 3>& mean, const std::array<float, 3>& std) const {
  const nlohmann::json m = metadata();
  if (!m.is_object()) return;
  const std::string name = m.value("architecture", "this backbone");
  const auto& input = m.at("input");
  const int multiple = input.value("multiple_of", 1), smallest = input.value("min_size", 1);
  if (size % multiple != 0 || size < smallest) {
    throw UsageError(fmt::format("--image-size {}: {} takes sides that are multiples of {} from {} (e.g. {}, {})", size,
                                 name, multiple, smallest, input.value("reference_size", 224),
                                 input.value("reference_size", 224) + multiple));
  }
  const auto& pre = m.at("preprocessing");
  const auto wanted_mean = pre.at("mean").get<std::vector<float>>(), wanted_std = pre.at("std").get<std::vector<float>>();
  for (int c = 0; c < 3; ++c) {
    if (std::abs(wanted_mean.at(c) - mean[c]) > 1e-6f || std::abs(wanted_std.at(c) - std[c]) > 1e-6f) {
      throw UsageError(fmt::format("{} expects inputs normalised with mean {} and std {}; uniad extract normalises with "
                                   "ImageNet's (0.485 0.456 0.406 / 0.229 0.224 0.225)",
                                   name, pre.at("mean").dump(), pre.at("std").dump()));
    }
  }
}

std::unique_ptr<Backbone> load_backbone(const BackboneOptions& options) {
  if (options.file.empty()) return std::make_unique<BuiltinBackbone>(options);
  return std::make_unique<TorchScriptBackbone>(options);
}

}  // namespace uniad::feature_cache
