// `uniad sweep`: a grid of configurations x seeds (and named variants for ablations), each
// run trained and evaluated by its own `uniad train` / `uniad eval` processes on this
// machine, resumable, then ranked in a leaderboard (docs/sweeps.md).
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <tuple>

#include <fmt/core.h>
#include <spdlog/spdlog.h>

#include "common/device.h"
#include "common/error.h"
#include "common/parallel.h"
#include "common/fs.h"
#include "common/progress.h"
#include "common/subprocess.h"
#include "common/table.h"
#include "common/version.h"
#include "eval/report.h"
#include "launcher/cli.h"
#include "launcher/commands.h"
#include "launcher/run_files.h"
#include "launcher/sweep_slurm.h"
#include "launcher/sweep_spec.h"

namespace uniad::commands {

namespace po = cli::po;

namespace {

fs::path run_dir(const fs::path& out, const SweepRun& run) { return out / run.config / ("seed=" + std::to_string(run.seed)); }
// A run is done once `uniad eval` has written this.
fs::path run_report(const fs::path& out, const SweepRun& run) { return run_dir(out, run) / "eval" / "report.json"; }

nlohmann::json read_json(const fs::path& path) {
  std::ifstream in(path);
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception&) {
    throw InputError(path.string(), "not readable JSON; remove it to redo that run");
  }
}

// sweep.json: the single record of a sweep's runs (docs/sweeps.md). Read in order: the order
// of a run's options is part of it.
struct SweepRecord {
  SweepSpec spec;
  std::string cache;
  std::vector<SweepRun> runs;          // the spec's, in its order
  std::vector<SweepRun> earlier_runs;  // made by an earlier spec into this folder, no longer in it
  bool legacy = false;                 // written before sweep.json held the runs' options
};

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
void check_existing_runs(const fs::path& out, const std::vector<SweepRun>& runs, const std::string& cache) {
  if (!fs::exists(out / "sweep.json")) return;
  const SweepRecord record = read_sweep_record(out);
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

enum class RunState { kDone, kSkipped, kFailed, kStopped };

struct Launch {
  fs::path out;
  std::string cache, uniad;
  const SweepSpec* spec = nullptr;
  int threads = 1;
  std::vector<std::string> rank_launcher;  // what starts the training's ranks (mpirun, srun), or nothing
  bool gpus = false;  // the job holds a GPU per rank: train on it (--device cuda, unless the run says otherwise)
};

// On this machine: mpirun when a run has more than one rank.
std::vector<std::string> mpirun_launcher(int ranks) {
  if (ranks <= 1) return {};
  std::vector<std::string> argv = {"mpirun"};
  if (geteuid() == 0) argv.insert(argv.end(), {"--allow-run-as-root", "--oversubscribe"});
  argv.insert(argv.end(), {"-np", std::to_string(ranks)});
  return argv;
}

// Does the spec ask Slurm for a GPU per task ([slurm] gpus-per-task = 1)?
bool gpu_per_task(const SweepSpec& spec) {
  for (const auto& [name, value] : spec.slurm)
    if (name == "gpus-per-task") return true;
  return false;
}

// In a Slurm job: srun, always, so the training is a job step and gets Slurm's signals; with a
// GPU per task, each rank is bound to its own (Slurm sets its CUDA_VISIBLE_DEVICES).
std::vector<std::string> srun_launcher(int ranks, int threads, bool gpus) {
  const char* mpi = std::getenv("UNIAD_MPI");
  std::vector<std::string> argv = {"srun", std::string("--mpi=") + (mpi && *mpi ? mpi : "pmix"), "--kill-on-bad-exit=1",
                                   "--ntasks=" + std::to_string(ranks), "--cpus-per-task=" + std::to_string(threads)};
  if (gpus) argv.insert(argv.end(), {"--gpus-per-task=1", "--gpu-bind=single:1"});
  return argv;
}

std::vector<std::string> train_command(const Launch& l, const SweepRun& run) {
  std::vector<std::string> argv = l.rank_launcher;
  argv.insert(argv.end(), {l.uniad, "train", "--cache", l.cache, "--run-dir", run_dir(l.out, run).string(), "--seed",
                           std::to_string(run.seed), "--threads", std::to_string(l.threads)});
  bool device_set = false;
  for (const auto& [n, v] : run.train) argv.push_back("--" + n + "=" + v), device_set |= n == "device";
  // A GPU was asked for: a job that cannot see it should fail, not train on the CPU for days.
  if (l.gpus && !device_set) argv.push_back("--device=cuda");
  return argv;
}

std::vector<std::string> eval_command(const Launch& l, const SweepRun& run) {
  std::vector<std::string> argv = {l.uniad, "eval", "--run", run_dir(l.out, run).string(), "--cache", l.cache,
                                   "--threads", std::to_string(l.threads)};
  for (const auto& [n, v] : run.eval) argv.push_back("--" + n + "=" + v);
  return argv;
}

std::string last_lines(const fs::path& path, int count) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  std::string out;
  for (std::size_t i = lines.size() > std::size_t(count) ? lines.size() - count : 0; i < lines.size(); ++i)
    out += "    " + lines[i] + "\n";
  return out;
}

// Trains (or resumes) and evaluates one run; its processes write RUN/train.log and RUN/eval.log.
RunState execute(const Launch& l, const SweepRun& run) {
  const fs::path dir = run_dir(l.out, run);
  if (fs::exists(run_report(l.out, run))) return RunState::kSkipped;
  fs::create_directories(dir);
  fs::remove(dir / "sweep-failed.json");
  auto fail = [&](const char* stage, int code, const fs::path& log) {
    atomic_write_bytes(dir / "sweep-failed.json",
                       nlohmann::ordered_json({{"stage", stage}, {"exit_code", code}, {"log", log.string()}}).dump(2) + "\n");
    spdlog::error("{}: {} failed with exit code {}; last lines of {}:\n{}", run.name(), stage, code, log.string(),
                  last_lines(log, 8));
    return RunState::kFailed;
  };
  const auto trained = run_process(train_command(l, run), (dir / "train.log").string());
  if (trained.exit_code == static_cast<int>(ExitCode::kPreempted) || trained.forwarded_signal != 0) {
    return RunState::kStopped;  // checkpointed; the next `uniad sweep` resumes it
  }
  if (trained.exit_code != 0) return fail("train", trained.exit_code, dir / "train.log");
  const auto evaluated = run_process(eval_command(l, run), (dir / "eval.log").string());
  if (evaluated.forwarded_signal != 0) return RunState::kStopped;
  if (evaluated.exit_code != 0) return fail("eval", evaluated.exit_code, dir / "eval.log");
  return RunState::kDone;
}

// ---------------------------------------------------------------------------------------
// The leaderboard: per configuration, mean +- std over its evaluated seeds.

struct ConfigResult {
  std::string config, variant;
  OptionList grid_point;  // the grid values (for pairing variants with the base)
  std::vector<fs::path> evaluated, missing, failed;
  std::map<std::string, std::vector<double>> values;  // metric -> one value per evaluated seed
};

const std::vector<double>& values_of(const ConfigResult& r, const std::string& metric) {
  static const std::vector<double> none;
  const auto it = r.values.find(metric);
  return it == r.values.end() ? none : it->second;
}

std::vector<ConfigResult> collect_results(const fs::path& out, const SweepSpec& spec, const std::vector<SweepRun>& runs) {
  std::vector<ConfigResult> results;  // in the order configurations first appear
  std::map<std::string, std::size_t> index;
  for (const auto& run : runs) {
    if (!index.count(run.config)) {  // the runs of a configuration need not be adjacent (order = seeds)
      index[run.config] = results.size();
      ConfigResult r;
      r.config = run.config;
      r.variant = run.variant;
      for (const auto& [name, values] : spec.grid)
        for (const auto& [n, v] : run.train)
          if (n == name) r.grid_point.emplace_back(n, v);
      results.push_back(r);
    }
    ConfigResult& r = results[index.at(run.config)];
    const fs::path dir = run_dir(out, run), report = run_report(out, run);
    if (fs::exists(report)) {
      const nlohmann::json mean = read_json(report).at("mean");
      for (const auto& metric : sweep_metrics())
        r.values[metric].push_back(mean.value(metric, nlohmann::json()).is_number() ? mean[metric].get<double>() : NAN);
      r.evaluated.push_back(dir);
    } else if (fs::exists(dir / "sweep-failed.json")) {
      r.failed.push_back(dir);
    } else {
      r.missing.push_back(dir);
    }
  }
  return results;
}

struct Leaderboard {
  Table ranking, ablation;
  std::vector<std::string> not_evaluated;  // "name (missing|failed)"
  nlohmann::ordered_json json;
};

Leaderboard make_leaderboard(const SweepSpec& spec, std::vector<ConfigResult> results) {
  Leaderboard board;
  // Ranked by the mean of the chosen metric; configurations without a result last.
  std::stable_sort(results.begin(), results.end(), [&](const ConfigResult& a, const ConfigResult& b) {
    const double ma = eval::mean_std(values_of(a, spec.rank_by)).mean, mb = eval::mean_std(values_of(b, spec.rank_by)).mean;
    if (std::isnan(ma) != std::isnan(mb)) return std::isnan(mb);
    return ma > mb;
  });
  board.ranking.header = {"rank", "configuration", "seeds"};
  for (const auto& c : eval::metric_columns()) board.ranking.header.push_back(c.title);
  board.json["rank_by"] = spec.rank_by;
  board.json["configurations"] = nlohmann::ordered_json::array();
  int rank = 0;
  for (const auto& r : results) {
    const std::size_t seeds = r.evaluated.size() + r.missing.size() + r.failed.size();
    std::vector<std::string> row = {r.evaluated.empty() ? "-" : std::to_string(++rank), r.config,
                                    fmt::format("{}/{}", r.evaluated.size(), seeds)};
    nlohmann::ordered_json entry = {{"configuration", r.config}, {"variant", r.variant}, {"evaluated_seeds", r.evaluated.size()},
                                    {"seeds", seeds}};
    for (const auto& metric : sweep_metrics()) {
      const auto& values = values_of(r, metric);
      const eval::MeanStd m = eval::mean_std(values);
      row.push_back(eval::mean_std_text(values));
      entry["metrics"][metric] = {{"mean", m.count == 0 ? nlohmann::ordered_json() : nlohmann::ordered_json(m.mean)},
                                  {"std", m.count < 2 ? nlohmann::ordered_json() : nlohmann::ordered_json(m.std)},
                                  {"values", values}};
    }
    for (const auto& p : r.missing) board.not_evaluated.push_back(p.string() + " (missing)");
    for (const auto& p : r.failed) board.not_evaluated.push_back(p.string() + " (failed: see sweep-failed.json)");
    board.ranking.rows.push_back(row);
    board.json["configurations"].push_back(entry);
  }
  // Ablations: each variant against the base at the same grid point; the std of a
  // difference of means is sqrt(s1^2/n1 + s2^2/n2).
  board.ablation.header = {"variant", "against"};
  for (const auto& c : eval::metric_columns()) board.ablation.header.push_back(c.title);
  board.json["ablation"] = nlohmann::ordered_json::array();
  for (const auto& v : results) {
    if (v.variant.empty()) continue;
    auto base = std::find_if(results.begin(), results.end(),
                             [&](const ConfigResult& b) { return b.variant.empty() && b.grid_point == v.grid_point; });
    if (base == results.end() || base->evaluated.empty() || v.evaluated.empty()) continue;
    std::vector<std::string> row = {v.config, base->config};
    nlohmann::ordered_json entry = {{"variant", v.config}, {"against", base->config}};
    for (const auto& metric : sweep_metrics()) {
      const eval::MeanStd a = eval::mean_std(values_of(v, metric)), b = eval::mean_std(values_of(*base, metric));
      const double diff = a.mean - b.mean;
      auto variance_of_mean = [](const eval::MeanStd& m) { return m.count ? m.std * m.std / m.count : 0.0; };
      // With a single seed on either side the spread is unknown, not zero.
      const bool spread_known = a.count >= 2 && b.count >= 2;
      const double sd = std::sqrt(variance_of_mean(a) + variance_of_mean(b));
      row.push_back(std::isnan(diff)   ? "n/a"
                    : spread_known     ? fmt::format("{:+.1f} +- {:.2f}", 100 * diff, 100 * sd)
                                       : fmt::format("{:+.1f}", 100 * diff));
      entry["difference"][metric] = {{"mean", std::isnan(diff) ? nlohmann::ordered_json() : nlohmann::ordered_json(diff)},
                                     {"std", spread_known ? nlohmann::ordered_json(sd) : nlohmann::ordered_json()}};
    }
    board.ablation.rows.push_back(row);
    board.json["ablation"].push_back(entry);
  }
  board.json["not_evaluated"] = board.not_evaluated;
  return board;
}

// Writes leaderboard.{md,csv,json} and index.html (with every run's training curves) into `out`.
void write_leaderboard(const fs::path& out, const SweepSpec& spec, const std::vector<SweepRun>& runs) {
  const auto results = collect_results(out, spec, runs);
  Leaderboard board = make_leaderboard(spec, results);
  board.json["spec"] = spec.to_json();
  board.json["spec_path"] = spec.path;
  board.json["project_version"] = project_version();
  std::string md = fmt::format("# Sweep leaderboard: {}\n\nRanked by the mean of {} over seeds (last epoch); metrics in %, "
                               "mean +- sample std over the evaluated seeds.\n\n{}",
                               out.string(), spec.rank_by, board.ranking.to_markdown());
  if (!board.ablation.rows.empty()) {
    md += "\n## Ablations: each variant minus the base (difference of means +- its std)\n\n" + board.ablation.to_markdown();
  }
  if (!board.not_evaluated.empty()) {
    md += "\n## Not evaluated (never averaged over)\n\n";
    for (const auto& n : board.not_evaluated) md += "- " + n + "\n";
  }
  std::vector<std::string> dirs, labels;
  for (const auto& r : results)
    for (const auto& d : r.evaluated) dirs.push_back(d.string()), labels.push_back(r.config);  // one line per configuration
  const bool curves = !dirs.empty() && write_training_curves(dirs, labels, (out / "pictures").string());
  atomic_write_bytes(out / "leaderboard.md", md);
  atomic_write_bytes(out / "leaderboard.csv", eval::table_csv(board.ranking));
  atomic_write_bytes(out / "leaderboard.json", board.json.dump(2) + "\n");
  std::string missing_html;
  for (const auto& n : board.not_evaluated) missing_html += "<li>" + eval::html_escape(n) + "</li>";
  atomic_write_bytes(
      out / "index.html",
      eval::html_page("UniAD sweep: " + out.string(),
                      {{"Leaderboard (ranked by " + spec.rank_by + ", %)", eval::html_table(board.ranking)},
                       {"Ablations (variant minus base)", board.ablation.rows.empty() ? "<p>no variants</p>" : eval::html_table(board.ablation)},
                       {"Not evaluated", missing_html.empty() ? "<p>none</p>" : "<ul>" + missing_html + "</ul>"},
                       {"Training curves", curves ? "<img src=\"pictures/loss.png\"><img src=\"pictures/auroc.png\">" : "<p>no metrics logs</p>"},
                       {"Spec", "<pre>" + eval::html_escape(spec.to_json().dump(2)) + "</pre>"}}));
  std::cout << "\n" << md << "\nleaderboard: " << (out / "index.html").string() << " (also leaderboard.md, .csv, .json)\n";
}

// The run folders are checked against the spec; then sweep.json records the spec, the cache and
// every run with its full options (the single record: `--report` and the Slurm tasks read the
// runs from it), and sweep.ini keeps the spec as written, for people.
void prepare_sweep_folder(const fs::path& out, const SweepSpec& spec, const std::vector<SweepRun>& runs,
                          const std::string& cache) {
  check_existing_runs(out, runs, cache);
  // Runs an earlier spec made here and this one no longer has stay recorded, so that a later
  // spec bringing them back with other options is refused too.
  nlohmann::ordered_json earlier = nlohmann::ordered_json::array();
  if (fs::exists(out / "sweep.json")) {
    std::set<std::string> names;
    for (const auto& r : runs) names.insert(r.name());
    const SweepRecord before = read_sweep_record(out);
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

// The record of the sweep in `out`, for the commands that continue it (`--report`, `--task`).
SweepRecord recorded_sweep(const fs::path& out) {
  SweepRecord record = read_sweep_record(out);
  if (record.legacy) {
    throw UsageError(out.string() + "/sweep.json was written by an earlier uniad (run names only): run `uniad sweep --spec " +
                     (out / "sweep.ini").string() + " --cache CACHE --out " + out.string() +
                     "` once to record every run's options (finished runs are skipped)");
  }
  return record;
}

// Runs every run on this machine, `jobs` at a time; returns the exit code of the sweep.
int run_locally(const Launch& launch, const std::vector<SweepRun>& runs, int jobs) {
  // Caught for the whole sweep: a stop between two runs still ends with a leaderboard.
  StopSignals stop_signals;
  std::atomic<std::size_t> next{0}, finished{0};
  std::atomic<bool> stop{false};
  std::atomic<int> done{0}, skipped{0}, failed{0};
  std::mutex log_mutex;
  const auto start = std::chrono::steady_clock::now();
  auto worker = [&] {
    for (std::size_t i; !stop && !StopSignals::received() && (i = next++) < runs.size();) {
      const SweepRun& run = runs[i];
      const auto run_start = std::chrono::steady_clock::now();
      RunState state;
      try {
        state = execute(launch, run);
      } catch (const std::exception& e) {
        std::lock_guard<std::mutex> lock(log_mutex);
        spdlog::error("{}: {}", run.name(), e.what());
        state = RunState::kFailed;
      }
      const std::size_t n = ++finished;
      const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - run_start).count();
      const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      std::lock_guard<std::mutex> lock(log_mutex);
      switch (state) {
        case RunState::kSkipped: ++skipped; spdlog::info("[{}/{}] {}: already evaluated, skipped", n, runs.size(), run.name()); break;
        case RunState::kFailed: ++failed; spdlog::warn("[{}/{}] {}: FAILED (the sweep goes on)", n, runs.size(), run.name()); break;
        case RunState::kStopped: stop = true; spdlog::warn("[{}/{}] {}: stopped; checkpointed for resumption", n, runs.size(), run.name()); break;
        case RunState::kDone:
          ++done;
          spdlog::info("[{}/{}] {}: trained and evaluated in {} (sweep ETA {})", n, runs.size(), run.name(),
                       format_duration(seconds), format_duration(elapsed / n * (runs.size() - n)));
          break;
      }
    }
  };
  std::vector<std::thread> workers;
  for (int j = 0; j < jobs; ++j) workers.emplace_back(worker);
  for (auto& w : workers) w.join();
  if (StopSignals::received()) stop = true;
  spdlog::info("sweep: {} trained and evaluated, {} skipped (already evaluated), {} failed{}", done.load(),
               skipped.load(), failed.load(), stop ? ", stopped early" : "");
  write_leaderboard(launch.out, *launch.spec, runs);
  if (stop) {
    spdlog::warn("the sweep was stopped; run the same command again to resume it");
    return static_cast<int>(ExitCode::kPreempted);
  }
  return failed > 0 ? static_cast<int>(ExitCode::kRuntime) : 0;
}

// Submits the runs not yet evaluated as one job array plus the report job.
int submit_to_slurm(const Launch& launch, const std::vector<SweepRun>& runs, int array_limit,
                    const std::vector<std::string>& sbatch_options) {
  SlurmSubmission submission;
  submission.out = launch.out;
  submission.uniad = launch.uniad;
  submission.spec = launch.spec;
  submission.array_limit = array_limit;
  submission.sbatch_options = sbatch_options;
  for (std::size_t i = 0; i < runs.size(); ++i)
    if (!fs::exists(run_report(launch.out, runs[i]))) submission.tasks.push_back(i);
  if (submission.tasks.empty()) {
    spdlog::info("sweep: all {} runs are evaluated; nothing to submit", runs.size());
    write_leaderboard(launch.out, *launch.spec, runs);
    return 0;
  }
  const SubmittedJobs jobs = submit_slurm_sweep(submission);
  std::cout << fmt::format("array job {} ({} of {} runs{}), report job {} (after the array)\n", jobs.array_job,
                           submission.tasks.size(), runs.size(),
                           array_limit > 0 ? fmt::format(", at most {} at a time", array_limit) : "", jobs.report_job);
  std::cout << fmt::format("follow with: squeue -j {},{}; task logs in {}; the leaderboard will be {}\n", jobs.array_job,
                           jobs.report_job, (launch.out / "slurm").string(), (launch.out / "leaderboard.md").string());
  return 0;
}

// One array task of a Slurm sweep: run `index` of the sweep recorded in `out` (its sweep.json,
// never a re-expansion of sweep.ini, which a person may have edited since).
int run_slurm_task(const fs::path& out, long long index) {
  if (!std::getenv("SLURM_JOB_ID")) {
    throw UsageError("--task is for the job script of `uniad sweep --backend slurm` (no SLURM_JOB_ID here)");
  }
  const SweepRecord record = recorded_sweep(out);
  const SweepSpec& spec = record.spec;
  if (index < 0 || index >= static_cast<long long>(record.runs.size())) {
    throw UsageError(fmt::format("--task {}: the sweep in {} has runs 0 to {}", index, out.string(), record.runs.size() - 1));
  }
  const SweepRun& run = record.runs[static_cast<std::size_t>(index)];
  Launch launch;
  launch.out = out;
  launch.cache = record.cache;
  launch.uniad = self_executable();
  launch.spec = &spec;
  const char* cpus = std::getenv("SLURM_CPUS_PER_TASK");
  launch.threads = cpus ? std::max(1, std::atoi(cpus)) : std::max(1, spec.threads);
  launch.rank_launcher = srun_launcher(spec.ranks, launch.threads, gpu_per_task(spec));
  launch.gpus = gpu_per_task(spec);
  spdlog::info("sweep task {}: {} ({} rank(s) x {} thread(s))", index, run.name(), spec.ranks, launch.threads);
  StopSignals stop_signals;
  switch (execute(launch, run)) {
    case RunState::kSkipped: spdlog::info("{}: already evaluated", run.name()); return 0;
    case RunState::kDone: spdlog::info("{}: trained and evaluated", run.name()); return 0;
    case RunState::kStopped: return static_cast<int>(ExitCode::kPreempted);
    case RunState::kFailed: break;
  }
  return static_cast<int>(ExitCode::kRuntime);
}

}  // namespace

int sweep(int argc, char** argv) {
  const cli::Command command{
      "sweep",
      "uniad sweep --spec SWEEP.ini --cache CACHE.h5 --out DIR [--jobs N] [--dry-run]\n"
      "       uniad sweep --spec SWEEP.ini --cache CACHE.h5 --out DIR --backend slurm [--array-limit N] [--sbatch OPT]...\n"
      "       uniad sweep --report DIR",
      "Runs a sweep: every configuration of the spec's grid and variants, once per seed, each trained by\n"
      "`uniad train` and evaluated by `uniad eval` as child processes (logs in RUN/train.log, RUN/eval.log).\n"
      "--backend local (default): on this machine, --jobs runs at a time (mpirun when [sweep] ranks > 1).\n"
      "--backend slurm: one job array (a task per run not yet evaluated, at most --array-limit at once; each\n"
      "task trains with srun, requeues itself when stopped, then evaluates) and a report job after it;\n"
      "prints the job ids. Re-running skips evaluated runs, resumes interrupted ones from their checkpoints\n"
      "and refuses a run folder made with other options. SIGTERM/SIGINT reach the running trainings (they\n"
      "checkpoint); the local sweep then writes its leaderboard and exits 75.\n"
      "The leaderboard (mean +- std over seeds, ranked by [sweep] rank-by) and the ablation view go to\n"
      "DIR/leaderboard.{md,csv,json} and DIR/index.html; --report DIR writes them at any time.\n"
      "Spec format: docs/sweeps.md."};
  po::options_description options("sweep options");
  options.add_options()
      ("spec", po::value<std::string>(), "sweep spec (INI: [sweep], [train], [eval], [grid], [variant NAME], [slurm])")
      ("cache", po::value<std::string>(), "feature cache every run trains and evaluates on")
      ("out", po::value<std::string>(), "sweep folder: one run folder per configuration and seed, the leaderboard")
      ("backend", po::value<std::string>()->default_value("local"), "local (this machine) or slurm (a job array)")
      ("jobs", po::value<int>()->default_value(1), "local: runs at a time")
      ("array-limit", po::value<int>(), "slurm: array tasks at once (the array's %; default [sweep] array-limit, 0 = no limit)")
      ("sbatch", po::value<std::vector<std::string>>()->composing(),
       "slurm: one more sbatch option for the array tasks, as NAME=VALUE or --NAME=VALUE (repeatable; after [slurm])")
      ("dry-run", po::value<bool>()->implicit_value(true)->default_value(false), "print the runs and exit")
      ("report", po::value<std::string>(), "write the leaderboard of the sweep in this folder and exit")
      ("task", po::value<long long>(), "run this run of the sweep in --out (what the Slurm array tasks call)");
  cli::add_logging_options(options);
  const auto vm = cli::parse_command(command, options, argc, argv);
  if (!vm) return 0;
  cli::configure_logging(*vm);

  if (vm->count("report")) {
    // The runs as the sweep recorded them, not a spec file as it is now.
    const fs::path out = (*vm)["report"].as<std::string>();
    const SweepRecord record = recorded_sweep(out);
    write_leaderboard(out, record.spec, record.runs);
    return 0;
  }
  if (vm->count("task")) {
    if (!vm->count("out")) throw UsageError("--task needs --out (the sweep folder)");
    return run_slurm_task(fs::absolute((*vm)["out"].as<std::string>()), (*vm)["task"].as<long long>());
  }
  if (!vm->count("spec")) throw UsageError("--spec is required (or --report DIR); see `uniad sweep --help`");
  const std::string backend = (*vm)["backend"].as<std::string>();
  if (backend != "local" && backend != "slurm") throw UsageError("--backend must be local or slurm, not '" + backend + "'");
  std::vector<std::string> sbatch_options;
  if (vm->count("sbatch")) {
    if (backend != "slurm") throw UsageError("--sbatch is for --backend slurm");
    for (const auto& o : (*vm)["sbatch"].as<std::vector<std::string>>()) sbatch_options.push_back(sbatch_option(o));
  }
  const SweepSpec spec = read_sweep_spec((*vm)["spec"].as<std::string>());
  const std::vector<SweepRun> runs = spec.expand();
  const std::size_t configs = runs.size() / spec.seeds.size();
  if ((*vm)["dry-run"].as<bool>()) {
    std::cout << fmt::format("{} runs: {} configuration(s) x {} seed(s)\n", runs.size(), configs, spec.seeds.size());
    for (const auto& run : runs) {
      std::string line = run.name() + ":";
      for (const auto& [n, v] : run.train) line += " --" + n + " " + v;
      std::cout << "  " << line << "\n";
    }
    return 0;
  }
  if (!vm->count("cache") || !vm->count("out")) throw UsageError("--cache and --out are required to run a sweep");
  const std::string cache = fs::absolute((*vm)["cache"].as<std::string>()).string();
  if (!fs::exists(cache)) throw InputError(cache, "feature cache does not exist; build it with `uniad extract`");
  const fs::path out = fs::absolute((*vm)["out"].as<std::string>());
  // Slurm tasks read the spec from the folder when they start: never change it under queued ones.
  if (program_available("squeue")) refuse_if_still_queued(out);
  prepare_sweep_folder(out, spec, runs, cache);

  Launch launch;
  launch.out = out;
  launch.cache = cache;
  launch.uniad = self_executable();
  launch.spec = &spec;
  if (backend == "slurm") {
    const int limit = vm->count("array-limit") ? (*vm)["array-limit"].as<int>() : spec.array_limit;
    if (limit < 0) throw UsageError("--array-limit must be 0 (no limit) or more");
    spdlog::info("sweep: {} runs ({} configurations x {} seeds) to Slurm, {} rank(s) x {} thread(s) per task, into {}",
                 runs.size(), configs, spec.seeds.size(), spec.ranks, std::max(1, spec.threads), out.string());
    return submit_to_slurm(launch, runs, limit, sbatch_options);
  }
  const int jobs = std::max(1, (*vm)["jobs"].as<int>());
  const int cores = default_threads();
  launch.threads = spec.threads > 0 ? spec.threads : std::max(1, cores / (spec.ranks * jobs));
  launch.rank_launcher = mpirun_launcher(spec.ranks);
  spdlog::info("sweep: {} runs ({} configurations x {} seeds), {} at a time, {} rank(s) x {} thread(s) each, into {}",
               runs.size(), configs, spec.seeds.size(), jobs, spec.ranks, launch.threads, out.string());
  return run_locally(launch, runs, jobs);
}

}  // namespace uniad::commands
