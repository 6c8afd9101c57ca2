// CSV source: the first non-blank line names the columns; every other non-blank line is one sample
// with exactly one numeric cell per column. Cells may be surrounded by spaces and by double quotes
// ("" inside quotes is a quote; a quoted cell cannot span lines). An empty cell or `nan` (any case)
// is NaN, for labels that are missing. Line endings \n or \r\n; a gzipped file is read too.
#include "runtime/data/CsvHeader.h"
#include "runtime/data/Dataset.h"
#include "runtime/Error.h"
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

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

// Splits one line into cells (unquoted, trimmed).
std::vector<std::string> splitCells(std::string_view line, const std::string& path, int64_t lineNo) {
  std::vector<std::string> cells;
  size_t i = 0;
  for (;;) {
    std::string cell;
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
    if (i < line.size() && line[i] == '"') {
      ++i;
      for (;;) {
        if (i >= line.size()) throwError("{}:{}: unterminated quoted cell", path, lineNo);
        if (line[i] == '"') {
          if (i + 1 < line.size() && line[i + 1] == '"') { cell += '"'; i += 2; continue; }
          ++i;
          break;
        }
        cell += line[i++];
      }
      while (i < line.size() && line[i] != ',') {
        if (line[i] != ' ' && line[i] != '\t' && line[i] != '\r')
          throwError("{}:{}: unexpected text after a quoted cell in column {}", path, lineNo, cells.size() + 1);
        ++i;
      }
    } else {
      size_t start = i;
      while (i < line.size() && line[i] != ',') ++i;
      cell = std::string(trim(line.substr(start, i - start)));
    }
    cells.push_back(std::move(cell));
    if (i >= line.size()) break;
    ++i;  // the comma
  }
  return cells;
}

// The header's cells as column names: each non-empty, none twice.
void checkHeader(const std::vector<std::string>& cells, const std::string& path, int64_t lineNo) {
  std::set<std::string> seen;
  for (size_t c = 0; c < cells.size(); ++c) {
    if (cells[c].empty()) throwError("{}:{}: column {} of the header has no name", path, lineNo, c + 1);
    if (!seen.insert(cells[c]).second)
      throwError("{}:{}: column name `{}` appears twice in the header", path, lineNo, cells[c]);
  }
}

std::string_view withoutBom(std::string_view text) {
  if (text.size() >= 3 && text.substr(0, 3) == "\xEF\xBB\xBF") text.remove_prefix(3);  // UTF-8 BOM
  return text;
}

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

std::vector<std::string> readCsvHeader(const std::string& path, const std::string& shownAs) {
  // zlib reads a file that is not gzipped as it is, so one reader serves both.
  errno = 0;
  std::unique_ptr<gzFile_s, int (*)(gzFile)> file(gzopen(path.c_str(), "rb"), gzclose);
  if (!file) throwError("{}: cannot open: {}", shownAs, errno ? std::strerror(errno) : "out of memory");
  // A header longer than this is not a header (a binary file, /dev/zero).
  constexpr size_t kMaxHeaderBytes = size_t(64) << 20;
  std::string text;
  int64_t lineNo = 0;
  size_t lineStart = 0;
  bool atEnd = false;
  char chunk[1 << 16];
  for (;;) {
    const size_t newline = text.find('\n', lineStart);
    if (newline != std::string::npos || atEnd) {
      const size_t end = newline == std::string::npos ? text.size() : newline;
      std::string_view line(text.data() + lineStart, end - lineStart);
      if (lineNo++ == 0) line = withoutBom(line);
      if (!trim(line).empty()) {
        std::vector<std::string> cells = splitCells(line, shownAs, lineNo);
        checkHeader(cells, shownAs, lineNo);
        return cells;
      }
      if (newline == std::string::npos) break;
      lineStart = newline + 1;
      continue;
    }
    if (text.size() > kMaxHeaderBytes)
      throwError("{}: no header line in the first {} MiB", shownAs, kMaxHeaderBytes >> 20);
    const int got = gzread(file.get(), chunk, sizeof chunk);
    if (got < 0) {
      int code = 0;
      const char* why = gzerror(file.get(), &code);
      throwError("{}: cannot read: {}", shownAs, code == Z_ERRNO ? std::strerror(errno) : why);
    }
    text.append(chunk, size_t(got));
    atEnd = got == 0;
  }
  throwError("{}: empty file, expected a header row naming the columns", shownAs);
}

}  // namespace mtlc::rt
