#pragma once
// A sweep's leaderboard (docs/sweeps.md): per configuration, mean +- sample std over its
// evaluated seeds of every metric of the runs' reports, ranked by one metric; the ablation
// view (each variant minus the base at the same grid point); the runs not evaluated; the
// training curves. Written as leaderboard.{md,csv,json} and index.html (tables.h).
// It knows runs only as folders with a configuration name: the sweep (sweep/) says which.
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace uniad::report {

struct LeaderboardRun {
  std::string config;   // "no-jitter,lr=5e-4", or "base"
  std::string variant;  // "" for the base configuration
  std::vector<std::pair<std::string, std::string>> grid_point;  // pairs a variant with its base
  std::filesystem::path dir;  // evaluated once DIR/eval/report.json exists; failed: DIR/sweep-failed.json
};

struct LeaderboardInput {
  std::string rank_by;          // a metric key (image_auroc, ...)
  nlohmann::ordered_json spec;  // the sweep's spec, recorded in the json and the page
  std::string spec_path;
  std::vector<LeaderboardRun> runs;  // in the sweep's order
};

// Writes the leaderboard into `out`, prints its Markdown to stdout and returns it.
std::string write_leaderboard(const std::filesystem::path& out, const LeaderboardInput& input);

}  // namespace uniad::report
