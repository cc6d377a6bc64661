#include "deploy/prediction_writer.h"

#include <fmt/core.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "common/fs.h"
#include "common/hdf5.h"
#include "report/pictures.h"

namespace uniad::deploy {

namespace fs = std::filesystem;

namespace {

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string quoted = "\"";
  for (char c : s) quoted += c == '"' ? std::string("\"\"") : std::string(1, c);
  return quoted + "\"";
}

}  // namespace

PredictionWriter::PredictionWriter(PredictionOutputs outputs, float map_max, int map_size)
    : outputs_(std::move(outputs)), map_max_(map_max), map_size_(map_size) {
  fs::create_directories(outputs_.dir);
  if (outputs_.map_pictures) {
    fs::create_directories(outputs_.dir / "maps");
    fs::create_directories(outputs_.dir / "overlays");
  }
}

void PredictionWriter::add(std::size_t index, const Prediction& p) {
  nlohmann::ordered_json line = {{"path", p.path}};
  if (!p.error.empty()) {
    ++skipped_;
    spdlog::warn("skipped {}", p.error);
    csv_ += csv_field(p.path) + ",,,,,," + csv_field(p.error) + "\n";
    line["error"] = p.error;
    jsonl_ += line.dump() + "\n";
    return;
  }
  anomalous_ += p.anomalous;
  csv_ += fmt::format("{},{:.8g},{:.8g},{},{},{},\n", csv_field(p.path), p.score, p.threshold, p.anomalous ? "yes" : "no",
                      p.peak_x, p.peak_y);
  line.update({{"score", p.score}, {"threshold", p.threshold}, {"anomalous", p.anomalous},
               {"peak", {{"x", p.peak_x}, {"y", p.peak_y}}}});
  jsonl_ += line.dump() + "\n";
  if (outputs_.map_pictures) {
    const std::string stem = fmt::format("{:05d}_{}", index, fs::path(p.path).stem().string());
    report::write_map_png16((outputs_.dir / "maps" / (stem + ".png")).string(), p.map, map_max_);
    report::write_overlay((outputs_.dir / "overlays" / (stem + ".png")).string(), p.path, p.map, map_max_, p.threshold,
                          fmt::format("score {:.3f} ({})", p.score, p.anomalous ? "anomalous" : "normal"));
  }
  if (outputs_.float_maps) {
    maps_.insert(maps_.end(), p.map.data_ptr<float>(), p.map.data_ptr<float>() + p.map.numel());
    map_paths_.push_back(p.path);
  }
}

void PredictionWriter::finish() const {
  atomic_write_bytes(outputs_.dir / "predictions.csv", csv_);
  atomic_write_bytes(outputs_.dir / "predictions.jsonl", jsonl_);
  if (!outputs_.float_maps) return;
  atomic_write(outputs_.dir / "maps.h5", [&](const fs::path& tmp) {
    h5::File file = h5::File::create(tmp.string());
    const hsize_t s = static_cast<hsize_t>(map_size_);
    file.write<float>("/maps", {map_paths_.size(), s, s}, maps_);
    file.write_strings("/paths", map_paths_);
    file.flush();
    file.close();
  });
}

}  // namespace uniad::deploy
