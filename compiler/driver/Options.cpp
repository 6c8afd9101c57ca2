#include "Options.h"

#include "syntax/Diagnostics.h"

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <llvm/Config/llvm-config.h>

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <filesystem>
#include <iostream>
#include <limits>

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

constexpr const char *kVersion = "0.1.0";

const std::vector<std::pair<std::string, Emit>> &emitForms() {
  static const std::vector<std::pair<std::string, Emit>> forms{
      {"ast", Emit::Ast}, {"ir", Emit::Ir}, {"ir-opt", Emit::IrOpt}, {"llvm", Emit::Llvm}};
  return forms;
}

// A whole number from `lo` to `hi`, the error in plain words ("expected a whole number of at
// least 1, got 0"), never CLI11's range with the type's limits spelt out.
CLI::Validator wholeNumber(int64_t lo, int64_t hi = std::numeric_limits<int64_t>::max()) {
  const std::string range = hi == std::numeric_limits<int64_t>::max() ? fmt::format("of at least {}", lo)
                                                                       : fmt::format("from {} to {}", lo, hi);
  return CLI::Validator(
      [lo, hi, range](std::string &text) -> std::string {
        int64_t n = 0;
        const char *end = text.data() + text.size();
        auto [ptr, ec] = std::from_chars(text.data(), end, n);
        if (ec == std::errc::result_out_of_range || (ec == std::errc() && ptr == end && (n < lo || n > hi)))
          return fmt::format("expected a whole number {}, got {}", range, text);
        if (ec != std::errc() || ptr != end) return fmt::format("expected a whole number {}, got '{}'", range, text);
        return "";
      },
      "", "whole number");
}

void addCommon(CLI::App &app, Options &o, std::string &emitName, const char *outputHelp) {
  app.add_option("MODEL", o.file, "The .mtl program")->required()->check(CLI::ExistingFile);
  app.add_option("--emit", emitName,
                 "Print an intermediate form instead of running: ast (syntax tree), ir (forward "
                 "and backward graphs as lowered), ir-opt (the graphs after the passes, fusion "
                 "groups marked), llvm (the generated, optimised LLVM IR, one module)")
      ->check(CLI::Validator(
          [](std::string &v) -> std::string {
            for (const auto &[name, form] : emitForms())
              if (CLI::detail::to_lower(v) == name) return "";
            return fmt::format("'{}' is not a form mtlc can print; the forms are ast, ir, ir-opt and llvm", v);
          },
          "", "emit form"));
  app.add_option("-o,--output", o.output, outputHelp);
  app.add_option("--color", o.color, "Colour diagnostics: auto (on a tty), always, never")
      ->check(CLI::IsMember({"auto", "always", "never"}));
  app.add_option("-O", o.optLevel,
                 "Optimisation level: -O0 turns every pass off (graph passes, fusion, LLVM's "
                 "pipeline), -O3 (default) runs them")
      ->check(wholeNumber(0, 3));
  std::string known;
  for (const std::string &n : passes::passNames()) known += (known.empty() ? "" : ", ") + n;
  app.add_option("--disable-pass", o.disabledPasses,
                 "Turn one pass off (repeatable): " + known)
      ->allow_extra_args(false)
      ->check([](const std::string &v) { return passes::checkPassNames({v}); });
}

// The option of `app` or of one of its subcommands that `arg` ("--epochs", "--epochs=3", "-O3")
// names; null if none.
const CLI::Option *findOption(const CLI::App &app, const std::string &arg) {
  std::string name = arg.substr(0, arg.find('='));
  if (name.size() > 2 && name[0] == '-' && name[1] != '-') name = name.substr(0, 2);  // -O3
  for (const CLI::Option *opt : app.get_options())
    if (opt->check_name(name)) return opt;
  return nullptr;
}

