#include "Compile.h"

#include "JIT.h"
#include "codegen/Codegen.h"
#include "passes/MemoryPlan.h"

#include <llvm/IR/Module.h>

#include <chrono>

namespace mtlc::jit {

mtlc_entry_fn CompiledModule::entry(const std::string &function) const {
  auto it = entries.find(function);
  if (it == entries.end()) throw std::out_of_range("no compiled entry point '" + function + "'");
  return it->second;
}

CompiledModule compile(const ir::Module &m, bool optimize, bool keepIR) {
  auto start = std::chrono::steady_clock::now();
  CompiledModule out;
  out.jit = std::make_shared<JIT>();

  auto ctx = std::make_unique<llvm::LLVMContext>();
  std::unique_ptr<llvm::Module> module = codegen::emitModule(m, *ctx, out.jit->dataLayout());
  module->setTargetTriple(out.jit->targetTriple().str());
  if (optimize) codegen::optimizeModule(*module, *out.jit->createTargetMachine());
  if (keepIR) out.llvmIR = codegen::printModule(*module);

  out.jit->addModule(llvm::orc::ThreadSafeModule(std::move(module), std::move(ctx)));
  // Looking the entry points up is what makes ORC generate the machine code.
  for (const auto &f : m.functions)
    out.entries[f->name] = out.jit->lookup<mtlc_entry_fn>(codegen::entrySymbol(m, *f));
  out.actsFloats = passes::maxActsFloats(m);
  out.compileMs =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  return out;
}

}  // namespace mtlc::jit
