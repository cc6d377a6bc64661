#include "feature_cache/extract.h"

#include <chrono>
#include <ctime>
#include <filesystem>
#include <future>

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <fmt/core.h>
#include <spdlog/spdlog.h>
#include <xxhash.h>

#include "common/device.h"
#include "common/error.h"
#include "common/fs.h"
#include "common/progress.h"
#include "common/version.h"
#include "feature_cache/assemble.h"

namespace uniad::feature_cache {

using data::Split;

namespace {

// Identifies the dataset's files cheaply: relative paths, sizes and labels of every
// sample and mask (content hashing every image would cost as much as decoding it).
std::string file_list_hash(const data::Dataset& dataset) {
  XXH64_state_t* state = XXH64_createState();
  XXH64_reset(state, 0);
  auto add = [&](const std::string& text) { XXH64_update(state, text.c_str(), text.size() + 1); };
  for (const auto& s : dataset.samples) {
    add(fs::relative(s.image_path, dataset.root).string());
    add(std::to_string(fs::file_size(s.image_path)));
    add(std::to_string(s.label) + s.defect_type + data::split_name(s.split));
    if (!s.mask_path.empty()) {
      add(fs::relative(s.mask_path, dataset.root).string());
      add(std::to_string(fs::file_size(s.mask_path)));
    }
  }
  const auto digest = XXH64_digest(state);
  XXH64_freeState(state);
  return fmt::format("xxh64:{:016x}", digest);
}

nlohmann::ordered_json make_identity(const ExtractOptions& o, const data::Dataset& dataset, const Backbone& backbone,
                                     int grid) {
  nlohmann::ordered_json id;
  id["format_version"] = kCacheFormatVersion;
  id["backbone"] = {{"file", o.backbone.file.empty() ? "(built-in)" : fs::path(o.backbone.file).filename().string()},
                    {"identity", backbone.identity()},
                    {"random_features", backbone.random_features()}};
  if (const nlohmann::json m = backbone.metadata(); m.is_object()) {
    id["backbone"]["architecture"] = m.value("architecture", "");
    id["backbone"]["weights"] = m.at("weights");
  }
  id["layers"] = backbone.layers();
  id["input_size"] = o.image.size;
  id["resize"] = "pillow bilinear (antialiased); masks pillow nearest";
  id["mean"] = o.image.mean;
  id["std"] = o.image.std;
  id["grid"] = {grid, grid};
  id["dtype"] = to_string(o.dtype);
  id["dataset"] = {{"root", fs::absolute(dataset.root).lexically_normal().string()},
                   {"layout", dataset.layout},
                   {"classes", dataset.classes},
                   {"file_list_hash", file_list_hash(dataset)},
                   {"train", dataset.indices(Split::kTrain).size()},
                   {"test", dataset.indices(Split::kTest).size()}};
  return id;
}

struct Batch {
  Split split;
  std::int64_t first, count;  // rows within the split
};

std::vector<Batch> plan_batches(std::int64_t train, std::int64_t test, int batch_size) {
  std::vector<Batch> batches;
  for (auto [split, n] : {std::pair{Split::kTrain, train}, std::pair{Split::kTest, test}})
    for (std::int64_t first = 0; first < n; first += batch_size)
      batches.push_back({split, first, std::min<std::int64_t>(batch_size, n - first)});
  return batches;
}

struct BatchResult {
  at::Tensor features;              // [n, C, H, W] in the storage dtype
  std::vector<std::uint8_t> masks;  // test batches: [n, S, S]
};

class BatchComputer {
 public:
  BatchComputer(const ExtractOptions& o, const data::Dataset& dataset, Backbone& backbone, int grid)
      : o_(o), dataset_(dataset), backbone_(backbone), grid_(grid) {
    rows_[Split::kTrain] = dataset.indices(Split::kTrain);
    rows_[Split::kTest] = dataset.indices(Split::kTest);
  }

  data::ImageBatch decode(const Batch& b) const {
    const auto& rows = rows_.at(b.split);
    const std::vector<std::size_t> indices(rows.begin() + b.first, rows.begin() + b.first + b.count);
    return data::load_batch(dataset_, indices, o_.image, o_.decode_threads);
  }

