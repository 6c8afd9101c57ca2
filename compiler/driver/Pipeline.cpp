#include "Pipeline.h"

#include "ir/Builder.h"
#include "ir/Verifier.h"
#include "jit/Compile.h"
#include "passes/Passes.h"
#include "sema/Sema.h"
#include "syntax/Parser.h"
#include "syntax/SourceFile.h"

#include <algorithm>
#include <chrono>
#include <fstream>
#include <sstream>

namespace mtlc::driver {

namespace {

double msSince(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

// Parses and checks p.text (read already); p.path, displayName and diags are set.
void checkLoaded(CheckedProgram &p) {
  auto t0 = std::chrono::steady_clock::now();
  auto ast = parseProgram(p.displayName, p.text, *p.diags);
  p.times.parseMs = msSince(t0);
  if (!ast || p.diags->hasErrors()) return;
  t0 = std::chrono::steady_clock::now();
  p.model = sema::analyze(*ast, p.path, *p.diags, p.dataOverrides);
  p.times.semaMs = msSince(t0);
  if (p.diags->hasErrors()) p.model.reset();
}

}  // namespace

CheckedProgram checkFile(const std::string &path, const sema::DataOverrides &dataOverrides) {
  CheckedProgram p;
  p.path = path;
  p.dataOverrides = dataOverrides;
  p.displayName = path;
  bool read = readSourceFile(path, p.text);
  p.diags = std::make_unique<Diagnostics>(p.displayName, p.text);
  if (!read) {
    p.diags->error("cannot read the file");
    return p;
  }
  checkLoaded(p);
  return p;
}

CheckedProgram checkText(const std::string &path, const std::string &displayName, std::string text,
                         const sema::DataOverrides &dataOverrides) {
  CheckedProgram p;
  p.path = path;
  p.dataOverrides = dataOverrides;
  p.displayName = displayName;
  p.text = std::move(text);
  p.diags = std::make_unique<Diagnostics>(p.displayName, p.text);
  checkLoaded(p);
  return p;
}

lower::LoweredModel lowerProgram(CheckedProgram &checked, const passes::PassSettings &settings) {
  const sema::Model &model = *checked.model;
  auto t0 = std::chrono::steady_clock::now();
  lower::LoweredModel lowered = lower::lowerModel(model, model.train.batch);
  auto problems = ir::verify(lowered.module);
  if (!problems.empty()) throw ir::IRError("IR verification failed after lowering: " + problems[0]);
  passes::runGraphPasses(lowered.module, settings);
  checked.times.lowerMs = msSince(t0);
  return lowered;
}

CompiledProgram compileProgram(CheckedProgram &checked, bool optimize, bool keepLlvmText,
                               jit::IncrementalCompiler *incremental, int compileThreads) {
  passes::PassSettings settings;
  settings.optimize = optimize;
  return compileProgram(checked, settings, keepLlvmText, incremental, compileThreads);
}

CompiledProgram compileProgram(CheckedProgram &checked, const passes::PassSettings &settings,
                               bool keepLlvmText, jit::IncrementalCompiler *incremental, int compileThreads,
                               uint64_t nodeHook) {
  CompiledProgram c;
  const sema::Model &model = *checked.model;
  c.lowered = lowerProgram(checked, settings);

  auto t0 = std::chrono::steady_clock::now();
  jit::CompileOptions options;
  options.optimize = settings.optimize;
  options.threads = compileThreads;
  options.keepIR = keepLlvmText;
  options.fuse = settings.runs(passes::kFusionPass);
  options.codegen.nodeHook = nodeHook;
  options.codegen.bf16 = model.train.precision == rt::Precision::Bf16;
  c.code = std::make_shared<jit::CompiledModule>(incremental ? incremental->compile(c.lowered.module, options)
                                                             : jit::compile(c.lowered.module, options));
  checked.times.codegenMs = msSince(t0);

  c.spec = lower::describeModel(model, c.lowered);
  c.spec.actsFloats = c.code->actsFloats;
  auto entry = [&](const char *name) -> mtlc_entry_fn {
    auto it = c.code->entries.find(name);
    return it == c.code->entries.end() ? nullptr : it->second;
  };
  c.spec.trainStep = entry("train_step");
  c.spec.evalStep = entry("eval_step");
  c.spec.predict = entry("predict");
  c.spec.taskGradsStep = entry("task_grads");
  c.spec.repGradsStep = entry("rep_grads");
  c.spec.repWidth = c.spec.repGradsStep ? c.lowered.repWidth : 0;
  c.llvmText = c.code->llvmIR;
  return c;
}

std::string precisionNote(const CompiledProgram &compiled) {
  if (compiled.spec.train.precision != rt::Precision::Bf16 || compiled.code->options.bf16) return "";
  return "precision bf16: this CPU has no AVX-512 BF16 (vdpbf16ps); training runs in fp32";
}

}  // namespace mtlc::driver
