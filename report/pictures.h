#pragma once
// Pictures for reports (PNG, drawn with OpenCV): the qualitative panel of the paper
// (image | ground truth | anomaly-map heat overlay | prediction binarised at a threshold)
// and line plots of training curves.
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

namespace uniad::report {

struct PanelRow {
  std::string image_path;  // source image (resized to the map size)
  at::Tensor map;          // [S, S] float anomaly map
  at::Tensor mask;         // [S, S] uint8 0/1 ground truth
  std::string caption;     // e.g. "scratch  score 3.21"
};

// A picture encoded as PNG, with its size (TensorBoard's image records carry it).
struct Picture {
  std::string png;
  int width = 0, height = 0;
};

// One row per image: image, ground truth, heat overlay, binarised prediction. The heat
// colours span [map_min, map_max] (the class's range); `threshold` binarises the map.
Picture draw_panel(const std::vector<PanelRow>& rows, float map_min, float map_max, float threshold,
                   const std::string& title);

// For one predicted image: the map as a 16-bit grey PNG (0..65535 spans [0, map_max], values
// above clipped), and the image with the map's heat colours over it, `threshold` outlined.
void write_map_png16(const std::string& path, const at::Tensor& map, float map_max);
void write_overlay(const std::string& path, const std::string& image_path, const at::Tensor& map, float map_max,
                   float threshold, const std::string& caption);

struct Series {
  std::string label;
  std::vector<double> x, y;
  int colour = -1;     // palette index; -1: the series' position in the plot
  bool thin = false;   // a thin line with hollow markers (a second quantity in the same colour)
};

// A line plot with axes, ticks, a legend and a title.
void write_line_plot(const std::string& path, const std::vector<Series>& series, const std::string& title,
                     const std::string& x_label, const std::string& y_label, bool log_y = false);

}  // namespace uniad::report
