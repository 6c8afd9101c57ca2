// What a core function reports instead of throwing (the core builds without exceptions, for the
// embedded runtime): the kind of failure, and a message in the caller's buffer. The trainer turns
// a failure into an rt::Error; the embedded runtime into an MTLC_ERR_* status.
#pragma once

#include <cstdarg>
#include <cstddef>
#include <cstdio>

namespace mtlc::core {

enum class Status {
  Ok = 0,
  Io,      // the file system refused (open, read, write, rename)
  Format,  // the bytes are not what they claim to be (a malformed safetensors file)
  NoMem,   // an allocation failed
};

// Where a failing core function writes its message ("PATH: what went wrong").
struct Failure {
  char *message;
  size_t capacity;
  Status fail(Status status, const char *format, ...) __attribute__((format(printf, 3, 4))) {
    if (message && capacity) {
      va_list ap;
      va_start(ap, format);
      std::vsnprintf(message, capacity, format, ap);
      va_end(ap);
    }
    return status;
  }
};

}  // namespace mtlc::core
