#include "JIT.h"

#include <llvm/ExecutionEngine/JITLink/JITLink.h>
#include <llvm/ExecutionEngine/Orc/ExecutionUtils.h>
#include <llvm/ExecutionEngine/Orc/ObjectLinkingLayer.h>
#include <llvm/Support/CommandLine.h>
#include <llvm/TargetParser/SubtargetFeature.h>
#include <llvm/Support/TargetSelect.h>

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

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
  // Machine code at -O1 without loop strength reduction: the kernels arrive optimised (and their
  // hot loops hand-blocked), so these halve code generation time at no measured run-time cost.
  // Nor the pre-register-allocation machine scheduler: a visible part of the compile, and an
  // out-of-order core reorders the register-blocked micro-kernel itself (step times unchanged,
  // losses bit-identical; bench/RESULTS.md). MTLC_CODEGEN_O2=1 restores LLVM's default (-O2, LSR,
  // scheduler).
  const bool lightCodegen = !std::getenv("MTLC_CODEGEN_O2");
  static std::once_flag initialised;
  std::call_once(initialised, [lightCodegen] {
    llvm::InitializeNativeTarget();
    llvm::InitializeNativeTargetAsmPrinter();
    llvm::InitializeNativeTargetAsmParser();
    // As command-line options: the scheduler obeys `enable-misched` only when it occurred on one.
    // MTLC_LLVM_ARGS adds LLVM's own options (as llc takes them), for experiments with its
    // passes; an option it names replaces the default here.
    std::string user = std::getenv("MTLC_LLVM_ARGS") ? std::getenv("MTLC_LLVM_ARGS") : "";
    std::vector<std::string> words{"mtlc"};
    struct Default {
      const char *name, *arg;
    };
    if (lightCodegen)
      for (Default d : {Default{"disable-lsr", "-disable-lsr"}, Default{"enable-misched", "-enable-misched=false"}})
        if (user.find(d.name) == std::string::npos) words.push_back(d.arg);
    std::istringstream in(user);
    for (std::string w; in >> w;) words.push_back(w);
    std::vector<const char *> argv;
    for (const std::string &w : words) argv.push_back(w.c_str());
    llvm::cl::ParseCommandLineOptions(int(argv.size()), argv.data(), "", &llvm::errs());
  });
  auto jtmb = orThrow(llvm::orc::JITTargetMachineBuilder::detectHost(), "detecting the host CPU");
  // MTLC_TARGET_CPU=znver4 (an LLVM CPU name): code for that CPU and its features instead of the
  // host's. For measuring compile time under valgrind, whose CPU has no AVX-512; such code must
  // not be run on a CPU without those features.
  if (const char *cpu = std::getenv("MTLC_TARGET_CPU"); cpu && *cpu) {
    jtmb.setCPU(cpu);
    jtmb.getFeatures() = llvm::SubtargetFeatures();
  }
  if (lightCodegen) jtmb.setCodeGenOptLevel(llvm::CodeGenOptLevel::Less);
  return jtmb;
}

// With MTLC_PERF_MAP set, every function the JIT links (kernels included: they are local
// symbols) is appended to /tmp/perf-<pid>.map, so `perf report` names generated code.
class PerfMapPlugin : public llvm::orc::ObjectLinkingLayer::Plugin {
 public:
  void modifyPassConfig(llvm::orc::MaterializationResponsibility &, llvm::jitlink::LinkGraph &,
                        llvm::jitlink::PassConfiguration &config) override {
    // Calls between functions of one object are resolved by the assembler, so nothing refers to
    // the kernels' local symbols and JITLink would prune them: keep them for the map.
    config.PrePrunePasses.push_back([](llvm::jitlink::LinkGraph &g) -> llvm::Error {
      for (llvm::jitlink::Symbol *sym : g.defined_symbols())
        if (sym->hasName() && sym->isCallable()) sym->setLive(true);
      return llvm::Error::success();
    });
    config.PostFixupPasses.push_back([](llvm::jitlink::LinkGraph &g) -> llvm::Error {
      static std::mutex lock;
      std::lock_guard<std::mutex> guard(lock);
      std::string path = "/tmp/perf-" + std::to_string(getpid()) + ".map";
      if (FILE *f = std::fopen(path.c_str(), "a")) {
        for (llvm::jitlink::Symbol *sym : g.defined_symbols())
          if (sym->hasName() && sym->getSize() > 0)
            std::fprintf(f, "%llx %llx %s\n", (unsigned long long)sym->getAddress().getValue(),
                         (unsigned long long)sym->getSize(), sym->getName().str().c_str());
        std::fclose(f);
      }
      return llvm::Error::success();
    });
  }
  llvm::Error notifyFailed(llvm::orc::MaterializationResponsibility &) override {
    return llvm::Error::success();
  }
  llvm::Error notifyRemovingResources(llvm::orc::JITDylib &, llvm::orc::ResourceKey) override {
    return llvm::Error::success();
  }
  void notifyTransferringResources(llvm::orc::JITDylib &, llvm::orc::ResourceKey,
                                   llvm::orc::ResourceKey) override {}
};

}  // namespace

JIT::JIT() : machine_(hostMachine()) {
  lljit_ = orThrow(llvm::orc::LLJITBuilder().setJITTargetMachineBuilder(machine_).create(),
                   "creating the JIT");
  llvm::orc::JITDylib &main = lljit_->getMainJITDylib();
  main.addGenerator(orThrow(llvm::orc::DynamicLibrarySearchGenerator::GetForCurrentProcess(
                                lljit_->getDataLayout().getGlobalPrefix()),
                            "exposing process symbols to the JIT"));
  if (std::getenv("MTLC_PERF_MAP"))
    if (auto *linker = llvm::dyn_cast<llvm::orc::ObjectLinkingLayer>(&lljit_->getObjLinkingLayer()))
      linker->addPlugin(std::make_unique<PerfMapPlugin>());
}

std::unique_ptr<llvm::TargetMachine> JIT::createTargetMachine(bool cold) {
  llvm::orc::JITTargetMachineBuilder builder = machine_;
  if (cold) builder.setCodeGenOptLevel(llvm::CodeGenOptLevel::None);
  return orThrow(builder.createTargetMachine(), "creating the host target machine");
}

llvm::orc::ResourceTrackerSP JIT::addModule(llvm::orc::ThreadSafeModule module,
                                            llvm::orc::ResourceTrackerSP tracker) {
  if (!tracker) tracker = lljit_->getMainJITDylib().createResourceTracker();
  orThrow(lljit_->addIRModule(tracker, std::move(module)), "adding a module to the JIT");
  return tracker;
}

void JIT::addObject(std::unique_ptr<llvm::MemoryBuffer> object, llvm::orc::ResourceTrackerSP tracker) {
  if (!tracker) tracker = lljit_->getMainJITDylib().getDefaultResourceTracker();
  orThrow(lljit_->addObjectFile(tracker, std::move(object)), "adding an object file to the JIT");
}

llvm::orc::ResourceTrackerSP JIT::createTracker() { return lljit_->getMainJITDylib().createResourceTracker(); }

llvm::orc::ExecutorAddr JIT::lookupAddress(llvm::StringRef symbol) {
  return orThrow(lljit_->lookup(symbol), "looking up a JIT symbol");
}

}  // namespace mtlc::jit
