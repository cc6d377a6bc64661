#pragma once
// Inference with a portable model file (`uniad predict`): the same chain as extraction and
// evaluation, image by image: decode and resize as the reference, backbone, feature
// assembly, the reconstruction model, the anomaly map at the evaluation resolution, the
// image score and the decision against the model file's threshold.
#include <array>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "deploy/model_file.h"
#include "eval/anomaly_map.h"
#include "feature_cache/backbone.h"
#include "model/reconstruction.h"

namespace uniad::deploy {

struct Prediction {
  std::string path;
  std::string error;  // why the image was skipped (unreadable, corrupt); empty when predicted
  float score = 0, threshold = 0;
  bool anomalous = false;
  int peak_x = 0, peak_y = 0;  // the map's maximum, in the original image's pixels
  std::array<int, 2> original_size{};  // (height, width)
  at::Tensor map;  // [S, S] at the evaluation resolution (kept when asked for)
};

class Predictor {
 public:
  // `class_name` picks that class's threshold (and, for a separate-setting file, its model);
  // empty: the all-classes threshold. `source` names the model file in errors.
  // The backbone and the model run on `device`; maps and scores come back on the CPU.
  Predictor(const ModelFile& file, const std::string& source, const std::string& class_name,
            const c10::Device& device = c10::kCPU);

  // Predicts each image; one that cannot be decoded comes back with `error` set, the others
  // are unaffected.
  std::vector<Prediction> predict(const std::vector<std::string>& paths, bool keep_maps);

  float threshold() const { return threshold_; }
  float map_max() const { return map_max_; }  // the largest map value on the export's test set
  int map_size() const { return map_options_.size; }

 private:
  std::unique_ptr<feature_cache::Backbone> backbone_;
  std::shared_ptr<model::ReconstructionNet> model_;
  int image_size_ = 224, grid_ = 14;
  std::array<float, 3> mean_{}, std_{};
  eval::MapOptions map_options_;
  eval::ScoreOptions score_options_;
  float threshold_ = 0, map_max_ = 1;
};

}  // namespace uniad::deploy
