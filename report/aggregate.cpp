#include "report/aggregate.h"

#include <algorithm>
#include <cmath>
#include <set>

#include <fmt/core.h>

#include "common/error.h"
#include "eval/evaluate.h"

namespace uniad::report {

namespace {

// Settings that may differ between runs of one comparison without being "the" setting.
bool ignored_key(const std::string& key) {
  for (const char* prefix : {"/config/run_dir", "/config/cache", "/config/checkpoint_every", "/config/eval_every",
                             "/config/seed", "/seed", "/setting", "/checkpoint", "/run_dir", "/cache_path", "/evaluated_at"}) {
    if (key.rfind(prefix, 0) == 0) return true;
  }
  return false;
}

}  // namespace

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

Difference difference_of_means(const std::vector<double>& a, const std::vector<double>& b) {
  const MeanStd x = mean_std(a), y = mean_std(b);
  auto variance_of_mean = [](const MeanStd& m) { return m.count ? m.std * m.std / m.count : 0.0; };
  return {x.mean - y.mean, std::sqrt(variance_of_mean(x) + variance_of_mean(y)), x.count >= 2 && y.count >= 2};
}

std::string difference_text(const Difference& d, bool spread) {
  if (std::isnan(d.mean)) return "n/a";
  if (spread && d.spread_known) return fmt::format("{:+.1f} +- {:.2f}", 100 * d.mean, 100 * d.std);
  return fmt::format("{:+.1f}", 100 * d.mean);
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
    for (const auto& column : eval::metric_columns()) table.header.push_back(column.title);
    for (const auto& cls : rows) {
      std::vector<std::string> cells = {cls};
      for (const auto& column : eval::metric_columns()) {
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
  for (const auto& column : eval::metric_columns()) {
    Table table;
    table.header = {"class"};
    for (const auto& v : distinct) table.header.push_back(out.setting + " = " + v);
    for (std::size_t i = 1; i < distinct.size(); ++i) table.header.push_back("diff " + distinct[i] + " - " + distinct[0]);
    for (const auto& cls : rows) {
      std::vector<std::string> cells = {cls};
      std::vector<std::vector<double>> by_value;  // the runs' values for each value of the setting
      for (const auto& v : distinct) {
        std::vector<std::size_t> runs;
        for (std::size_t r = 0; r < reports.size(); ++r)
          if (values[r] == v) runs.push_back(r);
        const auto vals = metric_values(runs, cls, column.key);
        cells.push_back(mean_std_text(vals));
        by_value.push_back(vals);
        out.json["classes"][cls][column.key][v] = vals;
      }
      for (std::size_t i = 1; i < by_value.size(); ++i)
        cells.push_back(difference_text(difference_of_means(by_value[i], by_value[0]), /*spread=*/false));
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

}  // namespace uniad::report
