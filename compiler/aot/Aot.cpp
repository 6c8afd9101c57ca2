#include "Aot.h"

#include "codegen/Codegen.h"
#include "passes/MemoryPlan.h"
#include "passes/Passes.h"
#include "runtime/core/Update.h"
#include "runtime/train/Optimizer.h"

#include <llvm/ExecutionEngine/Orc/JITTargetMachineBuilder.h>
#include <llvm/IR/Constants.h>
#include <llvm/IR/DerivedTypes.h>
#include <llvm/IR/GlobalVariable.h>
#include <llvm/IR/LLVMContext.h>
#include <llvm/IR/LegacyPassManager.h>
#include <llvm/IR/Module.h>
#include <llvm/MC/MCSubtargetInfo.h>
#include <llvm/MC/TargetRegistry.h>
#include <llvm/Object/Archive.h>
#include <llvm/Object/ArchiveWriter.h>
#include <llvm/Support/MemoryBuffer.h>
#include <llvm/Support/Path.h>
#include <llvm/Support/FileSystem.h>
#include <llvm/Support/TargetSelect.h>
#include <llvm/Support/raw_ostream.h>
#include <llvm/Target/TargetMachine.h>
#include <llvm/TargetParser/Host.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <map>
#include <mutex>
#include <set>
#include <sstream>

