#pragma once
// A small table for terminal output and Markdown reports.
#include <string>
#include <vector>

namespace uniad {

struct Table {
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> rows;

  // Columns padded to a common width; numeric columns right-aligned, text left-aligned.
  std::string to_text() const;
  // A GitHub-flavoured Markdown table with the same alignment.
  std::string to_markdown() const;
};

}  // namespace uniad
