#pragma once
// The feature cache: one HDF5 file holding the assembled backbone features of a dataset's
// train and test splits. It is the contract between extraction, training and evaluation;
// the layout is documented in docs/feature-cache.md and versioned by kCacheFormatVersion.
//
//   /                 attributes: format, format_version, complete, identity_json (what the
//                     content depends on), metadata_json (provenance), and each field of
//                     both on its own for h5py users
//   /classes          [K] strings
//   /{train,test}/features     [N, C, H, W] float16 (or float32), one sample per chunk
//   /{train,test}/class_index  [N] int32
//   /{train,test}/label        [N] uint8 (0 normal, 1 anomalous)
//   /{train,test}/defect_type  [N] strings ("good" for normal)
//   /{train,test}/path         [N] strings (source image)
//   /test/mask                 [N, S, S] uint8 0/1 at evaluation resolution, gzip
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>

#include "common/hdf5.h"
#include "data/dataset.h"

namespace uniad::feature_cache {

// Version 2: images resized as the reference's Pillow does (version 1 used OpenCV's
// non-antialiased INTER_LINEAR, so its features differ and it is refused).
inline constexpr int kCacheFormatVersion = 2;
inline constexpr const char* kCacheFormat = "uniad-feature-cache";

enum class FeatureDtype { kFloat16, kFloat32 };
std::string to_string(FeatureDtype dtype);
FeatureDtype parse_feature_dtype(const std::string& text);  // "float16" | "float32"

// Per-sample records of one split.
struct SplitIndex {
  std::vector<std::int32_t> class_index;
  std::vector<std::uint8_t> label;
  std::vector<std::string> defect_type;
  std::vector<std::string> path;
  std::int64_t size() const { return static_cast<std::int64_t>(label.size()); }
};

// Shapes and types of the stored arrays.
struct CacheShape {
  int channels = 0, grid_h = 0, grid_w = 0, mask_size = 0;
  FeatureDtype dtype = FeatureDtype::kFloat16;
};

// Writes a cache file (under a temporary name; the caller renames it when complete).
class CacheWriter {
 public:
  CacheWriter(const std::string& path, const nlohmann::ordered_json& identity, const std::vector<std::string>& classes,
              const CacheShape& shape, const std::map<data::Split, SplitIndex>& splits);
  // Rows [first, first + n) of a split: features [n, C, H, W] already in the storage dtype.
  void write_features(data::Split split, std::int64_t first, const at::Tensor& features);
  void write_masks(std::int64_t first, std::int64_t count, const std::uint8_t* masks);
  // Marks the file complete (a reader refuses incomplete files) and closes it.
  void finish(const nlohmann::ordered_json& extra_attributes);

 private:
  h5::File file_;
  CacheShape shape_;
};

class FeatureCache {
 public:
  // Opens and validates a cache. A missing, truncated, foreign, incomplete or newer-format
  // file is an InputError naming it and saying what to do.
  static FeatureCache open(const std::string& path);

  const std::string& path() const { return path_; }
  const nlohmann::json& identity() const { return identity_; }
  const nlohmann::json& attributes() const { return attributes_; }  // provenance (metadata_json)
  const std::vector<std::string>& classes() const { return classes_; }
  const CacheShape& shape() const { return shape_; }
  const SplitIndex& split(data::Split split) const;

  // Rows of a split that belong to one class (the separate setting, per-class reports).
  std::vector<std::int64_t> rows_of_class(data::Split split, int class_index) const;

  // Features of the given rows as float32 [n, C, H, W], in the order asked.
  at::Tensor read_features(data::Split split, const std::vector<std::int64_t>& rows) const;
  // Masks of test rows as uint8 [n, S, S].
  at::Tensor read_masks(const std::vector<std::int64_t>& rows) const;
  // Keeps a split's features in memory (stored dtype); later reads come from there.
  void preload(data::Split split);

 private:
  FeatureCache(std::string path, h5::File file);
  std::string path_;
  std::shared_ptr<h5::File> file_;
  nlohmann::json identity_, attributes_;
  std::vector<std::string> classes_;
  CacheShape shape_;
  std::map<data::Split, SplitIndex> splits_;
  std::map<data::Split, at::Tensor> preloaded_;
};

// Names the identity fields that differ between two identity records ("layers: [0,1,2] vs [1,2]").
std::vector<std::string> identity_differences(const nlohmann::json& a, const nlohmann::json& b);

}  // namespace uniad::feature_cache