namespace mtlc::aot {

// ---- per-task predict functions ------------------------------------------------------------------

void addTaskPredicts(ir::Module &m) {
  std::erase_if(m.functions, [](const std::unique_ptr<ir::Function> &f) {
    return f->name == "task_grads" || f->name == "rep_grads" || f->name == "eval_step";
  });
  const ir::Function *predict = m.function("predict");
  if (!predict) throw AotError("internal: the lowered module has no predict function");
  std::vector<std::unique_ptr<ir::Function>> added;
  for (const ir::Output &head : predict->outputs) {
    if (head.kind != ir::Output::Kind::Head) continue;
    auto f = std::make_unique<ir::Function>();
    f->name = "predict_" + std::to_string(head.index);  // renamed below once the task is known
    std::map<const ir::Node *, ir::Node *> map;
    for (const auto &n : predict->nodes) {
      std::vector<ir::Node *> ops;
      for (ir::Node *o : n->operands) ops.push_back(map.at(o));
      map[n.get()] = f->add(n->op, ops, n->type, n->ints, n->f, n->name);
    }
    f->outputs.push_back({head.kind, head.index, map.at(head.value), head.task});
    while (passes::eliminateDeadCode(*f)) {
    }
    added.push_back(std::move(f));
  }
  for (auto &f : added) m.functions.push_back(std::move(f));
}

// ---- the description ------------------------------------------------------------------------------

bool isAdaptiveWeighting(const rt::ModelSpec &spec) { return vocab::has(spec.train.weighting, vocab::kAdaptive); }

std::vector<float> bundleLossWeights(const rt::ModelSpec &spec) {
  const rt::WeightingKind w = spec.train.weighting;
  if (isAdaptiveWeighting(spec))
    throw AotError(std::string("weighting `") + vocab::name(w) +
                   "` adapts the loss weights during training: a bundle trains with fixed weights the caller "
                   "chooses");
  std::vector<float> out;
  for (const rt::TaskSpec &t : spec.tasks)
    out.push_back(w == rt::WeightingKind::Uniform ? 1.0f / float(spec.tasks.size()) : float(t.weight));
  return out;
}

static std::string num(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

// One record per line, fields separated by spaces (names are identifiers and dotted paths):
//   mtlc-bundle 1
//   model NAME
//   sizes PARAM_FLOATS ACTS_FLOATS MAX_BATCH
//   seed SEED
//   optimizer NAME LR MOMENTUM BETA1 BETA2 EPS WEIGHT_DECAY ALPHA NESTEROV(0|1)
//   input NAME PER_SAMPLE_FLOATS CATEGORIES
//   task NAME LOSS OUT_WIDTH LABEL_WIDTH LOSS_WEIGHT
//   param NAME OFFSET SIZE INIT FAN_IN FROZEN RANK DIM...
std::string describeBundle(const rt::ModelSpec &spec, const std::vector<float> &weights) {
  if (weights.size() != spec.tasks.size()) throw AotError("internal: one loss weight per task expected");
  std::ostringstream os;
  const rt::OptimizerSpec &o = spec.train.optimizer;
  os << "mtlc-bundle 1\nmodel " << spec.name << "\nsizes " << spec.paramCount << ' ' << spec.actsFloats
     << ' ' << spec.maxBatch << "\nseed " << spec.train.seed << "\noptimizer " << vocab::name(o.kind) << ' ' << num(o.lr)
     << ' ' << num(o.momentum) << ' ' << num(o.beta1) << ' ' << num(o.beta2) << ' ' << num(o.eps) << ' '
     << num(o.weightDecay) << ' ' << num(o.alpha) << ' ' << (o.nesterov != 0 ? 1 : 0) << '\n';
  for (const rt::InputSpec &in : spec.inputs)
    os << "input " << in.name << ' ' << in.size << ' ' << in.categories << '\n';
  for (size_t t = 0; t < spec.tasks.size(); ++t) {
    const rt::TaskSpec &ts = spec.tasks[t];
    os << "task " << ts.name << ' ' << vocab::name(ts.loss) << ' ' << ts.outWidth << ' ' << ts.labelWidth << ' '
       << num(weights[t]) << '\n';
  }
  for (const rt::ParamSpec &p : spec.params) {
    os << "param " << p.name << ' ' << p.offset << ' ' << p.size << ' ' << int(p.init) << ' ' << p.fanIn << ' '
       << (int(!p.learnable()) | (p.integer ? 2 : 0)) << ' ' << p.shape.size();  // the embed's ParamDesc flags
    for (int64_t d : p.shape) os << ' ' << d;
    if (p.init == rt::Init::Uniform) os << ' ' << num(p.bound);  // after the shape: Init::Uniform's
    os << '\n';
  }
  return os.str();
}

// ---- the object file --------------------------------------------------------------------------------

passes::ScheduledModule scheduleBundle(const ir::Module &m) {
  return codegen::scheduleModule(m, codegen::CodegenOptions{});
}

std::string emitObject(const passes::ScheduledModule &schedule, const rt::ModelSpec &spec, const BundleOptions &o,
                       const std::string &path, std::string *triple) {
  const ir::Module &m = *schedule.module;
  static std::once_flag initialised;
  std::call_once(initialised, [] {
    llvm::InitializeNativeTarget();
    llvm::InitializeNativeTargetAsmPrinter();
  });
  llvm::orc::JITTargetMachineBuilder jtmb{llvm::Triple(o.triple.empty() ? llvm::sys::getDefaultTargetTriple() : o.triple)};
  if (o.cpu == "native") {
    if (!o.triple.empty()) throw AotError("--mcpu=native tunes for the host; it cannot be combined with --target");
    auto host = llvm::orc::JITTargetMachineBuilder::detectHost();
    if (!host) throw AotError("detecting the host CPU: " + llvm::toString(host.takeError()));
    jtmb = std::move(*host);
  } else {
    jtmb.setCPU(o.cpu);
  }
  jtmb.setRelocationModel(llvm::Reloc::PIC_);
  jtmb.setCodeGenOptLevel(llvm::CodeGenOptLevel::Aggressive);
  auto tmOr = jtmb.createTargetMachine();
  if (!tmOr) throw AotError("creating the target machine: " + llvm::toString(tmOr.takeError()));
  std::unique_ptr<llvm::TargetMachine> tm = std::move(*tmOr);
  if (o.cpu != "native" && !tm->getMCSubtargetInfo()->isCPUStringValid(o.cpu))
    throw AotError("unknown CPU `" + o.cpu + "` for " + tm->getTargetTriple().str() +
                   " (try x86-64, x86-64-v2, x86-64-v3, x86-64-v4, native, or an LLVM CPU name)");

  llvm::LLVMContext ctx;
  // The kernels' vector shape (lanes, registers, masked-access costs) of the CPU the object is
  // for, as the JIT takes the host's: without it they were 4-lane SSE code under every --mcpu.
  // The schedule does not depend on the target (scheduleBundle's options are these but it).
  codegen::CodegenOptions opts;
  opts.target = codegen::targetInfo(*tm);
  std::unique_ptr<llvm::Module> lm = codegen::emitModule(schedule, ctx, tm->createDataLayout(), opts);
  lm->setTargetTriple(tm->getTargetTriple().str());
  lm->setDataLayout(tm->createDataLayout());
  if (o.optimize) codegen::optimizeModule(*lm, *tm);
  else
    for (llvm::Function &f : *lm)
      if (!f.isDeclaration()) f.addFnAttr("target-cpu", tm->getTargetCPU());
  lm->setPICLevel(llvm::PICLevel::BigPIC);

  // The bundle record: { desc, train_step, predict, task_predict, weights } (mtlc_embed_bundle).
  auto *ptr = llvm::PointerType::getUnqual(ctx);
  auto fn = [&](const std::string &function) -> llvm::Constant * {
    const ir::Function *f = m.function(function);
    llvm::Function *lf = f ? lm->getFunction(codegen::entrySymbol(m, *f)) : nullptr;
    if (!lf) throw AotError("internal: no generated function for `" + function + "`");
    return lf;
  };
  const std::string prefix = "mtlc_" + m.name;
  llvm::Constant *descInit = llvm::ConstantDataArray::getString(ctx, describeBundle(spec, o.lossWeights), true);
  auto *desc = new llvm::GlobalVariable(*lm, descInit->getType(), true, llvm::GlobalValue::PrivateLinkage, descInit,
                                        prefix + "_desc");
  std::vector<llvm::Constant *> heads;
  for (size_t t = 0; t < spec.tasks.size(); ++t) heads.push_back(fn("predict_" + std::to_string(t)));
  auto *headsTy = llvm::ArrayType::get(ptr, heads.size());
  auto *headsVar = new llvm::GlobalVariable(*lm, headsTy, true, llvm::GlobalValue::PrivateLinkage,
                                            llvm::ConstantArray::get(headsTy, heads), prefix + "_task_predict");
  llvm::Constant *weights = llvm::ConstantPointerNull::get(ptr);
  if (o.weights) {
    if (int64_t(o.weights->size()) != spec.paramCount) throw AotError("internal: weights do not fill the arena");
    llvm::Constant *init = llvm::ConstantDataArray::get(ctx, llvm::ArrayRef<float>(*o.weights));
    auto *w = new llvm::GlobalVariable(*lm, init->getType(), true, llvm::GlobalValue::PrivateLinkage, init,
                                       prefix + "_weights");
    w->setAlignment(llvm::Align(64));
    weights = w;
  }
  auto *bundleTy = llvm::StructType::get(ctx, {ptr, ptr, ptr, ptr, ptr});
  llvm::Constant *bundleInit =
      llvm::ConstantStruct::get(bundleTy, {desc, fn("train_step"), fn("predict"), headsVar, weights});
  new llvm::GlobalVariable(*lm, bundleTy, true, llvm::GlobalValue::ExternalLinkage, bundleInit, prefix + "_bundle");

  std::error_code ec;
  llvm::raw_fd_ostream out(path, ec, llvm::sys::fs::OF_None);
  if (ec) throw AotError(path + ": cannot write: " + ec.message());
  llvm::legacy::PassManager pm;
  if (tm->addPassesToEmitFile(pm, out, nullptr, llvm::CodeGenFileType::ObjectFile))
    throw AotError("the target cannot emit object files");
  pm.run(*lm);
  out.flush();
  if (out.has_error()) throw AotError(path + ": write error");
  if (triple) *triple = tm->getTargetTriple().str();
  return tm->getTargetCPU().str();
}

// ---- the header ---------------------------------------------------------------------------------------

namespace {

std::string upper(std::string s) {
  for (char &c : s) c = char(std::toupper((unsigned char)c));
  return s;
}

// A C identifier for a .mtl name: C/C++ keywords get a trailing underscore.
std::string cname(const std::string &s) {
  static const std::set<std::string> kw = {
      "auto", "break", "case", "char", "const", "continue", "default", "do", "double", "else", "enum", "extern",
      "float", "for", "goto", "if", "inline", "int", "long", "register", "restrict", "return", "short", "signed",
      "sizeof", "static", "struct", "switch", "typedef", "union", "unsigned", "void", "volatile", "while", "bool",
      "true", "false", "class", "new", "delete", "this", "template", "typename", "namespace", "operator", "private",
      "protected", "public", "virtual", "friend", "try", "catch", "throw", "using", "explicit", "mutable", "export",
      "n", "ctx", "inputs", "counts", "outputs", "status", "task_losses", "total_loss", "seed", "path", "asm",
      "and", "or", "not", "xor", "nullptr", "decltype", "noexcept", "alignas", "alignof", "char8_t", "concept",
      "requires", "constexpr", "consteval", "constinit", "static_assert", "thread_local", "wchar_t"};
  return kw.count(s) ? s + "_" : s;
}

std::string shapeStr(const std::vector<int64_t> &s) {
  std::string o = "[";
  for (size_t i = 0; i < s.size(); ++i) o += (i ? ", " : "") + std::to_string(s[i]);
  return o + "]";
}

std::string labelDoc(const rt::TaskSpec &t) {
  switch (t.loss) {
    case rt::LossKind::CrossEntropy:
      if (t.pixels > 1)
        return "a class index per pixel (" + std::to_string(t.pixels) + " pixels, row-major) as floats (0, 1, ..., " +
               std::to_string(t.outWidth / t.pixels - 1) + "; NaN = unlabelled)";
      return "the class index as a float (0, 1, ..., " + std::to_string(t.outWidth - 1) + "; NaN = no label)";
    case rt::LossKind::BCE: return "0 or 1 (NaN = no label)";
    case rt::LossKind::MSE: return std::to_string(t.labelWidth) + " real target(s) (NaN = no label)";
    case rt::LossKind::L1: return std::to_string(t.labelWidth) + " real target(s) (NaN = no label)";
    case rt::LossKind::Cosine:
      return std::to_string(t.labelWidth) + " reals, a vector of " + std::to_string(t.outWidth / t.pixels) +
             " channels per pixel (all zero or a NaN = no label)";
  }
  return "";
}

std::string outputDoc(const rt::TaskSpec &t) {
  switch (t.loss) {
    case rt::LossKind::CrossEntropy:
      if (t.pixels > 1)
        return std::to_string(t.outWidth) + " logits per sample, [classes, H, W] (softmax each pixel's over the "
               "classes for its class probabilities)";
      return std::to_string(t.outWidth) + " logits per sample (softmax them for class probabilities)";
    case rt::LossKind::BCE: return "1 logit per sample (sigmoid it for the probability of 1)";
    default: return std::to_string(t.outWidth) + " value(s) per sample, in the label's units";
  }
}

// Text as C comment lines (" * ...") of at most 100 columns, broken at spaces.
std::string commentLines(const std::string &text) {
  std::string out, line;
  std::istringstream words(text);
  for (std::string w; words >> w;) {
    if (!line.empty() && line.size() + 1 + w.size() > 97) {
      out += " * " + line + "\n";
      line.clear();
    }
    line += (line.empty() ? "" : " ") + w;
  }
  return line.empty() ? out : out + " * " + line + "\n";
}

// ---- the header's sections ----

// What every section of the header uses: the model's names and its argument lists.
struct HeaderParts {
  HeaderParts(const rt::ModelSpec &s, const HeaderInfo &i) : spec(s), info(i) {}
  const rt::ModelSpec &spec;
  const HeaderInfo &info;
  std::string m, P;          // the model's name and its upper-case macro prefix
  size_t T = 0, I = 0;       // tasks, inputs
  std::string optim;         // "adam(lr=0.001, ...)": the optimizer as written in a program
  int64_t ctxBytes = 0;
  std::string inParams, inDoc, inArrays;  // the inputs as C parameters, their docs, the arrays
  std::string CTX = "(mtlc_embed_ctx *)ctx";
};

// The optimizer with every argument of its table row: "sgd(lr=0.01, momentum=0, weight_decay=0)".
std::string optimizerText(const rt::OptimizerSpec &o) {
  const vocab::Entry &row = vocab::row(o.kind);
  std::string out = std::string(row.name) + "(";
  for (int i = 0; i < vocab::kMaxArgs && row.args[i].name; ++i)
    out += std::string(i ? ", " : "") + row.args[i].name + "=" +
           (row.args[i].type == vocab::ArgType::Bool ? (*o.setting(row.args[i].name) != 0 ? "true" : "false")
                                                     : num(*o.setting(row.args[i].name)));
  return out + ")";
}

// Heap bytes of one context: parameters, gradients, activations, optimizer state, head outputs.
int64_t contextBytes(const rt::ModelSpec &spec) {
  const rt::OptimizerSpec &o = spec.train.optimizer;
  int64_t bytes = 4 * (2 * spec.paramCount + spec.actsFloats);
  bytes += 4 * spec.paramCount * core::stateLayout(rt::updateRule(o)).count;
  for (const rt::TaskSpec &t : spec.tasks) bytes += 4 * spec.maxBatch * t.outWidth;
  return bytes;
}

void writePreamble(std::ostringstream &h, const HeaderParts &x) {
  const rt::ModelSpec &spec = x.spec;
  const HeaderInfo &info = x.info;
  const std::string &m = x.m, &P = x.P, &optim = x.optim, guard = x.P + "_MTLC_H";
  const size_t T = x.T, I = x.I;
  const std::vector<float> &weights = info.lossWeights;
  h << "/* " << m << ".h: the C API of model `" << m << "`, generated by `mtlc build` from " << info.source
    << ".\n * Do not edit: rebuild instead.\n *\n"
    << " * Object: " << m << ".o, compiled for " << info.triple << ", cpu " << info.cpu << ".\n"
    << " * " << staticLibraryName(spec) << " holds it and mtlc's embed runtime (mtlc_embed.h its header). All\n"
    << " * are written next to this file, so a program needs that folder only:\n"
    << " *   cc -std=c99 -I DIR main.c DIR/" << staticLibraryName(spec) << " -lm     (or c++; no C++ runtime needed)\n"
    << " * No LLVM, ANTLR or fmt is needed at run time.\n *\n"
    << " * The model: " << I << " input" << (I == 1 ? "" : "s") << ", " << T << " task" << (T == 1 ? "" : "s") << ", "
    << spec.paramCount << " parameter floats; training uses " << optim << ",\n * total loss = ";
  for (size_t t = 0; t < T; ++t) h << (t ? " + " : "") << num(weights[t]) << " * L_" << spec.tasks[t].name;
  h << " (weighting " << vocab::name(spec.train.weighting) << ").\n";
  if (!info.weightingNote.empty()) h << commentLines(info.weightingNote);
  h << " *\n"
    << " * Buffers: every tensor is float32, row-major, batch first: a per-sample shape [d1, ..., dk] is\n"
    << " * passed as n * d1 * ... * dk floats, sample after sample. n is the number of samples of a call,\n"
    << " * 1 <= n <= " << P << "_MAX_BATCH. Every function takes the element count of every buffer\n"
    << " * (the *_count arguments) and returns " << P << "_ERR_SIZE without touching anything when a count\n"
    << " * differs from n times the per-sample size: wrong-sized buffers cannot pass silently. Checks are\n"
    << " * always on (their cost is O(batch) next to the O(batch * parameters) of the kernels).\n *\n"
    << " * Errors: every function returns an int status, " << P << "_OK (0) on success; " << m
    << "_strerror(status)\n * describes a code and " << m
    << "_last_error(ctx) gives the details of the last failure on ctx.\n *\n"
    << " * Memory: a context (" << m << "_ctx, opaque) owns all state: parameters, gradients, activations and\n"
    << " * optimizer state, about " << P << "_CONTEXT_BYTES bytes of " << P
    << "_ALIGNMENT-byte aligned heap memory,\n * allocated by " << m << "_create. Nothing is global.\n *\n"
    << " * Thread safety: a context must not be used by two threads at the same time; different contexts\n"
    << " * are independent and may be used concurrently. The functions keep no other state.\n */\n"
    << "#ifndef " << guard << "\n#define " << guard << "\n\n#include <stddef.h>\n#include <stdint.h>\n\n"
    << "#include \"mtlc_embed.h\"\n\n#ifdef __cplusplus\nextern \"C\" {\n#endif\n\n";

}

void writeSizes(std::ostringstream &h, const HeaderParts &x) {
  const rt::ModelSpec &spec = x.spec;
  const HeaderInfo &info = x.info;
  const std::string &m = x.m, &P = x.P;
  const size_t T = x.T, I = x.I;
  const std::vector<float> &weights = info.lossWeights;
  const int64_t ctxBytes = x.ctxBytes;
  h << "/* ---- sizes ---- */\n"
    << "#define " << P << "_MAX_BATCH " << spec.maxBatch << "      /* largest n (the program's batch) */\n"
    << "#define " << P << "_NUM_INPUTS " << I << "\n#define " << P << "_NUM_TASKS " << T << "\n"
    << "#define " << P << "_PARAM_COUNT " << spec.paramCount << "    /* floats in the parameter arena */\n"
    << "#define " << P << "_ACTS_COUNT " << spec.actsFloats << "    /* floats in the activation arena */\n"
    << "#define " << P << "_ALIGNMENT 64      /* bytes: alignment of every arena of a context */\n"
    << "#define " << P << "_CONTEXT_BYTES " << ctxBytes << "  /* heap bytes one context allocates (arenas) */\n"
    << "#define " << P << "_HAS_EMBEDDED_WEIGHTS " << (info.embeddedWeights ? 1 : 0) << "\n";
  if (!info.weightsFile.empty())
    h << "#define " << P << "_WEIGHTS_FILE \"" << info.weightsFile << "\"  /* written next to this header */\n";
  h << "\n/* Inputs: floats per sample. */\n";
  for (const rt::InputSpec &in : spec.inputs) {
    h << "#define " << P << "_INPUT_" << upper(in.name) << "_SIZE " << in.size << "  /* `" << in.name
      << "`: per sample " << shapeStr(in.shape);
    if (in.categories > 0) h << ", integer indices in [0, " << in.categories << ")";
    h << " */\n";
  }
  h << "\n/* Tasks: index, head output floats per sample, label floats per sample. */\n";
  for (size_t t = 0; t < T; ++t) {
    const rt::TaskSpec &ts = spec.tasks[t];
    std::string U = upper(ts.name);
    h << "#define " << P << "_TASK_" << U << " " << t << "  /* `" << ts.name << "`: loss " << vocab::name(ts.loss)
      << ", weight " << num(weights[t]) << " */\n"
      << "#define " << P << "_TASK_" << U << "_OUTPUT_SIZE " << ts.outWidth << "\n"
      << "#define " << P << "_TASK_" << U << "_LABEL_SIZE " << ts.labelWidth << "\n";
  }
  h << "\n/* ---- status codes ---- */\n";
  for (const char *code : {"OK", "ERR_NULL", "ERR_BATCH", "ERR_SIZE", "ERR_VALUE", "ERR_IO", "ERR_FORMAT",
                           "ERR_NOMEM", "ERR_NONFINITE", "ERR_TASK", "ERR_INTERNAL"})
    h << "#define " << P << "_" << code << " MTLC_" << code << "\n";

  h << "\n/* ---- parameters ----\n * The parameter arena (" << m
    << "_params) holds these tensors at these float offsets, in PyTorch's layouts\n"
    << " * (dense [out, in], conv [out_c, in_c, kh, kw]); checkpoints use the same names.\n";
  for (const rt::ParamSpec &p : spec.params)
    h << " *   " << p.name << " " << shapeStr(p.shape) << " at " << p.offset << (p.frozen ? " (frozen)" : "") << "\n";
  h << " */\n\n";

  h << "/* The opaque context. */\ntypedef struct " << m << "_ctx " << m << "_ctx;\n\n"
    << "/* In " << m << ".o. */\nextern const mtlc_embed_bundle mtlc_" << m << "_bundle;\n\n";

}

void addInputArgs(HeaderParts &x) {
  const rt::ModelSpec &spec = x.spec;
  const std::string &P = x.P;
  const size_t I = x.I;
  std::string &inParams = x.inParams, &inDoc = x.inDoc, &inArrays = x.inArrays;
  // Argument lists.
  std::string inPtrs, inCounts;
  for (size_t i = 0; i < I; ++i) {
    const rt::InputSpec &in = spec.inputs[i];
    std::string c = cname(in.name);
    inParams += ",\n    const float *" + c + ", size_t " + c + "_count";
    inDoc += " *   " + c + ": input `" + in.name + "`, n x " + shapeStr(in.shape) + " floats; " + c + "_count = n * " +
             P + "_INPUT_" + upper(in.name) + "_SIZE" +
             (in.categories > 0 ? " (integer indices in [0, " + std::to_string(in.categories) + "))" : "") + ".\n";
    inPtrs += std::string(i ? ", " : "") + c;
    inCounts += std::string(i ? ", " : "") + c + "_count";
  }
  inArrays = "  const float *const inputs_[" + std::to_string(I) + "] = {" + inPtrs + "};\n  const size_t input_counts_[" +
             std::to_string(I) + "] = {" + inCounts + "};\n";

}

void writeLifecycle(std::ostringstream &h, const HeaderParts &x) {
  const rt::ModelSpec &spec = x.spec;
  const HeaderInfo &info = x.info;
  const std::string &m = x.m, &P = x.P, &CTX = x.CTX;
  h << "/* Allocates a context whose parameters are "
    << (info.embeddedWeights ? "the weights embedded in " + m + ".o"
                             : "initialised as by " + m + "_init(ctx, " + std::to_string(spec.train.seed) +
                                   ") (the program's seed)")
    << ";\n * no optimizer steps taken yet. Returns NULL when out of memory. Free it with " << m
    << "_destroy. */\n"
    << "static inline " << m << "_ctx *" << m << "_create(void) {\n  return (" << m << "_ctx *)mtlc_embed_create(&mtlc_"
    << m << "_bundle, NULL);\n}\n\n"
    << "/* Frees a context and everything it owns (NULL is allowed). */\n"
    << "static inline void " << m << "_destroy(" << m << "_ctx *ctx) { mtlc_embed_destroy(" << CTX << "); }\n\n"
    << "/* PyTorch-default initialisation, the same numbers as `mtlc train --seed SEED`: one\n"
    << " * mt19937_64(seed) stream over the parameters in table order; dense and conv weights and biases\n"
    << " * U(-1/sqrt(fan_in), 1/sqrt(fan_in)), embeddings N(0, 1), layernorm ones / zeros. Also resets the\n"
    << " * optimizer state, and seed becomes the dropout seed of later train steps (step k uses\n"
    << " * mix64(mix64(seed) ^ k), k counted from 1 after init / load, as mtlc train does). */\n"
    << "static inline int " << m << "_init(" << m << "_ctx *ctx, uint64_t seed) { return mtlc_embed_init(" << CTX
    << ", seed); }\n\n"
    << "/* Loads a safetensors checkpoint written by " << m << "_save or `mtlc train` (--save, --checkpoint-every,\n"
    << " * an interrupted run; or PyTorch, with the names listed above): every parameter with its exact\n"
    << " * shape; optimizer state (optim.*) too when the file has it for this optimizer, else the state is\n"
    << " * reset; the trainer's other state (mtl.*, train.*) is skipped. Nothing changes on error\n"
    << " * (" << P << "_ERR_IO, " << P << "_ERR_FORMAT). */\n"
    << "static inline int " << m << "_load(" << m << "_ctx *ctx, const char *path) { return mtlc_embed_load(" << CTX
    << ", path); }\n\n"
    << "/* Writes parameters and optimizer state as safetensors (mtlc train's names; `mtlc train --init`\n"
    << " * continues from it). */\n"
    << "static inline int " << m << "_save(" << m << "_ctx *ctx, const char *path) { return mtlc_embed_save(" << CTX
    << ", path); }\n\n";

}

void writeTrainStep(std::ostringstream &h, const HeaderParts &x) {
  const rt::ModelSpec &spec = x.spec;
  const std::string &m = x.m, &P = x.P, &CTX = x.CTX, &optim = x.optim;
  const std::string &inDoc = x.inDoc, &inParams = x.inParams, &inArrays = x.inArrays;
  const size_t T = x.T;
  h << "/* One optimizer step on a batch of n samples: forward (dropout on), the per-task batch-mean\n"
    << " * losses, the weighted total, backward, then " << optim << ".\n"
    << inDoc;
  std::string lblParams, lblPtrs, lblCounts;
  for (size_t t = 0; t < T; ++t) {
    const rt::TaskSpec &ts = spec.tasks[t];
    std::string c = cname(ts.name) + "_label";
    h << " *   " << c << ": task `" << ts.name << "`, n x " << ts.labelWidth << " floats, " << labelDoc(ts) << "; "
      << c << "_count = n * " << P << "_TASK_" << upper(ts.name) << "_LABEL_SIZE.\n";
    lblParams += ",\n    const float *" + c + ", size_t " + c + "_count";
    lblPtrs += std::string(t ? ", " : "") + c;
    lblCounts += std::string(t ? ", " : "") + c + "_count";
  }
  h << " *   task_losses: out, " << T << " floats (or NULL): each task's batch-mean loss, in task order (";
  for (size_t t = 0; t < T; ++t) h << (t ? ", " : "") << spec.tasks[t].name;
  h << ").\n *   total_loss: out, 1 float (or NULL): the weighted total.\n"
    << " * Class labels and embedding indices are range-checked (" << P << "_ERR_VALUE). When a loss is not\n"
    << " * finite the parameters are left unchanged and " << P << "_ERR_NONFINITE is returned. */\n"
    << "static inline int " << m << "_train_step(" << m << "_ctx *ctx, int64_t n" << inParams << lblParams
    << ",\n    float *task_losses, float *total_loss) {\n"
    << inArrays << "  const float *const labels_[" << T << "] = {" << lblPtrs << "};\n  const size_t label_counts_["
    << T << "] = {" << lblCounts << "};\n"
    << "  return mtlc_embed_train_step(" << CTX
    << ", n, inputs_, input_counts_, labels_, label_counts_, task_losses, total_loss);\n}\n\n";

}

void writePredicts(std::ostringstream &h, const HeaderParts &x) {
  const rt::ModelSpec &spec = x.spec;
  const std::string &m = x.m, &P = x.P, &CTX = x.CTX;
  const std::string &inDoc = x.inDoc, &inParams = x.inParams, &inArrays = x.inArrays;
  const size_t T = x.T;
  std::string outParams, outPtrs, outCounts, outDoc;
  for (size_t t = 0; t < T; ++t) {
    const rt::TaskSpec &ts = spec.tasks[t];
    std::string c = cname(ts.name) + "_out";
    outDoc += " *   " + c + ": out, task `" + ts.name + "`, n x " + std::to_string(ts.outWidth) + " floats: " + outputDoc(ts) +
              "; " + c + "_count = n * " + P + "_TASK_" + upper(ts.name) + "_OUTPUT_SIZE.\n";
    outParams += ",\n    float *" + c + ", size_t " + c + "_count";
    outPtrs += std::string(t ? ", " : "") + c;
    outCounts += std::string(t ? ", " : "") + c + "_count";
  }
  h << "/* Inference (dropout off) on n samples: every task's head output.\n" << inDoc << outDoc << " */\n"
    << "static inline int " << m << "_predict(" << m << "_ctx *ctx, int64_t n" << inParams << outParams << ") {\n"
    << inArrays << "  float *const outputs_[" << T << "] = {" << outPtrs << "};\n  const size_t output_counts_[" << T
    << "] = {" << outCounts << "};\n"
    << "  return mtlc_embed_predict(" << CTX << ", n, inputs_, input_counts_, outputs_, output_counts_);\n}\n\n";

  for (size_t t = 0; t < T; ++t) {
    const rt::TaskSpec &ts = spec.tasks[t];
    std::string c = cname(ts.name) + "_out";
    h << "/* Inference for task `" << ts.name << "` only: runs the shared blocks it reads and its head, nothing\n"
      << " * of the other tasks; the result equals " << c << " of " << m << "_predict.\n"
      << inDoc << " *   out: n x " << ts.outWidth << " floats: " << outputDoc(ts) << "; out_count = n * " << P
      << "_TASK_" << upper(ts.name) << "_OUTPUT_SIZE. */\n"
      << "static inline int " << m << "_predict_" << ts.name << "(" << m << "_ctx *ctx, int64_t n" << inParams
      << ",\n    float *out, size_t out_count) {\n"
      << inArrays << "  return mtlc_embed_predict_task(" << CTX << ", " << t
      << ", n, inputs_, input_counts_, out, out_count);\n}\n\n";
  }

}

void writeAccessors(std::ostringstream &h, const HeaderParts &x) {
  const std::string &m = x.m, &P = x.P, &CTX = x.CTX, guard = x.P + "_MTLC_H";
  h << "/* A description of a status code (a static string). */\n"
    << "static inline const char *" << m << "_strerror(int status) { return mtlc_embed_strerror(status); }\n\n"
    << "/* Details of the last failure on ctx (file, tensor, argument); valid until the next call. */\n"
    << "static inline const char *" << m << "_last_error(const " << m
    << "_ctx *ctx) { return mtlc_embed_last_error((const mtlc_embed_ctx *)ctx); }\n\n"
    << "/* The parameter arena: " << P << "_PARAM_COUNT floats, tensors at the offsets listed above. */\n"
    << "static inline float *" << m << "_params(" << m << "_ctx *ctx) { return mtlc_embed_params(" << CTX << "); }\n\n"
    << "/* Optimizer steps taken (restored by " << m << "_load from the checkpoint's optim.step). */\n"
    << "static inline int64_t " << m << "_steps(const " << m
    << "_ctx *ctx) { return mtlc_embed_steps((const mtlc_embed_ctx *)ctx); }\n\n"
    << "/* The learning rate of the next train steps (the program's optimizer lr until set): set it before\n"
    << " * each step to schedule it, as `schedule` and `warmup` do in mtlc train. A rate that is not a\n"
    << " * finite number > 0 is " << P << "_ERR_VALUE. */\n"
    << "static inline int " << m << "_set_lr(" << m << "_ctx *ctx, double lr) { return mtlc_embed_set_lr(" << CTX
    << ", lr); }\n"
    << "static inline double " << m << "_lr(const " << m
    << "_ctx *ctx) { return mtlc_embed_lr((const mtlc_embed_ctx *)ctx); }\n\n"
    << "#ifdef __cplusplus\n}\n#endif\n#endif /* " << guard << " */\n";
}

}  // namespace

std::string generateHeader(const rt::ModelSpec &spec, const HeaderInfo &info) {
  if (info.lossWeights.size() != spec.tasks.size()) throw AotError("internal: one loss weight per task expected");
  HeaderParts x(spec, info);
  x.m = spec.name;
  x.P = upper(spec.name);
  x.T = spec.tasks.size();
  x.I = spec.inputs.size();
  x.optim = optimizerText(spec.train.optimizer);
  x.ctxBytes = contextBytes(spec);
  addInputArgs(x);
  std::ostringstream h;
  writePreamble(h, x);
  writeSizes(h, x);
  writeLifecycle(h, x);
  writeTrainStep(h, x);
  writePredicts(h, x);
  writeAccessors(h, x);
  return h.str();
}

// ---- the static library ------------------------------------------------------------------------------

std::string staticLibraryName(const rt::ModelSpec &spec) { return "lib" + spec.name + ".a"; }

void writeStaticLibrary(const std::string &path, const std::string &objectPath, const unsigned char *runtimeArchive,
                        size_t runtimeArchiveSize) {
  std::vector<llvm::NewArchiveMember> members;
  auto object = llvm::NewArchiveMember::getFile(objectPath, /*Deterministic=*/true);
  if (!object) throw AotError(objectPath + ": " + llvm::toString(object.takeError()));
  const std::string memberName = llvm::sys::path::filename(objectPath).str();  // getFile keeps the path
  object->MemberName = memberName;
  members.push_back(std::move(*object));
  llvm::MemoryBufferRef runtime(
      llvm::StringRef(reinterpret_cast<const char *>(runtimeArchive), runtimeArchiveSize), "libmtlc_embed.a");
  auto archive = llvm::object::Archive::create(runtime);
  if (!archive) throw AotError("internal: the embedded libmtlc_embed.a: " + llvm::toString(archive.takeError()));
  llvm::Error err = llvm::Error::success();
  std::string problem;
  for (const llvm::object::Archive::Child &child : (*archive)->children(err)) {
    auto member = llvm::NewArchiveMember::getOldMember(child, /*Deterministic=*/true);
    if (!member) {
      problem = llvm::toString(member.takeError());
      break;
    }
    members.push_back(std::move(*member));
  }
  if (err) problem = llvm::toString(std::move(err));
  if (!problem.empty()) throw AotError("internal: the embedded libmtlc_embed.a: " + problem);
  if (llvm::Error e = llvm::writeArchive(path, members, llvm::SymtabWritingMode::NormalSymtab,
                                         llvm::object::Archive::K_GNU, /*Deterministic=*/true, /*Thin=*/false))
    throw AotError(path + ": " + llvm::toString(std::move(e)));
}

}  // namespace mtlc::aot
