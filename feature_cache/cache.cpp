#include "feature_cache/cache.h"

#include <algorithm>

#include <ATen/ATen.h>
#include <fmt/core.h>

#include "common/error.h"

namespace uniad::feature_cache {

using data::Split;

std::string to_string(FeatureDtype dtype) { return dtype == FeatureDtype::kFloat16 ? "float16" : "float32"; }

FeatureDtype parse_feature_dtype(const std::string& text) {
  if (text == "float16") return FeatureDtype::kFloat16;
  if (text == "float32") return FeatureDtype::kFloat32;
  throw UsageError("--dtype must be float16 or float32, not '" + text + "'");
}

static hid_t storage_type(FeatureDtype dtype) {
  return dtype == FeatureDtype::kFloat16 ? h5::half_type() : h5::native_type<float>();
}

// Each field of a JSON record as its own root attribute, so h5py users need not parse JSON:
// nested objects become "parent_child" names ("backbone_file", "dataset_root"), arrays are
// stored as JSON text ("[0,1,2]"), booleans as 0/1.
static void set_json_attributes(h5::File& file, const nlohmann::json& record, const std::string& prefix = "") {
  for (const auto& [name, value] : record.items()) {
    const std::string key = prefix + name;
    if (value.is_object()) {
      set_json_attributes(file, value, key + "_");
    } else if (value.is_string()) {
      file.set_attribute("/", key, value.get<std::string>());
    } else if (value.is_boolean()) {
      file.set_attribute("/", key, std::int64_t{value.get<bool>()});
    } else if (value.is_number_integer()) {
      file.set_attribute("/", key, value.get<std::int64_t>());
    } else if (value.is_number()) {
      file.set_attribute("/", key, value.get<double>());
    } else {
      file.set_attribute("/", key, value.dump());
    }
  }
}

static std::string group(Split split) { return std::string("/") + data::split_name(split); }

CacheWriter::CacheWriter(const std::string& path, const nlohmann::ordered_json& identity,
                         const std::vector<std::string>& classes, const CacheShape& shape,
                         const std::map<Split, SplitIndex>& splits)
    : file_(h5::File::create(path)), shape_(shape) {
  file_.set_attribute("/", "format", std::string(kCacheFormat));
  file_.set_attribute("/", "format_version", std::int64_t{kCacheFormatVersion});
  file_.set_attribute("/", "complete", std::int64_t{0});
  file_.set_attribute("/", "identity_json", identity.dump());
  set_json_attributes(file_, identity);
  file_.write_strings("/classes", classes);
  for (const auto& [split, index] : splits) {
    const std::string g = group(split);
    const auto n = static_cast<hsize_t>(index.size());
    const hsize_t c = shape.channels, h = shape.grid_h, w = shape.grid_w;
    h5::Chunking one_sample;  // one sample per chunk: random access reads exactly one chunk
    one_sample.chunk = {1, c, h, w};
    file_.create_dataset(g + "/features", {n, c, h, w}, storage_type(shape.dtype), n ? one_sample : h5::Chunking{});
    file_.write(g + "/class_index", {n}, index.class_index);
    file_.write(g + "/label", {n}, index.label);
    file_.write_strings(g + "/defect_type", index.defect_type);
    file_.write_strings(g + "/path", index.path);
    if (split == Split::kTest) {
      const hsize_t s = shape.mask_size;
      h5::Chunking masks;
      masks.chunk = {1, s, s};
      masks.deflate = 4;  // masks are mostly zeros
      file_.create_dataset(g + "/mask", {n, s, s}, h5::native_type<std::uint8_t>(), n ? masks : h5::Chunking{});
    }
  }
}

void CacheWriter::write_features(Split split, std::int64_t first, const at::Tensor& features) {
  const at::Tensor f = features.contiguous();
  file_.write_rows(group(split) + "/features", first, f.size(0), storage_type(shape_.dtype), f.data_ptr());
}

void CacheWriter::write_masks(std::int64_t first, std::int64_t count, const std::uint8_t* masks) {
  file_.write_rows("/test/mask", first, count, h5::native_type<std::uint8_t>(), masks);
}

void CacheWriter::finish(const nlohmann::ordered_json& extra) {
  file_.set_attribute("/", "metadata_json", extra.dump());
  set_json_attributes(file_, extra);
  file_.set_attribute("/", "complete", std::int64_t{1});
  file_.flush();
  file_.close();
}

// ---------------------------------------------------------------------------------------

FeatureCache::FeatureCache(std::string path, h5::File file)
    : path_(std::move(path)), file_(std::make_shared<h5::File>(std::move(file))) {}

FeatureCache FeatureCache::open(const std::string& path) {
  FeatureCache cache(path, h5::File::open(path));
  const h5::File& f = *cache.file_;
  if (!f.has_attribute("/", "format") || f.string_attribute("/", "format") != kCacheFormat) {
    throw InputError(path, "not a uniad feature cache (no format attribute); build one with `uniad extract`");
  }
  const auto version = f.int_attribute("/", "format_version");
  if (version != kCacheFormatVersion) {
    throw InputError(path, fmt::format("feature cache format version {}, this build reads {}; rebuild it with "
                                       "`uniad extract --force`", version, kCacheFormatVersion));
  }
  if (f.int_attribute("/", "complete") != 1) {
    throw InputError(path, "incomplete feature cache (extraction was interrupted); rebuild it with `uniad extract`");
  }
  cache.identity_ = nlohmann::json::parse(f.string_attribute("/", "identity_json"));
  cache.classes_ = f.read_strings("/classes");
  for (Split split : {Split::kTrain, Split::kTest}) {
    const std::string g = group(split);
    SplitIndex index;
    index.class_index = f.read<std::int32_t>(g + "/class_index");
    index.label = f.read<std::uint8_t>(g + "/label");
    index.defect_type = f.read_strings(g + "/defect_type");
    index.path = f.read_strings(g + "/path");
    cache.splits_[split] = std::move(index);
  }
  const auto dims = f.shape("/train/features");
  const auto mask_dims = f.shape("/test/mask");
  cache.shape_.channels = static_cast<int>(dims.at(1));
  cache.shape_.grid_h = static_cast<int>(dims.at(2));
  cache.shape_.grid_w = static_cast<int>(dims.at(3));
  cache.shape_.mask_size = static_cast<int>(mask_dims.at(1));
  cache.shape_.dtype = parse_feature_dtype(cache.identity_.at("dtype").get<std::string>());
  // Provenance only; a cache written without it (by another tool) has none, not a null.
  cache.attributes_ = f.has_attribute("/", "metadata_json") ? nlohmann::json::parse(f.string_attribute("/", "metadata_json"))
                                                             : nlohmann::json::object();
  return cache;
}

const SplitIndex& FeatureCache::split(Split split) const { return splits_.at(split); }

std::vector<std::int64_t> FeatureCache::rows_of_class(Split split, int class_index) const {
  std::vector<std::int64_t> rows;
  const auto& index = splits_.at(split);
  for (std::int64_t i = 0; i < index.size(); ++i)
    if (index.class_index[i] == class_index) rows.push_back(i);
  return rows;
}

at::Tensor FeatureCache::read_features(Split split, const std::vector<std::int64_t>& rows) const {
  const CacheShape& s = shape_;
  const auto n = static_cast<std::int64_t>(rows.size());
  const std::int64_t total = splits_.at(split).size();
  for (std::int64_t r : rows) {
    if (r < 0 || r >= total) throw InputError(path_, fmt::format("row {} out of range (split has {})", r, total));
  }
  if (const auto it = preloaded_.find(split); it != preloaded_.end()) {
    return it->second.index_select(0, at::tensor(rows, at::kLong)).to(at::kFloat);
  }
  const bool half = s.dtype == FeatureDtype::kFloat16;
  at::Tensor out = at::empty({n, s.channels, s.grid_h, s.grid_w}, half ? at::kHalf : at::kFloat);
  const std::size_t row_bytes = out.numel() / std::max<std::int64_t>(n, 1) * out.element_size();
  // Consecutive rows are read with one call; others one by one.
  for (std::int64_t i = 0; i < n;) {
    std::int64_t j = i + 1;
    while (j < n && rows[j] == rows[j - 1] + 1) ++j;
    file_->read_rows(group(split) + "/features", rows[i], j - i, storage_type(s.dtype),
                     static_cast<char*>(out.data_ptr()) + i * row_bytes);
    i = j;
  }
  return half ? out.to(at::kFloat) : out;
}

at::Tensor FeatureCache::read_masks(const std::vector<std::int64_t>& rows) const {
  const int s = shape_.mask_size;
  at::Tensor out = at::empty({static_cast<std::int64_t>(rows.size()), s, s}, at::kByte);
  std::vector<hsize_t> list(rows.begin(), rows.end());
  file_->read_row_list("/test/mask", list, h5::native_type<std::uint8_t>(), out.data_ptr());
  return out;
}

void FeatureCache::preload(Split split) {
  std::vector<std::int64_t> all(splits_.at(split).size());
  for (std::size_t i = 0; i < all.size(); ++i) all[i] = static_cast<std::int64_t>(i);
  at::Tensor features = read_features(split, all);
  preloaded_[split] = shape_.dtype == FeatureDtype::kFloat16 ? features.to(at::kHalf) : features;
}

std::vector<std::string> identity_differences(const nlohmann::json& a, const nlohmann::json& b) {
  std::vector<std::string> out;
  const nlohmann::json flat_a = a.flatten(), flat_b = b.flatten();
  for (const auto& [key, value] : flat_a.items()) {
    if (!flat_b.contains(key)) {
      out.push_back(key + ": " + value.dump() + " vs (absent)");
    } else if (flat_b.at(key) != value) {
      out.push_back(key + ": " + value.dump() + " vs " + flat_b.at(key).dump());
    }
  }
  for (const auto& [key, value] : flat_b.items())
    if (!flat_a.contains(key)) out.push_back(key + ": (absent) vs " + value.dump());
  return out;
}

}  // namespace uniad::feature_cache
