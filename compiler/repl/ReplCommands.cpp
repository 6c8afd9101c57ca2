// The REPL's `:commands`, and the read-eval-print loop itself (runRepl). See ReplSession.h.
#include "Repl.h"
#include "ReplLineEditor.h"
#include "ReplSession.h"

#include "ir/Builder.h"
#include "ir/Printer.h"
#include "jit/Compile.h"
#include "runtime/io/Checkpoint.h"
#include "runtime/io/SafeTensors.h"
#include "spec/Error.h"
#include "runtime/data/Batcher.h"
#include "runtime/train/Trainer.h"
#include "runtime/train/Weighting.h"
#include "syntax/Parser.h"
#include "sema/Sema.h"

#include <fmt/format.h>
#include <fmt/ostream.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <sstream>
#include <unistd.h>

namespace mtlc::driver {

namespace {

std::string trim(const std::string &s) {
  size_t b = s.find_first_not_of(" \t\r\n"), e = s.find_last_not_of(" \t\r\n");
  return b == std::string::npos ? "" : s.substr(b, e - b + 1);
}

std::string shapeStr(const std::vector<int64_t> &s) { return fmt::format("[{}]", fmt::join(s, ", ")); }

// Parses a whole non-negative integer; nullopt otherwise.
std::optional<int64_t> parseCount(const std::string &s) {
  if (s.empty() || s.size() > 15 || !std::all_of(s.begin(), s.end(), ::isdigit)) return std::nullopt;
  return std::stoll(s);
}

}  // namespace

const std::vector<ReplCommandInfo> &ReplSession::commands() {
  static const std::vector<ReplCommandInfo> cmds = {
      {":help", "[KIND]", "list the commands; with layers, blocks, losses, metrics, optimizers, weightings, schedules: those"},
      {":load", "FILE", "load a .mtl program (replaces the session's model)"},
      {":show", "[NAME]", "a declaration: shape, parameters, where it is used (all without NAME)"},
      {":ir", "[NAME]", "the forward+backward graph IR (one entry point, or the lines naming NAME)"},
      {":llvm", "[NAME]", "the optimised LLVM IR (one entry point: train_step, eval_step, predict)"},
      {":train", "[N steps | N epochs]", "train from where training stopped (default: the program's epochs)"},
      {":eval", "", "per-task metrics on the test split (the train split without one)"},
      {":predict", "TASK (row N | v1, v2, ...)", "run one sample through a task's head"},
      {":set", "KEY=VALUE", "change a train setting: lr, batch, epochs, seed, weighting, shuffle, optimizer, schedule, warmup, accumulate, lr_scale; or threads"},
      {":save", "FILE", "write a safetensors checkpoint (parameters + optimizer state)"},
      {":init", "FILE", "load parameters (and optimizer state) from a checkpoint"},
      {":time", "", "compile and step timings"},
      {":reset", "", "forget the model, its parameters and its training"},
      {":quit", "", "leave (also Ctrl-D)"},
  };
  return cmds;
}

std::vector<std::string> ReplSession::completionWords() const {
  std::vector<std::string> w = declaredNames();
  for (const char *k : {"model", "input", "shared", "task", "train", "data", "loss", "weight",
                        "metric", "optimizer", "batch", "epochs", "seed", "shuffle", "weighting",
                        "freeze", "steps", "row", "lr", "threads", "f32", "train_step", "schedule", "warmup",
                        "eval_step", "predict"})
    w.push_back(k);
  for (const auto *list : {&sema::knownLayers(), &sema::knownBlocks(), &sema::knownLosses(), &sema::knownMetrics(),
                           &sema::knownOptimizers(), &sema::knownSources(), &sema::knownWeightings(),
                           &sema::knownSchedules()})
    w.insert(w.end(), list->begin(), list->end());
  std::sort(w.begin(), w.end());
  w.erase(std::unique(w.begin(), w.end()), w.end());
  return w;
}

bool ReplSession::handle(const std::string &chunk, int firstLine) {
  std::string t = trim(chunk);
  if (t.empty() || t[0] == '#') return true;
  try {
    if (t[0] == ':') return command(t);
    addDeclarations(chunk, 0, firstLine);
  } catch (const rt::Error &e) {
    error(e.what());
  } catch (const std::exception &e) {
    error(fmt::format("internal error: {}", e.what()));
  }
  return true;
}

bool ReplSession::command(const std::string &line) {
  size_t sp = line.find_first_of(" \t");
  std::string name = line.substr(0, sp);
  std::string args = sp == std::string::npos ? "" : trim(line.substr(sp));
  // Unique prefixes work too (":tr" is :train).
  std::vector<std::string> hits;
  for (const auto &c : commands()) {
    if (name == c.name) {
      hits = {c.name};
      break;
    }
    if (std::string(c.name).rfind(name, 0) == 0) hits.push_back(c.name);
  }
  if (hits.size() != 1) {
    std::vector<std::string> all;
    for (const auto &c : commands()) all.push_back(c.name);
    error(hits.empty() ? fmt::format("unknown command '{}'{}; :help lists them", name,
                                     didYouMean(name, all))
                       : fmt::format("'{}' is ambiguous: {}", name, fmt::join(hits, ", ")));
    return true;
  }
  const std::string &c = hits[0];
  auto needArg = [&](const char *what) {
    if (!args.empty()) return true;
    error(fmt::format("{} needs {}", c, what));
    return false;
  };
  if (c == ":quit") return false;
  if (c == ":help") cmdHelp(args);
  else if (c == ":load") { if (needArg("a file")) load(args); }
  else if (c == ":show") cmdShow(args);
  else if (c == ":ir") cmdIr(args);
  else if (c == ":llvm") cmdLlvm(args);
  else if (c == ":train") cmdTrain(args);
  else if (c == ":eval") cmdEval();
  else if (c == ":predict") { if (needArg("a task and a sample")) cmdPredict(args); }
  else if (c == ":set") { if (needArg("KEY=VALUE")) cmdSet(args); }
  else if (c == ":save") { if (needArg("a file")) cmdSave(args); }
  else if (c == ":init") { if (needArg("a file")) cmdInit(args); }
  else if (c == ":time") cmdTime();
  else if (c == ":reset") { cmdReset(); fmt::print(out_, "reset: no model\n"); }
  return true;
}

namespace {

// A vocabulary row as a program spells it, with every argument and its default:
// "conv2d(channels, kernel, stride=1, padding=0)".
std::string signature(const vocab::Entry &row) {
  std::vector<std::string> args;
  for (const vocab::Arg &a : row.args) {
    if (!a.name) break;
    if (a.required) args.push_back(a.name);
    else if (a.shownDefault) args.push_back(fmt::format("{}={}", a.name, a.shownDefault));
    else if (a.type == vocab::ArgType::Bool) args.push_back(fmt::format("{}={}", a.name, a.def != 0));
    else args.push_back(fmt::format("{}={}", a.name, a.def));
  }
  return args.empty() ? row.name : fmt::format("{}({})", row.name, fmt::join(args, ", "));
}

}  // namespace

void ReplSession::cmdHelp(const std::string &kind) {
  static const std::vector<std::pair<const char *, vocab::Rows>> tables = {
      {"layers", vocab::layers()},         {"blocks", vocab::layers()},         {"losses", vocab::losses()},
      {"metrics", vocab::metrics()},       {"optimizers", vocab::optimizers()}, {"weightings", vocab::weightings()},
      {"schedules", vocab::schedules()}};
  if (!kind.empty()) {
    auto it = std::find_if(tables.begin(), tables.end(), [&](const auto &t) { return kind == t.first; });
    if (it == tables.end()) {
      std::vector<std::string> kinds;
      for (const auto &t : tables) kinds.push_back(t.first);
      error(fmt::format(":help takes one of {}, not '{}'{}", fmt::join(kinds, ", "), kind, didYouMean(kind, kinds)));
      return;
    }
    const bool blocks = kind == "blocks";
    int shown = 0;
    for (const vocab::Entry &row : it->second) {
      if (it->second.begin() == vocab::layers().begin() && blocks != ((row.flags & vocab::kBlock) != 0)) continue;
      fmt::print(out_, "  {:<44} {}\n", signature(row), row.description);
      ++shown;
    }
    if (!shown) fmt::print(out_, "  (none yet)\n");
    return;
  }
  fmt::print(out_, "Type declarations (input, shared, task, train, data) to add them to the model;\n"
                   "typing one with an existing name replaces it. Commands:\n");
  for (const auto &c : commands()) {
    std::string head = std::string(c.name) + (*c.args ? std::string(" ") + c.args : "");
    fmt::print(out_, "  {:<36} {}\n", head, c.help);
  }
}

void ReplSession::cmdShow(const std::string &name) {
  if (name.empty()) {
    if (decls_.empty()) {
      fmt::print(out_, "(no declarations)\n");
      return;
    }
    for (const auto &d : decls_) {
      const std::string where = d.origin < 0 ? std::string("(implicit)")
                                             : fmt::format("{}:{}", origins_[d.origin].name, d.firstLine);
      fmt::print(out_, "  {:<7} {:<14} {}\n", d.kind, d.name, where);
    }
    return;
  }
  auto it = std::find_if(decls_.begin(), decls_.end(),
                         [&](const Decl &d) { return d.name == name && d.kind != "model"; });
  if (it == decls_.end()) {
    if (name == "train" || name == "data" || name == "model")
      it = std::find_if(decls_.begin(), decls_.end(), [&](const Decl &d) { return d.kind == name; });
    if (it == decls_.end()) {
      error(fmt::format("no declaration named '{}'{}", name, didYouMean(name, declaredNames())));
      return;
    }
  }
  // The text, without the blank prefix of its first line.
  std::string text = it->text;
  size_t b = text.find_first_not_of(' ');
  fmt::print(out_, "{}", text.substr(b == std::string::npos ? 0 : b));
  if (!checkedModel_) {
    fmt::print(out_, "  (the program does not check, so no shapes)\n");
    return;
  }
  const sema::Model &m = *checkedModel_;
  auto printPipeline = [&](const sema::Pipeline &p) {
    std::string flow = fmt::format("{} {}", p.source, shapeStr(p.inShape));
    for (const auto &l : p.layers) flow += fmt::format(" -> {} {}", sema::layerName(l.kind), shapeStr(l.out));
    fmt::print(out_, "  shapes: {}\n", flow);
    fmt::print(out_, "  output: {} per sample\n", shapeStr(p.outShape));
  };
  for (const auto &in : m.inputs)
    if (in.name == name) fmt::print(out_, "  input: {} per sample\n", shapeStr(in.shape));
  for (const auto &p : m.shared)
    if (p.name == name) printPipeline(p);
  for (const auto &t : m.tasks)
    if (t.name == name) {
      printPipeline(t.head);
      fmt::print(out_, "  loss {}, weight {}, label width {}\n", vocab::name(t.loss), t.weight, t.labelWidth);
    }
  if (live_) {
    std::vector<std::string> ps;
    int64_t floats = 0;
    for (const auto &p : live_->compiled.spec.params)
      if (p.block == name) {
        ps.push_back(fmt::format("{} {}", p.name, shapeStr(p.shape)));
        floats += p.size;
      }
    if (!ps.empty())
      fmt::print(out_, "  parameters ({} floats): {}\n", floats, fmt::join(ps, ", "));
  }
  std::vector<std::string> users;
  auto reads = [&](const sema::Pipeline &p) {
    if (p.source == name) return true;
    for (const auto &part : p.concat)
      if (part.name == name) return true;
    return false;
  };
  for (const auto &p : m.shared)
    if (reads(p)) users.push_back("shared " + p.name);
  for (const auto &t : m.tasks)
    if (reads(t.head)) users.push_back("task " + t.name);
  for (const auto &b : m.data.inputs)
    if (b.target == name) users.push_back("data binding");
  for (const auto &b : m.data.labels)
    if (b.target == name) users.push_back("data binding (label)");
  if (it->kind != "train" && it->kind != "data" && it->kind != "model")
    fmt::print(out_, "  used by: {}\n", users.empty() ? std::string("nothing") : fmt::format("{}", fmt::join(users, ", ")));
}

void ReplSession::cmdIr(const std::string &name) {
  if (!ensureLive(":ir")) return;
  const ir::Module &mod = live_->compiled.lowered.module;
  std::ostringstream os;
  for (const auto &f : mod.functions)
    if (f->name == name) {
      ir::print(mod, *f, os);
      fmt::print(out_, "{}", os.str());
      return;
    }
  ir::print(mod, os);
  if (name.empty()) {
    fmt::print(out_, "{}", os.str());
    return;
  }
  // The lines that mention NAME, under the header of the function they belong to.
  std::istringstream in(os.str());
  std::string line, header;
  int hits = 0;
  while (std::getline(in, line)) {
    if (!line.empty() && line[0] != ' ' && line.find('{') != std::string::npos) header = line;
    if (line.find(name) == std::string::npos) continue;
    if (!header.empty()) {
      fmt::print(out_, "{}\n", header);
      header.clear();
    }
    fmt::print(out_, "{}\n", line);
    ++hits;
  }
  if (!hits) error(fmt::format("nothing in the IR names '{}' (entry points: train_step, eval_step, predict)", name));
}

void ReplSession::cmdLlvm(const std::string &name) {
  if (!ensureLive(":llvm")) return;
  // The text is only kept on demand: compile the live module again with it.
  auto code = jit::compile(live_->compiled.lowered.module, optimize_, true);
  const std::string &text = code.llvmIR;
  if (name.empty()) {
    fmt::print(out_, "{}", text);
    return;
  }
  // Entry points are `mtlc_<model>_<function>`; other functions go by their own names. The name
  // also appears in calls and in other partitions' declarations: only a `define` line counts.
  auto definition = [&](const std::string &symbol) {
    for (size_t at = text.find(symbol); at != std::string::npos; at = text.find(symbol, at + 1)) {
      size_t line = text.rfind('\n', at);
      line = line == std::string::npos ? 0 : line + 1;
      if (text.compare(line, 7, "define ") == 0) return line;
    }
    return std::string::npos;
  };
  size_t def = definition("@mtlc_" + live_->compiled.lowered.module.name + "_" + name + "(");
  if (def == std::string::npos) def = definition("@" + name + "(");
  if (def == std::string::npos) {
    error(fmt::format("no function '{}' in the LLVM module (entry points: train_step, eval_step, predict)", name));
    return;
  }
  size_t end = text.find("\n}\n", def);
  fmt::print(out_, "{}\n", text.substr(def, end == std::string::npos ? std::string::npos : end + 3 - def));
}

void ReplSession::cmdTrain(const std::string &args) {
  if (!ensureLive(":train")) return;
  std::istringstream in(args);
  std::string num, unit;
  in >> num >> unit;
  const rt::ModelSpec &spec = live_->compiled.spec;
  int64_t count = spec.train.epochs;
  if (!num.empty()) {
    auto n = parseCount(num);
    if (!n || *n == 0) {
      error(fmt::format(":train takes 'N steps' or 'N epochs' with N a positive integer, got '{}'", args));
      return;
    }
    count = *n;
  }
  if (unit.empty()) unit = "epochs";
  int64_t steps;
  if (unit == "steps" || unit == "step") {
    steps = count;
  } else if (unit == "epochs" || unit == "epoch") {
    const rt::Dataset &data = dataset("train");
    steps = count * ((data.rows + spec.train.batch - 1) / spec.train.batch);
  } else {
    error(fmt::format(":train counts 'steps' or 'epochs', not '{}'", unit));
    return;
  }
  trainSteps(steps);
}

void ReplSession::cmdEval() {
  if (!ensureLive(":eval")) return;
  const rt::ModelSpec &spec = live_->compiled.spec;
  bool test = spec.data.test.present();
  const rt::Dataset &data = dataset(test ? "test" : "train");
  auto t0 = std::chrono::steady_clock::now();
  auto results = rt::evaluate(spec, live_->params.data(), data, pool_.get());
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  time_.evalSeconds = secs;
  fmt::print(out_, "{} split, {} rows, after {} steps ({:.2f} s):\n", test ? "test" : "train (no test source)",
             data.rows, live_->optimizer->steps(), secs);
  for (const auto &r : results) {
    std::string ms;
    for (const auto &[k, v] : r.metrics) ms += fmt::format("  {} {:.4f}", k, v);
    fmt::print(out_, "  {:<12}{}\n", r.task, ms);
  }
}

namespace {

// A head's output for one sample in words: the class and its probabilities (cross_entropy), the
// probability of 1 (bce), or the values (regression).
std::string describeHead(const rt::TaskSpec &task, const std::vector<float> &o) {
  if (task.loss == rt::LossKind::CrossEntropy && task.pixels > 1) {  // per pixel: its argmax class
    const int64_t P = task.pixels, C = task.outWidth / P;
    std::vector<int64_t> classes;
    for (int64_t p = 0; p < P; ++p) {
      int64_t best = 0;
      for (int64_t c = 1; c < C; ++c)
        if (o[size_t(c * P + p)] > o[size_t(best * P + p)]) best = c;
      classes.push_back(best);
    }
    return fmt::format("class per pixel (row-major) [{}]", fmt::join(classes, ", "));
  }
  switch (task.loss) {
    case rt::LossKind::CrossEntropy: {
      float mx = *std::max_element(o.begin(), o.end());
      double z = 0;
      for (float v : o) z += std::exp(double(v - mx));
      size_t best = size_t(std::max_element(o.begin(), o.end()) - o.begin());
      std::vector<std::string> probs;
      for (float v : o) probs.push_back(fmt::format("{:.3f}", std::exp(double(v - mx)) / z));
      return fmt::format("class {} (p={:.3f}); probabilities [{}]", best, std::exp(double(o[best] - mx)) / z,
                         fmt::join(probs, ", "));
    }
    case rt::LossKind::BCE: {
      double p = 1 / (1 + std::exp(-double(o[0])));
      return fmt::format("p={:.4f} -> {}", p, p >= 0.5 ? 1 : 0);
    }
    case rt::LossKind::MSE:
    case rt::LossKind::L1:
    case rt::LossKind::Cosine: break;
  }
  std::vector<std::string> vs;
  for (float v : o) vs.push_back(fmt::format("{:.4f}", v));
  return fmt::format("[{}]", fmt::join(vs, ", "));
}

}  // namespace

void ReplSession::cmdPredict(const std::string &args) {
  if (!ensureLive(":predict")) return;
  const rt::ModelSpec &spec = live_->compiled.spec;
  std::istringstream in(args);
  std::string task;
  in >> task;
  std::string rest;
  std::getline(in, rest);
  rest = trim(rest);
  auto ti = std::find_if(spec.tasks.begin(), spec.tasks.end(), [&](const rt::TaskSpec &t) { return t.name == task; });
  if (ti == spec.tasks.end()) {
    error(fmt::format("no task named '{}'{}", task, didYouMean(task, taskNames())));
    return;
  }
  if (rest.empty()) {
    error(":predict TASK needs 'row N' or the input values 'v1, v2, ...'");
    return;
  }
  const size_t T = spec.tasks.size(), I = spec.inputs.size();
  std::vector<std::vector<float>> inputs(I);
  std::string labelText;
  if (rest.rfind("row", 0) == 0) {
    auto n = parseCount(trim(rest.substr(3)));
    bool test = spec.data.test.present();
    const rt::Dataset &data = dataset(test ? "test" : "train");
    if (!n || *n >= data.rows) {
      error(fmt::format("row must be a number in [0, {}) (the {} split), got '{}'", data.rows,
                        test ? "test" : "train", trim(rest.substr(3))));
      return;
    }
    for (size_t i = 0; i < I; ++i) {  // readFloats: a memory-mapped view's floats may be misaligned
      const auto &f = data.inputs[i];
      inputs[i].resize(size_t(f.width));
      if (!f.data.readFloats(size_t(*n * f.width), size_t(f.width), inputs[i].data())) {
        error(fmt::format("{}: cannot read row {}: {}", data.origin, *n, std::strerror(errno)));
        return;
      }
    }
    size_t t = size_t(ti - spec.tasks.begin());
    const auto &lf = data.labels[t];
    std::vector<std::string> ls;
    for (int64_t k = 0; k < lf.width; ++k) ls.push_back(fmt::format("{:g}", lf.data[size_t(*n * lf.width + k)]));
    labelText = fmt::format("label {}", fmt::join(ls, ", "));
  } else {
    std::vector<float> values;
    std::string s = rest;
    std::replace(s.begin(), s.end(), ',', ' ');
    std::istringstream vs(s);
    std::string tok;
    while (vs >> tok) {
      char *end = nullptr;
      float v = std::strtof(tok.c_str(), &end);
      if (!end || *end) {
        error(fmt::format("'{}' is not a number", tok));
        return;
      }
      values.push_back(v);
    }
    int64_t want = 0;
    for (const auto &i : spec.inputs) want += i.size;
    if (int64_t(values.size()) != want) {
      error(fmt::format("the model's inputs take {} values per sample, got {}", want, values.size()));
      return;
    }
    size_t at = 0;
    for (size_t i = 0; i < I; ++i) {
      inputs[i].assign(values.begin() + at, values.begin() + at + spec.inputs[i].size);
      at += size_t(spec.inputs[i].size);
    }
  }
  // Embedding inputs take class indices: refused outside [0, categories) or fractional, NaN
  // included, as the C API refuses them (the kernels would clamp them to a row silently).
  for (size_t i = 0; i < I; ++i) {
    const rt::InputSpec &in = spec.inputs[i];
    if (in.categories <= 0) continue;
    for (size_t k = 0; k < inputs[i].size(); ++k) {
      float v = inputs[i][k];
      if (!(v >= 0 && v < float(in.categories) && v == std::floor(v))) {
        error(fmt::format("input `{}` value {} is {}, not an index in [0, {})", in.name, k, v, in.categories));
        return;
      }
    }
  }
  std::vector<const float *> inPtrs(I);
  for (size_t i = 0; i < I; ++i) inPtrs[i] = inputs[i].data();
  std::vector<std::vector<float>> labels(T), outs(T);
  std::vector<const float *> labelPtrs(T);
  std::vector<float *> outPtrs(T);
  for (size_t t = 0; t < T; ++t) {
    labels[t].assign(size_t(spec.tasks[t].labelWidth), 0.f);
    labelPtrs[t] = labels[t].data();
    outs[t].assign(size_t(spec.tasks[t].outWidth), 0.f);
    outPtrs[t] = outs[t].data();
  }
  std::vector<float> weights = rt::lossWeights(spec), losses(T + 1);
  mtlc_args a{};
  a.params = live_->params.data();
  a.acts = live_->acts.data();
  a.inputs = inPtrs.data();
  a.labels = labelPtrs.data();
  a.loss_weights = weights.data();
  a.losses = losses.data();
  a.outputs = outPtrs.data();
  a.n = 1;
  (spec.predict ? spec.predict : spec.evalStep)(&a);
  const std::string result = describeHead(*ti, outs[size_t(ti - spec.tasks.begin())]);
  fmt::print(out_, "{}: {}{}\n", task, result, labelText.empty() ? "" : "   (" + labelText + ")");
}

void ReplSession::cmdSet(const std::string &args) {
  size_t eq = args.find('=');
  if (eq == std::string::npos) {
    error(":set takes KEY=VALUE, e.g. :set lr=0.01");
    return;
  }
  std::string key = trim(args.substr(0, eq)), value = trim(args.substr(eq + 1));
  if (key == "threads") {  // not part of the program: needs no model
    std::string problem = setThreads(value);
    if (!problem.empty()) error(problem);
    return;
  }
  if (decls_.empty()) {
    error(":set needs a model: type declarations or :load FILE first");
    return;
  }
  std::string problem = setTrainSetting(key, value);
  if (!problem.empty()) error(problem);
}

void ReplSession::cmdSave(const std::string &path) {
  if (!ensureLive(":save")) return;
  rt::saveCheckpoint(path, live_->compiled.spec, live_->params.data(), live_->optimizer.get());
  fmt::print(out_, "saved {} ({} tensors, {} optimizer steps)\n", path, live_->compiled.spec.params.size(),
             live_->optimizer->steps());
}

void ReplSession::cmdInit(const std::string &path) {
  if (!ensureLive(":init")) return;
  // As `mtlc train --init`: every parameter whose name and shape match a tensor of the file is
  // loaded (an error when none does), and the rest is reported. The others keep the session's
  // values. Only a checkpoint of this very model restores the optimizer state too.
  const rt::ModelSpec &spec = live_->compiled.spec;
  rt::TensorFile file = rt::readSafeTensors(path);
  rt::InitReport ir = rt::loadMatchingParams(file, path, spec, live_->params.data());
  if (ir.complete() && ir.unused.empty()) {
    bool opt = rt::loadOptimizerState(file, path, spec, *live_->optimizer);
    fmt::print(out_, "loaded parameters{} from {}\n", opt ? " and optimizer state" : "", path);
    return;
  }
  fmt::print(out_, "loaded {} of {} parameters from {} (a checkpoint of another model: optimizer state not "
                   "restored)\n", ir.loaded.size(), spec.params.size(), path);
  fmt::print(out_, "init: loaded {}\n", fmt::join(ir.loaded, ", "));
  if (!ir.fresh.empty()) fmt::print(out_, "init: kept the session's values of {}\n", fmt::join(ir.fresh, ", "));
  if (!ir.unused.empty()) fmt::print(out_, "init: not used from the checkpoint: {}\n", fmt::join(ir.unused, ", "));
}

void ReplSession::cmdTime() {
  fmt::print(out_, "last check:   parse {:.1f} ms, sema {:.1f} ms\n", time_.parseMs, time_.semaMs);
  if (time_.compiles) {
    fmt::print(out_, "last compile: {:.1f} ms (lower+passes {:.1f} ms, codegen+jit {:.1f} ms) after: {}\n",
               time_.lastCompileMs, time_.lowerMs, time_.codegenMs, time_.lastReason);
    fmt::print(out_, "compiles:     {}", time_.compiles);
    for (const auto &[reason, ms] : time_.history) fmt::print(out_, "\n  {:>8.1f} ms  {}", ms, reason);
    fmt::print(out_, "\n");
  } else {
    fmt::print(out_, "compiles:     none yet\n");
  }
  if (time_.trainSteps)
    fmt::print(out_, "training:     {} steps in {:.2f} s ({:.3f} ms/step last run, {:.0f} samples/s overall)\n",
               time_.trainSteps, time_.trainSeconds, time_.lastStepMs,
               time_.trainSeconds > 0 ? double(time_.trainSamples) / time_.trainSeconds : 0.0);
  if (time_.evalSeconds > 0) fmt::print(out_, "last eval:    {:.2f} s\n", time_.evalSeconds);
  fmt::print(out_, "kernels:      {} loaded (the live model's and those compiled with them)\n",
             incremental_.cachedKernels());
}

void ReplSession::cmdReset() {
  decls_.clear();
  origins_.resize(1);
  checkedModel_.reset();
  live_.reset();
  trainData_.reset();
  testData_.reset();
  dataKey_.clear();
  basePath_ = "repl.mtl";
  weighting_.reset();
  resetTrainingPosition();
}

// ---- :set: rewrites the train declaration -----------------------------------------------------

std::string ReplSession::setThreads(const std::string &value) {
  int threads = -1;
  auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), threads);
  if (ec != std::errc() || end != value.data() + value.size() || threads < 0 || threads > 1024)
    return fmt::format(":set threads takes a count from 0 (every CPU) to 1024, not '{}'", value);
  pool_ = std::make_unique<rt::ThreadPool>(threads);
  fmt::print(out_, "threads = {}\n", pool_->threads());
  return "";
}

