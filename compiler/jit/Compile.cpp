#include "Compile.h"

#include "JIT.h"
#include "ParallelCompile.h"
#include "codegen/Codegen.h"

#include <llvm/IR/Module.h>
#include <llvm/IR/PassTimingInfo.h>
#include <llvm/Pass.h>
#include <llvm/Support/Timer.h>

#include <chrono>
#include <cstdlib>
#include <set>
#include <thread>

namespace mtlc::jit {

mtlc_entry_fn CompiledModule::entry(const std::string &function) const {
  auto it = entries.find(function);
  if (it == entries.end()) throw std::out_of_range("no compiled entry point '" + function + "'");
  return it->second;
}

namespace {

using Clock = std::chrono::steady_clock;
double msBetween(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

// The options a module is compiled with, the target resolved against the JIT's machine.
codegen::CodegenOptions resolvedOptions(const CompileOptions &options, const llvm::TargetMachine &tm) {
  codegen::CodegenOptions o = options.codegen;
  o.fuse = options.fuse;
  codegen::TargetInfo host = codegen::targetInfo(tm);
  o.target = options.target.empty() ? host : codegen::namedTarget(options.target);
  o.target.nativeVectors = o.target.lanes <= host.lanes;
  // bf16 products need the instructions and the 16-lane vectors they work on; a named "avx512"
  // target runs them when the host has them. Without: fp32 (the driver notes the fallback).
  o.target.bf16 = host.bf16 && o.target.name == "avx512" && o.target.nativeVectors;
  o.bf16 = o.bf16 && o.target.bf16;
  return o;
}

// Where the compile's time went, and the arena size, once the entry points are looked up.
void finish(CompiledModule &out, const passes::ScheduledModule &schedule, Clock::time_point start,
            Clock::time_point emitted, Clock::time_point optimized) {
  auto done = Clock::now();
  out.actsFloats = schedule.actsFloats;
  out.actsFloatsWithoutReuse = schedule.actsFloatsWithoutReuse;
  out.emitMs = msBetween(start, emitted);
  out.optimizeMs = msBetween(emitted, optimized);
  out.machineCodeMs = msBetween(optimized, done);
  out.compileMs = msBetween(start, Clock::now());
}

Clock::time_point plusMs(Clock::time_point t, double ms) {
  return t + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double, std::milli>(ms));
}

int threadsFor(const CompileOptions &options) {
  return options.threads > 0 ? options.threads : int(std::max(1u, std::thread::hardware_concurrency()));
}

}  // namespace

CompiledModule compile(const ir::Module &m, const CompileOptions &options) {
  // MTLC_TIME_PASSES=1: LLVM's per-pass timing report (optimisation and machine code) on stderr;
  // its timers are global, so the compile then runs on one thread.
  const bool timePasses = std::getenv("MTLC_TIME_PASSES") != nullptr;
  if (timePasses) llvm::TimePassesIsEnabled = true;
  auto start = Clock::now();
  CompiledModule out;
  out.jit = std::make_shared<JIT>();
  std::unique_ptr<llvm::TargetMachine> tm = out.jit->createTargetMachine();
  out.options = resolvedOptions(options, *tm);

  auto ctx = std::make_unique<llvm::LLVMContext>();
  const passes::ScheduledModule schedule = codegen::scheduleModule(m, out.options);
  std::unique_ptr<llvm::Module> module = codegen::emitModule(schedule, *ctx, out.jit->dataLayout(), out.options);
  auto emitted = Clock::now();
  const int threads = timePasses ? 1 : threadsFor(options);
  ObjectCode code = compileToObjects(std::move(module), threads, options.optimize, options.keepIR,
                                     [&](bool cold) { return out.jit->createTargetMachine(cold); });
  auto optimized = plusMs(emitted, code.optimizeMs);
  out.llvmIR = std::move(code.llvmIR);
  out.compileThreads = code.partitions;
  for (auto &object : code.objects) out.jit->addObject(std::move(object));
  // Looking the entry points up links the objects.
  for (const auto &f : m.functions)
    out.entries[f->name] = out.jit->lookup<mtlc_entry_fn>(codegen::entrySymbol(m, *f));
  finish(out, schedule, start, emitted, optimized);
  if (timePasses) {
    llvm::reportAndResetTimings(&llvm::errs());
    llvm::TimePassesIsEnabled = false;
  }
  return out;
}

// Unloads its kernels' machine code when the last module calling one of them goes.
struct IncrementalCompiler::KernelSet {
  std::shared_ptr<JIT> jit;  // the JIT they are loaded in outlives them
  llvm::orc::ResourceTrackerSP tracker;
  ~KernelSet() { llvm::cantFail(tracker->remove()); }
};

IncrementalCompiler::IncrementalCompiler() : jit_(std::make_shared<JIT>()) {}
IncrementalCompiler::~IncrementalCompiler() = default;

size_t IncrementalCompiler::cachedKernels() const {
  size_t n = 0;
  for (const auto &[symbol, set] : kernels_) n += !set.expired();
  return n;
}

CompiledModule IncrementalCompiler::compile(const ir::Module &m, const CompileOptions &options) {
  auto start = Clock::now();
  if (options.optimize != optimize_) {
    // Kernels of the other level are not the code this compile would build: a JIT of its own
    // (the modules compiled before keep theirs alive).
    jit_ = std::make_shared<JIT>();
    kernels_.clear();
    optimize_ = options.optimize;
  }
  for (auto it = kernels_.begin(); it != kernels_.end();) it = it->second.expired() ? kernels_.erase(it) : std::next(it);
  CompiledModule out;
  out.jit = jit_;
  std::unique_ptr<llvm::TargetMachine> tm = jit_->createTargetMachine();
  out.options = resolvedOptions(options, *tm);

  const int generation = ++generation_;
  llvm::orc::ThreadSafeContext tsc(std::make_unique<llvm::LLVMContext>());
  // The reused kernels' sets, held by this module from here on (so none is unloaded under it).
  std::set<std::shared_ptr<KernelSet>> reused;
  const passes::ScheduledModule schedule = codegen::scheduleModule(m, out.options);
  codegen::SplitModules split = codegen::emitModuleSplit(
      schedule, *tsc.getContext(), jit_->dataLayout(), out.options, [&](const std::string &symbol) {
        auto it = kernels_.find(symbol);
        std::shared_ptr<KernelSet> set = it == kernels_.end() ? nullptr : it->second.lock();
        if (set) reused.insert(set);
        return set != nullptr;
      });
  out.kernelsHeld.assign(reused.begin(), reused.end());
  // This compile's entry points get names of their own, so the previous program's stay callable
  // until their CompiledModule goes.
  std::vector<std::string> names;
  for (const auto &f : m.functions) {
    names.push_back(codegen::entrySymbol(m, *f) + ".g" + std::to_string(generation));
    split.entries->getFunction(codegen::entrySymbol(m, *f))->setName(names.back());
  }
  split.entries->setTargetTriple(jit_->targetTriple().str());
  split.kernels->setTargetTriple(jit_->targetTriple().str());
  auto emitted = Clock::now();
  if (options.optimize) codegen::optimizeModule(*split.entries, *tm);
  if (options.keepIR) out.llvmIR = codegen::printModule(*split.entries);
  out.kernelsCompiled = int(split.newKernels.size());
  for (const llvm::Function &f : *split.entries)
    out.kernelsReused += f.isDeclaration() && f.getName().starts_with("mtlck.");
  out.kernelsReused -= out.kernelsCompiled;
  // The new kernels on every thread (each its own group), kept for later compiles while a module
  // calls them.
  auto optimized = Clock::now();
  if (!split.newKernels.empty()) {
    ObjectCode code = compileToObjects(std::move(split.kernels), threadsFor(options), options.optimize,
                                       options.keepIR, [&](bool cold) { return jit_->createTargetMachine(cold); }, Split::Library);
    optimized = plusMs(optimized, code.optimizeMs);
    out.llvmIR += code.llvmIR;
    out.compileThreads = code.partitions;
    auto set = std::make_shared<KernelSet>();
    set->jit = jit_;
    set->tracker = jit_->createTracker();
    for (auto &object : code.objects) jit_->addObject(std::move(object), set->tracker);
    for (const std::string &symbol : split.newKernels) kernels_[symbol] = set;
    out.kernelsHeld.push_back(std::move(set));
  }
  llvm::orc::ResourceTrackerSP entries =
      jit_->addModule(llvm::orc::ThreadSafeModule(std::move(split.entries), tsc));
  out.entriesLoaded = std::shared_ptr<void>(nullptr, [entries](void *) { llvm::cantFail(entries->remove()); });
  for (size_t i = 0; i < m.functions.size(); ++i)
    out.entries[m.functions[i]->name] = jit_->lookup<mtlc_entry_fn>(names[i]);
  finish(out, schedule, start, emitted, optimized);
  return out;
}

CompiledModule compile(const ir::Module &m, bool optimize, bool keepIR) {
  CompileOptions options;
  options.optimize = optimize;
  options.keepIR = keepIR;
  return compile(m, options);
}

}  // namespace mtlc::jit
