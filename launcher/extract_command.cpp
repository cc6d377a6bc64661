// `uniad extract`: run the frozen backbone once over a dataset and store the assembled
// features in an HDF5 cache (see docs/feature-cache.md). Runs under mpirun/srun too.
#include <iostream>

#include <fmt/core.h>
#include <spdlog/spdlog.h>

#include "common/device.h"
#include "common/error.h"
#include "data/dataset.h"
#include "feature_cache/extract.h"
#include "launcher/cli.h"
#include "launcher/commands.h"
#include "launcher/mpi_session.h"

namespace uniad::commands {

namespace po = cli::po;

namespace {

// "0,1,2" -> {0, 1, 2}; empty: none (the backbone file's default layers).
std::vector<int> parse_layers(const std::string& text) {
  std::vector<int> layers;
  for (const auto& layer : data::split_list(text)) {
    try {
      layers.push_back(std::stoi(layer));
    } catch (const std::exception&) {
      throw UsageError("--layers must be comma-separated integers, not '" + text + "'");
    }
  }
  return layers;
}

}  // namespace

int extract(int argc, char** argv) {
  return cli::run_with_mpi(argc, argv, [&](const cli::RankInfo& ranks) {
    const cli::Command command{
        "extract", "[mpirun -np K] uniad extract --data DIR --out CACHE.h5 [--backbone FILE] [options]",
        "Decodes every image of the dataset, runs the frozen backbone (TorchScript --backbone, or the\n"
        "built-in random-feature backbone), assembles the selected maps on the stride-16 grid and writes\n"
        "train and test features, labels, masks and provenance to one HDF5 file. Under MPI the images\n"
        "are split across ranks and the file is identical to a one-rank run's. An existing cache with\n"
        "the same settings is reused."};
    feature_cache::ExtractOptions o;
    po::options_description options("extract options");
    options.add_options()
        ("data", po::value<std::string>(&o.data_root)->required(), "dataset root (MVTec layout, or VisA with --visa-csv)")
        ("out", po::value<std::string>(&o.out)->required(), "cache file to write (.h5)")
        ("classes", po::value<std::string>()->default_value(""), "comma-separated classes (default: all)")
        ("visa-csv", po::value<std::string>(&o.scan.visa_csv)->default_value(""), "VisA split CSV")
        ("backbone", po::value<std::string>(&o.backbone.file)->default_value(""),
         "TorchScript backbone returning a tuple of maps (default: built-in random-feature backbone)")
        ("layers", po::value<std::string>()->default_value(""),
         "backbone outputs to assemble (default: the backbone file's own default layers, else 0,1,2)")
        ("image-size", po::value<int>(&o.image.size)->default_value(o.image.size), "input side (images are resized to it)")
        ("grid", po::value<int>(&o.grid)->default_value(0), "feature grid side (0 = image-size / 16)")
        ("dtype", po::value<std::string>()->default_value("float16"), "stored feature type: float16 | float32")
        ("batch-size", po::value<int>(&o.batch_size)->default_value(o.batch_size), "images per backbone batch")
        ("threads", po::value<int>()->default_value(0), "compute threads per rank (0 = cores / ranks)")
        ("device", po::value<std::string>()->default_value("auto"),
         "auto | cpu | cuda: where the backbone runs (auto: a GPU when the GPU build sees one; one per rank)")
        ("force", po::value<bool>(&o.force)->implicit_value(true)->default_value(false),
         "rebuild even if the cache exists with other settings");
    cli::add_logging_options(options);
    const auto vm = cli::parse_command(command, options, argc, argv);
    if (!vm) return 0;
    cli::configure_logging(*vm, ranks.rank);
    o.scan.classes = data::split_list((*vm)["classes"].as<std::string>());
    o.dtype = feature_cache::parse_feature_dtype((*vm)["dtype"].as<std::string>());
    o.backbone.layers = parse_layers((*vm)["layers"].as<std::string>());
    if (o.batch_size < 1) throw UsageError("--batch-size must be at least 1");
    o.decode_threads = cli::configure_threads(ranks, (*vm)["threads"].as<int>());
    o.progress = ranks.rank == 0 && cli::show_progress(*vm);
    o.device = rank_device((*vm)["device"].as<std::string>(), ranks.comm, ranks.local_rank, ranks.local_size);

    const auto result = feature_cache::extract_features(o, ranks.comm);
    if (ranks.rank == 0) {
      if (result.reused) {
        spdlog::info("reusing {} (same dataset, backbone and settings; --force rebuilds it)", o.out);
      } else {
        spdlog::info("wrote {}: {} images in {:.1f}s ({:.1f} images/s) on {} rank(s) x {} thread(s), backbone on {}",
                     o.out, result.samples, result.seconds, result.samples / std::max(result.seconds, 1e-9), ranks.size,
                     o.decode_threads, describe_device(o.device));
      }
      std::cout << "backbone: " << result.backbone_description << "\n";
    }
    return 0;
  });
}

}  // namespace uniad::commands
