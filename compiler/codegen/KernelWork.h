// How long a kernel takes, roughly, for telling the cold kernels from the ones a step spends its
// time in: from the multiply-adds of its contraction (matmul, the convolutions), the floats its
// members read and write, and the elements they evaluate a transcendental function at (exp, log,
// tanh, erf: losses, sigmoid, GELU), at the module's largest batch. Good for ratios only.
#pragma once

#include "EmitFusion.h"

namespace mtlc::codegen {

// Kernels whose emitters write explicit vector code throughout (GEMM drivers, tiled pooling,
// with their fused chains): the loop vectoriser and unrollers have nothing to add there.
bool explicitVectorKernel(ir::OpKind op);

struct KernelWork {
  double macs = 0;    // multiply-adds of the contraction (0 for the other ops)
  double floats = 0;  // read and written, over every member
  double mathElements = 0;  // elements a member evaluates exp, log, tanh or erf at (Math.cpp)
  bool vectorCode = false;  // explicitVectorKernel: vectors whatever the optimiser does

  // In units of one multiply-add of the packed GEMM (about 0.07 ns on the bench machines): a
  // float streamed through vectorised, optimised code costs about two.
  double hot() const { return macs + 2 * floats; }
  // The same kernel as cold kernels are compiled (no vectoriser, -O0 machine code): explicit
  // vector code runs about 3 times slower; loops left scalar about 5 ns a float (measured on the
  // MMoE's elementwise kernels), and 20–35 ns more per transcendental element (a polynomial or a
  // libm call: bce_bwd on [256, 1] took 9.6 µs cold against 0.5 µs optimised).
  double cold() const { return vectorCode ? 3 * hot() : 3 * macs + 64 * floats + 400 * mathElements; }
};

KernelWork kernelWork(const KernelSpec &spec, int64_t maxBatch);

// A kernel is cold when, compiled as cold, it would still take less than this share of the
// module's hot total (over every kernel call of every entry point): its machine code is then
// generated without optimisation (kColdKernel), which takes a third of the time.
inline constexpr double kColdShare = 1.0 / 2048;

}  // namespace mtlc::codegen