std::string ReplSession::setTrainSetting(const std::string &key, const std::string &value) {
  static const std::vector<std::string> keys = {"lr",       "batch",    "epochs",   "seed",       "weighting",
                                                "shuffle",  "optimizer", "momentum", "schedule",  "warmup",
                                                "accumulate", "lr_scale"};
  if (std::find(keys.begin(), keys.end(), key) == keys.end())
    return fmt::format("unknown setting '{}'{}; :set takes {}", key, didYouMean(key, keys),
                       fmt::format("{}", fmt::join(keys, ", ")));
  if (value.empty()) return fmt::format(":set {} needs a value", key);
  auto it = std::find_if(decls_.begin(), decls_.end(), [](const Decl &d) { return d.kind == "train"; });
  // The settings as lines "name value", from the current train block (or the defaults).
  std::vector<std::pair<std::string, std::string>> settings;
  if (it != decls_.end()) {
    Diagnostics diags("<train>", it->text);
    auto ast = parseProgram("<train>", it->text, diags);
    if (ast && !ast->trains.empty())
      for (const auto &s : ast->trains[0].settings) {
        auto text = [](const std::string &key, bool isCall, const ast::Call &c, const ast::Value &v) {
          return (key.empty() ? "" : key + "=") + (isCall ? ast::str(c) : v.text);
        };
        std::string v = text(s.key, s.isCall, s.call, s.value);
        for (const auto &m : s.more) v += ", " + text(m.key, m.isCall, m.call, m.value);
        settings.push_back({s.name, v});
      }
  }
  auto find = [&](const std::string &name) {
    return std::find_if(settings.begin(), settings.end(), [&](const auto &s) { return s.first == name; });
  };
  auto put = [&](const std::string &name, const std::string &v) {
    auto s = find(name);
    if (s != settings.end()) s->second = v;
    else settings.push_back({name, v});
  };
  if (key == "lr" || key == "momentum") {
    auto s = find("optimizer");
    std::string opt = s == settings.end() ? vocab::name(rt::OptimizerSpec{}.kind) : s->second;  // the default
    // Rewrite or add the keyword argument inside optimizer(...).
    std::string name = opt.substr(0, opt.find('('));
    std::vector<std::string> kw;
    if (opt.find('(') != std::string::npos) {
      std::string inside = opt.substr(opt.find('(') + 1);
      inside = inside.substr(0, inside.rfind(')'));
      std::istringstream ks(inside);
      std::string a;
      while (std::getline(ks, a, ','))
        if (!trim(a).empty() && trim(a).rfind(key + "=", 0) != 0) kw.push_back(trim(a));
    }
    kw.insert(kw.begin(), key + "=" + value);
    put("optimizer", fmt::format("{}({})", name, fmt::join(kw, ", ")));
  } else {
    put(key, value);
  }
  std::string text = "train {\n";
  for (const auto &[n, v] : settings) text += fmt::format("  {:<9} {}\n", n, v);
  text += "}\n";
  // The rewritten block is typed input: a bad value is reported against this line.
  std::string line = fmt::format("# :set {}={}", key, value);
  (void)line;
  int before = errors_;
  Decl d;
  d.kind = "train";
  d.text = text;
  d.origin = static_cast<int>(origins_.size());
  origins_.push_back({"<:set " + key + ">", text});
  d.firstLine = 1;
  std::optional<Decl> old;
  if (it != decls_.end()) {
    old = *it;
    *it = d;
  } else {
    decls_.push_back(d);
  }
  if (!rebuild(":set " + key + "=" + value) || errors_ != before) {
    // Put the old block back so that the session keeps a working model.
    if (old) {
      auto cur = std::find_if(decls_.begin(), decls_.end(), [](const Decl &x) { return x.kind == "train"; });
      *cur = *old;
    } else {
      decls_.erase(std::remove_if(decls_.begin(), decls_.end(), [](const Decl &x) { return x.kind == "train"; }),
                   decls_.end());
    }
    quiet_ = true;
    rebuild("undo :set");
    quiet_ = false;
    fmt::print(err_, "(not set: the model is unchanged)\n");
    return "";  // the diagnostics said why
  }
  if (key == "batch" || key == "seed" || key == "shuffle") batcher_.reset();
  fmt::print(out_, "{} = {}\n", key, value);
  return "";
}

