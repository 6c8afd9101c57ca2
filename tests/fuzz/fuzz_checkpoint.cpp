// libFuzzer harness of the trainer's checkpoint reader: any bytes as the file of
// `mtlc train --resume FILE` / `--init FILE`, through everything the trainer does with it
// (runtime/train/Trainer.cpp): readSafeTensors, loadTrainPosition and restoring each task's metric
// accumulator from it, loadParams, loadOptimizerState, loadWeightingState, and, as --init does,
// loadMatchingParams. The model is tests/fuzz/checkpoint.mtl (MTLC_FUZZ_CHECKPOINT_MODEL), which
// has every kind of state a checkpoint holds. Built with -DMTLC_FUZZ=ON.
//
// A malformed file must end in rt::Error (the trainer prints it and exits 1). A finding is a
// crash, a sanitizer report, a hang, a leak, any other exception escaping (libFuzzer reports it),
// a loadParams that threw after writing to the parameters (Checkpoint.h: nothing is written unless
// the whole file fits), or optimizer state loaded with a negative step count.
#include "MemoryFile.h"
#include "lower/Lower.h"
#include "runtime/io/Checkpoint.h"
#include "spec/Error.h"
#include "runtime/train/Init.h"
#include "runtime/train/Metrics.h"
#include "runtime/train/Optimizer.h"
#include "runtime/train/Weighting.h"
#include "sema/Sema.h"
#include "syntax/Parser.h"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace {

namespace rt = mtlc::rt;

[[noreturn]] void setupFailed(const std::string &why) {
  std::fprintf(stderr, "mtlc_fuzz_checkpoint: %s\n", why.c_str());
  std::exit(2);
}

// The model's rt::ModelSpec, from the front end and lowering alone (no LLVM).
rt::ModelSpec describeCheckpointModel(const std::string &path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  if (!in) setupFailed("cannot read " + path);
  mtlc::Diagnostics diags(path, text.str());
  auto program = mtlc::parseProgram(path, text.str(), diags);
  std::optional<mtlc::sema::Model> model;
  if (program) model = mtlc::sema::analyze(*program, path, diags);
  if (!model) setupFailed(diags.str());
  return mtlc::lower::describeModel(*model, mtlc::lower::lowerModel(*model, model->train.batch));
}

struct Harness {
  rt::ModelSpec spec = describeCheckpointModel(MTLC_FUZZ_CHECKPOINT_MODEL);
  std::vector<float> initial = std::vector<float>(size_t(spec.paramCount));
  std::vector<float> params = std::vector<float>(size_t(spec.paramCount));
  mtlc::fuzz::MemoryFile file;
  Harness() { rt::initParams(spec, spec.train.seed, initial.data()); }
};

// One --resume or --init of the trainer on `path`; rt::Error is how a bad file is refused.
void readAsTrainerDoes(Harness &h, const char *path) {
  rt::TensorFile file = rt::readSafeTensors(path);
  if (auto position = rt::loadTrainPosition(file, path, h.spec))
    for (size_t t = 0; t < h.spec.tasks.size(); ++t) rt::MetricAccumulator(h.spec.tasks[t]).restore(position->tasks[t]);
  h.params = h.initial;
  try {
    rt::loadParams(file, path, h.spec, h.params.data());
  } catch (const rt::Error &) {
    if (h.params != h.initial) {
      std::fprintf(stderr, "mtlc_fuzz_checkpoint: loadParams threw after writing to the parameters\n");
      std::abort();
    }
    throw;
  }
  rt::Optimizer optimizer(h.spec.train.optimizer, h.spec.paramCount);
  if (rt::loadOptimizerState(file, path, h.spec, optimizer) && optimizer.steps() < 0) {
    std::fprintf(stderr, "mtlc_fuzz_checkpoint: optimizer state loaded with %lld steps\n", (long long)optimizer.steps());
    std::abort();
  }
  auto weighting = rt::Weighting::create(h.spec, h.spec.train.seed);
  rt::loadWeightingState(file, h.spec, *weighting);
  h.params = h.initial;
  rt::loadMatchingParams(file, path, h.spec, h.params.data());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static Harness h;
  h.file.assign(data, size);
  try {
    readAsTrainerDoes(h, h.file.path());
  } catch (const rt::Error &) {
  }
  return 0;
}
