#pragma once
// Options of the reconstruction networks, with the UniAD reference defaults
// (../shared/docs/uniad-spec.md). Every value can be changed for sweeps, and each of the
// three ideas that stop the "identical shortcut" can be switched off for ablations:
//   * query_mode      layer-wise learned queries | first decoder layer only | none
//   * neighbor_window the neighbor mask (0 = off) and the attentions it applies to
//   * jitter_scale    feature jittering in training (0 = off)
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

namespace uniad::model {

enum class ModelKind { kUniAD, kMlp, kCnn, kMemoryBank };
enum class QueryMode { kLayerwise, kFirstLayer, kNone };
// How the memory bank keeps a subset of the training patches.
enum class CoresetMode { kNone, kRandom, kGreedy };

struct ModelOptions {
  ModelKind kind = ModelKind::kUniAD;

  // Input features: channels and the token grid (rows x columns).
  int in_channels = 272;
  int grid_h = 14;
  int grid_w = 14;

  // Transformer (UniAD) sizes.
  int hidden = 256;
  int heads = 8;
  int feedforward = 1024;
  int encoder_layers = 4;
  int decoder_layers = 4;
  double dropout = 0.1;
  double layer_norm_eps = 1e-5;

  // The three ideas.
  QueryMode query_mode = QueryMode::kLayerwise;
  int neighbor_window = 7;  // odd; a token may not attend within this window; 0 = no mask
  bool mask_encoder = true;    // encoder self-attention
  bool mask_decoder_a = true;  // decoder attention A (learned query -> encoder output)
  bool mask_decoder_b = true;  // decoder attention B (-> previous decoder output)
  double jitter_scale = 20.0;  // noise std per element = scale * ||x|| / C; 0 = off
  double jitter_prob = 1.0;    // probability that a training forward pass jitters

  // The reference builds layers as copies of one prototype: attention input projections
  // and query tables start identical across layers. Kept by default for fidelity.
  bool identical_layer_init = true;

  // Baselines (MLP, CNN): width and number of layers.
  int baseline_hidden = 256;
  int baseline_layers = 3;

  // The nearest-neighbour reference (PatchCore-style memory bank, model/memory_bank.h).
  int bank_neighborhood = 3;           // local average of features over k x k before matching (1 = off)
  CoresetMode coreset = CoresetMode::kNone;
  double coreset_ratio = 0.1;          // fraction of the training patches kept (random, greedy)
  int coreset_projection = 128;        // greedy: random projection to this many dimensions (0 = none)
  std::int64_t bank_size = 0;          // patches in the fitted bank (set by fitting; 0 = not fitted)

  // Throws UsageError naming the first option that is out of range.
  void validate() const;
};

std::string to_string(ModelKind kind);
std::string to_string(QueryMode mode);
ModelKind parse_model_kind(const std::string& text);   // "uniad" | "mlp" | "cnn" | "memory-bank"
std::string to_string(CoresetMode mode);
CoresetMode parse_coreset_mode(const std::string& text);  // "none" | "random" | "greedy"
QueryMode parse_query_mode(const std::string& text);   // "layerwise" | "first" | "none"

nlohmann::ordered_json to_json(const ModelOptions& options);
// Missing keys keep their defaults; unknown keys are an error (a checkpoint from a newer version).
ModelOptions model_options_from_json(const nlohmann::json& json);

}  // namespace uniad::model