  BatchResult features(data::ImageBatch images, Split split) {
    c10::InferenceMode inference;
    at::Tensor x = at::from_blob(images.images.data(), {images.count, 3, images.size, images.size}, at::kFloat);
    // To a GPU from page-locked memory, without waiting: the copy overlaps the host's work.
    if (o_.device.is_cuda()) x = x.pin_memory().to(o_.device, /*non_blocking=*/true);
    at::Tensor assembled = assemble_features(backbone_.forward(x), grid_, grid_);
    BatchResult result;
    result.features = (o_.dtype == FeatureDtype::kFloat16 ? assembled.to(at::kHalf) : assembled).cpu().contiguous();
    if (split == Split::kTest) result.masks = std::move(images.masks);
    return result;
  }

  // Channels of the assembled features, from one dummy image.
  int channels() {
    c10::InferenceMode inference;
    const at::Tensor x = at::zeros({1, 3, o_.image.size, o_.image.size});
    return static_cast<int>(assemble_features(backbone_.forward(x), grid_, grid_).size(1));
  }

 private:
  const ExtractOptions& o_;
  const data::Dataset& dataset_;
  Backbone& backbone_;
  int grid_;
  std::map<Split, std::vector<std::size_t>> rows_;
};

enum Decision : int { kBuild = 0, kReuse = 1, kRefuse = 2 };

// Rank 0 looks at an existing file: reuse it, rebuild it, or refuse (with the reason).
std::pair<Decision, std::string> decide(const ExtractOptions& o, const nlohmann::ordered_json& identity) {
  if (!fs::exists(o.out)) return {kBuild, ""};
  try {
    const FeatureCache existing = FeatureCache::open(o.out);
    const auto differences = identity_differences(existing.identity(), nlohmann::json(identity));
    if (differences.empty()) return {o.force ? kBuild : kReuse, ""};
    if (o.force) return {kBuild, ""};
    std::string list;
    for (const auto& d : differences) list += "\n  " + d + " (cache vs request)";
    return {kRefuse, "was built with other settings:" + list +
                         "\nuse another --out, or --force to rebuild it"};
  } catch (const InputError& e) {
    if (o.force) return {kBuild, ""};
    return {kRefuse, std::string("exists but is not a usable cache (") + e.what() +
                         "); remove it or use --force to rebuild it"};
  }
}

void broadcast_decision(std::pair<Decision, std::string>& decision, MPI_Comm comm) {
  int code = decision.first;
  MPI_Bcast(&code, 1, MPI_INT, 0, comm);
  int length = static_cast<int>(decision.second.size());
  MPI_Bcast(&length, 1, MPI_INT, 0, comm);
  decision.second.resize(length);
  MPI_Bcast(decision.second.data(), length, MPI_CHAR, 0, comm);
  decision.first = static_cast<Decision>(code);
}

}  // namespace

ExtractResult extract_features(const ExtractOptions& o, MPI_Comm comm) {
  int rank = 0, ranks = 1;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &ranks);
  const auto start = std::chrono::steady_clock::now();

  const data::Dataset dataset = data::load_dataset(o.data_root, o.scan);
  std::unique_ptr<Backbone> backbone = load_backbone(o.backbone);
  backbone->to(o.device);
  backbone->check_input(o.image.size, o.image.mean, o.image.std);
  const int grid = o.grid > 0 ? o.grid : o.image.size / 16;
  ExtractResult result;
  result.identity = make_identity(o, dataset, *backbone, grid);
  result.backbone_description = backbone->description();

  auto decision = rank == 0 ? decide(o, result.identity) : std::pair<Decision, std::string>{};
  broadcast_decision(decision, comm);
  if (decision.first == kRefuse) throw InputError(o.out, decision.second);
  if (decision.first == kReuse) {
    result.reused = true;
    return result;
  }

  BatchComputer computer(o, dataset, *backbone, grid);
  CacheShape shape;
  shape.channels = computer.channels();
  shape.grid_h = shape.grid_w = grid;
  shape.mask_size = o.image.size;
  shape.dtype = o.dtype;
  const std::int64_t train = dataset.indices(Split::kTrain).size(), test = dataset.indices(Split::kTest).size();
  const std::vector<Batch> batches = plan_batches(train, test, o.batch_size);
  result.samples = train + test;
  const std::int64_t sample_elements = std::int64_t(shape.channels) * grid * grid;
  const int element_bytes = o.dtype == FeatureDtype::kFloat16 ? 2 : 4;

