#pragma once
// The report over several evaluated runs (`uniad report`): their eval/report.json files
// aggregated (report/aggregate.h: mean +- std over seeds, or a comparison in one setting),
// with every run's training curves and provenance, as report.md, report.json and index.html.
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace uniad::report {

// Reads one evaluation's report.json; a file that is not JSON is an InputError naming it and
// `remedy` (what the user should do about it).
nlohmann::json read_eval_report(const std::filesystem::path& path, const std::string& remedy);

// `runs` are run folders (or their eval/ folders, or report.json files), as the user named
// them. Writes the report into `out` and returns its Markdown.
std::string write_runs_report(const std::vector<std::string>& runs, const std::filesystem::path& out);

}  // namespace uniad::report
