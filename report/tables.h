#pragma once
// The one set of report writers. Every report uniad writes - an evaluation (`uniad eval`), an
// aggregation of runs (`uniad report`), a sweep's leaderboard - is one Document written here
// as Markdown, CSV (its main table), JSON and a static HTML page, so each format has one writer.
#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/table.h"

namespace uniad::report {

std::string table_csv(const Table& table);

// A static HTML page: a title, sections of (heading, HTML body), and nothing external.
std::string html_page(const std::string& title, const std::vector<std::pair<std::string, std::string>>& sections);
std::string html_table(const Table& table);
std::string html_escape(const std::string& text);
// The training-curve figures (curves.h) on a page, or `missing` when none were drawn.
std::string curves_html(bool drawn, const std::string& missing);

struct Document {
  std::string stem;                // "report" -> report.md, report.csv, report.json
  std::string markdown;            // the whole Markdown text
  std::optional<Table> csv;        // the main table as CSV (none: no .csv file)
  nlohmann::ordered_json json;     // written with two-space indentation
  std::string html_title;          // index.html
  std::vector<std::pair<std::string, std::string>> html_sections;
};

// Writes `out`/STEM.md, STEM.csv (when there is a table), STEM.json and index.html, each
// atomically (an OutputError names the file that could not be written).
void write_document(const std::filesystem::path& out, const Document& document);

}  // namespace uniad::report
