#pragma once
// INI-style files: `--config FILE` of every command and sweep specs (docs/sweeps.md).
//
//   # a comment (from '#' to the end of the line)
//   key = value          (top level: section "")
//   [section name]
//   key = value
//
// The syntax is Boost.Program_options' config-file syntax, read here rather than by
// po::parse_config_file because the checks need line numbers: a key given twice in one
// section is an error naming both lines, never "the last one wins" in silence.
#include <string>
#include <vector>

namespace uniad {

struct IniEntry {
  std::string section;  // "" at the top level; "variant no-jitter" for [variant no-jitter]
  std::string key;
  std::string value;    // surrounding blanks removed
  int line = 0;         // 1-based
};

// Every `key = value` line of the file, in file order. A file that cannot be opened, a line that
// is neither a section, an assignment, a comment nor blank, or a key repeated within a section
// (a section may be split over several [same name] headers) is a UsageError that starts with
// the path and says `what` the file is for ("the sweep spec (--spec)").
std::vector<IniEntry> read_ini_file(const std::string& path, const std::string& what);

}  // namespace uniad
