// IR → LLVM IR. Each ir::Function of a module becomes one external entry point
//     void mtlc_<module>_<function>(const mtlc_args *)      (C type mtlc_entry_fn, runtime/abi.h)
// that calls one generated kernel per scheduled kernel, in order, on the storage the memory plan
// assigns: codegen reads the scheduled module (passes/Schedule.h) and decides nothing it holds. Kernels are loops written here with IRBuilder — no op library,
// no BLAS; the only external call is libm's erff (GELU), plus what LLVM lowers intrinsics to.
//
// This header keeps LLVM's headers out of its includers; the JIT (jit/Compile.h) is the usual
// way in.
//
// Kernels written with explicit vector types (the GEMM micro-kernel, its packing routines, fused
// epilogues) size them from TargetInfo, which comes from the JIT's target machine: AVX-512
// (16 floats, 32 registers), AVX2 (8 floats, 16 registers), or a 4-float generic fallback that
// LLVM lowers to SSE on any x86-64 (or to scalars on a target without vectors).
#pragma once

#include "ir/IR.h"
#include "passes/Schedule.h"

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace llvm {
class DataLayout;
class LLVMContext;
class Module;
class TargetMachine;
}  // namespace llvm

namespace mtlc::codegen {

// The vector shape generated kernels are written for.
struct TargetInfo {
  int lanes = 4;             // floats per vector register
  int vectorRegisters = 16;  // architectural vector registers (bounds the GEMM register tile)
  std::string name = "generic";  // "avx512", "avx2", "generic"
  // The vectors fit the machine's registers. A named target wider than the machine (tests run
  // "avx512" code on AVX2 hosts) is legalised in pieces, which an inline-asm operand cannot be.
  bool nativeVectors = true;
  // AVX2's masked loads and stores (vmaskmovps) are slow on AMD's Zen 1-3: a masked store is
  // microcoded, about 12 cycles against one (measured on Zen 1), and masked loads inside the
  // pooling loops halved their speed. Masked accesses then check the mask first: a full one is a
  // plain load or store, an empty one loads nothing (Kernel::maskedLoad, Kernel::maskedStore).
  bool slowMaskedMemory = false;
  // AVX-512 BF16 (vdpbf16ps, vcvtne2ps2bf16): the bf16 products of `precision bf16` can run.
  bool bf16 = false;
};

// What the target machine `tm` supports (its feature string: +avx512f, +avx2 and +fma).
TargetInfo targetInfo(const llvm::TargetMachine &tm);
// A named target for tests and benchmarks: "avx512", "avx2", "zen-avx2" (AVX2 with
// slowMaskedMemory) or "generic".
TargetInfo namedTarget(const std::string &name);

// How a GEMM is generated (EmitGemm.cpp): packed panels + micro-kernel, or one of the direct
// forms for shapes where packing does not pay; Auto picks by a cost estimate.
enum class GemmKind { Auto, Packed, Axpy, Dot };

struct CodegenOptions {
  TargetInfo target;  // jit::compile fills it from the host unless CompileOptions::target says
  // Schedule with passes::planFusion's groups (scheduleModule): each group is one kernel, its
  // interior members get no storage.
  bool fuse = true;
  // GEMM tiling overrides for tests (0: chosen from the target and the shapes).
  GemmKind gemmKind = GemmKind::Auto;  // forced where applicable (Axpy: B not transposed;
                                      // Dot: A not transposed, B transposed)
  int gemmMR = 0, gemmNRV = 0;   // register tile: MR rows × NRV vectors (Dot: MR rows only)
  int64_t gemmKC = 0, gemmMB = 0, gemmNB = 0;  // cache blocks (K, rows of A, columns of B)
  int gemmSplit = 0;  // packed GEMM across threads: 0 the cost model's choice, 1 rows, 2 columns
  // Threads: parallel loops hand work to mtlc_args::parallel_for only when it is large enough to
  // pay for the fork and join (a few µs); tests set this to split even the smallest loops.
  bool parallelAlways = false;
  // Diagnostics (the trainer's NaN/Inf locator, driver/NonFiniteLocator.h): the address of a C
  // function void hook(int32_t node id, const float *values, int64_t count) that each entry
  // point calls after every kernel with the values it wrote (the group's last node first, then
  // its siblings'); 0 (the default) emits no call.
  uint64_t nodeHook = 0;
  // `train { precision bf16 }`: every GEMM (matmuls, convolutions, both gradients; not Gemm::fp32)
  // packs its operands as bf16 and multiplies with vdpbf16ps into fp32 accumulators; everything
  // else stays fp32. Only where target.bf16 (jit::compile clears it elsewhere: the fp32 fallback).
  bool bf16 = false;
};

// How emitGemm (EmitGemm.cpp) generates a product of these static extents (-1: the batch, at most maxBatch):
// the form and its register tile, "packed 6x2", "axpy 6x2" or "dot 1x8" (tests, MTLC_GEMM_DEBUG).
std::string gemmChoice(const TargetInfo &target, const CodegenOptions *opts, int64_t maxBatch, int64_t M,
                       int64_t K, int64_t N, bool transA, bool transB);

// Working memory the kernel rooted at `n` needs, for batches of up to maxBatch samples: the op's
// own scratch hook, beside its emitter (matMulScratchFloats, convScratchFloats), 0 for ops that
// need none; `group` (null when the kernel runs alone) is its fusion group, whose per-sample
// prologue takes room too. A new op that needs scratch adds its hook to this function's switch
// (EmitModule.cpp).
int64_t kernelScratchFloats(const ir::Node &n, const passes::FusionGroup *group, int64_t maxBatch);
// The hooks the planner asks (passes::scheduleModule).
passes::KernelHooks kernelHooks();

// The scheduled module codegen emits for `m` under `opts` (fusion when opts.fuse, this back end's
// scratch); throws std::logic_error if a fusion group has no fused kernel (a compiler bug). Build
// it once per compile and hand it to emitModule / emitModuleSplit.
passes::ScheduledModule scheduleModule(const ir::Module &m, const CodegenOptions &opts);

// Function attribute of generated code that a step spends almost no time in: the entry points
// (a sequence of calls) and the kernels below codegen::kColdShare of the module's work. The
// optimiser skips its vectoriser there, and the JIT generates its machine code without
// optimisation (jit/ParallelCompile.h: its own partition), about three times faster.
inline constexpr const char *kColdKernel = "mtlc-cold";

// "mtlc_" + module name + "_" + function name, e.g. mtlc_fashion_train_step.
std::string entrySymbol(const ir::Module &m, const ir::Function &f);

// Emits every function of the scheduled module (scheduled under the same opts). Throws
// std::logic_error if the result fails LLVM's verifier (a compiler bug).
std::unique_ptr<llvm::Module> emitModule(const passes::ScheduledModule &s, llvm::LLVMContext &ctx,
                                         const llvm::DataLayout &dl, const CodegenOptions &opts = {});

// Incremental compilation (the REPL; jit/Compile.h IncrementalCompiler): the entry points go into
// `entries`, which only declares its kernels, under external symbols named by what their code
// depends on (the scheduled kernel's key, the schedule's context and the options: "mtlck.<hash>"); the kernels for which `have(symbol)` is false
// are emitted into `kernels`. A kernel, once compiled, serves every later module compiled with the
// same options, so a redefinition compiles only the kernels it changed.
struct SplitModules {
  std::unique_ptr<llvm::Module> entries;
  std::unique_ptr<llvm::Module> kernels;  // the new kernels (possibly none)
  std::vector<std::string> newKernels;    // their symbols
};
SplitModules emitModuleSplit(const passes::ScheduledModule &s, llvm::LLVMContext &ctx, const llvm::DataLayout &dl,
                             const CodegenOptions &opts,
                             const std::function<bool(const std::string &symbol)> &have);

// LLVM's O3 pipeline (new pass manager) tuned for `tm`'s target: sets the module's triple and data
// layout and each function's target-cpu / target-features, so the vectoriser uses the host's
// vector width.
void optimizeModule(llvm::Module &m, llvm::TargetMachine &tm);

// Textual LLVM IR (`--emit=llvm`).
std::string printModule(const llvm::Module &m);

}  // namespace mtlc::codegen
