#include "Build.h"

#include "Pipeline.h"
#include "aot/Aot.h"
#include "aot/EmbedRuntime.h"
#include "ir/Builder.h"
#include "ir/Verifier.h"
#include "passes/MemoryPlan.h"
#include "passes/Passes.h"
#include "runtime/io/Checkpoint.h"
#include "runtime/train/Weighting.h"

#include <fmt/format.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <unistd.h>

namespace mtlc::driver {

namespace {

namespace fs = std::filesystem;

struct LossWeights {
  std::vector<float> weights;  // one per task
  std::string note;            // for an adaptive weighting: what the bundle does instead
};

// The fixed loss weights of the bundle's train step. An adaptive weighting runs in mtlc's trainer
// only (its state and per-step kernels are not part of a bundle), so the bundle keeps the weights
// the strategy would start its next step from: its initial ones, or those of the state in the
// --weights checkpoint when it has the strategy's state.
LossWeights chooseLossWeights(const rt::ModelSpec &spec, const std::string &weightsPath) {
  if (!aot::isAdaptiveWeighting(spec)) return {aot::bundleLossWeights(spec), ""};
  // The strategy is asked for its weights only, never to step, so the trainer's entry points it
  // checks for (bundles have no task_grads / rep_grads) get a placeholder that is never called.
  rt::ModelSpec forWeights = spec;
  forWeights.taskGradsStep = [](const mtlc_args *) { std::abort(); };
  std::unique_ptr<rt::Weighting> strategy = rt::Weighting::create(forWeights, spec.train.seed);
  std::string source = "its initial ones";
  if (!weightsPath.empty() && rt::loadWeightingState(rt::readSafeTensors(weightsPath), spec, *strategy))
    source = "those of its state in " + fs::path(weightsPath).filename().string();
  LossWeights out{strategy->currentWeights(), ""};
  std::string list;
  for (size_t t = 0; t < spec.tasks.size(); ++t)
    list += fmt::format("{}{} {:.6g}", t ? ", " : "", spec.tasks[t].name, out.weights[t]);
  out.note = fmt::format(
      "weighting `{}` adapts the loss weights in `mtlc train` only; the bundle's train step keeps them fixed at "
      "the strategy's current weights ({}): {}. Inference does not depend on the weighting.",
      strategy->describe(), source, list);
  return out;
}

// Writes next to the object: the header, mtlc_embed.h and lib<model>.a (the object and the embed
// runtime), so that a program compiles against the folder alone.
int writeCompanions(const fs::path &dir, const rt::ModelSpec &spec, const aot::HeaderInfo &info,
                    const std::string &objPath) {
  auto writeFile = [](const fs::path &path, const char *data, size_t size) {
    std::ofstream f(path, std::ios::binary);
    f.write(data, std::streamsize(size));
    f.close();
    if (f) return true;
    fmt::print(stderr, "mtlc: error: cannot write '{}'\n", path.string());
    return false;
  };
  const std::string header = aot::generateHeader(spec, info);
  const aot::EmbeddedFile runtimeHeader = aot::embedRuntimeHeader();
  if (!writeFile(dir / (spec.name + ".h"), header.data(), header.size()) ||
      !writeFile(dir / "mtlc_embed.h", reinterpret_cast<const char *>(runtimeHeader.data), runtimeHeader.size))
    return 1;
  const aot::EmbeddedFile runtime = aot::embedRuntimeArchive();
  try {
    aot::writeStaticLibrary((dir / aot::staticLibraryName(spec)).string(), objPath, runtime.data, runtime.size);
  } catch (const aot::AotError &e) {
    fmt::print(stderr, "mtlc: error: {}\n", e.what());
    return 1;
  }
  return 0;
}

// --weights: checked against the model, then embedded or copied next to the header.
int prepareWeights(const Options &o, const rt::ModelSpec &spec, const fs::path &dir, std::vector<float> &weights,
                   aot::BundleOptions &bo, aot::HeaderInfo &info) {
  if (o.weights.empty()) return 0;
  weights.assign(size_t(spec.paramCount), 0.0f);
  rt::loadParams(o.weights, spec, weights.data());  // checks every name and shape
  if (o.embedWeights) {
    bo.weights = &weights;
    info.embeddedWeights = true;
    return 0;
  }
  info.weightsFile = spec.name + ".safetensors";
  std::error_code ec;
  fs::copy_file(o.weights, dir / info.weightsFile, fs::copy_options::overwrite_existing, ec);
  if (!ec) return 0;
  fmt::print(stderr, "mtlc: error: cannot copy '{}' into '{}': {}\n", o.weights, o.output, ec.message());
  return 1;
}

}  // namespace

int runBuild(const Options &o) {
  if (o.output.empty()) {
    fmt::print(stderr, "mtlc: error: build needs an output folder: -o DIR\n");
    return 2;
  }
  if (o.embedWeights && o.weights.empty()) {
    fmt::print(stderr, "mtlc: error: --embed-weights needs --weights FILE.safetensors\n");
    return 2;
  }
  CheckedProgram checked = checkFile(o.file);
  checked.diags->render(std::cerr, isatty(STDERR_FILENO) && o.color != "never");
  if (!checked.model) return 1;
  const sema::Model &model = *checked.model;

  lower::LoweredModel lowered = lower::lowerModel(model, model.train.batch);
  auto problems = ir::verify(lowered.module);
  if (!problems.empty()) throw ir::IRError("IR verification failed after lowering: " + problems[0]);
  aot::addTaskPredicts(lowered.module);
  passes::runGraphPasses(lowered.module, passSettings(o));
  rt::ModelSpec spec = lower::describeModel(model, lowered);
  const passes::ScheduledModule schedule = aot::scheduleBundle(lowered.module);
  spec.actsFloats = schedule.actsFloats;

  std::error_code ec;
  fs::create_directories(o.output, ec);
  if (ec) {
    fmt::print(stderr, "mtlc: error: cannot create '{}': {}\n", o.output, ec.message());
    return 1;
  }
  const fs::path dir(o.output);
  aot::BundleOptions bo;
  bo.cpu = o.mcpu.empty() ? aot::kDefaultCpu : o.mcpu;
  bo.triple = o.target;
  bo.optimize = o.optLevel > 0;
  std::vector<float> weights;
  aot::HeaderInfo info;
  info.source = fs::path(o.file).filename().string();
  if (int st = prepareWeights(o, spec, dir, weights, bo, info)) return st;
  LossWeights loss = chooseLossWeights(spec, o.weights);
  bo.lossWeights = info.lossWeights = loss.weights;
  info.weightingNote = loss.note;
  if (!loss.note.empty()) fmt::print(stderr, "{}: note: {}\n", o.file, loss.note);

  const std::string objPath = (dir / (spec.name + ".o")).string();
  try {
    info.cpu = aot::emitObject(schedule, spec, bo, objPath, &info.triple);
  } catch (const aot::AotError &e) {
    fmt::print(stderr, "mtlc: error: {}\n", e.what());
    return 2;
  }
  if (bo.cpu == "native") info.cpu += " (native: this build machine's CPU)";
  if (int st = writeCompanions(dir, spec, info, objPath)) return st;
  const std::string lib = (dir / aot::staticLibraryName(spec)).string();
  fmt::print("built {} into {}: {}.h, {}.o, {} (the model and the embed runtime), mtlc_embed.h "
             "({} parameters, cpu {}{})\n  compile: cc -std=c99 -I {} main.c {} -lm\n",
             o.file, o.output, spec.name, spec.name, aot::staticLibraryName(spec), spec.paramCount, info.cpu,
             info.embeddedWeights ? ", weights embedded" : info.weightsFile.empty() ? "" : ", weights " + info.weightsFile,
             o.output, lib);
  return 0;
}

}  // namespace mtlc::driver
