#pragma once
// The synthetic multi-class dataset: the embedded default of `uniad demo` and of the
// end-to-end tests. Everything is drawn procedurally from a seed (no external files),
// and the same seed gives the same bytes.
//
// Classes alternate between textures (weave, wood, tile, dots) and objects (bottle cap,
// hex nut, pill, chip); more than eight classes reuse the designs with other colours.
// Normal images vary in position, rotation, phase, lighting and sensor noise, so a model
// must learn the class's appearance rather than memorise pixels. Anomalous images carry
// one defect each (scratch, hole, spot, contamination, missing part, deformation, colour
// change) whose mask marks exactly the pixels the defect changed.
#include <cstdint>
#include <string>
#include <vector>

#include <opencv2/core/mat.hpp>

#include "data/dataset.h"

namespace uniad::data {

struct SynthOptions {
  int classes = 4;
  std::uint64_t seed = 0;
  int train_good = 60;      // per class
  int test_good = 16;       // per class
  int test_anomalous = 24;  // per class, spread evenly over the class's defect types
  int image_size = 256;     // written images are image_size x image_size PNGs
};

struct SynthClass {
  std::string name;
  bool object = false;               // object classes have a foreground; textures fill the frame
  std::vector<std::string> defects;  // defect types (folder names under test/)
};

// The classes `options.classes` produces, in order.
std::vector<SynthClass> synthetic_classes(int count);

struct SynthImage {
  cv::Mat image;   // CV_8UC3, RGB
  cv::Mat mask;    // CV_8U, 255 where the defect changed a pixel, else 0
  cv::Mat normal;  // the same image without its defect (equals `image` for normal samples)
};

// Renders one image. `defect` is "good" or one of the class's defect types; `index` picks
// the instance. Deterministic in (options.seed, class_index, split, defect, index).
SynthImage render_synthetic(const SynthOptions& options, int class_index, Split split,
                            const std::string& defect, int index);

// Writes the dataset in MVTec layout under `out_dir` (created; must not hold another
// dataset), plus `synth.json` recording the options and the project version. The folder is
// built under a temporary name and renamed when complete.
void write_synthetic_dataset(const std::string& out_dir, const SynthOptions& options, bool show_progress);

// The JSON text write_synthetic_dataset stores in synth.json for these options; a folder
// holding the same text is the same dataset and can be reused.
std::string synthetic_manifest(const SynthOptions& options);

}  // namespace uniad::data
