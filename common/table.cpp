#include "common/table.h"

#include <algorithm>

namespace uniad {

namespace {

std::vector<std::size_t> widths(const Table& t) {
  std::vector<std::size_t> w(t.header.size(), 0);
  auto grow = [&](const std::vector<std::string>& row) {
    for (std::size_t i = 0; i < row.size() && i < w.size(); ++i) w[i] = std::max(w[i], row[i].size());
  };
  grow(t.header);
  for (const auto& row : t.rows) grow(row);
  return w;
}

std::string pad(const std::string& s, std::size_t width, bool left) {
  const std::string fill(width > s.size() ? width - s.size() : 0, ' ');
  return left ? s + fill : fill + s;
}

// Numbers (and empty cells) are right-aligned; a column with any text is left-aligned.
std::vector<bool> numeric_columns(const Table& t) {
  std::vector<bool> numeric(t.header.size(), true);
  for (const auto& row : t.rows)
    for (std::size_t i = 0; i < row.size() && i < numeric.size(); ++i)
      if (row[i].find_first_not_of("0123456789.+-% e") != std::string::npos && row[i] != "?" && row[i] != "n/a")
        numeric[i] = false;
  numeric[0] = false;
  return numeric;
}

std::string render(const Table& t, const std::string& open, const std::string& sep, const std::string& close,
                   bool markdown) {
  const auto w = widths(t);
  const auto numeric = numeric_columns(t);
  auto line = [&](const std::vector<std::string>& row) {
    std::string out = open;
    for (std::size_t i = 0; i < w.size(); ++i) {
      out += pad(i < row.size() ? row[i] : "", w[i], !numeric[i]);
      out += i + 1 < w.size() ? sep : close;
    }
    return out + "\n";
  };
  std::string out = line(t.header);
  std::vector<std::string> rule;
  for (std::size_t i = 0; i < w.size(); ++i) {
    const std::size_t n = std::max<std::size_t>(w[i], 3);
    rule.push_back(markdown ? (numeric[i] ? std::string(n - 1, '-') + ":" : ":" + std::string(n - 1, '-'))
                            : std::string(w[i], '-'));
  }
  out += line(rule);
  for (const auto& row : t.rows) out += line(row);
  return out;
}

}  // namespace

std::string Table::to_text() const { return render(*this, "", "  ", "", false); }
std::string Table::to_markdown() const { return render(*this, "| ", " | ", " |", true); }

}  // namespace uniad
