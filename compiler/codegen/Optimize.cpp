// The optimisation pipeline and the textual form of generated code.
#include "Codegen.h"
#include "Kernel.h"

#include <llvm/ADT/StringExtras.h>
#include <llvm/Analysis/LoopInfo.h>
#include <llvm/IR/PassTimingInfo.h>
#include <llvm/Pass.h>
#include <llvm/IR/Module.h>
#include <llvm/MC/MCSubtargetInfo.h>
#include <llvm/Passes/PassBuilder.h>
#include <llvm/Support/raw_ostream.h>
#include <llvm/Target/TargetMachine.h>

#include <cstdlib>
#include <optional>
#include <stdexcept>

namespace mtlc::codegen {

TargetInfo namedTarget(const std::string &name) {
  if (name == "avx512") return {16, 32, "avx512"};
  if (name == "avx2") return {8, 16, "avx2"};
  if (name == "zen-avx2") {  // AVX2 as on AMD Zen 1-3: masked accesses check for a full mask
    TargetInfo zen{8, 16, "avx2"};
    zen.slowMaskedMemory = true;
    return zen;
  }
  if (name == "generic") return {4, 16, "generic"};
  throw std::invalid_argument("unknown codegen target '" + name + "'");
}

TargetInfo targetInfo(const llvm::TargetMachine &tm) {
  // The subtarget's features: the CPU's own and the explicit ones together.
  const llvm::MCSubtargetInfo *sti = tm.getMCSubtargetInfo();
  auto has = [&](llvm::StringRef f) { return sti->checkFeatures(("+" + f).str()); };
  if (tm.getTargetTriple().isX86()) {
    if (has("avx512f")) {
      TargetInfo t = namedTarget("avx512");
      t.bf16 = has("avx512bf16");
      return t;
    }
    if (has("avx2") && has("fma"))
      return namedTarget(llvm::StringRef(tm.getTargetCPU()).starts_with("znver") ? "zen-avx2" : "avx2");
  }
  return namedTarget("generic");
}

// The function pipeline. The kernels arrive as explicit loops over flat buffers with no calls
// to inline and few values to propagate across functions, so LLVM's -O3 module pipeline (eight
// InstCombine runs, the inliner's CGSCC walk, IPSCCP) cost 2.5x the optimisation time of this
// list for the same code: on the bench models the JIT code executes within 0.6% (MLP) and 3%
// (MMoE) of -O3's instruction count. In order: promote allocas and fold the emitters'
// redundant index arithmetic; rotate loops and hoist invariants (addresses, broadcasts);
// canonical induction variables so that the vectoriser sees trip counts; vectorise the scalar
// elementwise loops; clean up after it.
constexpr const char *kPipeline =
    "function(sroa,early-cse<memssa>,instcombine<no-verify-fixpoint>,simplifycfg,reassociate,"
    "loop-mssa(loop-rotate,licm),gvn,sccp,instcombine<no-verify-fixpoint>,loop(indvars,loop-deletion),"
    "loop-vectorize,instcombine<no-verify-fixpoint>,simplifycfg,loop-mssa(licm),dse,adce)";

void optimizeModule(llvm::Module &m, llvm::TargetMachine &tm) {
  m.setTargetTriple(tm.getTargetTriple().str());
  m.setDataLayout(tm.createDataLayout());
  // Per-function target attributes: the cost models (and an AOT object file later) then see the
  // host's vector extensions even where a pass consults the function rather than the machine.
  // On AVX-512 machines LLVM prefers 256-bit vectors for the x86 CPUs that clocked down on
  // 512-bit code; the explicit 16-lane kernels (GEMM, epilogues) need 512-bit registers legal, and
  // the vectoriser may as well use them too.
  bool wide = targetInfo(tm).lanes >= 16;
  for (llvm::Function &f : m) {
    if (f.isDeclaration()) continue;
    f.addFnAttr("target-cpu", tm.getTargetCPU());
    if (!tm.getTargetFeatureString().empty())
      f.addFnAttr("target-features", tm.getTargetFeatureString());
    if (wide) {
      f.addFnAttr("prefer-vector-width", "512");
      f.addFnAttr("min-legal-vector-width", "512");
    }
  }

  // Functions marked kLightPipeline are vector code already, and kColdKernel ones take no time
  // worth vectorising: the passes that look for vector or unrolling opportunities only cost
  // compile time there.
  llvm::PassInstrumentationCallbacks callbacks;
  callbacks.registerShouldRunOptionalPassCallback([](llvm::StringRef pass, llvm::Any ir) {
    const llvm::Function *f = nullptr;
    if (const auto *fn = llvm::any_cast<const llvm::Function *>(&ir)) f = *fn;
    else if (const auto *loop = llvm::any_cast<const llvm::Loop *>(&ir)) f = (*loop)->getHeader()->getParent();
    if (!f || !(f->hasFnAttribute(kLightPipeline) || f->hasFnAttribute(kColdKernel))) return true;
    static const llvm::StringRef heavy[] = {
        "LoopVectorizePass", "SLPVectorizerPass", "LoopUnrollPass", "LoopFullUnrollPass",
        "LoopIdiomRecognizePass", "SimpleLoopUnswitchPass", "IndVarSimplifyPass",
        "LoopDeletionPass", "LoopDistributePass", "LoopLoadEliminationPass", "VectorCombinePass"};
    for (llvm::StringRef h : heavy)
      if (pass == h) return false;
    return true;
  });
  std::optional<llvm::TimePassesHandler> timing;  // MTLC_TIME_PASSES (jit/Compile.cpp prints it)
  if (llvm::TimePassesIsEnabled) {
    timing.emplace(true);
    timing->registerCallbacks(callbacks);
  }
  llvm::LoopAnalysisManager lam;
  llvm::FunctionAnalysisManager fam;
  llvm::CGSCCAnalysisManager cgam;
  llvm::ModuleAnalysisManager mam;
  llvm::PipelineTuningOptions tuning;
  tuning.LoopVectorization = true;
  tuning.SLPVectorization = true;
  tuning.LoopUnrolling = false;
  llvm::PassBuilder pb(&tm, tuning, std::nullopt, &callbacks);
  pb.registerModuleAnalyses(mam);
  pb.registerCGSCCAnalyses(cgam);
  pb.registerFunctionAnalyses(fam);
  pb.registerLoopAnalyses(lam);
  pb.crossRegisterProxies(lam, fam, cgam, mam);
  llvm::ModulePassManager mpm;
  const char *text = std::getenv("MTLC_PIPELINE");  // e.g. default<O3>, to compare
  if (auto err = pb.parsePassPipeline(mpm, text && *text ? text : kPipeline))
    throw std::runtime_error("MTLC_PIPELINE: " + llvm::toString(std::move(err)));
  mpm.run(m, mam);
}

std::string printModule(const llvm::Module &m) {
  std::string text;
  llvm::raw_string_ostream os(text);
  m.print(os, nullptr);
  return text;
}

}  // namespace mtlc::codegen
