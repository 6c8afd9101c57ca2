#include "Driver.h"

#include "Build.h"
#include "Options.h"
#include "NonFiniteLocator.h"
#include "Pipeline.h"
#include "Plot.h"
#include "repl/Repl.h"
#include "Seeds.h"
#include "SingleTask.h"
#include "Summary.h"
#include "ir/Builder.h"
#include "ir/Printer.h"
#include "runtime/parallel/Distributed.h"
#include "passes/Fusion.h"
#include "spec/Error.h"
#include "runtime/train/Trainer.h"
#include "syntax/AST.h"
#include "syntax/Parser.h"
#include "syntax/SourceFile.h"

#include <fmt/format.h>
#include <cmath>
#include <fmt/ostream.h>

#include <fstream>
#include <sstream>
#include <iostream>
#include <unistd.h>

namespace mtlc::driver {

namespace {

constexpr int kExitError = 1;     // the program or its data is wrong
constexpr int kExitInternal = 3;  // a bug in mtlc

bool useColour(const Options &o) {
  if (o.color == "always") return true;
  if (o.color == "never") return false;
  return isatty(STDERR_FILENO);
}

// Writes --emit output to -o FILE or stdout.
int emitText(const Options &o, const std::string &text) {
  if (o.output.empty() || o.output == "-") {
    std::cout << text;
    return 0;
  }
  std::ofstream out(o.output, std::ios::binary);
  out << text;
  if (!out) {
    fmt::print(stderr, "mtlc: error: cannot write '{}'\n", o.output);
    return kExitError;
  }
  return 0;
}

// The training run, with --single-task its baselines; --seeds N times (Seeds.h). Returns the exit
// status.
int trainSeeds(const Options &o, const CheckedProgram &checked, const rt::ModelSpec &spec, const rt::TrainOptions &to,
               std::ostream &out) {
  const uint64_t first = to.seed.value_or(spec.train.seed);
  SeedSummary summary;
  for (int64_t i = 0; i < o.seeds; ++i) {
    rt::TrainOptions run = to;
    if (o.seeds > 1) {
      const uint64_t seed = first + uint64_t(i);
      run.seed = seed;
      run.logPath = seedPath(to.logPath, seed);
      run.savePath = seedPath(to.savePath, seed);
      run.saveBestPath = seedPath(to.saveBestPath, seed);
      out << fmt::format("{}seed {} (run {} of {})\n", i ? "\n" : "", seed, i + 1, o.seeds);
    }
    rt::TrainReport report = rt::train(spec, run, out);
    if (report.interruptedBy) return 128 + report.interruptedBy;  // the shell's convention for a signal
    // Every rank trains the baselines too (the same data-parallel steps); rank 0 reports.
    const double deltaM = o.singleTask ? reportSingleTask(o, checked, spec, report, run, out) : std::nan("");
    summary.add(run.seed.value_or(first), report, deltaM);
  }
  if (o.seeds > 1) summary.print(out);
  return 0;
}

// `job`: the MPI job of a data-parallel `mtlc train` (null for one process).
int run(const Options &o, rt::Communicator *job) {
  if (o.build) return runBuild(o);
  if (o.command == Command::Repl) return runRepl(o.file, o.color, o.optLevel > 0);
  if (o.command == Command::Plot) return plotLog(o.file, o.output, std::cout);
  if (o.emit == Emit::Ast) {
    // Only parsing is needed to show the syntax tree.
    std::string text;
    bool read = readSourceFile(o.file, text);
    Diagnostics diags(o.file, text);
    if (!read) diags.error("cannot read the file");
    auto ast = parseProgram(o.file, text, diags);
    diags.render(std::cerr, useColour(o));
    if (!ast || diags.hasErrors()) return kExitError;
    std::ostringstream os;
    ast::dump(*ast, os);
    return emitText(o, os.str());
  }

  CheckedProgram checked = checkFile(o.file, o.data);
  checked.diags->render(std::cerr, useColour(o));
  if (!checked.model) return kExitError;

  const passes::PassSettings settings = passSettings(o);
  if (o.emit == Emit::Ir || o.emit == Emit::IrOpt) {
    // The graphs as lowered, or after the passes with their fusion groups: no code generated.
    passes::PassSettings none;
    none.optimize = false;
    lower::LoweredModel lowered = lowerProgram(checked, o.emit == Emit::Ir ? none : settings);
    std::ostringstream os;
    passes::printFused(lowered.module, os, o.emit == Emit::IrOpt && settings.runs(passes::kFusionPass));
    return emitText(o, os.str());
  }
  // LLVM compiles on --threads threads too (every CPU by default; one per rank of an MPI job,
  // whose ranks compile at the same time).
  const int compileThreads = o.threads > 0 ? o.threads : job && job->size() > 1 ? 1 : 0;
  CompiledProgram compiled = compileProgram(checked, settings, o.emit == Emit::Llvm, nullptr, compileThreads);
  if (o.emit == Emit::Llvm) return emitText(o, compiled.llvmText);
  if (std::string note = precisionNote(compiled); !note.empty() && (!job || job->rank() == 0))
    fmt::print(stderr, "{}: note: {}\n", o.file, note);

  if (o.command == Command::Compile) {
    printSummary(checked, compiled, std::cout);
    return 0;
  }

  compiled.spec.locateNonFinite = makeNonFiniteLocator(compiled.lowered.module);
  rt::TrainOptions to;
  if (o.epochs) to.epochs = *o.epochs;
  if (o.steps) to.steps = *o.steps;
  to.seed = o.seed;
  to.initPath = o.init;
  to.savePath = o.save;
  to.saveBestPath = o.saveBest;
  to.resumePath = o.resume;
  to.checkpointEvery = o.checkpointEvery;
  to.logPath = o.log;
  to.dataOverrides = o.data;
  to.quiet = o.quiet;
  to.comm = job;
  std::ostream silent(nullptr);  // the other ranks of a data-parallel job: rank 0 alone reports
  const bool root = !job || job->rank() == 0;
  if (!root) {
    to.logPath.clear();
    to.savePath.clear();
    to.saveBestPath.clear();
    to.checkpointEvery = 0;  // rank 0 writes the checkpoints
    to.quiet = true;
  }
  to.threads = o.threads;
  to.flushDenormals = !o.keepDenormals;
  if (root)
    fmt::print("compiled {} in {:.0f} ms ({} learnable parameters, {:.2f} MFLOPs/sample forward)\n", o.file,
               checked.times.totalMs(), learnableParameters(compiled.spec), compiled.spec.flopsPerSample / 1e6);
  if (o.singleTask) checkSingleTaskPossible(checked, compiled.spec, to);
  return trainSeeds(o, checked, compiled.spec, to, root ? std::cout : silent);
}

}  // namespace

int main(int argc, char **argv) {
  Options o;
  if (auto code = parseOptions(argc, argv, o)) return *code;
  std::unique_ptr<rt::Communicator> job;  // MPI_Finalize when it goes
  // An error on one rank of a data-parallel job ends every rank (the others would wait forever).
  auto fail = [&](const char *kind, const char *what, int status) {
    if (job && job->size() > 1) {
      fmt::print(stderr, "mtlc: {}: rank {} of {}: {}\n", kind, job->rank(), job->size(), what);
      std::fflush(stderr);
      job->abort(status);
    }
    fmt::print(stderr, "mtlc: {}: {}\n", kind, what);
    return status;
  };
  try {
    if (o.command == Command::Train && o.emit == Emit::None) {
      job = rt::joinJob(&argc, &argv);
    } else if (int n = rt::launcherWorldSize(); n > 1) {
      fmt::print(stderr, "mtlc: error: started by an MPI launcher with {} processes: only `mtlc train MODEL.mtl` "
                         "runs data-parallel\n", n);
      return kExitError;
    }
    const int status = run(o, job.get());
    if (status != 0 && job && job->size() > 1) {
      // Its diagnostics are printed; the other ranks may be waiting for it (MPI_Finalize would too).
      fmt::print(stderr, "mtlc: error: rank {} of {} failed (exit status {}): ending the job\n", job->rank(),
                 job->size(), status);
      std::fflush(stderr);
      job->abort(status);
    }
    return status;
  } catch (const rt::Error &e) {
    return fail("error", e.what(), kExitError);
  } catch (const ir::IRError &e) {
    return fail("internal error", e.what(), kExitInternal);
  } catch (const std::exception &e) {
    return fail("internal error", e.what(), kExitInternal);
  }
}

}  // namespace mtlc::driver