// ---- the loop -------------------------------------------------------------------------------------

namespace {

// Brace depth change of one line, outside strings and comments.
int braceDelta(const std::string &line) {
  int d = 0;
  bool str = false;
  for (size_t i = 0; i < line.size(); ++i) {
    char c = line[i];
    if (str) {
      if (c == '\\') ++i;
      else if (c == '"') str = false;
    } else if (c == '"') {
      str = true;
    } else if (c == '#') {
      break;
    } else if (c == '{') {
      ++d;
    } else if (c == '}') {
      --d;
    }
  }
  return d;
}

}  // namespace

int runRepl(const std::string &file, const std::string &color, bool optimize) {
  const bool interactive = isatty(STDIN_FILENO);
  bool colour = color == "always" || (color == "auto" && interactive && isatty(STDERR_FILENO));
  ReplSession session(std::cout, std::cerr, colour, optimize);

  std::string history;
  if (const char *h = std::getenv("MTLC_HISTORY")) history = h;
  else if (const char *home = std::getenv("HOME")) history = std::string(home) + "/.mtlc_history";
  ReplLineEditor editor(interactive, history, [&](const std::string &line, const std::string &word) {
    std::vector<std::string> out;
    std::string l = trim(line);
    bool first = line.find_first_not_of(" \t") == std::string::npos ||
                 line.substr(line.find_first_not_of(" \t")).find_first_of(" \t") == std::string::npos;
    if (first && (word.empty() || word[0] == ':')) {
      for (const auto &c : ReplSession::commands())
        if (std::string(c.name).rfind(word, 0) == 0) out.push_back(c.name);
      if (!word.empty()) return out;
    }
    for (const auto &w : session.completionWords())
      if (w.rfind(word, 0) == 0) out.push_back(w);
    return out;
  });

  if (interactive)
    std::cout << "mtlc repl: declarations add to the model, :help lists the commands, :quit leaves\n";
  if (!file.empty()) session.load(file);

  int lineNo = 0;
  using Status = ReplLineEditor::Status;
  std::string line;
  for (;;) {
    Status status = editor.readLine("mtl> ", line);
    if (status == Status::End) break;
    if (status == Status::Interrupted) continue;  // Ctrl-C: the line is gone, a new prompt
    session.addInputLine(line);
    int first = ++lineNo;
    std::string chunk = line;
    int depth = braceDelta(line);
    while (depth > 0) {
      status = editor.readLine("...> ", line);
      if (status != Status::Line) break;
      session.addInputLine(line);
      ++lineNo;
      chunk += "\n" + line;
      depth += braceDelta(line);
    }
    if (!trim(chunk).empty()) editor.addHistory(chunk);
    if (status == Status::Interrupted) continue;  // Ctrl-C in a declaration drops all of it
    std::cout.flush();
    if (!session.handle(chunk, first)) break;
    std::cout.flush();
  }
  if (interactive) std::cout << "\n";
  // Scripts fail (exit 1) when any of their lines did; an interactive session ends normally.
  return !interactive && session.errorCount() > 0 ? 1 : 0;
}

}  // namespace mtlc::driver
