// The loaders under fuzz read a path, not a buffer: each input goes into one anonymous in-memory
// file (memfd_create), rewritten in place, and the loaders open it as /proc/self/fd/N. No disk
// I/O per input, and nothing is left behind.
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>

namespace mtlc::fuzz {

class MemoryFile {
 public:
  MemoryFile() : fd_(memfd_create("mtlc_fuzz_input", 0)) {
    if (fd_ < 0) die("memfd_create");
    std::snprintf(path_, sizeof path_, "/proc/self/fd/%d", fd_);
  }
  ~MemoryFile() { close(fd_); }
  MemoryFile(const MemoryFile &) = delete;
  MemoryFile &operator=(const MemoryFile &) = delete;

  // Makes the file's contents exactly these bytes.
  void assign(const uint8_t *data, size_t size) {
    if (ftruncate(fd_, 0) != 0) die("ftruncate");
    size_t done = 0;
    while (done < size) {
      ssize_t n = pwrite(fd_, data + done, size - done, off_t(done));
      if (n <= 0) die("pwrite");
      done += size_t(n);
    }
  }
  const char *path() const { return path_; }

 private:
  [[noreturn]] static void die(const char *what) {
    std::perror(what);  // the harness cannot work at all: not a finding, but it must not pass silently
    std::exit(2);
  }
  int fd_;
  char path_[40];
};

}  // namespace mtlc::fuzz
