#include "data/dataset.h"

#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>

#include "common/error.h"
#include "common/fs.h"

namespace uniad::data {

const char* split_name(Split split) { return split == Split::kTrain ? "train" : "test"; }

std::vector<std::size_t> Dataset::indices(Split split, int class_index) const {
  std::vector<std::size_t> out;
  for (std::size_t i = 0; i < samples.size(); ++i) {
    if (samples[i].split == split && (class_index < 0 || samples[i].class_index == class_index)) {
      out.push_back(i);
    }
  }
  return out;
}

int Dataset::class_index(const std::string& name) const {
  const auto it = std::find(classes.begin(), classes.end(), name);
  return it == classes.end() ? -1 : static_cast<int>(it - classes.begin());
}

bool is_image_extension(const std::string& ext) {
  static const std::set<std::string> kExtensions = {"png", "jpg", "jpeg", "bmp", "tif", "tiff"};
  return kExtensions.count(ext) > 0;
}

std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    item.erase(0, item.find_first_not_of(" \t"));
    item.erase(item.find_last_not_of(" \t") + 1);
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

namespace {

std::vector<fs::path> image_files(const fs::path& dir, std::vector<Problem>& problems) {
  std::vector<fs::path> images;
  for (const auto& file : list_files(dir)) {
    if (is_image_extension(lower_extension(file))) {
      images.push_back(file);
    } else {
      problems.push_back({file.string(), "not an image file (expected PNG, JPEG, BMP or TIFF); remove it"});
    }
  }
  return images;
}

// The classes to scan: the requested ones (each must exist) or every candidate found.
std::vector<std::string> choose_classes(const std::vector<std::string>& found,
                                        const std::vector<std::string>& requested,
                                        const std::string& root, std::vector<Problem>& problems) {
  if (requested.empty()) return found;
  std::vector<std::string> chosen;
  for (const auto& name : requested) {
    if (std::find(found.begin(), found.end(), name) == found.end()) {
      problems.push_back({(fs::path(root) / name).string(), "requested class '" + name + "' not found in the dataset"});
    } else if (std::find(chosen.begin(), chosen.end(), name) == chosen.end()) {
      chosen.push_back(name);
    }
  }
  std::sort(chosen.begin(), chosen.end());
  return chosen;
}

void scan_mvtec_class(const fs::path& class_dir, int class_index, Dataset& dataset,
                      std::vector<Problem>& problems) {
  const fs::path train_good = class_dir / "train" / "good";
  const fs::path test_dir = class_dir / "test";
  const fs::path truth_dir = class_dir / "ground_truth";
  if (!fs::is_directory(train_good)) {
    problems.push_back({train_good.string(), "missing folder (MVTec layout needs <class>/train/good)"});
  } else {
    const auto images = image_files(train_good, problems);
    if (images.empty()) problems.push_back({train_good.string(), "empty class: no training images"});
    for (const auto& image : images) {
      dataset.samples.push_back({image.string(), "", class_index, "good", 0, Split::kTrain});
    }
  }
  if (!fs::is_directory(test_dir)) {
    problems.push_back({test_dir.string(), "missing folder (MVTec layout needs <class>/test/<type>)"});
    return;
  }
  auto types = list_dirs(test_dir);
  // "good" first, then the defect types by name.
  std::stable_partition(types.begin(), types.end(), [](const fs::path& p) { return p.filename() == "good"; });
  int test_images = 0;
  for (const auto& type_dir : types) {
    const std::string type = type_dir.filename().string();
    const bool normal = type == "good";
    for (const auto& image : image_files(type_dir, problems)) {
      ++test_images;
      Sample sample{image.string(), "", class_index, type, normal ? 0 : 1, Split::kTest};
      if (!normal) {
        const fs::path mask = truth_dir / type / (image.stem().string() + "_mask.png");
        if (fs::is_regular_file(mask)) {
          sample.mask_path = mask.string();
        } else {
          problems.push_back({image.string(), "anomalous image has no mask; expected " + mask.string()});
        }
      }
      dataset.samples.push_back(std::move(sample));
    }
  }
  if (test_images == 0) problems.push_back({test_dir.string(), "no test images"});
}

// Minimal CSV reader: comma separated, optional double quotes, no embedded newlines.
std::vector<std::string> parse_csv_line(const std::string& line) {
  std::vector<std::string> fields(1);
  bool quoted = false;
  for (std::size_t i = 0; i < line.size(); ++i) {
    const char c = line[i];
    if (quoted) {
      if (c == '"' && i + 1 < line.size() && line[i + 1] == '"') {
        fields.back() += '"';
        ++i;
      } else if (c == '"') {
        quoted = false;
      } else {
        fields.back() += c;
      }
    } else if (c == '"') {
      quoted = true;
    } else if (c == ',') {
      fields.emplace_back();
    } else if (c != '\r') {
      fields.back() += c;
    }
  }
  return fields;
}

ScanResult scan_visa(const std::string& root, const ScanOptions& options) {
  ScanResult result;
  result.dataset.root = root;
  result.dataset.layout = "visa";
  auto& problems = result.problems;
  std::ifstream in(options.visa_csv);
  if (!in) throw InputError(options.visa_csv, "cannot open the VisA split CSV");
  std::string line;
  if (!std::getline(in, line)) throw InputError(options.visa_csv, "empty CSV, expected a header row");
  const auto header = parse_csv_line(line);
  std::map<std::string, std::size_t> column;
  for (std::size_t i = 0; i < header.size(); ++i) column[header[i]] = i;
  for (const char* name : {"object", "split", "label", "image", "mask"}) {
    if (!column.count(name)) {
      throw InputError(options.visa_csv, std::string("missing column '") + name +
                                             "' (VisA split CSV needs object,split,label,image,mask)");
    }
  }
  struct Row {
    std::string object;
    Sample sample;
  };
  std::vector<Row> rows;
  int line_number = 1;
  while (std::getline(in, line)) {
    ++line_number;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const auto fields = parse_csv_line(line);
    const std::string where = options.visa_csv + ":" + std::to_string(line_number);
    if (fields.size() != header.size()) {
      problems.push_back({where, "expected " + std::to_string(header.size()) + " fields, found " + std::to_string(fields.size())});
      continue;
    }
    Row row;
    row.object = fields[column["object"]];
    const std::string split = fields[column["split"]], label = fields[column["label"]];
    if (split != "train" && split != "test") {
      problems.push_back({where, "split must be 'train' or 'test', found '" + split + "'"});
      continue;
    }
    if (label != "normal" && label != "anomaly") {
      problems.push_back({where, "label must be 'normal' or 'anomaly', found '" + label + "'"});
      continue;
    }
    Sample& s = row.sample;
    s.split = split == "train" ? Split::kTrain : Split::kTest;
    s.label = label == "anomaly" ? 1 : 0;
    s.defect_type = s.label ? "anomaly" : "good";
    s.image_path = (fs::path(root) / fields[column["image"]]).string();
    if (!fs::is_regular_file(s.image_path)) {
      problems.push_back({s.image_path, "image listed in " + where + " does not exist"});
      continue;
    }
    if (s.label == 1 && s.split == Split::kTrain) {
      problems.push_back({where, "anomalous image in the training split; UniAD trains on normal images only"});
      continue;
    }
    const std::string mask = fields[column["mask"]];
    if (s.label == 1) {
      if (mask.empty()) {
        problems.push_back({s.image_path, "anomalous image has no mask in " + where});
      } else if (!fs::is_regular_file(fs::path(root) / mask)) {
        problems.push_back({(fs::path(root) / mask).string(), "mask listed in " + where + " does not exist"});
      } else {
        s.mask_path = (fs::path(root) / mask).string();
      }
    }
    rows.push_back(std::move(row));
  }
  std::vector<std::string> found;
  for (const auto& row : rows) found.push_back(row.object);
  std::sort(found.begin(), found.end());
  found.erase(std::unique(found.begin(), found.end()), found.end());
  auto& dataset = result.dataset;
  dataset.classes = choose_classes(found, options.classes, root, problems);
  for (auto& row : rows) {
    row.sample.class_index = dataset.class_index(row.object);
    if (row.sample.class_index >= 0) dataset.samples.push_back(std::move(row.sample));
  }
  std::stable_sort(dataset.samples.begin(), dataset.samples.end(), [](const Sample& a, const Sample& b) {
    return std::tie(a.class_index, a.split, a.label, a.image_path) <
           std::tie(b.class_index, b.split, b.label, b.image_path);
  });
  for (std::size_t c = 0; c < dataset.classes.size(); ++c) {
    if (dataset.indices(Split::kTrain, static_cast<int>(c)).empty()) {
      problems.push_back({options.visa_csv, "empty class '" + dataset.classes[c] + "': no training images"});
    }
  }
  return result;
}

}  // namespace

ScanResult scan_dataset(const std::string& root, const ScanOptions& options) {
  if (!fs::is_directory(root)) throw InputError(root, "dataset folder does not exist (check --data/--root)");
  if (!options.visa_csv.empty()) return scan_visa(root, options);

  ScanResult result;
  result.dataset.root = root;
  result.dataset.layout = "mvtec";
  std::vector<std::string> found;
  for (const auto& dir : list_dirs(root)) found.push_back(dir.filename().string());
  if (found.empty()) {
    throw InputError(root, "no class folders found (MVTec layout: <root>/<class>/train/good, <class>/test/<type>)");
  }
  result.dataset.classes = choose_classes(found, options.classes, root, result.problems);
  for (std::size_t c = 0; c < result.dataset.classes.size(); ++c) {
    scan_mvtec_class(fs::path(root) / result.dataset.classes[c], static_cast<int>(c), result.dataset,
                     result.problems);
  }
  return result;
}

Dataset load_dataset(const std::string& root, const ScanOptions& options) {
  ScanResult result = scan_dataset(root, options);
  if (!result.problems.empty()) {
    const Problem& first = result.problems.front();
    std::string more;
    if (result.problems.size() > 1) {
      more = " (and " + std::to_string(result.problems.size() - 1) +
             " more problems; `uniad datasets --root " + root + "` lists them all)";
    }
    throw InputError(first.path, first.what + more);
  }
  return std::move(result.dataset);
}

std::vector<ClassSummary> summarize(const Dataset& dataset) {
  std::vector<ClassSummary> out(dataset.classes.size());
  for (std::size_t c = 0; c < out.size(); ++c) out[c].name = dataset.classes[c];
  for (const auto& s : dataset.samples) {
    ClassSummary& row = out[s.class_index];
    if (s.split == Split::kTrain) {
      ++row.train_good;
    } else if (s.label == 0) {
      ++row.test_good;
    } else {
      ++row.test_anomalous[s.defect_type];
      if (!s.mask_path.empty()) ++row.masks;
    }
  }
  return out;
}

}  // namespace uniad::data
