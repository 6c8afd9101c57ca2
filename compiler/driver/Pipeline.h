// The compiler's stages run in order over one .mtl file:
//   read → parse (AST) → analyze (typed model) → lower (IR + autodiff) → verify → codegen + JIT.
// Each stage reports user errors through the Diagnostics engine; the driver prints them and stops.
#pragma once

#include "lower/Lower.h"
#include "passes/Passes.h"
#include "spec/ModelSpec.h"
#include "sema/Model.h"
#include "sema/Sema.h"
#include "syntax/Diagnostics.h"

#include <memory>
#include <optional>
#include <string>

namespace mtlc::jit {
struct CompiledModule;
class IncrementalCompiler;
}

namespace mtlc::driver {

struct StageTimes {
  double parseMs = 0, semaMs = 0, lowerMs = 0, codegenMs = 0;
  double totalMs() const { return parseMs + semaMs + lowerMs + codegenMs; }
};

// A checked program: its source, diagnostics and typed model.
struct CheckedProgram {
  std::string path, displayName, text;
  sema::DataOverrides dataOverrides;  // `--data`: the sources it was checked against
  std::unique_ptr<Diagnostics> diags;
  std::optional<sema::Model> model;
  StageTimes times;
};

// Reads and checks `path`, its data bindings against the sources `dataOverrides` (`--data`)
// replace. Returns with model empty when it has errors (diags hold them) or when the file cannot be
// read (one location-less error in diags).
CheckedProgram checkFile(const std::string &path, const sema::DataOverrides &dataOverrides = {});
// The same for program text that is not read from `path` (the Python module's
// compile(source=...)): diagnostics name `displayName`, data paths are relative to `path`'s folder.
CheckedProgram checkText(const std::string &path, const std::string &displayName, std::string text,
                         const sema::DataOverrides &dataOverrides = {});

// A program compiled to machine code: the model description the runtime reads, with entry points
// that stay valid while this object lives.
struct CompiledProgram {
  lower::LoweredModel lowered;
  std::shared_ptr<jit::CompiledModule> code;
  rt::ModelSpec spec;
  std::string llvmText;  // filled when asked for (--emit=llvm)
};

// Lowers the checked model (IR + autodiff), verifies it and runs the graph passes `passes`
// enables (none: the IR as lowered). Times it into checked.times.lowerMs.
lower::LoweredModel lowerProgram(CheckedProgram &checked, const passes::PassSettings &passes);

// lowerProgram, then codegen + JIT: LLVM's pipeline and fusion run unless `passes` turns them off
// (-O0: every pass off; --disable-pass=fusion: one kernel per node). With `incremental` (the
// REPL), kernels that an earlier compile of it built are reused. `compileThreads`: the threads
// LLVM's optimisation and machine code run on (jit::CompileOptions::threads; 0: every CPU).
// `nodeHook`: codegen::CodegenOptions::nodeHook (a call after every kernel; profiling).
CompiledProgram compileProgram(CheckedProgram &checked, const passes::PassSettings &passes,
                               bool keepLlvmText, jit::IncrementalCompiler *incremental = nullptr,
                               int compileThreads = 0, uint64_t nodeHook = 0);
// The same with every pass on (optimize) or off.
CompiledProgram compileProgram(CheckedProgram &checked, bool optimize, bool keepLlvmText,
                               jit::IncrementalCompiler *incremental = nullptr, int compileThreads = 0);

// `precision bf16` asked for on a CPU without AVX-512 BF16: the note saying the products run in
// fp32 (mtlc prints it once); empty otherwise.
std::string precisionNote(const CompiledProgram &compiled);


}  // namespace mtlc::driver
