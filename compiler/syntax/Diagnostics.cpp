#include "syntax/Diagnostics.h"

#include <algorithm>
#include <fmt/format.h>
#include <ostream>
#include <sstream>

namespace mtlc {

namespace {

// One code point of `s` starting at byte `i`: returns its byte length (invalid bytes: 1) and sets
// `valid`. Mirrors the sanitising in Parser.cpp so that columns agree.
size_t utf8Len(const std::string &s, size_t i, bool &valid) {
  auto b = static_cast<unsigned char>(s[i]);
  valid = true;
  if (b < 0x80) return 1;
  size_t n = 0;
  uint32_t cp = 0;
  if ((b & 0xE0) == 0xC0) { n = 2; cp = b & 0x1F; }
  else if ((b & 0xF0) == 0xE0) { n = 3; cp = b & 0x0F; }
  else if ((b & 0xF8) == 0xF0) { n = 4; cp = b & 0x07; }
  else { valid = false; return 1; }
  if (i + n > s.size()) { valid = false; return 1; }
  for (size_t k = 1; k < n; ++k) {
    auto c = static_cast<unsigned char>(s[i + k]);
    if ((c & 0xC0) != 0x80) { valid = false; return 1; }
    cp = (cp << 6) | (c & 0x3F);
  }
  if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
      cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
    valid = false;
    return 1;
  }
  return n;
}

const char *kReset = "\033[0m";
const char *kBold = "\033[1m";
const char *kRed = "\033[1;31m";
const char *kMagenta = "\033[1;35m";
const char *kCyan = "\033[1;36m";
const char *kGreen = "\033[1;32m";

}  // namespace

Diagnostics::Diagnostics(std::string file, std::string text)
    : file_(std::move(file)), text_(std::move(text)) {
  lineStarts_.push_back(0);
  for (size_t i = 0; i < text_.size(); ++i)
    if (text_[i] == '\n') lineStarts_.push_back(i + 1);
}

void Diagnostics::error(SourceRange range, std::string message) {
  diags_.push_back({Severity::Error, range, std::move(message)});
  ++errors_;
}

void Diagnostics::warning(SourceRange range, std::string message) {
  diags_.push_back({Severity::Warning, range, std::move(message)});
  ++warnings_;
}

void Diagnostics::note(SourceRange range, std::string message) {
  diags_.push_back({Severity::Note, range, std::move(message)});
}

std::string Diagnostics::lineText(int line) const {
  if (line < 1 || line > static_cast<int>(lineStarts_.size())) return "";
  size_t b = lineStarts_[line - 1];
  size_t e = line < static_cast<int>(lineStarts_.size()) ? lineStarts_[line] - 1 : text_.size();
  if (e > b && text_[e - 1] == '\r') --e;
  return text_.substr(b, e - b);
}

void Diagnostics::render(std::ostream &os, const Diagnostic &d, bool colour) const {
  const SourceRange &r = d.range;
  if (colour) os << kBold;
  os << file_;
  if (r.begin.line > 0) os << ':' << r.begin.line << ':' << std::max(1, r.begin.column);
  os << ": ";
  const char *label = d.severity == Severity::Error ? "error" :
                      d.severity == Severity::Warning ? "warning" : "note";
  const char *labelColour = d.severity == Severity::Error ? kRed :
                            d.severity == Severity::Warning ? kMagenta : kCyan;
  if (colour) os << labelColour;
  os << label << ": ";
  if (colour) os << kReset << kBold;
  os << d.message;
  if (colour) os << kReset;
  os << '\n';
  if (r.begin.line <= 0 || r.begin.line > lineCount()) return;

  // The source line, with unprintable characters and invalid bytes shown as U+FFFD so that the
  // caret line (one column per code point) lines up. A very long line (minified or binary input)
  // is cut to a window around the range, marked with "...".
  std::string line = lineText(r.begin.line);
  std::vector<std::string> cps;  // the shown text of each column
  for (size_t i = 0; i < line.size();) {
    bool valid;
    size_t n = utf8Len(line, i, valid);
    auto c = static_cast<unsigned char>(line[i]);
    bool tab = c == '\t';
    if (!valid || (n == 1 && !tab && (c < 0x20 || c == 0x7F)))
      cps.push_back("\xEF\xBF\xBD");
    else
      cps.push_back(line.substr(i, n));
    i += n;
  }
  const int count = static_cast<int>(cps.size());
  int begin = std::max(1, r.begin.column);
  int end = (r.end.line == r.begin.line && r.end.column >= begin) ? r.end.column : count;
  constexpr int kWidth = 120;
  int lo = 1, hi = count;
  if (count > kWidth + 40) {
    lo = std::max(1, std::min(begin - 40, count - kWidth + 1));
    hi = std::min(count, lo + kWidth - 1);
  }
  std::string shown = lo > 1 ? "..." : "", caret = lo > 1 ? "   " : "";
  for (int col = lo; col <= hi; ++col) {
    const std::string &cp = cps[static_cast<size_t>(col - 1)];
    shown += cp;
    if (col < begin) caret += cp == "\t" ? '\t' : ' ';
    else if (col == begin) caret += '^';
    else if (col <= end) caret += '~';
  }
  if (hi < count) shown += "...";
  if (begin > hi) {  // the range starts past the end of the line (e.g. end of file)
    caret.append(static_cast<size_t>(begin - hi - 1), ' ');
    caret += '^';
  }
  os << shown << '\n';
  if (colour) os << kGreen;
  os << caret;
  if (colour) os << kReset;
  os << '\n';
}

