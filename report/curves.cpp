#include "report/curves.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>

#include <fmt/core.h>

#include "report/pictures.h"

namespace uniad::report {

namespace fs = std::filesystem;

std::vector<nlohmann::json> read_metrics_log(const std::string& run_dir) {
  std::vector<nlohmann::json> lines;
  std::ifstream in(fs::path(run_dir) / "metrics.jsonl");
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) lines.push_back(nlohmann::json::parse(line));
  return lines;
}

namespace {

// Mean over runs of y at each x that every run has (a curve per configuration from its seeds).
Series mean_curve(const std::string& label, const std::vector<std::map<double, double>>& runs) {
  Series out{label, {}, {}};
  if (runs.empty()) return out;
  for (const auto& [x, first] : runs.front()) {
    double sum = 0;
    std::size_t n = 0;
    for (const auto& run : runs) {
      const auto it = run.find(x);
      if (it == run.end()) break;
      sum += it->second;
      ++n;
    }
    if (n < runs.size()) continue;
    out.x.push_back(x);
    out.y.push_back(sum / static_cast<double>(n));
  }
  return out;
}

}  // namespace

bool write_training_curves(const std::vector<std::string>& run_dirs, const std::vector<std::string>& labels,
                           const std::string& out_dir) {
  // Runs with the same label (the seeds of one configuration) become one line: their mean.
  std::vector<std::string> order;
  std::map<std::string, std::vector<std::map<double, double>>> loss, image, pixel;
  for (std::size_t r = 0; r < run_dirs.size(); ++r) {
    const auto log = read_metrics_log(run_dirs[r]);
    if (log.empty()) continue;
    const std::string& label = labels[r];
    if (!loss.count(label) && !image.count(label)) order.push_back(label);
    std::map<double, double> l, i, p;
    for (const auto& line : log) {
      if (line.contains("loss")) l[line.at("epoch")] = line.at("loss");  // a memory bank logs no loss
      if (line.contains("eval")) {
        const auto& mean = line.at("eval").at("mean");
        i[line.at("epoch")] = mean.value("image_auroc", NAN);
        p[line.at("epoch")] = mean.value("pixel_auroc", NAN);
      }
    }
    if (!l.empty()) loss[label].push_back(l);
    if (!i.empty()) image[label].push_back(i), pixel[label].push_back(p);
  }
  // One colour per configuration in both figures; pixel AUROC is the thin line of its colour.
  std::vector<Series> loss_series, auroc_series;
  for (std::size_t c = 0; c < order.size(); ++c) {
    const std::string& label = order[c];
    const auto count = std::max(loss[label].size(), image[label].size());
    const std::string name = count > 1 ? fmt::format("{} (mean of {})", label, count) : label;
    auto add = [&](std::vector<Series>& to, Series s, bool thin) {
      s.colour = static_cast<int>(c);
      s.thin = thin;
      to.push_back(std::move(s));
    };
    if (!loss[label].empty()) add(loss_series, mean_curve(name, loss[label]), false);
    if (!image[label].empty()) {
      add(auroc_series, mean_curve(name + " image", image[label]), false);
      add(auroc_series, mean_curve(name + " pixel", pixel[label]), true);
    }
  }
  if (loss_series.empty()) return false;
  fs::create_directories(out_dir);
  write_line_plot((fs::path(out_dir) / "loss.png").string(), loss_series,
                        "training loss (MSE of reconstructed features)", "epoch", "loss", true);
  write_line_plot((fs::path(out_dir) / "auroc.png").string(), auroc_series,
                        "mean image (thick) and pixel (thin) AUROC on the test split (periodic evaluation)", "epoch", "AUROC");
  return true;
}

}  // namespace uniad::report
