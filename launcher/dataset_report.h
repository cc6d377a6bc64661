#pragma once
// The per-class dataset summary shown by `uniad datasets`, `uniad synth` and `uniad demo`.
#include <ostream>

#include <nlohmann/json.hpp>

#include "data/dataset.h"

namespace uniad::commands {

struct DatasetReport {
  nlohmann::ordered_json json;  // the same summary, machine-readable
  std::size_t problems = 0;
};

// Prints the table and the problems. With `verify`, every image and mask is decoded
// (corrupt files, mask sizes, empty masks); otherwise only names are checked.
DatasetReport print_dataset_report(const data::ScanResult& scan, int threads, bool verify, std::ostream& out);

}  // namespace uniad::commands
