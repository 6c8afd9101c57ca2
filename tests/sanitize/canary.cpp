// Proof that a -DMTLC_SANITIZE=ON build really aborts on the errors the sanitizers exist for: each
// mode commits one on purpose, and CTest expects the process to fail (WILL_FAIL). If the flags were
// lost, these would exit 0 and the tests sanitizer_canary_* would fail.
#include <cstdio>
#include <cstring>
#include <limits>
#include <vector>

int main(int argc, char **argv) {
  if (argc < 2) return 2;
  volatile int index = 4;  // volatile: the compiler cannot prove (and fold away) the error
  if (std::strcmp(argv[1], "asan") == 0) {
    std::vector<int> *v = new std::vector<int>(4);
    int *data = v->data();
    std::printf("%d\n", data[index]);  // heap-buffer-overflow
    delete v;
  } else if (std::strcmp(argv[1], "ubsan") == 0) {
    volatile int big = std::numeric_limits<int>::max();
    std::printf("%d\n", big + index);  // signed integer overflow
  } else {
    return 2;
  }
  return 0;
}
