// CSV source: the first non-blank line names the columns; every other non-blank line is one sample
// with exactly one numeric cell per column. Cells may be surrounded by spaces and by double quotes
// ("" inside quotes is a quote; a quoted cell cannot span lines). An empty cell or `nan` (any case)
// is NaN, for labels that are missing. Line endings \n or \r\n; a gzipped file is read too.
#include "spec/DataFiles.h"
#include "runtime/data/Dataset.h"
#include "spec/Error.h"
#include "runtime/io/File.h"

#include <zlib.h>

#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <memory>
#include <set>

namespace mtlc::rt {
namespace {

using csv::checkHeader;
using csv::splitCells;
using csv::trim;
using csv::withoutBom;

bool isNanWord(std::string_view s) {
  return s.size() == 3 && (s[0] | 0x20) == 'n' && (s[1] | 0x20) == 'a' && (s[2] | 0x20) == 'n';
}

}  // namespace

Table readCsv(const std::string& path) {
  std::vector<uint8_t> bytes = readMaybeGzip(path);
  std::string_view text = withoutBom({reinterpret_cast<const char*>(bytes.data()), bytes.size()});

  Table t;
  t.origin = path;
  t.columnar = true;
  std::vector<std::string> names;
  std::vector<HugeFloats> columns;
  int64_t lineNo = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(pos, end - pos);
    pos = end + 1;
    ++lineNo;
    if (trim(line).empty()) continue;
    std::vector<std::string> cells = splitCells(line, path, lineNo);
    if (names.empty()) {  // the header
      checkHeader(cells, path, lineNo);
      names = std::move(cells);
      columns.resize(names.size());
      continue;
    }
    if (cells.size() != names.size())
      throwError("{}:{}: expected {} columns, found {}", path, lineNo, names.size(), cells.size());
    for (size_t c = 0; c < cells.size(); ++c) {
      std::string_view s = cells[c];
      float v;
      if (s.empty() || isNanWord(s)) {
        v = std::nanf("");
      } else {
        if (s.front() == '+') s.remove_prefix(1);
        double d;
        auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), d);
        if (ec != std::errc() || ptr != s.data() + s.size())
          throwError("{}:{}: column `{}`: expected a number, found `{}`", path, lineNo, names[c], cells[c]);
        v = float(d);
      }
      columns[c].push_back(v);
    }
    t.rowLine.push_back(lineNo);
  }
  if (names.empty()) throwError("{}: empty file, expected a header row naming the columns", path);
  t.rows = int64_t(t.rowLine.size());
  for (size_t c = 0; c < names.size(); ++c) t.fields.push_back(Field{names[c], 1, std::move(columns[c])});
  return t;
}

}  // namespace mtlc::rt
