#pragma once
// The outputs of `uniad predict`, one writer for all of them: predictions.csv and .jsonl (a
// row per image, skipped images with their error), optionally the maps as 16-bit PNGs with
// overlays, and a float maps.h5. Rows accumulate in memory and every file is written
// atomically by finish(), so an interrupted prediction leaves no half-written table.
#include <cstddef>
#include <filesystem>
#include <string>
#include <vector>

#include "deploy/predict.h"

namespace uniad::deploy {

struct PredictionOutputs {
  std::filesystem::path dir;
  bool map_pictures = false;  // maps/<n>_<name>.png and overlays/<n>_<name>.png
  bool float_maps = false;    // maps.h5: /maps [N, S, S] float32 and /paths
};

class PredictionWriter {
 public:
  // `map_max` scales the 16-bit PNGs (65535 = the export's largest test-set map value);
  // `map_size` is the side of the maps (for maps.h5).
  PredictionWriter(PredictionOutputs outputs, float map_max, int map_size);

  // Adds one image's prediction; `index` (its place among all inputs) numbers its pictures.
  void add(std::size_t index, const Prediction& p);
  // Writes predictions.csv, predictions.jsonl and maps.h5.
  void finish() const;

  std::size_t skipped() const { return skipped_; }
  std::size_t anomalous() const { return anomalous_; }

 private:
  PredictionOutputs outputs_;
  float map_max_;
  int map_size_;
  std::string csv_ = "path,score,threshold,anomalous,peak_x,peak_y,error\n", jsonl_;
  std::vector<float> maps_;  // for maps.h5, in order of the predicted images
  std::vector<std::string> map_paths_;
  std::size_t skipped_ = 0, anomalous_ = 0;
};

}  // namespace uniad::deploy
