#include "common/ini_file.h"

#include <fstream>
#include <map>
#include <utility>

#include <fmt/core.h>

#include "common/error.h"

namespace uniad {

namespace {

std::string strip(const std::string& s) {
  const auto first = s.find_first_not_of(" \t\r"), last = s.find_last_not_of(" \t\r");
  return first == std::string::npos ? "" : s.substr(first, last - first + 1);
}

}  // namespace

std::vector<IniEntry> read_ini_file(const std::string& path, const std::string& what) {
  std::ifstream in(path);
  if (!in) throw UsageError(path + ": cannot open " + what);
  std::vector<IniEntry> entries;
  std::map<std::pair<std::string, std::string>, int> first_line;  // (section, key) -> line
  std::string section;
  int number = 0;
  for (std::string text; std::getline(in, text);) {
    ++number;
    // As Boost.Program_options: everything from '#' on is a comment.
    if (const auto hash = text.find('#'); hash != std::string::npos) text.erase(hash);
    const std::string line = strip(text);
    if (line.empty()) continue;
    if (line.front() == '[' && line.back() == ']') {
      section = strip(line.substr(1, line.size() - 2));
      if (section.empty()) throw UsageError(fmt::format("{}:{}: empty section name '[]' in {}", path, number, what));
      continue;
    }
    const auto equals = line.find('=');
    if (equals == std::string::npos || strip(line.substr(0, equals)).empty()) {
      throw UsageError(fmt::format("{}:{}: malformed line '{}' in {}: expected 'key = value' or '[section]'", path,
                                   number, line, what));
    }
    IniEntry entry{section, strip(line.substr(0, equals)), strip(line.substr(equals + 1)), number};
    const auto [it, inserted] = first_line.emplace(std::make_pair(entry.section, entry.key), number);
    if (!inserted) {
      throw UsageError(fmt::format("{}: {}{} appears twice (lines {} and {}); keep one", path,
                                   section.empty() ? "" : "[" + section + "] ", entry.key, it->second, number));
    }
    entries.push_back(std::move(entry));
  }
  return entries;
}

}  // namespace uniad
