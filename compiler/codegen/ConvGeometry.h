// Geometry shared by the convolution and pooling emitters: which output positions a kernel tap
// reads inside the (padded) input. Computed at compile time, so the generated loops have constant
// bounds and no per-element padding checks.
#pragma once

#include <cstdint>

namespace mtlc::codegen {

struct OutRange {
  int64_t lo = 0, hi = 0;  // output positions [lo, hi)
  bool empty() const { return hi <= lo; }
};

// Output positions o in [0, out) whose tap at kernel offset `tap` reads a real input element:
// 0 <= o*stride - pad + tap < in.
inline OutRange validOutputs(int64_t tap, int64_t in, int64_t out, int64_t stride, int64_t pad) {
  OutRange r{0, out};
  while (r.lo < out && r.lo * stride - pad + tap < 0) ++r.lo;
  while (r.hi > r.lo && (r.hi - 1) * stride - pad + tap >= in) --r.hi;
  return r;
}

}  // namespace mtlc::codegen
