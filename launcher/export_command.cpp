// `uniad export`: one portable model file from a trained run (deploy/export.h assembles it).
#include <iostream>

#include <fmt/core.h>
#include <spdlog/spdlog.h>

#include "common/device.h"
#include "deploy/export.h"
#include "eval/evaluate.h"
#include "launcher/cli.h"
#include "launcher/command_options.h"
#include "launcher/commands.h"
#include "trainer/run_models.h"

namespace uniad::commands {

namespace po = cli::po;

int export_model(int argc, char** argv) {
  const cli::Command command{
      "export", "uniad export --run RUN --cache CACHE.h5 --out MODEL.uniad [--backbone FILE] [--image-score ...]",
      "Writes one portable model file for `uniad predict`: the backbone (the cache's; give its TorchScript file with\n"
      "--backbone), the run's reconstruction model(s), preprocessing, the image-score rule, and decision thresholds\n"
      "chosen at the image F1-max on the cache's test split (per class, and one for all classes), with the\n"
      "metrics and provenance at export. The run is evaluated on the cache here to choose them."};
  eval::EvalOptions o;
  po::options_description options("export options");
  options.add_options()
      ("run", po::value<std::string>()->required(), "run directory written by `uniad train`")
      ("cache", po::value<std::string>()->required(), "the run's feature cache; its test split sets the thresholds")
      ("out", po::value<std::string>()->required(), "model file to write (.uniad)")
      ("backbone", po::value<std::string>()->default_value(""), "the TorchScript backbone the cache was built with")
      ("threads", po::value<int>()->default_value(0), "compute threads (0 = the CPUs this process may use)")
      ("device", po::value<std::string>()->default_value("auto"), "auto | cpu | cuda: where maps are computed (metrics stay on the CPU)");
  add_map_and_score_options(options, o);
  o.pixel_metrics = false;  // thresholds need image scores only
  cli::add_logging_options(options);
  const auto vm = cli::parse_command(command, options, argc, argv);
  if (!vm) return 0;
  cli::configure_logging(*vm);
  configure_compute_threads((*vm)["threads"].as<int>());
  o.score.kind = eval::parse_image_score((*vm)["image-score"].as<std::string>());
  const std::string run = (*vm)["run"].as<std::string>(), cache_path = (*vm)["cache"].as<std::string>();
  const std::string out = (*vm)["out"].as<std::string>();

  const feature_cache::FeatureCache cache = feature_cache::FeatureCache::open(cache_path);
  const trainer::RunModels models = trainer::load_run_models(run, cache, resolve_device((*vm)["device"].as<std::string>()));
  spdlog::info("evaluating {} on {} to choose the thresholds", run, cache_path);
  const deploy::ModelFile file =
      deploy::assemble_model_file(models, cache, run, cache_path, (*vm)["backbone"].as<std::string>(), o);
  deploy::write_model_file(out, file);
  const auto& thresholds = file.metadata.at("thresholds");
  std::cout << fmt::format("wrote {}: {} setting, {} model(s), classes {}; thresholds (image F1-max on {} test images): "
                           "all classes {:.4g}",
                           out, models.setting, file.models.size(), file.metadata.at("classes").dump(),
                           file.metadata.at("threshold_set").at("images").get<std::size_t>(),
                           thresholds.at("all").get<double>());
  for (const auto& [name, threshold] : thresholds.at("classes").items())
    std::cout << fmt::format(", {} {:.4g}", name, threshold.get<double>());
  std::cout << "\n";
  return 0;
}

}  // namespace uniad::commands
