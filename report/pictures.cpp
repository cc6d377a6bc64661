#include "report/pictures.h"

#include <algorithm>
#include <cmath>

#include <ATen/ATen.h>
#include <fmt/core.h>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "common/error.h"
#include "common/fs.h"

namespace uniad::report {

namespace {

const cv::Scalar kBlack(0, 0, 0), kGrey(160, 160, 160), kWhite(255, 255, 255);

void text(cv::Mat& canvas, const std::string& s, cv::Point at, double scale = 0.45, cv::Scalar colour = kBlack) {
  cv::putText(canvas, s, at, cv::FONT_HERSHEY_SIMPLEX, scale, colour, 1, cv::LINE_AA);
}

Picture encode_png(const cv::Mat& image, const std::string& what) {
  std::vector<std::uint8_t> png;
  if (!cv::imencode(".png", image, png)) throw RuntimeError(what + ": cannot encode the picture");
  return {std::string(png.begin(), png.end()), image.cols, image.rows};
}

// Encoded in memory, then written atomically: a full disk leaves no half-written picture.
void write_png(const std::string& path, const cv::Mat& image) { atomic_write_bytes(path, encode_png(image, path).png); }

cv::Mat tensor_to_mat(const at::Tensor& t, int type) {
  const at::Tensor c = t.contiguous();
  return cv::Mat(static_cast<int>(c.size(0)), static_cast<int>(c.size(1)), type, c.data_ptr()).clone();
}

}  // namespace

Picture draw_panel(const std::vector<PanelRow>& rows, float map_min, float map_max, float threshold,
                   const std::string& title) {
  if (rows.empty()) return {};
  const int s = static_cast<int>(rows.front().map.size(0)), header = 40, caption = 22, gap = 6;
  const int width = 4 * s + 5 * gap, row_height = s + caption + gap;
  cv::Mat canvas(header + static_cast<int>(rows.size()) * row_height, width, CV_8UC3, kWhite);
  text(canvas, title, {gap, 18}, 0.55);
  const char* columns[4] = {"image", "ground truth", "anomaly map", "prediction"};
  for (int c = 0; c < 4; ++c) text(canvas, columns[c], {gap + c * (s + gap), 36}, 0.42, cv::Scalar(80, 80, 80));
  for (std::size_t r = 0; r < rows.size(); ++r) {
    const int y = header + static_cast<int>(r) * row_height;
    cv::Mat image = cv::imread(rows[r].image_path, cv::IMREAD_COLOR), resized;
    if (image.empty()) image = cv::Mat(s, s, CV_8UC3, kGrey);
    cv::resize(image, resized, {s, s}, 0, 0, cv::INTER_LINEAR);
    const cv::Mat map = tensor_to_mat(rows[r].map.to(at::kFloat), CV_32F);
    const cv::Mat mask = tensor_to_mat(rows[r].mask.to(at::kByte), CV_8U) * 255;
    cv::Mat scaled, heat, overlay, gt, prediction;
    map.convertTo(scaled, CV_8U, 255.0 / std::max(map_max - map_min, 1e-12f), -map_min * 255.0 / std::max(map_max - map_min, 1e-12f));
    cv::applyColorMap(scaled, heat, cv::COLORMAP_JET);
    cv::addWeighted(resized, 0.5, heat, 0.5, 0, overlay);
    cv::cvtColor(mask, gt, cv::COLOR_GRAY2BGR);
    cv::cvtColor(map >= threshold, prediction, cv::COLOR_GRAY2BGR);
    const cv::Mat tiles[4] = {resized, gt, overlay, prediction};
    for (int c = 0; c < 4; ++c) tiles[c].copyTo(canvas(cv::Rect(gap + c * (s + gap), y, s, s)));
    text(canvas, rows[r].caption, {gap, y + s + 16}, 0.42);
  }
  return encode_png(canvas, title);
}

void write_map_png16(const std::string& path, const at::Tensor& map, float map_max) {
  const cv::Mat m = tensor_to_mat(map.to(at::kFloat), CV_32F);
  cv::Mat grey;
  m.convertTo(grey, CV_16U, 65535.0 / std::max(map_max, 1e-12f));  // saturates at 65535
  write_png(path, grey);
}

void write_overlay(const std::string& path, const std::string& image_path, const at::Tensor& map, float map_max,
                   float threshold, const std::string& caption) {
  const int s = static_cast<int>(map.size(0)), footer = 22;
  cv::Mat image = cv::imread(image_path, cv::IMREAD_COLOR), resized;
  if (image.empty()) image = cv::Mat(s, s, CV_8UC3, kGrey);
  cv::resize(image, resized, {s, s}, 0, 0, cv::INTER_LINEAR);
  const cv::Mat m = tensor_to_mat(map.to(at::kFloat), CV_32F);
  cv::Mat scaled, heat, overlay;
  m.convertTo(scaled, CV_8U, 255.0 / std::max(map_max, 1e-12f));
  cv::applyColorMap(scaled, heat, cv::COLORMAP_JET);
  cv::addWeighted(resized, 0.5, heat, 0.5, 0, overlay);
  std::vector<std::vector<cv::Point>> contours;
  cv::findContours(m >= threshold, contours, cv::RETR_EXTERNAL, cv::CHAIN_APPROX_SIMPLE);
  cv::drawContours(overlay, contours, -1, kWhite, 1, cv::LINE_AA);
  cv::Mat canvas(s + footer, s, CV_8UC3, kWhite);
  overlay.copyTo(canvas(cv::Rect(0, 0, s, s)));
  text(canvas, caption, {4, s + 16}, 0.42);
  write_png(path, canvas);
}

void write_line_plot(const std::string& path, const std::vector<Series>& series, const std::string& title,
                     const std::string& x_label, const std::string& y_label, bool log_y) {
  // The legend column on the right takes labels up to 40 characters.
  const int width = 940, height = 480, left = 70, right = 310, top = 40, bottom = 55;
  cv::Mat canvas(height, width, CV_8UC3, kWhite);
  auto transform_y = [&](double v) { return log_y ? std::log10(std::max(v, 1e-12)) : v; };
  double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
  for (const auto& s : series)
    for (std::size_t i = 0; i < s.x.size(); ++i) {
      if (std::isnan(s.y[i])) continue;
      x0 = std::min(x0, s.x[i]), x1 = std::max(x1, s.x[i]);
      y0 = std::min(y0, transform_y(s.y[i])), y1 = std::max(y1, transform_y(s.y[i]));
    }
  if (!std::isfinite(x0)) x0 = 0, x1 = 1, y0 = 0, y1 = 1;
  if (x1 == x0) x1 = x0 + 1;
  if (y1 == y0) y1 = y0 + 1;
  const double pad = (y1 - y0) * 0.05;
  y0 -= pad, y1 += pad;
  const int pw = width - left - right, ph = height - top - bottom;
  auto px = [&](double x) { return left + static_cast<int>((x - x0) / (x1 - x0) * pw); };
  auto py = [&](double y) { return top + ph - static_cast<int>((transform_y(y) - y0) / (y1 - y0) * ph); };
  text(canvas, title, {left, 24}, 0.55);
  cv::rectangle(canvas, {left, top}, {left + pw, top + ph}, kBlack, 1);
  for (int t = 0; t <= 5; ++t) {
    const double xv = x0 + (x1 - x0) * t / 5, yv = y0 + (y1 - y0) * t / 5;
    const int xp = left + pw * t / 5, yp = top + ph - ph * t / 5;
    cv::line(canvas, {xp, top + ph}, {xp, top + ph + 4}, kBlack);
    cv::line(canvas, {left - 4, yp}, {left, yp}, kBlack);
    cv::line(canvas, {left + 1, yp}, {left + pw - 1, yp}, cv::Scalar(235, 235, 235));
    text(canvas, fmt::format("{:.4g}", xv), {xp - 12, top + ph + 20}, 0.4);
    text(canvas, fmt::format("{:.3g}", log_y ? std::pow(10.0, yv) : yv), {4, yp + 4}, 0.4);
  }
  text(canvas, x_label, {left + pw / 2 - 20, height - 12}, 0.45);
  text(canvas, y_label + (log_y ? " (log)" : ""), {left, top - 6}, 0.42, cv::Scalar(80, 80, 80));
  const cv::Scalar palette[] = {{180, 119, 31}, {14, 127, 255}, {44, 160, 44}, {40, 39, 214}, {189, 103, 148},
                                {75, 86, 140},  {194, 119, 227}, {127, 127, 127}, {34, 189, 188}, {207, 190, 23}};
  for (std::size_t k = 0; k < series.size(); ++k) {
    const cv::Scalar colour = palette[(series[k].colour >= 0 ? series[k].colour : static_cast<int>(k)) % 10];
    const int thickness = series[k].thin ? 1 : 2;
    std::vector<cv::Point> points;
    for (std::size_t i = 0; i < series[k].x.size(); ++i)
      if (!std::isnan(series[k].y[i])) points.emplace_back(px(series[k].x[i]), py(series[k].y[i]));
    if (points.size() > 1) cv::polylines(canvas, points, false, colour, thickness, cv::LINE_AA);
    for (const auto& p : points)
      cv::circle(canvas, p, series[k].thin ? 3 : 2, colour, series[k].thin ? 1 : cv::FILLED, cv::LINE_AA);
    const int ly = top + 14 + 18 * static_cast<int>(k);
    cv::line(canvas, {left + pw + 12, ly - 4}, {left + pw + 32, ly - 4}, colour, thickness);
    text(canvas, series[k].label.substr(0, 40), {left + pw + 36, ly}, 0.4);
  }
  write_png(path, canvas);
}

}  // namespace uniad::report
