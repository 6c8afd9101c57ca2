// One call from an IR module to runnable machine code: schedule it once (passes/Schedule.h: fusion,
// memory plan, scratch), emit LLVM IR from the schedule, optimise it for the host, JIT-compile
// it, and hand back the entry points. LLVM stays out of this header, so the driver and
// tests that only run models do not pay for LLVM's headers.
#pragma once

#include "codegen/Codegen.h"
#include "ir/IR.h"
#include "spec/abi.h"

#include <map>
#include <memory>
#include <string>
#include <vector>

namespace mtlc::jit {

class JIT;

struct CompiledModule {
  std::map<std::string, mtlc_entry_fn> entries;  // by ir::Function name: "train_step", ...
  int64_t actsFloats = 0;    // floats the acts arena needs (enough for every entry point)
  int64_t actsFloatsWithoutReuse = 0;  // what it would need with one slot per value (the summary)
  std::string llvmIR;        // the optimised LLVM IR, when asked for (`--emit=llvm`)
  double compileMs = 0;      // wall time of the whole compile: emit, optimise, machine code
  // Where compileMs went: IR emission, the optimisation pipeline, machine code (ORC's codegen on
  // the first lookup), in milliseconds.
  // With several compile threads, optimizeMs runs until the slowest partition was optimised.
  double emitMs = 0, optimizeMs = 0, machineCodeMs = 0;
  int compileThreads = 1;    // partitions compiled in parallel
  codegen::CodegenOptions options;  // what it was compiled with (target resolved)
  std::shared_ptr<JIT> jit;  // owns the machine code: keep it alive while entries are called
  // IncrementalCompiler: the kernels the entry points call (objects of this and earlier compiles);
  // a kernel's machine code is unloaded when the last module that calls it goes.
  std::vector<std::shared_ptr<void>> kernelsHeld;
  // IncrementalCompiler: unloads this module's entry points when the last copy goes (declared
  // after `jit`, so it goes first). Null for a plain compile, whose JIT is its own.
  std::shared_ptr<void> entriesLoaded;
  int kernelsCompiled = 0, kernelsReused = 0;  // IncrementalCompiler: this compile's kernels

  // The entry point of the named function; throws std::out_of_range if there is none.
  mtlc_entry_fn entry(const std::string &function) const;
};

struct CompileOptions {
  bool optimize = true;      // LLVM's pipeline (false: -O0, the machine code generator only)
  bool keepIR = false;       // fill CompiledModule::llvmIR
  bool fuse = true;          // fusion groups as single kernels (false: one kernel per node)
  std::string target;        // "" = the host; "avx512", "avx2", "zen-avx2", "generic" force a vector shape
  codegen::CodegenOptions codegen;  // tiling overrides (its target is replaced as above)
  // Threads that optimise and generate machine code (jit/ParallelCompile.h); 0: one per CPU.
  int threads = 0;
};

// Throws JITError (jit/JIT.h) if LLVM fails, std::logic_error for invalid generated code.
CompiledModule compile(const ir::Module &m, const CompileOptions &options);
CompiledModule compile(const ir::Module &m, bool optimize = true, bool keepIR = false);

// One JIT for a series of compiles (the REPL), in the style of Kaleidoscope's chapter 4: each
// compile adds the kernels it is the first to need as one module, kept for later compiles, and its
// entry points as another module under a ResourceTracker of their own that is removed when the
// CompiledModule goes. So recompiling after a redefinition (a new head) builds only the entry
// points and the kernels whose code changed; the trunk's kernels are reused as machine code.
// Kernels are keyed by everything their code depends on (codegen::emitModuleSplit: signature,
// options, largest batch), and the cache holds kernels of one optimisation level (a compile with
// the other starts a new JIT), so a cached kernel is the one a full compile would build.
// Memory: each compile's new kernels are one object set under a ResourceTracker of their own,
// held by every CompiledModule that calls one of them; when the last such module goes, they are
// unloaded and leave the cache. So a long session holds the kernels of the live program (and of
// programs still referenced), not of every program it ever compiled.
class IncrementalCompiler {
 public:
  IncrementalCompiler();
  ~IncrementalCompiler();
  CompiledModule compile(const ir::Module &m, const CompileOptions &options);
  // Kernels loaded and available for reuse (those of modules still alive).
  size_t cachedKernels() const;

 private:
  struct KernelSet;  // one compile's new kernels: their tracker and symbols
  std::shared_ptr<JIT> jit_;
  bool optimize_ = true;  // the level jit_'s kernels were compiled at
  std::map<std::string, std::weak_ptr<KernelSet>> kernels_;  // kernel symbol -> its set, while loaded
  int generation_ = 0;
};

}  // namespace mtlc::jit
