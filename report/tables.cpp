#include "report/tables.h"

#include <sstream>

#include "common/fs.h"

namespace uniad::report {

std::string table_csv(const Table& table) {
  std::ostringstream out;
  auto line = [&](const std::vector<std::string>& cells) {
    for (std::size_t i = 0; i < cells.size(); ++i) {
      std::string cell = cells[i];
      if (cell.find_first_of(",\"") != std::string::npos) {
        std::string escaped;
        for (char ch : cell) escaped += ch == '"' ? std::string("\"\"") : std::string(1, ch);
        cell = "\"" + escaped + "\"";
      }
      out << (i ? "," : "") << cell;
    }
    out << "\n";
  };
  line(table.header);
  for (const auto& row : table.rows) line(row);
  return out.str();
}

std::string html_escape(const std::string& text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '&': out += "&amp;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string html_table(const Table& table) {
  std::string out = "<table><thead><tr>";
  for (const auto& h : table.header) out += "<th>" + html_escape(h) + "</th>";
  out += "</tr></thead><tbody>\n";
  for (const auto& row : table.rows) {
    out += "<tr>";
    for (const auto& cell : row) out += "<td>" + html_escape(cell) + "</td>";
    out += "</tr>\n";
  }
  return out + "</tbody></table>\n";
}

std::string html_page(const std::string& title, const std::vector<std::pair<std::string, std::string>>& sections) {
  std::string out =
      "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>" + html_escape(title) +
      "</title>\n<style>body{font-family:sans-serif;max-width:1200px;margin:2em auto;color:#222}"
      "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
      "td:first-child,th:first-child{text-align:left}tr:last-child td{font-weight:bold}"
      "img{max-width:100%;border:1px solid #ddd;margin:4px 0}pre{background:#f6f6f6;padding:8px;overflow:auto}"
      ".note{background:#fff4d6;padding:8px;border-left:4px solid #e0a000}</style></head><body>\n<h1>" +
      html_escape(title) + "</h1>\n";
  for (const auto& [heading, body] : sections) out += "<h2>" + html_escape(heading) + "</h2>\n" + body + "\n";
  return out + "</body></html>\n";
}

std::string curves_html(bool drawn, const std::string& missing) {
  return drawn ? "<img src=\"pictures/loss.png\"><img src=\"pictures/auroc.png\">" : missing;
}

void write_document(const std::filesystem::path& out, const Document& d) {
  atomic_write_bytes(out / (d.stem + ".md"), d.markdown);
  if (d.csv) atomic_write_bytes(out / (d.stem + ".csv"), table_csv(*d.csv));
  atomic_write_bytes(out / (d.stem + ".json"), d.json.dump(2) + "\n");
  atomic_write_bytes(out / "index.html", html_page(d.html_title, d.html_sections));
}

}  // namespace uniad::report
