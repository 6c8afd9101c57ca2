#include "ParallelCompile.h"

#include "JIT.h"
#include "codegen/Codegen.h"

#include <llvm/Bitcode/BitcodeReader.h>
#include <llvm/Bitcode/BitcodeWriter.h>
#include <llvm/ExecutionEngine/Orc/CompileUtils.h>
#include <llvm/IR/LLVMContext.h>
#include <llvm/Linker/Linker.h>
#include <llvm/Support/raw_ostream.h>
#include <llvm/Transforms/Utils/Cloning.h>

#include <algorithm>
#include <chrono>
#include <exception>
#include <map>
#include <set>
#include <thread>

namespace mtlc::jit {

namespace {

using Clock = std::chrono::steady_clock;

// The defined functions `f` refers to: its callees and the bodies it hands to parallel_for.
std::vector<llvm::Function *> definedReferences(llvm::Function &f) {
  std::vector<llvm::Function *> out;
  for (llvm::BasicBlock &bb : f)
    for (llvm::Instruction &inst : bb)
      for (llvm::Value *op : inst.operands())
        if (auto *g = llvm::dyn_cast<llvm::Function>(op->stripPointerCasts()); g && !g->isDeclaration())
          out.push_back(g);
  return out;
}

size_t instructionCount(const llvm::Function &f) {
  size_t n = 0;
  for (const llvm::BasicBlock &bb : f) n += bb.size();
  return n;
}

// A unit of work that stays in one partition: the entry points, or one kernel, each with what it
// reaches short of another kernel.
struct Group {
  std::set<const llvm::Function *> functions;
  size_t size = 0;
  // Every function in it is marked codegen::kColdKernel: it joins the partition whose machine
  // code is generated without optimisation.
  bool cold() const {
    return std::all_of(functions.begin(), functions.end(),
                       [](const llvm::Function *f) { return f->hasFnAttribute(codegen::kColdKernel); });
  }
};

std::vector<Group> groupsOf(llvm::Module &m, Split split) {
  // In module order, so that the partitions (and --emit=llvm's text) are the same every run.
  std::vector<llvm::Function *> entries, kernelList;
  std::set<llvm::Function *> kernels;  // what the entry points call: one group each
  for (llvm::Function &f : m)
    if (!f.isDeclaration() && !f.hasLocalLinkage()) entries.push_back(&f);
  if (split == Split::Library) {  // every external function is a kernel
    kernels.insert(entries.begin(), entries.end());
    std::swap(kernelList, entries);
  }
  for (llvm::Function *e : entries)
    for (llvm::Function *k : definedReferences(*e))
      if (k->hasLocalLinkage() && kernels.insert(k).second) kernelList.push_back(k);
  auto reach = [&](const std::vector<llvm::Function *> &from) {
    Group g;
    std::vector<llvm::Function *> work(from);
    while (!work.empty()) {
      llvm::Function *f = work.back();
      work.pop_back();
      if (!g.functions.insert(f).second) continue;
      g.size += instructionCount(*f);
      for (llvm::Function *next : definedReferences(*f))
        if (!kernels.count(next) || std::find(from.begin(), from.end(), next) != from.end()) work.push_back(next);
    }
    return g;
  };
  // Helpers that several groups reach (the GEMM's packing and micro-kernel functions) become
  // groups of their own, compiled once and called across partitions, rather than a copy in every
  // partition that uses them. Not in a library split: its kernels join a JITDylib that later
  // compiles add to, where a second external helper of the same name would clash.
  for (bool promoted = split == Split::Program; promoted;) {
    promoted = false;
    std::map<const llvm::Function *, int> reachedBy;
    auto count = [&](const Group &g) {
      for (const llvm::Function *f : g.functions)
        if (!kernels.count(const_cast<llvm::Function *>(f))) ++reachedBy[f];
    };
    if (!entries.empty()) count(reach(entries));
    for (llvm::Function *k : kernelList) count(reach({k}));
    for (llvm::Function &f : m)  // module order, for the same partitions every run
      if (auto it = reachedBy.find(&f); it != reachedBy.end() && it->second > 1 && f.hasLocalLinkage()) {
        kernels.insert(&f);
        kernelList.push_back(&f);
        promoted = true;
      }
  }
  std::vector<Group> groups;
  if (!entries.empty()) groups.push_back(reach(entries));
  for (llvm::Function *k : kernelList) groups.push_back(reach({k}));
  // Kernels are called from other partitions: give them external linkage (the JIT of one
  // compile is its own, so their names cannot clash with another module's).
  for (llvm::Function *k : kernelList) k->setLinkage(llvm::GlobalValue::ExternalLinkage);
  return groups;
}

struct Partition {
  bool cold = false;
  llvm::SmallVector<char, 0> bitcode;
  std::unique_ptr<llvm::TargetMachine> machine;
  std::unique_ptr<llvm::MemoryBuffer> object;
  llvm::SmallVector<char, 0> optimizedBitcode;  // keepIR: the partition as optimised
  double optimizeMs = 0;
  std::exception_ptr error;
};

// Optimises `m` and compiles it to an object file with `p.machine`.
void compileModule(llvm::Module &m, Partition &p, bool optimize, bool keepIR, Clock::time_point start) {
  m.setTargetTriple(p.machine->getTargetTriple().str());
  m.setDataLayout(p.machine->createDataLayout());
  if (optimize) codegen::optimizeModule(m, *p.machine);
  p.optimizeMs = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
  if (keepIR) {  // before machine code generation, whose IR passes change the module
    llvm::raw_svector_ostream os(p.optimizedBitcode);
    llvm::WriteBitcodeToFile(m, os);
  }
  auto object = llvm::orc::SimpleCompiler(*p.machine)(m);
  if (!object) throw JITError("generating machine code: " + llvm::toString(object.takeError()));
  p.object = std::move(*object);
}

// On a worker thread: the partition from its bitcode, in a context of its own.
void compilePartition(Partition &p, bool optimize, bool keepIR, Clock::time_point start) {
  try {
    llvm::LLVMContext ctx;
    llvm::StringRef bytes(p.bitcode.data(), p.bitcode.size());
    auto module = llvm::parseBitcodeFile(llvm::MemoryBufferRef(bytes, "partition"), ctx);
    if (!module) throw JITError("reading a module partition: " + llvm::toString(module.takeError()));
    compileModule(**module, p, optimize, keepIR, start);
  } catch (...) {
    p.error = std::current_exception();
  }
}

// The partitions' optimised IR linked into one module and printed: the partitions printed one
// after another would not be one valid module (each declares what another defines).
std::string linkedIR(const std::vector<Partition> &parts) {
  llvm::LLVMContext ctx;
  std::unique_ptr<llvm::Module> linked;
  for (const Partition &p : parts) {
    llvm::StringRef bytes(p.optimizedBitcode.data(), p.optimizedBitcode.size());
    auto module = llvm::parseBitcodeFile(llvm::MemoryBufferRef(bytes, "partition"), ctx);
    if (!module) throw JITError("reading an optimised partition: " + llvm::toString(module.takeError()));
    if (!linked)
      linked = std::move(*module);
    else if (llvm::Linker::linkModules(*linked, std::move(*module)))
      throw JITError("linking the optimised partitions into one module failed");
  }
  return linked ? codegen::printModule(*linked) : std::string();
}

// The partitions' objects and IR, in partition order; rethrows the first partition's error.
ObjectCode collect(std::vector<Partition> &parts, bool keepIR) {
  ObjectCode out;
  for (Partition &p : parts) {
    if (p.error) std::rethrow_exception(p.error);
    out.objects.push_back(std::move(p.object));
    out.optimizeMs = std::max(out.optimizeMs, p.optimizeMs);
  }
  if (keepIR) out.llvmIR = linkedIR(parts);
  out.partitions = int(parts.size());
  return out;
}

}  // namespace

ObjectCode compileToObjects(std::unique_ptr<llvm::Module> m, int threads, bool optimize, bool keepIR,
                            const MachineFactory &makeMachine, Split split) {
  const auto start = Clock::now();
  threads = std::max(threads, 1);
  bool anyCold = false;
  for (const llvm::Function &f : *m) anyCold |= !f.isDeclaration() && f.hasFnAttribute(codegen::kColdKernel);
  std::vector<Group> groups = threads > 1 || anyCold ? groupsOf(*m, split) : std::vector<Group>{};
  std::vector<const Group *> hot, cold;
  for (const Group &g : groups) (g.cold() ? cold : hot).push_back(&g);
  // Hot partitions: one per worker thread (as many as there are groups). Cold ones: one more.
  const size_t hotCount = std::min<size_t>(size_t(threads), hot.size());
  const size_t count = hotCount + (cold.empty() ? 0 : 1);
  std::vector<Partition> parts(std::max<size_t>(count, 1));
  if (count <= 1) {  // one partition: the module as it is
    parts[0].cold = !cold.empty();
    parts[0].machine = makeMachine(parts[0].cold);
    compileModule(*m, parts[0], optimize, keepIR, start);
    return collect(parts, keepIR);
  }

  // Workers 0..W-1 each compile hot partition w; worker 0 also the cold partition, first, which
  // costs about kColdCost of a hot instruction's time per instruction (the optimiser without
  // its vectoriser, machine code at -O0). Hot groups go, largest first, to the least loaded worker.
  constexpr double kColdCost = 0.5;
  const size_t workers = std::max<size_t>(hotCount, 1);
  std::vector<std::set<const llvm::GlobalValue *>> defined(count);
  std::vector<double> load(workers, 0);
  if (!cold.empty()) {
    Partition &c = parts[hotCount];
    c.cold = true;
    for (const Group *g : cold) {
      load[0] += kColdCost * double(g->size);
      defined[hotCount].insert(g->functions.begin(), g->functions.end());
    }
  }
  std::stable_sort(hot.begin(), hot.end(), [](const Group *a, const Group *b) { return a->size > b->size; });
  for (const Group *g : hot) {
    size_t to = size_t(std::min_element(load.begin(), load.end()) - load.begin());
    load[to] += double(g->size);
    defined[to].insert(g->functions.begin(), g->functions.end());
  }
  for (size_t i = 0; i < count; ++i) {
    parts[i].machine = makeMachine(parts[i].cold);
    // Functions of other partitions become declarations (CloneModule gives them external
    // linkage; only the kernels are referenced across partitions, and they have it already).
    llvm::ValueToValueMapTy map;
    std::unique_ptr<llvm::Module> part = llvm::CloneModule(*m, map, [&](const llvm::GlobalValue *gv) {
      return !llvm::isa<llvm::Function>(gv) || defined[i].count(gv) > 0;
    });
    llvm::raw_svector_ostream os(parts[i].bitcode);
    llvm::WriteBitcodeToFile(*part, os);
  }
  m.reset();
  auto work = [&](size_t w) {
    if (w == 0 && !cold.empty()) compilePartition(parts[hotCount], optimize, keepIR, start);
    if (w < hotCount) compilePartition(parts[w], optimize, keepIR, start);
  };
  std::vector<std::thread> pool;
  for (size_t w = 1; w < workers; ++w) pool.emplace_back(work, w);
  work(0);
  for (std::thread &t : pool) t.join();
  return collect(parts, keepIR);
}

}  // namespace mtlc::jit
