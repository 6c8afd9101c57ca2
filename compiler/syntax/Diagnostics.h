// The diagnostics engine shared by every stage that reports a user error about a .mtl program.
//
// Diagnostics are collected, then rendered clang-style:
//
//   fashion.mtl:6:40: error: dense needs a 1-D input, but its input has shape [32, 13, 13]
//   shared trunk = image -> conv2d(32, kernel=3) -> dense(10)
//                                                   ^~~~~~~~~
//   fashion.mtl:6:25: note: conv2d produces [32, 26, 26]
//   ...
//
// A note belongs to the error (or warning) before it. Columns count Unicode code points, 1-based,
// as ANTLR reports them; invalid UTF-8 bytes count as one column each.
#pragma once

#include "syntax/SourceLoc.h"

#include <iosfwd>
#include <string>
#include <vector>

namespace mtlc {

enum class Severity { Error, Warning, Note };

struct Diagnostic {
  Severity severity = Severity::Error;
  SourceRange range;       // line 0 = no location (rendered as `file: error: msg`)
  std::string message;
};

class Diagnostics {
public:
  // `file` is shown as given (pass it relative for stable output); `text` is the source.
  Diagnostics(std::string file, std::string text);

  void error(SourceRange range, std::string message);
  void warning(SourceRange range, std::string message);
  void note(SourceRange range, std::string message);
  void error(std::string message) { error(SourceRange{}, std::move(message)); }

  int errorCount() const { return errors_; }
  int warningCount() const { return warnings_; }
  bool hasErrors() const { return errors_ > 0; }

  const std::vector<Diagnostic> &diagnostics() const { return diags_; }
  const std::string &file() const { return file_; }
  const std::string &text() const { return text_; }

  // Renders every diagnostic collected so far, in order. `colour` adds ANSI colours (the driver
  // passes isatty(2)).
  // Stably sorts the diagnostics from index `first` on by the location of each error or warning,
  // keeping every note after the diagnostic it belongs to (location-less ones first). A stage that
  // discovers errors out of source order calls this so that output reads top to bottom.
  void sortByLocation(size_t first = 0);

  // Renders every diagnostic in order, up to errorLimit() errors (each with its notes); the rest
  // are summed up in one last note ("7 more errors not shown"). errorCount() counts them all.
  void render(std::ostream &os, bool colour = false) const;
  // 0: no limit. The default matches clang's -ferror-limit.
  void setErrorLimit(int limit) { errorLimit_ = limit; }
  int errorLimit() const { return errorLimit_; }
  static constexpr int kDefaultErrorLimit = 20;
  void render(std::ostream &os, const Diagnostic &d, bool colour = false) const;
  std::string str(bool colour = false) const;  // render() into a string

  // The text of a 1-based line without its line terminator ("" when out of range).
  std::string lineText(int line) const;
  int lineCount() const { return static_cast<int>(lineStarts_.size()); }

private:
  std::string file_, text_;
  std::vector<size_t> lineStarts_;
  std::vector<Diagnostic> diags_;
  int errors_ = 0, warnings_ = 0;
  int errorLimit_ = kDefaultErrorLimit;
};

// Spelling helpers for messages.
std::string quote(const std::string &s);  // 'name'

// The closest of `candidates` to `name` by edit distance, or "" when none is close enough to be a
// plausible typo. Used for "did you mean 'dense'?".
std::string closestMatch(const std::string &name, const std::vector<std::string> &candidates);
// "; did you mean 'dense'?" or "".
std::string didYouMean(const std::string &name, const std::vector<std::string> &candidates);

}  // namespace mtlc
