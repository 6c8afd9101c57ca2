#include "JIT.h"

#include <llvm/ExecutionEngine/Orc/ExecutionUtils.h>
#include <llvm/Support/TargetSelect.h>

#include <mutex>

namespace mtlc::jit {

namespace {

template <typename T>
T orThrow(llvm::Expected<T> value, const char *what) {
  if (!value) throw JITError(std::string(what) + ": " + llvm::toString(value.takeError()));
  return std::move(*value);
}

void orThrow(llvm::Error err, const char *what) {
  if (err) throw JITError(std::string(what) + ": " + llvm::toString(std::move(err)));
}

llvm::orc::JITTargetMachineBuilder hostMachine() {
  static std::once_flag initialised;
  std::call_once(initialised, [] {
    llvm::InitializeNativeTarget();
    llvm::InitializeNativeTargetAsmPrinter();
    llvm::InitializeNativeTargetAsmParser();
  });
  return orThrow(llvm::orc::JITTargetMachineBuilder::detectHost(), "detecting the host CPU");
}

}  // namespace

JIT::JIT() : machine_(hostMachine()) {
  lljit_ = orThrow(llvm::orc::LLJITBuilder().setJITTargetMachineBuilder(machine_).create(),
                   "creating the JIT");
  llvm::orc::JITDylib &main = lljit_->getMainJITDylib();
  main.addGenerator(orThrow(llvm::orc::DynamicLibrarySearchGenerator::GetForCurrentProcess(
                                lljit_->getDataLayout().getGlobalPrefix()),
                            "exposing process symbols to the JIT"));
}

std::unique_ptr<llvm::TargetMachine> JIT::createTargetMachine() {
  return orThrow(machine_.createTargetMachine(), "creating the host target machine");
}

llvm::orc::ResourceTrackerSP JIT::addModule(llvm::orc::ThreadSafeModule module,
                                            llvm::orc::ResourceTrackerSP tracker) {
  if (!tracker) tracker = lljit_->getMainJITDylib().createResourceTracker();
  orThrow(lljit_->addIRModule(tracker, std::move(module)), "adding a module to the JIT");
  return tracker;
}

llvm::orc::ExecutorAddr JIT::lookupAddress(llvm::StringRef symbol) {
  return orThrow(lljit_->lookup(symbol), "looking up a JIT symbol");
}

}  // namespace mtlc::jit
