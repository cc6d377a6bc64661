#pragma once
// A sweep spec and its expansion into runs (`uniad sweep`, docs/sweeps.md).
//
// The spec is an INI file:
//   [sweep]             seeds = 0, 1, 2; order = seeds; rank-by = image_auroc; ranks = 1; threads = 0
//   [train]             base options of `uniad train` for every run (epochs = 10, ...)
//   [eval]              options of `uniad eval` for every run (pictures = 0, ...)
//   [grid]              comma-separated values; the runs take their cross product
//   [variant NAME]      a named change to the base (jitter-scale = 0): one more configuration
//   [slurm]             sbatch options of the Slurm backend's array tasks (time = 4:00:00, ...)
// Expansion is deterministic: configurations are the base and then each variant (in file
// order), each crossed with the grid (first key slowest), each run once per seed: all seeds of
// a configuration together, or with `order = seeds` every configuration at the first seed,
// then at the next (a whole first pass early, when the budget may run out). A run is
// named by what differs from the base: "no-jitter,lr=5e-4/seed=1" ("base/seed=0" for none).
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace uniad::sweep {

using OptionList = std::vector<std::pair<std::string, std::string>>;  // (name, value), in order

struct SweepRun {
  std::string config;     // "no-jitter,lr=5e-4" or "base"
  std::string variant;    // "" for the base configuration
  std::uint64_t seed = 0;
  OptionList train;       // every `uniad train` option of the run (base, variant, grid; no seed)
  OptionList eval;        // every `uniad eval` option of the run (the spec's [eval])
  std::string name() const { return config + "/seed=" + std::to_string(seed); }
};

struct SweepSpec {
  std::string path;
  std::vector<std::uint64_t> seeds = {0};
  bool seed_major = false;  // order = seeds: every configuration at seed 1, then at seed 2, ...
  std::string rank_by = "image_auroc";
  int ranks = 1;    // MPI ranks per run
  int threads = 0;  // threads per rank (0: the cores divided by ranks x jobs)
  int array_limit = 0;  // Slurm backend: array tasks running at once (0: no limit)
  OptionList slurm;     // Slurm backend: sbatch options (name without "--", value)
  OptionList train, eval;
  std::vector<std::pair<std::string, std::vector<std::string>>> grid;
  std::vector<std::pair<std::string, OptionList>> variants;

  // Every run, in a fixed order.
  std::vector<SweepRun> expand() const;
  // The spec as sweep.json records it; from_json(to_json()) is the same spec (its path aside).
  nlohmann::ordered_json to_json() const;
  // Ordered JSON: the order of the options is part of the spec.
  static SweepSpec from_json(const nlohmann::ordered_json& json, const std::string& path);
};

// One run as sweep.json records it (name, configuration, variant, seed, every train and eval
// option) and back. The record is what a run folder was made with: the Slurm tasks run from it
// and a later `uniad sweep` into the same folder is checked against it.
nlohmann::ordered_json run_to_json(const SweepRun& run);
SweepRun run_from_json(const nlohmann::ordered_json& json);

// Reads a spec. Every option name and value is checked against `uniad train`'s and `uniad
// eval`'s options; a typo, a bad value, or an option the sweep sets itself (cache, run-dir,
// seed, run, out) is a UsageError naming the file and the option.
SweepSpec read_sweep_spec(const std::string& path);

// A UsageError (prefixed by `where`) unless `name` is an sbatch long option the user may set:
// a lower-case word, not one the Slurm backend sets itself (array, ntasks, output, ...).
void check_sbatch_option(const std::string& where, const std::string& name);

// The value `uniad train` gives option `name` when it is not set ("" for none), as the spec
// would write it: "0.1", "true", "uniad".
std::string train_option_default(const std::string& name);

// The metrics a leaderboard can rank by (the keys of a report's mean row).
const std::vector<std::string>& sweep_metrics();

}  // namespace uniad::sweep