// After CLI11 rejected the command line: a clearer message for two common mistakes, or "" to
// let CLI11's stand. A misspelt command (`mtlc trian x.mtl`) and an option of one command given
// to another (`mtlc --epochs 3 x.mtl`: --epochs belongs to `mtlc train`).
std::string explainMistake(const CLI::App &app, int argc, char **argv) {
  std::vector<const CLI::App *> commands = app.get_subcommands([](const CLI::App *) { return true; });
  std::vector<std::string> names;
  for (const CLI::App *c : commands) names.push_back(c->get_name());
  const CLI::App *active = &app;
  bool sawPositional = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg.size() > 1 && arg[0] == '-') {
      const CLI::Option *own = findOption(*active, arg);
      if (own) {
        // Its value, when it takes one and is not attached (`-o out.ll`), is not a word to read.
        if (own->get_type_size_min() > 0 && arg.find('=') == std::string::npos &&
            !(arg.size() > 2 && arg[1] != '-'))
          ++i;
        continue;
      }
      for (const CLI::App *c : commands)
        if (c != active && findOption(*c, arg))
          return fmt::format("{} is an option of `mtlc {}`{}; write `mtlc {} {} ...`", arg.substr(0, arg.find('=')),
                             c->get_name(), active == &app ? "" : fmt::format(", not of `mtlc {}`", active->get_name()),
                             c->get_name(), arg);
      continue;
    }
    if (active == &app && !sawPositional) {
      auto it = std::find(names.begin(), names.end(), arg);
      if (it != names.end()) {
        active = commands[size_t(it - names.begin())];
        continue;
      }
      std::error_code ec;
      std::string near = closestMatch(arg, names);
      if (!near.empty() && !std::filesystem::exists(arg, ec))
        return fmt::format("unknown command '{}'; did you mean '{}'? (the commands are {})", arg, near,
                           fmt::join(names, ", "));
    }
    sawPositional = true;
  }
  return "";
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
  // CLI11's own messages in the form of the compiler's ("mtlc: error: ...").
  app.failure_message([](const CLI::App *, const CLI::Error &e) {
    return fmt::format("mtlc: error: {}\n(mtlc --help lists the commands and options)\n", e.what());
  });
  app.set_version_flag("--version", fmt::format("mtlc {} (LLVM {})", kVersion, LLVM_VERSION_STRING),
                       "Print mtlc's version and exit");
  std::string emitName;
  const char *emitOutput = "Write --emit output to this file instead of stdout";
  addCommon(app, o, emitName, emitOutput);

  CLI::App *train = app.add_subcommand("train", "Compile MODEL and train it on its data");
  train->footer(kFooter);
  addCommon(*train, o, emitName, emitOutput);
  train->add_option("--epochs", o.epochs, "Epochs (overrides the program's `epochs`)")->check(wholeNumber(1));
  train->add_option("--steps", o.steps, "Stop after this many optimizer steps")->check(wholeNumber(0));
  train->add_option("--seed", o.seed, "Seed for initialisation, shuffling and dropout");
  train->add_option("--init", o.init, "Start from this safetensors checkpoint")
      ->check(CLI::ExistingFile);
  train->add_option("--save", o.save, "Write a safetensors checkpoint at the end (and on SIGINT/SIGTERM)");
  train->add_option("--save-best", o.saveBest,
                    "Write the checkpoint of the best epoch on the validation set (`select`) to FILE");
  train->add_option("--checkpoint-every", o.checkpointEvery,
                    "Also write the --save checkpoint after every N steps (atomically: a crash leaves the "
                    "last complete one)")
      ->check(wholeNumber(1));
  train->add_option("--resume", o.resume,
                    "Continue the run a checkpoint was written by: parameters, optimizer and weighting "
                    "state, data position; bit-identical to a run that never stopped")
      ->check(CLI::ExistingFile);
  train->add_option("--log", o.log, "Write one JSON object per step (and per epoch) here");
  std::vector<std::string> data;
  train->add_option("--data", data,
                    "Override a data source: train=PATH or test=PATH (a .csv, .npz or .npy file, an "
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
      ->check(wholeNumber(0, 1024));
  train->add_flag("--keep-denormals", o.keepDenormals,
                  "Keep denormal floats (default: flushed to zero, which only changes values below "
                  "1.2e-38 and keeps decaying optimizer state from slowing steps ~100x)");
  train->add_flag("--single-task", o.singleTask,
                  "Then train each task alone with the same settings and report Δm, the mean "
                  "relative change of the test metrics against those single-task baselines");
  auto *seeds = train->add_option("--seeds", o.seeds,
                                  "Train N times with seeds seed, seed+1, …, seed+N−1 (seed: --seed, else the "
                                  "program's) and report each task's test metrics, and Δm with --single-task, as "
                                  "mean ± sample standard deviation; --log/--save/--save-best files get a "
                                  "`.seedS` suffix before their extension")
                      ->check(wholeNumber(1, 1000));

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
  repl->add_option("-O", o.optLevel, "Optimisation level: -O0 skips LLVM's pipeline")->check(wholeNumber(0, 3));

  CLI::App *build = app.add_subcommand(
      "build", "Compile MODEL ahead of time: DIR/<model>.o and the C header DIR/<model>.h, for "
               "programs that train and predict without LLVM (see README, Embedding generated code)");
  build->footer(kFooter);
  addCommon(*build, o, emitName,
            "The output folder (created if missing) for <model>.o, <model>.h and, with --weights, "
            "<model>.safetensors; required");
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
    if (e.get_exit_code() != 0) {
      if (std::string why = explainMistake(app, argc, argv); !why.empty()) {
        std::cerr << "mtlc: error: " << why << "\n";
        return 2;
      }
    }
    int code = app.exit(e);  // prints help, the version or the error
    return code == 0 ? 0 : 2;
  }
  for (const auto &[name, form] : emitForms())
    if (CLI::detail::to_lower(emitName) == name) o.emit = form;
  for (const auto &d : data) o.data[d.substr(0, d.find('='))] = d.substr(d.find('=') + 1);
  o.build = build->parsed();
  if (train->parsed()) {
    o.command = Command::Train;
    if (seeds->count() && !o.resume.empty()) {
      std::cerr << "mtlc: error: --seeds with --resume: a checkpoint continues one run of one seed; resume "
                   "each seed's run on its own (its --save file is FILE.seedS.safetensors), without --seeds\n";
      return 2;
    }
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
