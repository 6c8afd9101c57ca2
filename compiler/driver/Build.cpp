#include "Build.h"

#include "Pipeline.h"
#include "aot/Aot.h"
#include "ir/Builder.h"
#include "ir/Verifier.h"
#include "passes/MemoryPlan.h"
#include "passes/Passes.h"
#include "runtime/Checkpoint.h"

#include <fmt/format.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <unistd.h>

namespace mtlc::driver {

int runBuild(const Options &o) {
  namespace fs = std::filesystem;
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
  rt::ModelSpec spec = describeModel(model, lowered);
  spec.actsFloats = passes::maxActsFloats(lowered.module);
  try {
    aot::bundleLossWeights(spec);
  } catch (const aot::AotError &e) {
    fmt::print(stderr, "{}: error: {}\n", o.file, e.what());
    return 1;
  }

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
  if (!o.weights.empty()) {
    weights.assign(size_t(spec.paramCount), 0.0f);
    rt::loadParams(o.weights, spec, weights.data());  // checks every name and shape
    if (o.embedWeights) {
      bo.weights = &weights;
      info.embeddedWeights = true;
    } else {
      info.weightsFile = spec.name + ".safetensors";
      fs::copy_file(o.weights, dir / info.weightsFile, fs::copy_options::overwrite_existing, ec);
      if (ec) {
        fmt::print(stderr, "mtlc: error: cannot copy '{}' into '{}': {}\n", o.weights, o.output, ec.message());
        return 1;
      }
    }
  }
  const std::string objPath = (dir / (spec.name + ".o")).string();
  const std::string hdrPath = (dir / (spec.name + ".h")).string();
  try {
    info.cpu = aot::emitObject(lowered.module, spec, bo, objPath, &info.triple);
  } catch (const aot::AotError &e) {
    fmt::print(stderr, "mtlc: error: {}\n", e.what());
    return 2;
  }
  if (bo.cpu == "native") info.cpu += " (native: this build machine's CPU)";
  std::ofstream h(hdrPath, std::ios::binary);
  h << aot::generateHeader(spec, info);
  h.close();
  if (!h) {
    fmt::print(stderr, "mtlc: error: cannot write '{}'\n", hdrPath);
    return 1;
  }
  fmt::print("built {}: {} and {} ({} parameters, cpu {}{})\n", o.file, objPath, hdrPath, spec.paramCount, info.cpu,
             info.embeddedWeights ? ", weights embedded" : info.weightsFile.empty() ? "" : ", weights " + info.weightsFile);
  return 0;
}

}  // namespace mtlc::driver
