#include "launcher/dataset_report.h"

#include <fmt/core.h>

#include "common/table.h"
#include "data/image.h"

namespace uniad::commands {

DatasetReport print_dataset_report(const data::ScanResult& scan, int threads, bool verify, std::ostream& out) {
  const data::Dataset& dataset = scan.dataset;
  auto summary = data::summarize(dataset);
  std::vector<data::Problem> problems = scan.problems;
  if (verify) {
    const auto decoded = data::verify_images(dataset, summary, threads);
    problems.insert(problems.end(), decoded.begin(), decoded.end());
  }
  Table table{{"class", "train/good", "test/good", "anomalous", "defect types", "masks", "empty masks"}, {}};
  DatasetReport report;
  report.json["root"] = dataset.root;
  report.json["layout"] = dataset.layout;
  report.json["verified"] = verify;
  report.json["classes"] = nlohmann::ordered_json::array();
  int total[4] = {0, 0, 0, 0};
  for (const auto& c : summary) {
    int anomalous = 0;
    std::string types;
    for (const auto& [type, n] : c.test_anomalous) {
      anomalous += n;
      types += (types.empty() ? "" : ", ") + fmt::format("{} {}", type, n);
    }
    const std::string empty = c.empty_masks < 0 ? "?" : std::to_string(c.empty_masks);
    table.rows.push_back({c.name, std::to_string(c.train_good), std::to_string(c.test_good),
                          std::to_string(anomalous), types, std::to_string(c.masks), empty});
    total[0] += c.train_good;
    total[1] += c.test_good;
    total[2] += anomalous;
    total[3] += c.masks;
    report.json["classes"].push_back({{"name", c.name},
                                      {"train_good", c.train_good},
                                      {"test_good", c.test_good},
                                      {"test_anomalous", c.test_anomalous},
                                      {"masks", c.masks},
                                      {"empty_masks", c.empty_masks < 0 ? nlohmann::ordered_json() : nlohmann::ordered_json(c.empty_masks)}});
  }
  table.rows.push_back({"total", std::to_string(total[0]), std::to_string(total[1]), std::to_string(total[2]), "",
                        std::to_string(total[3]), ""});
  out << fmt::format("dataset {} ({} layout, {} classes{})\n", dataset.root, dataset.layout, dataset.classes.size(),
                     verify ? ", every file decoded" : ", names only")
      << table.to_text();
  report.json["problems"] = nlohmann::ordered_json::array();
  if (problems.empty()) {
    out << "no problems found\n";
  } else {
    out << fmt::format("{} problem(s):\n", problems.size());
    for (const auto& p : problems) {
      out << "  " << p.path << ": " << p.what << "\n";
      report.json["problems"].push_back({{"path", p.path}, {"problem", p.what}});
    }
  }
  report.problems = problems.size();
  return report;
}

}  // namespace uniad::commands
