#pragma once
// A sweep's folder and its record (docs/sweeps.md): OUT/CONFIG/seed=N/ per run, and
// OUT/sweep.json, the single record of the sweep - its spec, its cache and every run with its
// full `uniad train` and `uniad eval` options. Whatever continues a sweep (a re-run, `--report`,
// a Slurm array task) takes the runs from the record, never from a spec file that may have been
// edited since; a spec that would reuse a run folder with other options is refused against it.
#include <filesystem>
#include <string>
#include <vector>

#include "sweep/spec.h"

namespace uniad::sweep {

namespace fs = std::filesystem;

fs::path run_dir(const fs::path& out, const SweepRun& run);
// A run is done once `uniad eval` has written this.
fs::path run_report(const fs::path& out, const SweepRun& run);

// What OUT/sweep.json holds, read in order (the order of a run's options is part of it).
struct SweepRecord {
  SweepSpec spec;
  std::string cache;
  std::vector<SweepRun> runs;          // the spec's, in its order
  std::vector<SweepRun> earlier_runs;  // made by an earlier spec into this folder, no longer in it
  bool legacy = false;                 // written before sweep.json held the runs' options
};

// The record of the sweep in `out`, for what continues it (`--report`, `--task`): an
// InputError when there is none or it is damaged, a UsageError (with the command that
// refreshes it) when an earlier uniad wrote it without the runs' options.
SweepRecord recorded_sweep(const fs::path& out);

// Before a sweep (re)starts in `out`: refuses (UsageError naming the run and each differing
// option) a run folder made with other options or another cache, then records the spec, the
// cache and every run in sweep.json and the spec's text in sweep.ini (for people).
void prepare_sweep_folder(const fs::path& out, const SweepSpec& spec, const std::vector<SweepRun>& runs,
                          const std::string& cache);

}  // namespace uniad::sweep
