#include "launcher/model_options.h"

namespace uniad::cli {

void add_model_options(po::options_description& options, model::ModelOptions& o) {
  po::options_description group("model options (defaults: the UniAD reference)");
  group.add_options()
      ("model", po::value<std::string>()->default_value(to_string(o.kind)), "network: uniad | mlp | cnn | memory-bank (the nearest-neighbour reference)")
      ("hidden", po::value<int>(&o.hidden)->default_value(o.hidden), "transformer width")
      ("heads", po::value<int>(&o.heads)->default_value(o.heads), "attention heads")
      ("feedforward", po::value<int>(&o.feedforward)->default_value(o.feedforward), "feed-forward width")
      ("encoder-layers", po::value<int>(&o.encoder_layers)->default_value(o.encoder_layers), "encoder layers")
      ("decoder-layers", po::value<int>(&o.decoder_layers)->default_value(o.decoder_layers), "decoder layers")
      ("dropout", po::value<double>(&o.dropout)->default_value(o.dropout, "0.1"), "dropout probability")
      ("query-mode", po::value<std::string>()->default_value(to_string(o.query_mode)),
       "learned queries: layerwise | first (first decoder layer only) | none")
      ("neighbor-window", po::value<int>(&o.neighbor_window)->default_value(o.neighbor_window),
       "neighbor mask window (odd; 0 = no mask)")
      ("mask-encoder", po::value<bool>(&o.mask_encoder)->default_value(o.mask_encoder), "mask the encoder self-attention")
      ("mask-decoder-a", po::value<bool>(&o.mask_decoder_a)->default_value(o.mask_decoder_a), "mask decoder attention A")
      ("mask-decoder-b", po::value<bool>(&o.mask_decoder_b)->default_value(o.mask_decoder_b), "mask decoder attention B")
      ("jitter-scale", po::value<double>(&o.jitter_scale)->default_value(o.jitter_scale, "20"), "feature jitter scale (0 = off)")
      ("jitter-prob", po::value<double>(&o.jitter_prob)->default_value(o.jitter_prob, "1"), "probability a training step jitters")
      ("baseline-hidden", po::value<int>(&o.baseline_hidden)->default_value(o.baseline_hidden), "MLP/CNN baseline width")
      ("baseline-layers", po::value<int>(&o.baseline_layers)->default_value(o.baseline_layers), "MLP baseline layers")
      ("bank-neighborhood", po::value<int>(&o.bank_neighborhood)->default_value(o.bank_neighborhood),
       "memory bank: average features over this k x k neighbourhood before matching (odd; 1 = off)")
      ("coreset", po::value<std::string>()->default_value(to_string(o.coreset)),
       "memory bank: keep all training patches (none), a random subset, or a greedy k-center coreset")
      ("coreset-ratio", po::value<double>(&o.coreset_ratio)->default_value(o.coreset_ratio, "0.1"),
       "memory bank: fraction of the training patches kept by random or greedy")
      ("coreset-projection", po::value<int>(&o.coreset_projection)->default_value(o.coreset_projection),
       "memory bank, greedy: random projection to this many dimensions for the distances (0 = none)");
  options.add(group);
}

void finish_model_options(const po::variables_map& vm, model::ModelOptions& o) {
  o.kind = model::parse_model_kind(vm["model"].as<std::string>());
  o.query_mode = model::parse_query_mode(vm["query-mode"].as<std::string>());
  o.coreset = model::parse_coreset_mode(vm["coreset"].as<std::string>());
}

}  // namespace uniad::cli