void Diagnostics::sortByLocation(size_t first) {
  if (first >= diags_.size()) return;
  // Group each error / warning with its notes; a leading note (no owner) forms its own group.
  std::vector<std::vector<Diagnostic>> groups;
  for (size_t i = first; i < diags_.size(); ++i) {
    if (diags_[i].severity != Severity::Note || groups.empty()) groups.emplace_back();
    groups.back().push_back(std::move(diags_[i]));
  }
  std::stable_sort(groups.begin(), groups.end(), [](const auto &a, const auto &b) {
    const SourceLoc &x = a.front().range.begin, &y = b.front().range.begin;
    return x.line < y.line || (x.line == y.line && x.column < y.column);
  });
  diags_.resize(first);
  for (auto &g : groups)
    for (auto &d : g) diags_.push_back(std::move(d));
}

void Diagnostics::render(std::ostream &os, bool colour) const {
  int shown = 0;
  for (const auto &d : diags_) {
    if (d.severity == Severity::Error && errorLimit_ > 0 && shown == errorLimit_) break;
    if (d.severity == Severity::Error) ++shown;
    render(os, d, colour);
  }
  if (errors_ > shown && errorLimit_ > 0 && shown == errorLimit_) {
    int more = errors_ - shown;
    render(os, Diagnostic{Severity::Note, {}, fmt::format("{} more error{} not shown (at most {} are)",
                                                        more, more == 1 ? "" : "s", errorLimit_)},
           colour);
  }
}

std::string Diagnostics::str(bool colour) const {
  std::ostringstream os;
  render(os, colour);
  return os.str();
}

std::string quote(const std::string &s) { return "'" + s + "'"; }

namespace {
// Optimal string alignment distance (Levenshtein plus adjacent transpositions).
size_t osaDistance(const std::string &a, const std::string &b) {
  const size_t n = a.size(), m = b.size();
  std::vector<std::vector<size_t>> d(n + 1, std::vector<size_t>(m + 1));
  for (size_t i = 0; i <= n; ++i) d[i][0] = i;
  for (size_t j = 0; j <= m; ++j) d[0][j] = j;
  for (size_t i = 1; i <= n; ++i)
    for (size_t j = 1; j <= m; ++j) {
      size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
    }
  return d[n][m];
}
}  // namespace

std::string closestMatch(const std::string &name, const std::vector<std::string> &candidates) {
  if (name.empty() || name.size() > 64) return "";
  std::string best;
  size_t bestD = SIZE_MAX;
  for (const auto &c : candidates) {
    if (c == name || c.size() > 64) continue;
    size_t d = osaDistance(name, c);
    // Case-only differences are always plausible.
    std::string ln = name, lc = c;
    std::transform(ln.begin(), ln.end(), ln.begin(), ::tolower);
    std::transform(lc.begin(), lc.end(), lc.begin(), ::tolower);
    if (ln == lc) d = 0;
    size_t limit = std::max<size_t>(1, (std::max(name.size(), c.size()) + 1) / 3);
    if (d <= limit && d < bestD) {
      bestD = d;
      best = c;
    }
  }
  return best;
}

std::string didYouMean(const std::string &name, const std::vector<std::string> &candidates) {
  std::string m = closestMatch(name, candidates);
  return m.empty() ? "" : "; did you mean " + quote(m) + "?";
}

}  // namespace mtlc
