// A small ORC LLJIT wrapper for the host (in the style of LLVM's Kaleidoscope tutorial): add
// modules, look up entry points. Symbols the generated code calls (erff, expf, memset, ...) resolve
// against the running process. Modules can be added under their own ResourceTracker so a REPL can
// later remove and replace definitions.
#pragma once

#include <llvm/ExecutionEngine/Orc/LLJIT.h>
#include <llvm/ExecutionEngine/Orc/ThreadSafeModule.h>
#include <llvm/Target/TargetMachine.h>

#include <memory>
#include <stdexcept>

namespace mtlc::jit {

struct JITError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class JIT {
 public:
  // A JIT for the host CPU (all its vector extensions). Throws JITError.
  JIT();

  const llvm::DataLayout &dataLayout() const { return lljit_->getDataLayout(); }
  const llvm::Triple &targetTriple() const { return lljit_->getTargetTriple(); }
  // A target machine for the host, for codegen::optimizeModule and machine code; `cold`: one
  // that generates machine code without optimisation (codegen::kColdKernel).
  std::unique_ptr<llvm::TargetMachine> createTargetMachine(bool cold = false);

  // Adds a module to the main library, under `tracker` (a fresh one if null); returns the tracker:
  // tracker->remove() unloads the module's definitions again.
  llvm::orc::ResourceTrackerSP addModule(llvm::orc::ThreadSafeModule module,
                                         llvm::orc::ResourceTrackerSP tracker = nullptr);

  // Adds an object file (ParallelCompile's output) to the main library, under `tracker` when given
  // (tracker->remove() unloads it again).
  void addObject(std::unique_ptr<llvm::MemoryBuffer> object, llvm::orc::ResourceTrackerSP tracker = nullptr);
  llvm::orc::ResourceTrackerSP createTracker();

  // The address of a defined symbol, compiling its module on first use. Throws JITError.
  llvm::orc::ExecutorAddr lookupAddress(llvm::StringRef symbol);
  template <typename Fn>
  Fn lookup(llvm::StringRef symbol) {
    return lookupAddress(symbol).toPtr<Fn>();
  }

 private:
  llvm::orc::JITTargetMachineBuilder machine_;
  std::unique_ptr<llvm::orc::LLJIT> lljit_;
};

}  // namespace mtlc::jit
