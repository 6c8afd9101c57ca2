// What the trainer prints (the start line, epoch lines, test metrics, the summary) goes to Python's
// sys.stdout, so that it appears in a notebook as in a terminal. Training runs with the GIL
// released; the buffer takes it back only to hand over a complete line.
#pragma once

#include <ostream>
#include <streambuf>
#include <string>

namespace mtlc::python {

class PyStdoutBuf final : public std::streambuf {
 public:
  ~PyStdoutBuf() override;

 protected:
  int_type overflow(int_type ch) override;
  std::streamsize xsputn(const char* s, std::streamsize n) override;
  int sync() override;

 private:
  void flushLines(bool all);  // writes the complete lines (all: the rest too) to sys.stdout
  std::string pending_;
};

// An ostream over PyStdoutBuf.
class PyStdout final : public std::ostream {
 public:
  PyStdout() : std::ostream(&buf_) {}

 private:
  PyStdoutBuf buf_;
};

}  // namespace mtlc::python
