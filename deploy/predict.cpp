#include "deploy/predict.h"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <fmt/core.h>
#include <opencv2/core.hpp>

#include "common/error.h"
#include "common/parallel.h"
#include "data/image.h"
#include "feature_cache/assemble.h"
#include "model/checkpoint.h"

namespace uniad::deploy {

Predictor::Predictor(const ModelFile& file, const std::string& source, const std::string& class_name,
                     const c10::Device& device) {
  const auto& meta = file.metadata;
  const auto& image = meta.at("image");
  image_size_ = image.at("size");
  mean_ = image.at("mean").get<std::array<float, 3>>();
  std_ = image.at("std").get<std::array<float, 3>>();
  const auto& backbone = meta.at("backbone");
  grid_ = backbone.at("grid");
  feature_cache::BackboneOptions options;
  options.layers = backbone.at("layers").get<std::vector<int>>();
  if (backbone.at("kind") == "builtin") {
    options.builtin_seed = backbone.at("builtin_seed");
  } else {
    options.file = source + " (backbone)";
    options.contents = file.backbone;
  }
  backbone_ = feature_cache::load_backbone(options);
  backbone_->to(device);
  if (backbone_->identity() != backbone.at("identity").get<std::string>()) {
    throw InputError(source, "its backbone is not the one its metadata names (damaged file?)");
  }
  map_options_.size = meta.at("map").at("size");
  map_options_.smoothing_sigma = meta.at("map").at("smoothing_sigma");
  score_options_.kind = eval::parse_image_score(meta.at("score").at("kind"));
  score_options_.pool_window = meta.at("score").at("pool_window");
  score_options_.top_percent = meta.at("score").at("top_percent");
  map_max_ = meta.at("map_range").at(1);

  const auto& classes = meta.at("classes");
  if (!class_name.empty() && std::find(classes.begin(), classes.end(), class_name) == classes.end()) {
    throw UsageError(fmt::format("--class {}: the model knows the classes {}", class_name, classes.dump()));
  }
  const bool separate = meta.at("setting") == "separate";
  if (separate && class_name.empty()) {
    throw UsageError(source + " holds one model per class (separate setting): give --class NAME (" + classes.dump() + ")");
  }
  const std::string key = separate ? class_name : "all";
  model_ = model::load_checkpoint_bytes(file.models.at(key), source + " (model " + key + ")").model;
  model_->to(device);
  model_->eval();
  const auto& thresholds = meta.at("thresholds");
  threshold_ = class_name.empty() ? thresholds.at("all").get<float>() : thresholds.at("classes").at(class_name).get<float>();
}

std::vector<Prediction> Predictor::predict(const std::vector<std::string>& paths, bool keep_maps) {
  data::ImageOptions image_options;
  image_options.size = image_size_;
  image_options.mean = mean_;
  image_options.std = std_;
  const std::int64_t plane = 3 * std::int64_t(image_size_) * image_size_;

  // Decode what can be decoded (in parallel: with the backbone this is most of the work
  // besides the matrix products); the rest is reported, not fatal.
  std::vector<Prediction> out(paths.size());
  std::vector<std::vector<float>> planes(paths.size());
  parallel_for(paths.size(), at::get_num_threads(), [&](std::size_t i) {
    out[i].path = paths[i];
    try {
      const cv::Mat rgb = data::read_rgb(paths[i]);
      out[i].original_size = {rgb.rows, rgb.cols};
      planes[i].resize(plane);
      data::normalize_into(rgb, image_options, planes[i].data());
    } catch (const Error& e) {
      out[i].error = e.what();
    } catch (const cv::Exception& e) {
      out[i].error = paths[i] + ": cannot decode the image (" + e.msg + ")";
    }
  });
  std::vector<std::size_t> decoded;
  std::vector<float> pixels;
  for (std::size_t i = 0; i < paths.size(); ++i) {
    if (!out[i].error.empty()) continue;
    pixels.insert(pixels.end(), planes[i].begin(), planes[i].end());
    decoded.push_back(i);
  }
  if (decoded.empty()) return out;

  c10::InferenceMode inference;
  const auto n = static_cast<std::int64_t>(decoded.size());
  at::Tensor images = at::from_blob(pixels.data(), {n, 3, image_size_, image_size_}, at::kFloat);
  if (backbone_->device().is_cuda()) images = images.pin_memory().to(backbone_->device(), /*non_blocking=*/true);
  const at::Tensor features = feature_cache::assemble_features(backbone_->forward(images), grid_, grid_);
  const at::Tensor maps = eval::upsample_maps(model_->anomaly_map(features), map_options_).cpu().contiguous();
  const at::Tensor scores = eval::image_scores(maps, score_options_).contiguous();
  const at::Tensor peaks = maps.flatten(1).argmax(1);
  for (std::int64_t k = 0; k < n; ++k) {
    Prediction& p = out[decoded[k]];
    p.score = scores[k].item<float>();
    p.threshold = threshold_;
    p.anomalous = p.score >= threshold_;
    const std::int64_t peak = peaks[k].item<std::int64_t>(), s = map_options_.size;
    // Map pixel centres to the original image (the map covers the whole resized image).
    p.peak_y = static_cast<int>((double(peak / s) + 0.5) * p.original_size[0] / s);
    p.peak_x = static_cast<int>((double(peak % s) + 0.5) * p.original_size[1] / s);
    if (keep_maps) p.map = maps[k].clone();
  }
  return out;
}

}  // namespace uniad::deploy
