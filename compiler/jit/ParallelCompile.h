// Object code for a module on several threads: the module is split into partitions of whole
// kernels (each kernel with the functions it calls or hands to parallel_for; a helper that several
// kernels call, such as a GEMM micro-kernel, is a group of its own, compiled once), and each
// partition is optimised and compiled to an object file on a thread of its own, in an LLVMContext
// of its own. The entry points are one group; groups go, largest first, to the partition with the
// least work so far (by instruction count). The cold kernels and the entry points
// (codegen::kColdKernel) form one more partition, whose machine code is generated without
// optimisation, compiled first by the first thread. A module's machine code is the same function
// by function whatever the thread count: only calls to kernels and shared helpers cross objects
// (and then are resolved by the JIT's linker).
#pragma once

#include <llvm/IR/Module.h>
#include <llvm/Support/MemoryBuffer.h>
#include <llvm/Target/TargetMachine.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace mtlc::jit {

struct ObjectCode {
  std::vector<std::unique_ptr<llvm::MemoryBuffer>> objects;  // one per partition
  std::string llvmIR;    // the optimised IR, the partitions linked into one module (when asked for)
  double optimizeMs = 0;  // wall time until the slowest partition was optimised
  int partitions = 0;
};

// How a module divides into groups that stay whole.
enum class Split {
  Program,  // entry points (the external functions, one group) calling internal kernels (one each)
  Library,  // external functions only, one group each (IncrementalCompiler's kernel modules)
};

// A target machine for one partition: generating machine code without optimisation for the
// cold one (codegen::kColdKernel), with the JIT's usual settings otherwise.
using MachineFactory = std::function<std::unique_ptr<llvm::TargetMachine>(bool cold)>;

// Compiles `m` (consumed) on up to `threads` threads. The cold kernels, if any, are a partition
// of their own; the rest is split only when threads > 1. `makeMachine` is called once per
// partition: a TargetMachine is not shared between threads.
ObjectCode compileToObjects(std::unique_ptr<llvm::Module> m, int threads, bool optimize, bool keepIR,
                            const MachineFactory &makeMachine, Split split = Split::Program);

}  // namespace mtlc::jit
