#include "PyStdout.h"

#include <pybind11/pybind11.h>

namespace py = pybind11;

namespace mtlc::python {

PyStdoutBuf::~PyStdoutBuf() {
  try {
    flushLines(true);
  } catch (...) {  // a destructor must not throw; a lost tail of output is all that can go wrong
  }
}

PyStdoutBuf::int_type PyStdoutBuf::overflow(int_type ch) {
  if (ch == traits_type::eof()) return traits_type::not_eof(ch);
  pending_.push_back(char(ch));
  if (ch == '\n') flushLines(false);
  return ch;
}

std::streamsize PyStdoutBuf::xsputn(const char* s, std::streamsize n) {
  pending_.append(s, size_t(n));
  if (pending_.find('\n') != std::string::npos) flushLines(false);
  return n;
}

int PyStdoutBuf::sync() {
  flushLines(true);
  return 0;
}

void PyStdoutBuf::flushLines(bool all) {
  size_t end = pending_.size();
  if (!all) {
    const size_t newline = pending_.rfind('\n');
    if (newline == std::string::npos) return;
    end = newline + 1;
  }
  if (end == 0) return;
  py::gil_scoped_acquire gil;
  py::object out = py::module_::import("sys").attr("stdout");
  if (!out.is_none()) {
    out.attr("write")(pending_.substr(0, end));
    out.attr("flush")();
  }
  pending_.erase(0, end);
}

}  // namespace mtlc::python
