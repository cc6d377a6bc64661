// `uniad synth` and `uniad datasets`: making and inspecting datasets.
#include <fstream>
#include <iostream>

#include <fmt/core.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "common/error.h"
#include "common/fs.h"
#include "common/parallel.h"
#include "common/table.h"
#include "data/dataset.h"
#include "data/image.h"
#include "data/synth.h"
#include "launcher/cli.h"
#include "launcher/commands.h"
#include "launcher/dataset_report.h"

namespace uniad::commands {

namespace po = cli::po;

int synth(int argc, char** argv) {
  const cli::Command command{
      "synth", "uniad synth --out DIR [--classes N] [--seed S] [options]",
      "Writes the synthetic multi-class dataset in MVTec AD layout: texture and object classes drawn\n"
      "procedurally, normal train/test images and anomalous test images with exact pixel masks.\n"
      "The same options give the same bytes."};
  data::SynthOptions o;
  po::options_description options("synth options");
  options.add_options()
      ("out", po::value<std::string>()->required(), "output folder (must not exist)")
      ("classes", po::value<int>(&o.classes)->default_value(o.classes), "number of classes (designs repeat with new colours after 8)")
      ("seed", po::value<std::uint64_t>(&o.seed)->default_value(o.seed), "random seed")
      ("train-good", po::value<int>(&o.train_good)->default_value(o.train_good), "normal training images per class")
      ("test-good", po::value<int>(&o.test_good)->default_value(o.test_good), "normal test images per class")
      ("test-anomalous", po::value<int>(&o.test_anomalous)->default_value(o.test_anomalous), "anomalous test images per class")
      ("image-size", po::value<int>(&o.image_size)->default_value(o.image_size), "image side in pixels");
  cli::add_logging_options(options);
  const auto vm = cli::parse_command(command, options, argc, argv);
  if (!vm) return 0;
  cli::configure_logging(*vm);
  const std::string out = (*vm)["out"].as<std::string>();
  data::write_synthetic_dataset(out, o, cli::show_progress(*vm));
  spdlog::info("wrote synthetic dataset to {}", out);
  print_dataset_report(data::scan_dataset(out), default_threads(), true, std::cout);
  return 0;
}

int datasets(int argc, char** argv) {
  const cli::Command command{
      "datasets", "uniad datasets --root DIR [--classes a,b] [--visa-csv FILE] [options]",
      "Scans a dataset (MVTec AD layout, or VisA's split CSV), decodes every image and mask, and prints\n"
      "per class: train/good, test/good, anomalous test images per defect type, masks, empty masks,\n"
      "and every problem found. Exits with 65 when there are problems."};
  po::options_description options("datasets options");
  options.add_options()
      ("root", po::value<std::string>()->required(), "dataset root folder")
      ("classes", po::value<std::string>()->default_value(""), "comma-separated classes (default: all)")
      ("visa-csv", po::value<std::string>()->default_value(""), "read VisA's split-CSV layout from this file")
      ("quick", po::value<bool>()->implicit_value(true)->default_value(false), "only scan names; do not decode images")
      ("threads", po::value<int>()->default_value(default_threads()), "decoding threads")
      ("json", po::value<std::string>()->default_value(""), "also write the summary as JSON to this file");
  cli::add_logging_options(options);
  const auto vm = cli::parse_command(command, options, argc, argv);
  if (!vm) return 0;
  cli::configure_logging(*vm);
  data::ScanOptions scan;
  scan.classes = data::split_list((*vm)["classes"].as<std::string>());
  scan.visa_csv = (*vm)["visa-csv"].as<std::string>();
  const auto result = data::scan_dataset((*vm)["root"].as<std::string>(), scan);
  const bool verify = !(*vm)["quick"].as<bool>();
  const DatasetReport report = print_dataset_report(result, (*vm)["threads"].as<int>(), verify, std::cout);
  if (const std::string path = (*vm)["json"].as<std::string>(); !path.empty()) {
    atomic_write_bytes(path, report.json.dump(2) + "\n");
    spdlog::info("wrote {}", path);
  }
  return report.problems ? static_cast<int>(ExitCode::kInput) : 0;
}

}  // namespace uniad::commands
