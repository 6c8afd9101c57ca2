#include "runtime/parallel/FloatMode.h"

#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
#define MTLC_HAS_MXCSR 1
#endif

namespace mtlc::rt {

namespace {
#ifdef MTLC_HAS_MXCSR
constexpr uint32_t kFlushBits = 0x8040;  // FTZ (bit 15) + DAZ (bit 6)
#endif
}  // namespace

uint32_t floatMode() {
#ifdef MTLC_HAS_MXCSR
  return _mm_getcsr();
#else
  return 0;
#endif
}

void setFloatMode(uint32_t mode) {
#ifdef MTLC_HAS_MXCSR
  _mm_setcsr(mode);
#else
  (void)mode;
#endif
}

ScopedFlushDenormals::ScopedFlushDenormals(bool on) : saved_(floatMode()), on_(on) {
#ifdef MTLC_HAS_MXCSR
  if (on_) setFloatMode(saved_ | kFlushBits);
#endif
}

ScopedFlushDenormals::~ScopedFlushDenormals() {
  if (on_) setFloatMode(saved_);
}

}  // namespace mtlc::rt
