#include "Options.h"

#include <CLI/CLI.hpp>

#include <iostream>

namespace mtlc::driver {

namespace {

const char *kDescription =
    "mtlc: a compiler for multi-task neural networks.\n"
    "  mtlc [options] MODEL.mtl         parse, check, lower, JIT-compile; print a summary\n"
    "  mtlc train [options] MODEL.mtl   compile, then train on the program's data\n"
    "  mtlc repl [MODEL.mtl]            define, inspect, train and query a model interactively\n"
    "  mtlc plot LOG.jsonl -o FILE.png  draw a --log's curves (losses, metrics, weights per task)\n";

const char *kFooter =
    "Exit status: 0 success, 1 error in the program or its data, 2 bad command line,\n"
    "3 internal compiler error. Errors go to stderr as file:line:col: error: message.";

void addCommon(CLI::App &app, Options &o) {
  app.add_option("MODEL", o.file, "The .mtl program")->required()->check(CLI::ExistingFile);
  std::map<std::string, Emit> emits{
      {"ast", Emit::Ast}, {"ir", Emit::Ir}, {"ir-opt", Emit::IrOpt}, {"llvm", Emit::Llvm}};
  app.add_option("--emit", o.emit,
                 "Print an intermediate form instead of running: ast (syntax tree), ir (forward "
                 "and backward graphs as lowered), ir-opt (the graphs after the passes, fusion "
                 "groups marked), llvm (the generated, optimised LLVM IR)")
      ->transform(CLI::CheckedTransformer(emits, CLI::ignore_case));
  app.add_option("-o,--output", o.output, "Write --emit output to this file instead of stdout");
  app.add_option("--color", o.color, "Colour diagnostics: auto (on a tty), always, never")
      ->check(CLI::IsMember({"auto", "always", "never"}));
  app.add_option("-O", o.optLevel,
                 "Optimisation level: -O0 turns every pass off (graph passes, fusion, LLVM's "
                 "pipeline), -O3 (default) runs them")
      ->check(CLI::Range(0, 3));
  std::string known;
  for (const std::string &n : passes::passNames()) known += (known.empty() ? "" : ", ") + n;
  app.add_option("--disable-pass", o.disabledPasses,
                 "Turn one pass off (repeatable): " + known)
      ->allow_extra_args(false)
      ->check([](const std::string &v) { return passes::checkPassNames({v}); });
}

}  // namespace

passes::PassSettings passSettings(const Options &o) {
  passes::PassSettings s;
  s.optimize = o.optLevel > 0;
  s.disabled = o.disabledPasses;
  return s;
}

std::optional<int> parseOptions(int argc, char **argv, Options &o) {
  CLI::App app{kDescription, "mtlc"};
  app.footer(kFooter);
  app.require_subcommand(0, 1);
  addCommon(app, o);

  CLI::App *train = app.add_subcommand("train", "Compile MODEL and train it on its data");
  train->footer(kFooter);
  addCommon(*train, o);
  train->add_option("--epochs", o.epochs, "Epochs (overrides the program's `epochs`)")
      ->check(CLI::PositiveNumber);
  train->add_option("--steps", o.steps, "Stop after this many optimizer steps")
      ->check(CLI::NonNegativeNumber);
  train->add_option("--seed", o.seed, "Seed for initialisation, shuffling and dropout");
  train->add_option("--init", o.init, "Start from this safetensors checkpoint")
      ->check(CLI::ExistingFile);
  train->add_option("--save", o.save, "Write a safetensors checkpoint at the end (and on SIGINT/SIGTERM)");
  train->add_option("--checkpoint-every", o.checkpointEvery,
                    "Also write the --save checkpoint after every N steps (atomically: a crash leaves the "
                    "last complete one)")
      ->check(CLI::PositiveNumber);
  train->add_option("--resume", o.resume,
                    "Continue the run a checkpoint was written by: parameters, optimizer and weighting "
                    "state, data position; bit-identical to a run that never stopped")
      ->check(CLI::ExistingFile);
  train->add_option("--log", o.log, "Write one JSON object per step (and per epoch) here");
  std::vector<std::string> data;
  train->add_option("--data", data,
                    "Override a data source: train=PATH or test=PATH (a .csv file, an "
                    "images,labels IDX pair, or a directory of Fashion-MNIST files); repeatable")
      ->allow_extra_args(false)
      ->check([](const std::string &v) -> std::string {
        auto eq = v.find('=');
        if (eq == std::string::npos || eq + 1 == v.size()) return "expected train=PATH or test=PATH";
        std::string key = v.substr(0, eq);
        return key == "train" || key == "test" ? "" : "unknown source '" + key + "' (train or test)";
      });
  train->add_flag("-q,--quiet", o.quiet, "Print only the final report");
  train->add_option("--threads", o.threads,
                    "Threads the kernels split across, and LLVM compiles on (default 0: every CPU this "
                    "process may use); results are bit-identical for any count")
      ->check(CLI::Range(0, 1024));
  train->add_flag("--keep-denormals", o.keepDenormals,
                  "Keep denormal floats (default: flushed to zero, which only changes values below "
                  "1.2e-38 and keeps decaying optimizer state from slowing steps ~100x)");
  train->add_flag("--single-task", o.singleTask,
                  "Then train each task alone with the same settings and report Δm, the mean "
                  "relative change of the test metrics against those single-task baselines");

  CLI::App *plot = app.add_subcommand(
      "plot", "Draw a training log (--log) as a PNG through gnuplot: per task, its training and "
              "test loss, its test metrics and its weight, one panel each");
  plot->add_option("LOG", o.file, "The JSON-lines log of `mtlc train --log`")->required();
  plot->add_option("-o,--output", o.output, "The PNG file to write")->required();

  CLI::App *repl = app.add_subcommand(
      "repl", "An interactive session: type declarations and :commands (:help lists them); with "
              "stdin not a terminal, runs it as a script");
  repl->add_option("MODEL", o.file, "A .mtl program to start from")->check(CLI::ExistingFile);
  repl->add_option("--color", o.color, "Colour diagnostics: auto (on a tty), always, never")
      ->check(CLI::IsMember({"auto", "always", "never"}));
  repl->add_option("-O", o.optLevel, "Optimisation level: -O0 skips LLVM's pipeline")
      ->check(CLI::Range(0, 3));

  CLI::App *build = app.add_subcommand(
      "build", "Compile MODEL ahead of time: DIR/<model>.o and the C header DIR/<model>.h, for "
               "programs that train and predict without LLVM (see README, Embedding generated code)");
  build->footer(kFooter);
  addCommon(*build, o);
  build->add_option("--weights", o.weights, "A safetensors checkpoint: copied next to the header, or "
                                            "embedded with --embed-weights")
      ->check(CLI::ExistingFile);
  build->add_flag("--embed-weights", o.embedWeights, "Put the --weights into the object file");
  build->add_option("--mcpu", o.mcpu, "Target CPU: x86-64-v2 (default: any x86-64 machine of this "
                                      "decade), x86-64-v3, native (this machine), or an LLVM CPU name");
  build->add_option("--target", o.target, "Target triple (default: the host's)");

  // `mtlc MODEL` and `mtlc train MODEL` share option names; the main app's MODEL is only
  // required when no subcommand is given.
  app.get_option("MODEL")->required(false);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError &e) {
    int code = app.exit(e);  // prints help or the error
    return code == 0 ? 0 : 2;
  }
  for (const auto &d : data) o.data[d.substr(0, d.find('='))] = d.substr(d.find('=') + 1);
  o.build = build->parsed();
  if (train->parsed()) {
    o.command = Command::Train;
  } else if (plot->parsed()) {
    o.command = Command::Plot;
  } else if (repl->parsed()) {
    o.command = Command::Repl;
  } else if (o.file.empty()) {
    std::cerr << "mtlc: error: no input file (see mtlc --help)\n";
    return 2;
  }
  return std::nullopt;
}

}  // namespace mtlc::driver
