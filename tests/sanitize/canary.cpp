// Proof that a -DMTLC_SANITIZE=ON build really aborts on the errors the sanitizers exist for: each
// mode commits one on purpose, and CTest expects the process to fail (WILL_FAIL). If the flags were
// lost, these would exit 0 and the tests sanitizer_canary_* would fail.
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <vector>

int *volatile leaked;  // volatile: the allocation cannot be optimised away

int main(int argc, char **argv) {
  if (argc < 2) return 2;
  // A build whose UBSan traps (no ASan: cmake/Hardening.cmake) dies of SIGILL, which CTest counts
  // as a crash rather than the failure WILL_FAIL expects: make it exit 1 like a reported error.
  std::signal(SIGILL, [](int) { std::_Exit(1); });
  volatile int index = 4;  // volatile: the compiler cannot prove (and fold away) the error
  if (std::strcmp(argv[1], "asan") == 0) {
    std::vector<int> *v = new std::vector<int>(4);
    int *data = v->data();
    std::printf("%d\n", data[index]);  // heap-buffer-overflow
    delete v;
  } else if (std::strcmp(argv[1], "ubsan") == 0) {
    volatile int big = std::numeric_limits<int>::max();
    std::printf("%d\n", big + index);  // signed integer overflow
  } else if (std::strcmp(argv[1], "lsan") == 0) {
    leaked = new int[64];  // lost below: LeakSanitizer reports it at exit and fails the process
    leaked[0] = index;
    std::printf("%d\n", leaked[0]);
    leaked = nullptr;
  } else {
    return 2;
  }
  return 0;
}
