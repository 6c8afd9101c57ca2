// One call from an IR module to runnable machine code: emit LLVM IR, optimise it for the host,
// JIT-compile it, and hand back the entry points. LLVM stays out of this header, so the driver and
// tests that only run models do not pay for LLVM's headers.
#pragma once

#include "ir/IR.h"
#include "runtime/abi.h"

#include <map>
#include <memory>
#include <string>

namespace mtlc::jit {

class JIT;

struct CompiledModule {
  std::map<std::string, mtlc_entry_fn> entries;  // by ir::Function name: "train_step", ...
  int64_t actsFloats = 0;    // floats the acts arena needs (enough for every entry point)
  std::string llvmIR;        // the optimised LLVM IR, when asked for (`--emit=llvm`)
  double compileMs = 0;      // wall time of the whole compile: emit, optimise, machine code
  std::shared_ptr<JIT> jit;  // owns the machine code: keep it alive while entries are called

  // The entry point of the named function; throws std::out_of_range if there is none.
  mtlc_entry_fn entry(const std::string &function) const;
};

// Throws JITError (jit/JIT.h) if LLVM fails, std::logic_error for invalid generated code.
CompiledModule compile(const ir::Module &m, bool optimize = true, bool keepIR = false);

}  // namespace mtlc::jit
