#include "eval/report.h"

#include <cmath>
#include <map>
#include <set>
#include <sstream>

#include <fmt/core.h>

#include "common/error.h"

namespace uniad::eval {

namespace {

nlohmann::ordered_json number_or_null(double v) { return std::isnan(v) ? nlohmann::ordered_json() : nlohmann::ordered_json(v); }

std::string percent(const nlohmann::json& v) { return v.is_number() ? fmt::format("{:.1f}", 100 * v.get<double>()) : "n/a"; }

// Settings that may differ between runs of one comparison without being "the" setting.
bool ignored_key(const std::string& key) {
  for (const char* prefix : {"/config/run_dir", "/config/cache", "/config/checkpoint_every", "/config/eval_every",
                             "/config/seed", "/seed", "/setting", "/checkpoint", "/run_dir", "/cache_path", "/evaluated_at"}) {
    if (key.rfind(prefix, 0) == 0) return true;
  }
  return false;
}

}  // namespace

nlohmann::ordered_json report_json(const Evaluation& evaluation, const nlohmann::ordered_json& provenance) {
  nlohmann::ordered_json report;
  report["provenance"] = provenance;
  report["classes"] = nlohmann::ordered_json::array();
  for (const auto& c : evaluation.classes) {
    nlohmann::ordered_json row = {{"name", c.name}, {"images", c.images}, {"anomalous", c.anomalous},
                                  {"regions", c.pixel.regions}};
    for (const auto& column : metric_columns()) row[column.key] = number_or_null(column.get(c));
    row["pixel_f1_threshold"] = number_or_null(c.pixel.binary.f1_threshold);
    report["classes"].push_back(row);
  }
  report["mean"] = evaluation.mean();
  return report;
}

Table metrics_table(const nlohmann::json& report) {
  Table table;
  table.header = {"class"};
  for (const auto& column : metric_columns()) table.header.push_back(column.title);
  for (const auto& row : report.at("classes")) {
    std::vector<std::string> cells = {row.at("name").get<std::string>()};
    for (const auto& column : metric_columns()) cells.push_back(percent(row.at(column.key)));
    table.rows.push_back(cells);
  }
  std::vector<std::string> mean = {"mean"};
  for (const auto& column : metric_columns()) mean.push_back(percent(report.at("mean").at(column.key)));
  table.rows.push_back(mean);
  return table;
}

std::string table_csv(const Table& table) {
  std::ostringstream out;
  auto line = [&](const std::vector<std::string>& cells) {
    for (std::size_t i = 0; i < cells.size(); ++i) {
      std::string cell = cells[i];
      if (cell.find_first_of(",\"") != std::string::npos) {
        std::string escaped;
        for (char ch : cell) escaped += ch == '"' ? std::string("\"\"") : std::string(1, ch);
        cell = "\"" + escaped + "\"";
      }
      out << (i ? "," : "") << cell;
    }
    out << "\n";
  };
  line(table.header);
  for (const auto& row : table.rows) line(row);
  return out.str();
}

std::string scores_csv(const Evaluation& evaluation) {
  Table table{{"class", "path", "defect_type", "label", "score"}, {}};
  for (const auto& image : evaluation.images) {
    table.rows.push_back({image.class_name, image.path, image.defect_type, std::to_string(image.label),
                          fmt::format("{:.8g}", image.score)});
  }
  return table_csv(table);
}

std::string html_escape(const std::string& text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '&': out += "&amp;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string html_table(const Table& table) {
  std::string out = "<table><thead><tr>";
  for (const auto& h : table.header) out += "<th>" + html_escape(h) + "</th>";
  out += "</tr></thead><tbody>\n";
  for (const auto& row : table.rows) {
    out += "<tr>";
    for (const auto& cell : row) out += "<td>" + html_escape(cell) + "</td>";
    out += "</tr>\n";
  }
  return out + "</tbody></table>\n";
}

std::string html_page(const std::string& title, const std::vector<std::pair<std::string, std::string>>& sections) {
  std::string out =
      "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>" + html_escape(title) +
      "</title>\n<style>body{font-family:sans-serif;max-width:1200px;margin:2em auto;color:#222}"
      "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
      "td:first-child,th:first-child{text-align:left}tr:last-child td{font-weight:bold}"
      "img{max-width:100%;border:1px solid #ddd;margin:4px 0}pre{background:#f6f6f6;padding:8px;overflow:auto}"
      ".note{background:#fff4d6;padding:8px;border-left:4px solid #e0a000}</style></head><body>\n<h1>" +
      html_escape(title) + "</h1>\n";
  for (const auto& [heading, body] : sections) out += "<h2>" + html_escape(heading) + "</h2>\n" + body + "\n";
  return out + "</body></html>\n";
}

MeanStd mean_std(const std::vector<double>& values) {
  MeanStd out;
  double sum = 0;
  for (double x : values)
    if (!std::isnan(x)) sum += x, ++out.count;
  if (out.count == 0) return {NAN, 0, 0};
  out.mean = sum / out.count;
  if (out.count == 1) return out;
  double var = 0;
  for (double x : values)
    if (!std::isnan(x)) var += (x - out.mean) * (x - out.mean);
  out.std = std::sqrt(var / (out.count - 1));  // sample standard deviation over seeds
  return out;
}

std::string mean_std_text(const std::vector<double>& values) {
  const MeanStd m = mean_std(values);
  if (m.count == 0) return "n/a";
  if (m.count == 1) return fmt::format("{:.1f}", 100 * m.mean);
  return fmt::format("{:.1f} +- {:.2f}", 100 * m.mean, 100 * m.std);
}

RunDifferences compare_runs(const std::vector<nlohmann::json>& reports) {
  RunDifferences out;
  if (reports.empty()) return out;
  std::vector<nlohmann::json> flat;
  for (const auto& r : reports) flat.push_back(r.at("provenance").flatten());
  std::set<std::string> keys;
  for (const auto& f : flat)
    for (const auto& [key, value] : f.items()) keys.insert(key);
  for (const auto& key : keys) {
    if (ignored_key(key)) continue;
    for (const auto& f : flat) {
      if (!f.contains(key) || !flat[0].contains(key) || f.at(key) != flat[0].at(key)) {
        out.differing.push_back(key);
        break;
      }
    }
  }
  return out;
}

Aggregate aggregate_runs(const std::vector<nlohmann::json>& reports, const std::vector<std::string>& names) {
  if (reports.empty()) throw UsageError("no runs to aggregate");
  // Group the differing keys into settings (a setting may flatten into several keys).
  RunDifferences diff = compare_runs(reports);
  std::set<std::string> settings;
  for (const auto& key : diff.differing) settings.insert(key);
  Aggregate out;
  auto values_of = [&](const std::string& key) {
    std::vector<std::string> values;
    for (const auto& r : reports) {
      const auto flat = r.at("provenance").flatten();
      values.push_back(flat.contains(key) ? flat.at(key).dump() : "(absent)");
    }
    return values;
  };
  if (settings.size() > 1) {
    std::string list;
    for (const auto& s : settings) list += "\n  " + s;
    throw UsageError("these runs differ in more than one setting (besides the seed), so they cannot be aggregated:" +
                     list + "\ngive runs that differ only by seed, or by one setting");
  }
  // Classes in the first run's order.
  std::vector<std::string> classes;
  for (const auto& row : reports[0].at("classes")) classes.push_back(row.at("name").get<std::string>());
  auto metric_values = [&](const std::vector<std::size_t>& runs, const std::string& cls, const char* key) {
    std::vector<double> values;
    for (std::size_t r : runs) {
      const auto& rep = reports[r];
      if (cls == "mean") {
        values.push_back(rep.at("mean").at(key).is_number() ? rep.at("mean").at(key).get<double>() : NAN);
        continue;
      }
      for (const auto& row : rep.at("classes"))
        if (row.at("name") == cls) values.push_back(row.at(key).is_number() ? row.at(key).get<double>() : NAN);
    }
    return values;
  };
  std::vector<std::string> rows = classes;
  rows.push_back("mean");
  if (settings.empty()) {
    out.kind = "seeds";
    std::vector<std::size_t> all(reports.size());
    for (std::size_t i = 0; i < all.size(); ++i) all[i] = i;
    Table table;
    table.header = {"class"};
    for (const auto& column : metric_columns()) table.header.push_back(column.title);
    for (const auto& cls : rows) {
      std::vector<std::string> cells = {cls};
      for (const auto& column : metric_columns()) {
        const auto values = metric_values(all, cls, column.key);
        cells.push_back(mean_std_text(values));
        out.json["classes"][cls][column.key] = values;
      }
      table.rows.push_back(cells);
    }
    out.tables.push_back(table);
    out.table_titles.push_back(fmt::format("{} runs (seeds), mean +- std in %", reports.size()));
    out.json["kind"] = "seeds";
    out.json["runs"] = names;
    return out;
  }
  out.kind = "comparison";
  out.setting = *settings.begin();
  const auto values = values_of(out.setting);
  std::vector<std::string> distinct;
  for (const auto& v : values)
    if (std::find(distinct.begin(), distinct.end(), v) == distinct.end()) distinct.push_back(v);
  for (const auto& column : metric_columns()) {
    Table table;
    table.header = {"class"};
    for (const auto& v : distinct) table.header.push_back(out.setting + " = " + v);
    for (std::size_t i = 1; i < distinct.size(); ++i) table.header.push_back("diff " + distinct[i] + " - " + distinct[0]);
    for (const auto& cls : rows) {
      std::vector<std::string> cells = {cls};
      std::vector<double> means;
      for (const auto& v : distinct) {
        std::vector<std::size_t> runs;
        for (std::size_t r = 0; r < reports.size(); ++r)
          if (values[r] == v) runs.push_back(r);
        const auto vals = metric_values(runs, cls, column.key);
        cells.push_back(mean_std_text(vals));
        double m = 0;
        int n = 0;
        for (double x : vals)
          if (!std::isnan(x)) m += x, ++n;
        means.push_back(n ? m / n : NAN);
        out.json["classes"][cls][column.key][v] = vals;
      }
      for (std::size_t i = 1; i < means.size(); ++i)
        cells.push_back(std::isnan(means[i]) || std::isnan(means[0]) ? "n/a" : fmt::format("{:+.1f}", 100 * (means[i] - means[0])));
      table.rows.push_back(cells);
    }
    out.tables.push_back(table);
    out.table_titles.push_back(std::string(column.title) + " (%), by " + out.setting);
  }
  out.json["kind"] = "comparison";
  out.json["setting"] = out.setting;
  out.json["values"] = distinct;
  out.json["runs"] = names;
  return out;
}

}  // namespace uniad::eval
