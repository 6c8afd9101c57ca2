// The CSV line syntax and the data-file probes of DataFiles.h. The CSV format itself is described
// in runtime/data/Csv.cpp, the loader.
#include "spec/DataFiles.h"
#include "spec/Error.h"

#include <zlib.h>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <memory>
#include <set>

namespace mtlc::rt {
namespace csv {


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

}  // namespace csv

using csv::checkHeader;
using csv::splitCells;
using csv::trim;
using csv::withoutBom;

SourceSpec sourceFromPath(const std::string& path, const std::string& split) {
  namespace fs = std::filesystem;
  SourceSpec s;
  if (auto comma = path.find(','); comma != std::string::npos) {
    s.kind = "idx";
    s.args = {path.substr(0, comma), path.substr(comma + 1)};
    if (s.args[0].empty() || s.args[1].empty() || s.args[1].find(',') != std::string::npos)
      throwError("--data {}: expected IMAGES,LABELS (two IDX files)", path);
    return s;
  }
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    s.kind = "fashion_mnist";
    s.args = {split, path};
    return s;
  }
  std::string lower = path;
  for (char& c : lower) c = char(std::tolower(static_cast<unsigned char>(c)));
  auto endsWith = [&](const std::string& suf) {
    return lower.size() >= suf.size() && lower.compare(lower.size() - suf.size(), suf.size(), suf) == 0;
  };
  if (endsWith(".csv") || endsWith(".csv.gz")) {
    s.kind = "csv";
    s.args = {path};
    return s;
  }
  if (endsWith(".npz") || endsWith(".npy")) {
    s.kind = endsWith(".npz") ? "npz" : "npy";
    s.args = {path};
    return s;
  }
  if (!fs::exists(path, ec)) throwError("--data {}: no such file or directory", path);
  throwError("--data {}: cannot tell the format: expected a .csv, .npz or .npy file, IMAGES,LABELS (IDX) or a "
             "directory with Fashion-MNIST-style files", path);
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
