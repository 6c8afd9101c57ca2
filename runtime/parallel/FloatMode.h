// The floating-point mode training runs in: denormals flushed to zero (x86 MXCSR FTZ + DAZ).
//
// Why: SGD momentum buffers (and Adam's moments) of parameters whose gradient stays 0 — dead
// ReLU units — decay geometrically into denormal floats within a few hundred steps, and x86
// arithmetic on denormals is ~100× slower. At small batches that dominates a step and grows
// with the step count. Flushing changes values only below 2^-126 (1.2e-38), far below anything
// that moves a float32 weight; TensorFlow flushes on CPU for the same reason. rt::train, the REPL
// and the benchmark set it for the calling thread; ThreadPool hands the caller's mode to its
// workers with every job, so kernels see one mode on every thread.
#pragma once

#include <cstdint>

namespace mtlc::rt {

// The calling thread's floating-point control word (MXCSR on x86; 0 elsewhere).
uint32_t floatMode();
void setFloatMode(uint32_t mode);

// Flushes denormals on this thread while it lives (on = false: leaves the mode alone), then
// restores the previous mode.
class ScopedFlushDenormals {
 public:
  explicit ScopedFlushDenormals(bool on = true);
  ~ScopedFlushDenormals();
  ScopedFlushDenormals(const ScopedFlushDenormals &) = delete;
  ScopedFlushDenormals &operator=(const ScopedFlushDenormals &) = delete;

 private:
  uint32_t saved_;
  bool on_;
};

}  // namespace mtlc::rt
