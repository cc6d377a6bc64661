#pragma once
// Dataset scanning: which images exist, their class, split, label and mask.
//
// Two layouts are read:
//  * MVTec AD: <root>/<class>/train/good/*, <root>/<class>/test/<type>/*,
//    <root>/<class>/ground_truth/<type>/<stem>_mask.png (type "good" = normal).
//  * VisA split CSV: columns object, split, label, image, mask; paths relative to root.
// Scanning only looks at names; decoding (and the checks that need pixels) is image.h.
#include <cstddef>
#include <map>
#include <string>
#include <vector>

namespace uniad::data {

enum class Split { kTrain, kTest };
const char* split_name(Split split);

struct Sample {
  std::string image_path;
  std::string mask_path;    // empty for normal images (and anomalous VisA rows without mask)
  int class_index = 0;      // into Dataset::classes
  std::string defect_type;  // "good" for normal images
  int label = 0;            // 0 normal, 1 anomalous
  Split split = Split::kTrain;
};

struct Dataset {
  std::string root;
  std::string layout;                // "mvtec" or "visa"
  std::vector<std::string> classes;  // sorted by name
  // Ordered by class, then split (train first), then defect type ("good" first), then file.
  std::vector<Sample> samples;

  // Positions in `samples` of one split, optionally of one class (class_index < 0: all).
  std::vector<std::size_t> indices(Split split, int class_index = -1) const;
  int class_index(const std::string& name) const;  // -1 if absent
};

// Something wrong with the dataset found while scanning or decoding. `path` is the file or
// folder it concerns; `what` says what is wrong and, where it helps, what to do.
struct Problem {
  std::string path;
  std::string what;
};

struct ScanOptions {
  std::vector<std::string> classes;  // empty: every class found
  std::string visa_csv;              // set: read the VisA split-CSV layout from this file
};

struct ScanResult {
  Dataset dataset;
  std::vector<Problem> problems;
};

// Scans without throwing for dataset problems: everything found is collected, for
// `uniad datasets` to report. Throws InputError only if the root itself is unusable.
ScanResult scan_dataset(const std::string& root, const ScanOptions& options = {});

// Scans and throws InputError naming the first problem (and how many there are) if any.
Dataset load_dataset(const std::string& root, const ScanOptions& options = {});

// Image file extensions accepted (lower case, no dot).
bool is_image_extension(const std::string& ext);

// Per-class counts for summaries.
struct ClassSummary {
  std::string name;
  int train_good = 0;
  int test_good = 0;
  std::map<std::string, int> test_anomalous;  // per defect type
  int masks = 0;                              // anomalous images with a mask file
  int empty_masks = -1;                       // anomalous images whose mask has no defect pixel; -1 = not checked
};
std::vector<ClassSummary> summarize(const Dataset& dataset);

// Parses "a,b,c" into names; empty items are dropped.
std::vector<std::string> split_list(const std::string& text);

}  // namespace uniad::data
