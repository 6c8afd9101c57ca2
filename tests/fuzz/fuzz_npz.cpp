// libFuzzer harness of the npz and npy sources (spec/NpzFiles.cpp, runtime/data/Npz.cpp): any
// bytes as the file of `npz("...")` and of `npy("...")`, through what the compiler reads (the
// headers) and what the trainer reads (every array, converted or memory-mapped, each float read
// once). Built with -DMTLC_FUZZ=ON; in other builds replay_main.cpp replays regressions/npz.
//
// A malformed file must end in rt::Error. A finding is a crash, a sanitizer report (a read past
// the mapping or a buffer), a hang, a leak or any other exception escaping.
#include "MemoryFile.h"
#include "runtime/data/Dataset.h"
#include "spec/NpzFiles.h"
#include "spec/Error.h"

#include <cstdint>
#include <cstring>

namespace {

namespace rt = mtlc::rt;

// Reads every float of the table, so a field pointing outside its mapping is a sanitizer report.
float touch(const rt::Table &t) {
  float sum = 0;
  for (const rt::Field &f : t.fields) {
    if (f.data.size() != size_t(t.rows) * size_t(f.width)) __builtin_trap();  // the reader's own invariant
    for (size_t i = 0; i < f.data.size(); ++i) sum += f.data.at(i);
  }
  return sum;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static mtlc::fuzz::MemoryFile file;
  file.assign(data, size);
  volatile float sink = 0;
  try {
    rt::readNpzHeaders(file.path(), "in.npz");
    sink = sink + touch(rt::readNpz(file.path()));
  } catch (const rt::Error &) {
  }
  try {
    rt::readNpyHeader(file.path(), "in.npy");
    sink = sink + touch(rt::readNpy(file.path()));
  } catch (const rt::Error &) {
  }
  return 0;
}
