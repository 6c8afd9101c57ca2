// The `mtlc` command line: what the user asked for, parsed by CLI11 (Options.cpp).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "passes/Passes.h"

namespace mtlc::driver {

enum class Emit { None, Ast, Ir, IrOpt, Llvm };
enum class Command { Compile, Train, Repl, Plot };

struct Options {
  Command command = Command::Compile;
  std::string file;                 // the .mtl program
  Emit emit = Emit::None;
  std::string output;               // -o: where --emit output goes (default stdout)
  std::string color = "auto";       // auto | always | never
  int optLevel = 3;                 // -O0 turns every pass off: graph passes, fusion, LLVM's pipeline
  std::vector<std::string> disabledPasses;  // --disable-pass NAME (repeatable; names checked)
  // train
  std::optional<int64_t> epochs, steps;
  std::optional<uint64_t> seed;
  std::string init, save, log;
  std::string saveBest;  // --save-best FILE
  std::string resume;              // --resume FILE: continue the run of a checkpoint
  int64_t checkpointEvery = 0;     // --checkpoint-every N: write --save every N steps
  std::map<std::string, std::string> data;  // --data train=PATH
  bool quiet = false;
  int threads = 0;                  // --threads: the kernels' threads (0: every CPU)
  bool keepDenormals = false;       // --keep-denormals: do not flush them to zero
  bool singleTask = false;          // --single-task: also train each task alone, report Δm
  int64_t seeds = 1;                // --seeds N: N runs, seeds seed…seed+N−1 (Seeds.h)
  // plot (`mtlc plot LOG.jsonl -o PNG`): the log is `file`, the picture `output`
  // build (`mtlc build MODEL -o DIR`, Build.h): the command when set
  bool build = false;
  std::string weights, mcpu, target;  // --weights FILE, --mcpu CPU (default aot::kDefaultCpu), --target
  bool embedWeights = false;
};

// The passes the command line enables (-O, --disable-pass).
passes::PassSettings passSettings(const Options &o);

// Parses argv. Returns the exit code to stop with (0 for --help, 2 for usage errors) when the
// command line does not ask for work, nullopt otherwise.
std::optional<int> parseOptions(int argc, char **argv, Options &out);

}  // namespace mtlc::driver
