#include "model/options.h"

#include "common/error.h"

namespace uniad::model {

namespace {

void require(bool ok, const std::string& message) {
  if (!ok) throw UsageError("model option " + message);
}

}  // namespace

void ModelOptions::validate() const {
  require(in_channels > 0, "in-channels must be positive");
  require(grid_h > 0 && grid_w > 0, "grid must be positive");
  require(hidden > 0 && hidden % 2 == 0, "hidden must be a positive even number (two positional tables of hidden/2)");
  require(heads > 0 && hidden % heads == 0, "hidden (" + std::to_string(hidden) + ") must be divisible by heads (" +
                                                std::to_string(heads) + ")");
  require(feedforward > 0, "feedforward must be positive");
  require(encoder_layers >= 0 && decoder_layers >= 1, "needs encoder-layers >= 0 and decoder-layers >= 1");
  require(dropout >= 0 && dropout < 1, "dropout must be in [0, 1)");
  require(neighbor_window >= 0 && (neighbor_window == 0 || neighbor_window % 2 == 1),
          "neighbor-window must be 0 (off) or odd");
  // The centre token has the fewest keys outside its window; it must keep at least one.
  const int half = neighbor_window / 2;
  require(neighbor_window == 0 || half < grid_h / 2 || half < grid_w / 2,
          "neighbor-window " + std::to_string(neighbor_window) + " blocks every token of a " + std::to_string(grid_h) +
              "x" + std::to_string(grid_w) + " grid");
  require(jitter_scale >= 0, "jitter-scale must be >= 0");
  require(jitter_prob >= 0 && jitter_prob <= 1, "jitter-prob must be in [0, 1]");
  require(baseline_hidden > 0 && baseline_layers >= 2, "baseline needs hidden > 0 and at least 2 layers");
  require(bank_neighborhood >= 1 && bank_neighborhood % 2 == 1, "bank-neighborhood must be odd (1 = off)");
  require(coreset_ratio > 0 && coreset_ratio <= 1, "coreset-ratio must be in (0, 1]");
  require(coreset_projection >= 0, "coreset-projection must be >= 0 (0 = none)");
  require(bank_size >= 0, "bank_size must be >= 0");
}

std::string to_string(ModelKind kind) {
  switch (kind) {
    case ModelKind::kUniAD: return "uniad";
    case ModelKind::kMlp: return "mlp";
    case ModelKind::kCnn: return "cnn";
    case ModelKind::kMemoryBank: return "memory-bank";
  }
  return "?";
}

std::string to_string(CoresetMode mode) {
  switch (mode) {
    case CoresetMode::kNone: return "none";
    case CoresetMode::kRandom: return "random";
    case CoresetMode::kGreedy: return "greedy";
  }
  return "?";
}

CoresetMode parse_coreset_mode(const std::string& text) {
  for (CoresetMode m : {CoresetMode::kNone, CoresetMode::kRandom, CoresetMode::kGreedy})
    if (text == to_string(m)) return m;
  throw UsageError("--coreset must be none, random or greedy, not '" + text + "'");
}

std::string to_string(QueryMode mode) {
  switch (mode) {
    case QueryMode::kLayerwise: return "layerwise";
    case QueryMode::kFirstLayer: return "first";
    case QueryMode::kNone: return "none";
  }
  return "?";
}

ModelKind parse_model_kind(const std::string& text) {
  if (text == "uniad") return ModelKind::kUniAD;
  if (text == "mlp") return ModelKind::kMlp;
  if (text == "cnn") return ModelKind::kCnn;
  if (text == "memory-bank") return ModelKind::kMemoryBank;
  throw UsageError("--model must be uniad, mlp, cnn or memory-bank, not '" + text + "'");
}

QueryMode parse_query_mode(const std::string& text) {
  if (text == "layerwise") return QueryMode::kLayerwise;
  if (text == "first") return QueryMode::kFirstLayer;
  if (text == "none") return QueryMode::kNone;
  throw UsageError("--query-mode must be layerwise, first or none, not '" + text + "'");
}

nlohmann::ordered_json to_json(const ModelOptions& o) {
  return {{"kind", to_string(o.kind)},
          {"in_channels", o.in_channels},
          {"grid_h", o.grid_h},
          {"grid_w", o.grid_w},
          {"hidden", o.hidden},
          {"heads", o.heads},
          {"feedforward", o.feedforward},
          {"encoder_layers", o.encoder_layers},
          {"decoder_layers", o.decoder_layers},
          {"dropout", o.dropout},
          {"layer_norm_eps", o.layer_norm_eps},
          {"query_mode", to_string(o.query_mode)},
          {"neighbor_window", o.neighbor_window},
          {"mask_encoder", o.mask_encoder},
          {"mask_decoder_a", o.mask_decoder_a},
          {"mask_decoder_b", o.mask_decoder_b},
          {"jitter_scale", o.jitter_scale},
          {"jitter_prob", o.jitter_prob},
          {"identical_layer_init", o.identical_layer_init},
          {"baseline_hidden", o.baseline_hidden},
          {"baseline_layers", o.baseline_layers},
          {"bank_neighborhood", o.bank_neighborhood},
          {"coreset", to_string(o.coreset)},
          {"coreset_ratio", o.coreset_ratio},
          {"coreset_projection", o.coreset_projection},
          {"bank_size", o.bank_size}};
}

ModelOptions model_options_from_json(const nlohmann::json& json) {
  ModelOptions o;
  const nlohmann::ordered_json known = to_json(o);
  for (const auto& [key, value] : json.items()) {
    if (!known.contains(key)) throw UsageError("unknown model option '" + key + "' (written by a newer version?)");
  }
  auto get = [&](const char* key, auto& field) {
    if (json.contains(key)) field = json.at(key).get<std::decay_t<decltype(field)>>();
  };
  if (json.contains("kind")) o.kind = parse_model_kind(json.at("kind").get<std::string>());
  if (json.contains("query_mode")) o.query_mode = parse_query_mode(json.at("query_mode").get<std::string>());
  get("in_channels", o.in_channels);
  get("grid_h", o.grid_h);
  get("grid_w", o.grid_w);
  get("hidden", o.hidden);
  get("heads", o.heads);
  get("feedforward", o.feedforward);
  get("encoder_layers", o.encoder_layers);
  get("decoder_layers", o.decoder_layers);
  get("dropout", o.dropout);
  get("layer_norm_eps", o.layer_norm_eps);
  get("neighbor_window", o.neighbor_window);
  get("mask_encoder", o.mask_encoder);
  get("mask_decoder_a", o.mask_decoder_a);
  get("mask_decoder_b", o.mask_decoder_b);
  get("jitter_scale", o.jitter_scale);
  get("jitter_prob", o.jitter_prob);
  get("identical_layer_init", o.identical_layer_init);
  get("baseline_hidden", o.baseline_hidden);
  get("baseline_layers", o.baseline_layers);
  get("bank_neighborhood", o.bank_neighborhood);
  if (json.contains("coreset")) o.coreset = parse_coreset_mode(json.at("coreset").get<std::string>());
  get("coreset_ratio", o.coreset_ratio);
  get("coreset_projection", o.coreset_projection);
  get("bank_size", o.bank_size);
  return o;
}

}  // namespace uniad::model
