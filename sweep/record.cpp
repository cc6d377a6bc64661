#include "sweep/record.h"

#include <fstream>
#include <map>
#include <set>
#include <tuple>

#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include "common/error.h"
#include "common/fs.h"
#include "common/version.h"

namespace uniad::sweep {

fs::path run_dir(const fs::path& out, const SweepRun& run) { return out / run.config / ("seed=" + std::to_string(run.seed)); }
fs::path run_report(const fs::path& out, const SweepRun& run) { return run_dir(out, run) / "eval" / "report.json"; }

namespace {

SweepRecord read_sweep_record(const fs::path& out) {
  const fs::path path = out / "sweep.json";
  if (!fs::exists(path)) throw InputError(out.string(), "not a sweep folder (no sweep.json); run `uniad sweep --spec ...` first");
  std::ifstream in(path);
  nlohmann::ordered_json j;
  try {
    j = nlohmann::ordered_json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw InputError(path.string(), std::string("not readable JSON (") + e.what() + "); the sweep's record is lost");
  }
  SweepRecord record;
  try {
    record.spec = SweepSpec::from_json(j.at("spec"), (out / "sweep.ini").string());
    record.cache = j.at("cache").get<std::string>();
    for (const auto& r : j.at("runs")) {
      // Folders of uniad 0.x before the record held the options: each started run kept its own
      // (RUN/sweep-run.json), the sweep only the names.
      if (r.is_string()) {
        const fs::path legacy = out / r.get<std::string>() / "sweep-run.json";
        if (fs::exists(legacy)) record.earlier_runs.push_back(run_from_json(nlohmann::ordered_json::parse(read_file_bytes(legacy))));
        record.legacy = true;
        continue;
      }
      record.runs.push_back(run_from_json(r));
    }
    for (const auto& r : j.value("earlier_runs", nlohmann::ordered_json::array())) record.earlier_runs.push_back(run_from_json(r));
  } catch (const nlohmann::json::exception& e) {
    throw InputError(path.string(), std::string("not a sweep record of this uniad version (") + e.what() + ")");
  }
  return record;
}

// Refuses, before anything runs, to reuse a run folder that was made with other options or
// another cache than the spec now asks for (an edited spec, a changed grid, ...).
void check_existing_runs(const fs::path& out, const SweepRecord& record, const std::vector<SweepRun>& runs,
                         const std::string& cache) {
  std::map<std::string, const SweepRun*> recorded;
  for (const auto* list : {&record.runs, &record.earlier_runs})
    for (const auto& r : *list) recorded.emplace(r.name(), &r);
  for (const auto& run : runs) {
    const auto it = recorded.find(run.name());
    if (it == recorded.end() || !fs::exists(run_dir(out, run))) continue;  // nothing made yet
    const SweepRun& before = *it->second;
    std::string differences;
    if (record.cache != cache) differences += fmt::format("\n  cache: {} in the folder, {} now", record.cache, cache);
    for (const auto& [command, then, now] : {std::tuple{"train", &before.train, &run.train}, std::tuple{"eval", &before.eval, &run.eval}}) {
      std::map<std::string, std::string> a(then->begin(), then->end()), b(now->begin(), now->end());
      std::set<std::string> keys;
      for (const auto& [k, v] : a) keys.insert(k);
      for (const auto& [k, v] : b) keys.insert(k);
      auto shown = [](const std::map<std::string, std::string>& m, const std::string& k) {
        return m.count(k) ? m.at(k) : std::string("(default)");
      };
      for (const auto& k : keys) {
        if (shown(a, k) != shown(b, k))
          differences += fmt::format("\n  {} --{}: {} in the folder, {} now", command, k, shown(a, k), shown(b, k));
      }
    }
    if (!differences.empty()) {
      throw UsageError(fmt::format("run {} in {} was made with other options:{}\nuse another --out, or remove that "
                                   "run's folder to redo it",
                                   run.name(), run_dir(out, run).string(), differences));
    }
  }
}

}  // namespace

SweepRecord recorded_sweep(const fs::path& out) {
  SweepRecord record = read_sweep_record(out);
  if (record.legacy) {
    throw UsageError(out.string() + "/sweep.json was written by an earlier uniad (run names only): run `uniad sweep --spec " +
                     (out / "sweep.ini").string() + " --cache CACHE --out " + out.string() +
                     "` once to record every run's options (finished runs are skipped)");
  }
  return record;
}

void prepare_sweep_folder(const fs::path& out, const SweepSpec& spec, const std::vector<SweepRun>& runs,
                          const std::string& cache) {
  // Runs an earlier spec made here and this one no longer has stay recorded, so that a later
  // spec bringing them back with other options is refused too.
  nlohmann::ordered_json earlier = nlohmann::ordered_json::array();
  if (fs::exists(out / "sweep.json")) {
    const SweepRecord before = read_sweep_record(out);
    check_existing_runs(out, before, runs, cache);
    std::set<std::string> names;
    for (const auto& r : runs) names.insert(r.name());
    for (const auto* list : {&before.runs, &before.earlier_runs})
      for (const auto& r : *list)
        if (!names.count(r.name()) && fs::exists(run_dir(out, r))) earlier.push_back(run_to_json(r)), names.insert(r.name());
  }
  fs::create_directories(out);
  atomic_write_bytes(out / "sweep.ini", read_file_bytes(spec.path));
  nlohmann::ordered_json records = nlohmann::ordered_json::array();
  for (const auto& r : runs) records.push_back(run_to_json(r));
  nlohmann::ordered_json record = {{"spec_path", fs::absolute(spec.path).string()},
                                   {"spec", spec.to_json()},
                                   {"cache", cache},
                                   {"runs", records}};
  if (!earlier.empty()) record["earlier_runs"] = earlier;
  record["project_version"] = project_version();
  atomic_write_bytes(out / "sweep.json", record.dump(2) + "\n");
}

}  // namespace uniad::sweep
