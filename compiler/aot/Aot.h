// Ahead-of-time bundles (`mtlc build`): a lowered module becomes an object file with the model's
// entry points and a constant `mtlc_embed_bundle mtlc_<model>_bundle` (runtime/embed/mtlc_embed.h),
// plus a generated C99 header with typed, documented wrappers, and a static library holding the
// object and the embed runtime (writeStaticLibrary). A C program needs only those and libm at link
// time: no LLVM, ANTLR, fmt or C++ runtime.
#pragma once

#include "ir/IR.h"
#include "passes/Schedule.h"
#include "spec/ModelSpec.h"

#include <stdexcept>
#include <string>
#include <vector>

namespace mtlc::aot {

struct AotError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// The default CPU of bundles: x86-64-v2 (SSE4.2, POPCNT, CMPXCHG16B): every x86-64 processor
// since 2009, including this decade's low-end Atom/Celeron/Pentium parts (Jasper Lake, Elkhart
// Lake, ...) that lack AVX, so the object runs on any x86-64 machine sold in the 2020s.
// --mcpu=x86-64-v3 (AVX2 + FMA) or --mcpu=native trade that for speed.
inline constexpr const char *kDefaultCpu = "x86-64-v2";

struct BundleOptions {
  std::string triple;              // empty: the host's (LLVM's default target triple)
  std::string cpu = kDefaultCpu;   // an LLVM CPU name, or "native" (host CPU and its features)
  bool optimize = true;
  const std::vector<float> *weights = nullptr;  // embed this parameter arena (paramCount floats)
  std::vector<float> lossWeights;  // train_step's fixed loss weights, one per task
};

// Adds one function "predict_<t>" per task t (its index): a copy of `predict` that writes only that task's
// head (outputs[t]), with every node it does not need removed, so it runs the shared blocks the
// task reads and that task's head only. Also drops the entry points bundles do not use
// (task_grads, rep_grads, eval_step).
void addTaskPredicts(ir::Module &m);

// Whether the program's weighting adapts the loss weights during training (uncertainty, dwa,
// gradnorm, pcgrad, mgda): bundles then train with fixed weights (the caller picks them), since
// the strategies run in mtlc's trainer only.
bool isAdaptiveWeighting(const rt::ModelSpec &spec);

// The loss weights a bundle's train_step uses for `weighting fixed` (the weight lines) or
// `uniform`. Throws AotError for an adaptive weighting.
std::vector<float> bundleLossWeights(const rt::ModelSpec &spec);

// The text description the support library parses at create time (format in Aot.cpp).
std::string describeBundle(const rt::ModelSpec &spec, const std::vector<float> &lossWeights);

// The scheduled module a bundle's object is generated from (fusion, memory plan, scratch: target
// independent), built once: its actsFloats is the bundle's arena, and emitObject compiles it.
passes::ScheduledModule scheduleBundle(const ir::Module &m);

// Compiles the scheduled module (of `m` with its predict_<task> functions, from scheduleBundle)
// for the selected target and writes an ELF relocatable object with PIC relocations to `path`.
// Returns the CPU name actually used and sets *triple to the target triple. Throws AotError.
std::string emitObject(const passes::ScheduledModule &schedule, const rt::ModelSpec &spec, const BundleOptions &o,
                       const std::string &path, std::string *triple = nullptr);

struct HeaderInfo {
  std::string source;        // the .mtl path, for the banner
  std::string triple, cpu;   // what the object was compiled for
  bool embeddedWeights = false;
  std::string weightsFile;   // a safetensors file written next to the header, or empty
  std::vector<float> lossWeights;  // as BundleOptions::lossWeights
  std::string weightingNote;       // for an adaptive weighting: where the fixed weights came from
};

// The C99 header `<model>.h`.
std::string generateHeader(const rt::ModelSpec &spec, const HeaderInfo &info);

// The file name of a model's static library: "lib<model>.a".
std::string staticLibraryName(const rt::ModelSpec &spec);

// Writes the static library `path` (GNU ar format with a symbol table, deterministic): the object
// `objectPath` followed by every member of `runtimeArchive` (the bytes of libmtlc_embed.a), so a
// program links one archive. Throws AotError.
void writeStaticLibrary(const std::string &path, const std::string &objectPath,
                        const unsigned char *runtimeArchive, size_t runtimeArchiveSize);

}  // namespace mtlc::aot