  // This rank's batches, decoded one ahead on a helper thread while the backbone runs.
  std::vector<std::size_t> mine;
  for (std::size_t b = 0; b < batches.size(); ++b)
    if (static_cast<int>(b % ranks) == rank) mine.push_back(b);
  std::future<data::ImageBatch> next;
  std::size_t next_position = 0;
  auto prefetch = [&] {
    if (next_position < mine.size()) {
      const Batch batch = batches[mine[next_position++]];
      next = std::async(std::launch::async, [&computer, batch] { return computer.decode(batch); });
    }
  };
  auto compute_own = [&](std::size_t b) {
    data::ImageBatch images = next.get();
    prefetch();
    return computer.features(std::move(images), batches[b].split);
  };
  prefetch();

  if (rank != 0) {
    for (std::size_t b : mine) {
      const BatchResult r = compute_own(b);
      MPI_Send(r.features.data_ptr(), static_cast<int>(r.features.numel() * element_bytes), MPI_BYTE, 0,
               static_cast<int>(b), comm);
      if (!r.masks.empty())
        MPI_Send(r.masks.data(), static_cast<int>(r.masks.size()), MPI_BYTE, 0, static_cast<int>(b), comm);
    }
    return result;
  }

  // Rank 0: collect every batch in order and write it.
  const fs::path out = fs::absolute(o.out);
  fs::create_directories(out.parent_path());
  if (const int stale = remove_stale_temporaries(out)) {
    spdlog::info("removed {} unfinished file(s) of an interrupted extraction", stale);
  }
  const fs::path tmp = temporary_path_for(out);
  std::map<Split, SplitIndex> splits;
  for (Split split : {Split::kTrain, Split::kTest}) {
    SplitIndex& index = splits[split];
    for (std::size_t i : dataset.indices(split)) {
      const auto& s = dataset.samples[i];
      index.class_index.push_back(s.class_index);
      index.label.push_back(static_cast<std::uint8_t>(s.label));
      index.defect_type.push_back(s.defect_type);
      index.path.push_back(s.image_path);
    }
  }
  try {
    CacheWriter writer(tmp.string(), result.identity, dataset.classes, shape, splits);
    Progress progress(fmt::format("extract ({} rank{})", ranks, ranks > 1 ? "s" : ""), result.samples, "images",
                      o.progress);
    const std::int64_t plane = std::int64_t(o.image.size) * o.image.size;
    for (std::size_t b = 0; b < batches.size(); ++b) {
      const Batch& batch = batches[b];
      BatchResult r;
      const int owner = static_cast<int>(b % ranks);
      if (owner == 0) {
        r = compute_own(b);
      } else {
        r.features = at::empty({batch.count, shape.channels, grid, grid},
                               o.dtype == FeatureDtype::kFloat16 ? at::kHalf : at::kFloat);
        MPI_Recv(r.features.data_ptr(), static_cast<int>(batch.count * sample_elements * element_bytes), MPI_BYTE,
                 owner, static_cast<int>(b), comm, MPI_STATUS_IGNORE);
        if (batch.split == Split::kTest) {
          r.masks.resize(batch.count * plane);
          MPI_Recv(r.masks.data(), static_cast<int>(r.masks.size()), MPI_BYTE, owner, static_cast<int>(b), comm,
                   MPI_STATUS_IGNORE);
        }
      }
      writer.write_features(batch.split, batch.first, r.features);
      if (batch.split == Split::kTest) writer.write_masks(batch.first, batch.count, r.masks.data());
      progress.advance(batch.count);
    }
    progress.finish();
    result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    writer.finish({{"backbone_description", result.backbone_description},
                   {"random_features", backbone->random_features()},
                   {"channels", shape.channels},
                   {"project_version", project_version()},
                   {"source_revision", source_revision()},
                   {"created", utc_timestamp()},
                   {"ranks", ranks},
                   {"device", describe_device(o.device)},  // rank 0's
                   {"batch_size", o.batch_size},
                   {"extraction_seconds", result.seconds}});
    fs::rename(tmp, out);
  } catch (const OutputError& e) {
    std::error_code ignored;
    fs::remove(tmp, ignored);
    throw OutputError(out.string(), std::string("cannot write the feature cache (") + e.what() +
                                        "); free space on its file system or choose another --out. Nothing was left "
                                        "behind");
  } catch (...) {
    std::error_code ignored;
    fs::remove(tmp, ignored);
    throw;
  }
  return result;
}

}  // namespace uniad::feature_cache
