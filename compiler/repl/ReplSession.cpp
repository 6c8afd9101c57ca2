// The REPL's state: declarations as source text, re-checking, recompiling with parameter carry-over,
// and the training loop. See ReplSession.h.
#include "ReplSession.h"
#include "ReplLineEditor.h"

#include "runtime/data/Batcher.h"
#include "runtime/io/Checkpoint.h"
#include "spec/Error.h"
#include "runtime/parallel/FloatMode.h"
#include "runtime/train/Init.h"
#include "runtime/train/Schedule.h"
#include "runtime/io/Progress.h"
#include "runtime/core/Rng.h"
#include "runtime/io/SafeTensors.h"
#include "runtime/train/Trainer.h"
#include "runtime/train/Weighting.h"
#include "sema/Sema.h"
#include "syntax/Parser.h"
#include "syntax/SourceFile.h"

#include <fmt/format.h>
#include <fmt/ostream.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <sstream>
#include <unistd.h>

namespace mtlc::driver {

namespace {

double msSince(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

std::vector<std::string> splitLines(const std::string &text) {
  std::vector<std::string> lines;
  std::string cur;
  for (char c : text) {
    if (c == '\n') {
      lines.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  lines.push_back(cur);
  return lines;
}

// Byte offset of 1-based code-point column `col` in `line` (columns count code points).
size_t byteOfColumn(const std::string &line, int col) {
  size_t i = 0;
  int c = 1;
  while (i < line.size() && c < col) {
    ++i;
    while (i < line.size() && (static_cast<unsigned char>(line[i]) & 0xC0) == 0x80) ++i;
    ++c;
  }
  return i;
}

const char *kindName(ast::Program::ItemKind k) {
  switch (k) {
    case ast::Program::ItemKind::Model: return "model";
    case ast::Program::ItemKind::Input: return "input";
    case ast::Program::ItemKind::Shared: return "shared";
    case ast::Program::ItemKind::Task: return "task";
    case ast::Program::ItemKind::Train: return "train";
    case ast::Program::ItemKind::Data: return "data";
  }
  return "?";
}

std::string declKey(const std::string &kind, const std::string &name) {
  if (kind == "input" || kind == "shared" || kind == "task") return "name:" + name;
  return kind;
}

}  // namespace

ReplSession::ReplSession(std::ostream &out, std::ostream &err, bool colour, bool optimize)
    : out_(out), err_(err), colour_(colour), optimize_(optimize) {
  origins_.push_back({"<input>", ""});
}

ReplSession::~ReplSession() = default;

void ReplSession::addInputLine(const std::string &line) {
  origins_[0].text += line;
  origins_[0].text += '\n';
}

void ReplSession::error(const std::string &message) {
  ++errors_;
  if (colour_)
    fmt::print(err_, "\033[1;31merror:\033[0m {}\n", message);
  else
    fmt::print(err_, "error: {}\n", message);
}

std::vector<std::string> ReplSession::declaredNames() const {
  std::vector<std::string> names;
  for (const auto &d : decls_)
    if (!d.name.empty() && d.kind != "model") names.push_back(d.name);
  return names;
}

std::vector<std::string> ReplSession::taskNames() const {
  std::vector<std::string> names;
  for (const auto &d : decls_)
    if (d.kind == "task") names.push_back(d.name);
  return names;
}

// ---- declarations -------------------------------------------------------------------------------

bool ReplSession::addDeclarations(const std::string &text, int origin, int firstLine) {
  // Parse the chunk alone, padded so that its lines have their origin's line numbers: syntax
  // errors then point at the line and column where they were typed.
  std::string padded(static_cast<size_t>(firstLine - 1), '\n');
  padded += text;
  Diagnostics diags(origins_[origin].name, origins_[origin].text);
  auto ast = parseProgram(origins_[origin].name, padded, diags);
  if (!ast || diags.hasErrors()) {
    renderDiagnostics(diags);
    return false;
  }
  if (ast->order.empty()) return true;  // only comments
  std::vector<Decl> before = decls_;
  std::vector<std::string> lines = splitLines(padded);
  std::vector<std::string> changed;
  for (const auto &item : ast->order) {
    Decl d;
    d.kind = kindName(item.kind);
    switch (item.kind) {
      case ast::Program::ItemKind::Model: d.name = ast->models[item.index].name; break;
      case ast::Program::ItemKind::Input: d.name = ast->inputs[item.index].name; break;
      case ast::Program::ItemKind::Shared: d.name = ast->shared[item.index].name; break;
      case ast::Program::ItemKind::Task: d.name = ast->tasks[item.index].name; break;
      default: break;
    }
    int b = item.loc.begin.line, e = item.loc.end.line;
    for (int l = b; l <= e && l >= 1 && l <= static_cast<int>(lines.size()); ++l) {
      std::string s = lines[l - 1];
      if (l == e) s = s.substr(0, byteOfColumn(s, item.loc.end.column + 1));
      if (l == b) {
        size_t start = byteOfColumn(s, item.loc.begin.column);
        s = std::string(static_cast<size_t>(item.loc.begin.column - 1), ' ') + s.substr(start);
      }
      d.text += s;
      d.text += '\n';
    }
    d.origin = origin;
    d.firstLine = b;
    std::string key = declKey(d.kind, d.name);
    auto it = std::find_if(decls_.begin(), decls_.end(),
                           [&](const Decl &o) { return declKey(o.kind, o.name) == key; });
    changed.push_back(d.kind + (d.name.empty() ? "" : " " + d.name) +
                      (it != decls_.end() ? " (replaced)" : ""));
    if (it != decls_.end())
      *it = std::move(d);
    else
      decls_.push_back(std::move(d));
  }
  std::string reason;
  for (size_t i = 0; i < changed.size(); ++i) reason += (i ? ", " : "") + changed[i];
  int errorsBefore = errors_;
  if (rebuild(reason)) return true;
  // Errors inside what was just typed: take it back, so that a typo never breaks the model.
  // (Errors elsewhere, such as a data block that does not bind a new task yet, keep it: the
  // program is then incomplete until the user fixes them.)
  // (`model NAME` holds nothing but a name: errors located there are about the program as a
  // whole, such as its having no task yet, not the line's fault.)
  bool own = false;
  for (size_t i : errorDecls_)
    if (i < decls_.size() && decls_[i].origin == origin && decls_[i].firstLine >= firstLine &&
        decls_[i].kind != "model")
      own = true;
  if (!own || origin != 0) {
    // Reported, but they are not this input's fault: it does not fail a script. (A loaded file
    // with errors is kept, so that its declarations can be fixed one by one.)
    if (!own) errors_ = errorsBefore;
    fmt::print(err_, "(added, but the program does not check yet{})\n",
               live_ ? "; commands use the last model that compiled once it does" : "");
    return true;
  }
  decls_ = std::move(before);
  quiet_ = true;
  rebuild("undo");
  quiet_ = false;
  fmt::print(err_, "(not added: the model is unchanged)\n");
  return false;
}

std::string ReplSession::combinedText() {
  std::string text;
  int line = 1;
  auto append = [&](Decl &d) {
    d.combinedLine = line;
    text += d.text;
    line += static_cast<int>(std::count(d.text.begin(), d.text.end(), '\n'));
  };
  auto model = std::find_if(decls_.begin(), decls_.end(), [](const Decl &d) { return d.kind == "model"; });
  if (model == decls_.end()) {
    // A session without `model NAME` is model `repl`.
    decls_.insert(decls_.begin(), Decl{"model", "repl", "model repl\n", -1, 1, 0});
    model = decls_.begin();
  }
  append(*model);
  for (auto &d : decls_)
    if (d.kind != "model") append(d);
  return text;
}

void ReplSession::renderDiagnostics(const Diagnostics &diags) {
  // Diagnostics of a combined program are mapped back to where each declaration came from.
  bool combined = diags.file() == "<program>";
  errorDecls_.clear();
  for (const auto &dg : diags.diagnostics()) {
    if (combined && dg.severity == Severity::Error)
      for (size_t i = 0; i < decls_.size(); ++i) {
        const Decl &d = decls_[i];
        int n = static_cast<int>(std::count(d.text.begin(), d.text.end(), '\n'));
        if (dg.range.begin.line >= d.combinedLine && dg.range.begin.line < d.combinedLine + n)
          errorDecls_.push_back(i);
      }
    if (quiet_) continue;
    if (dg.severity == Severity::Error) ++errors_;
    if (!combined) {
      diags.render(err_, dg, colour_);
      continue;
    }
    Diagnostic m = dg;
    const Decl *owner = nullptr;
    for (const auto &d : decls_) {
      int n = static_cast<int>(std::count(d.text.begin(), d.text.end(), '\n'));
      if (dg.range.begin.line >= d.combinedLine && dg.range.begin.line < d.combinedLine + n) owner = &d;
    }
    if (!owner || owner->origin < 0 || dg.range.begin.line == 0) {
      m.range = SourceRange{};
      Diagnostics(owner && owner->origin >= 0 ? origins_[owner->origin].name : "<model>", "")
          .render(err_, m, colour_);
      continue;
    }
    int shift = owner->firstLine - owner->combinedLine;
    m.range.begin.line += shift;
    m.range.end.line += shift;
    const Origin &o = origins_[owner->origin];
    Diagnostics(o.name, o.text).render(err_, m, colour_);
  }
}

// ---- checking and compiling -----------------------------------------------------------------------

bool ReplSession::rebuild(const std::string &reason) {
  if (decls_.empty()) return true;
  CheckedProgram p;
  p.path = basePath_;
  p.displayName = "<program>";
  p.text = combinedText();
  p.diags = std::make_unique<Diagnostics>(p.displayName, p.text);
  auto t0 = std::chrono::steady_clock::now();
  auto ast = parseProgram(p.displayName, p.text, *p.diags);
  p.times.parseMs = msSince(t0);
  if (ast && !p.diags->hasErrors()) {
    t0 = std::chrono::steady_clock::now();
    p.model = sema::analyze(*ast, basePath_, *p.diags);
    p.times.semaMs = msSince(t0);
    if (p.diags->hasErrors()) p.model.reset();
  }
  renderDiagnostics(*p.diags);
  time_.parseMs = p.times.parseMs;
  time_.semaMs = p.times.semaMs;
  if (!p.model) {
    checkedModel_.reset();
    return false;
  }
  checkedModel_ = *p.model;
  const sema::Model &m = *p.model;

  // The structure key: what the generated code depends on.
  std::string key;
  for (const auto &d : decls_)
    if (d.kind != "train" && d.kind != "data" && d.kind != "model") key += d.text;
  key += fmt::format("|batch={}|weighting={}|freeze=", m.train.batch, vocab::name(m.train.weighting));
  for (const auto &f : m.train.freeze) key += f + ",";
  if (live_ && live_->structureKey == key) {
    applySettings(m);
    live_->checked.model = m;
    return true;
  }

  auto c0 = std::chrono::steady_clock::now();
  CompiledProgram compiled = compileProgram(p, optimize_, false, &incremental_);
  double ms = msSince(c0);
  time_.lowerMs = p.times.lowerMs;
  time_.codegenMs = p.times.codegenMs;
  time_.lastCompileMs = ms;
  time_.lastReason = reason;
  time_.history.push_back({reason, ms});
  ++time_.compiles;
  install(std::move(p), std::move(compiled), std::move(key));
  return true;
}

void ReplSession::install(CheckedProgram checked, CompiledProgram compiled, std::string key) {
  auto next = std::make_unique<Live>();
  next->checked = std::move(checked);
  next->compiled = std::move(compiled);
  next->structureKey = std::move(key);
  rt::ModelSpec &spec = next->compiled.spec;
  next->params.resize(spec.paramCount);
  next->grads.resize(spec.paramCount);
  next->acts.resize(spec.actsFloats);
  rt::initParams(spec, spec.train.seed, next->params.data());
  next->optimizer = std::make_unique<rt::Optimizer>(spec.train.optimizer, spec.paramCount);
  rt::ParamGroups groups = rt::trainableGroups(spec);
  next->optimizer->setActiveSpans(std::move(groups.spans), std::move(groups.scales));

  std::vector<std::string> kept, fresh;
  if (live_) {
    const rt::ModelSpec &old = live_->compiled.spec;
    auto oldState = live_->optimizer->state();
    auto newState = next->optimizer->state();
    bool sameOpt = live_->optimizer->spec().kind == spec.train.optimizer.kind;
    for (const auto &p : spec.params) {
      auto it = std::find_if(old.params.begin(), old.params.end(),
                             [&](const rt::ParamSpec &o) { return o.name == p.name; });
      if (it == old.params.end() || it->shape != p.shape) {
        fresh.push_back(p.name);
        continue;
      }
      kept.push_back(p.name);
      std::memcpy(next->params.data() + p.offset, live_->params.data() + it->offset,
                  sizeof(float) * size_t(p.size));
      if (!sameOpt) continue;
      for (auto &ns : newState)
        for (auto &os : oldState)
          if (ns.name == os.name && ns.size == spec.paramCount && os.size == old.paramCount)
            std::memcpy(ns.data + p.offset, os.data + it->offset, sizeof(float) * size_t(p.size));
    }
    if (sameOpt) next->optimizer->setSteps(live_->optimizer->steps());
  }
  bool first = !live_;
  live_ = std::move(next);
  weighting_.reset();  // made for the old model's tasks
  // Batch buffers point into the old dataset layout when inputs or tasks changed: reload lazily.
  batcher_.reset();
  const rt::ModelSpec &s = live_->compiled.spec;
  const jit::CompiledModule &code = *live_->compiled.code;
  fmt::print(out_, "compiled {} in {:.0f} ms (lower {:.0f} ms, codegen+jit {:.0f} ms; {} kernel{} built, {} reused): "
             "{} parameters", s.name, time_.lastCompileMs, time_.lowerMs, time_.codegenMs, code.kernelsCompiled,
             code.kernelsCompiled == 1 ? "" : "s", code.kernelsReused, s.paramCount);
  if (!first)
    fmt::print(out_, "; kept {} tensor{}, initialised {}", kept.size(), kept.size() == 1 ? "" : "s",
               fresh.empty() ? std::string("none") : fmt::format("{}", fmt::join(fresh, ", ")));
  fmt::print(out_, "\n");
}

void ReplSession::applySettings(const sema::Model &m) {
  rt::ModelSpec &spec = live_->compiled.spec;
  const bool optChanged = spec.train.optimizer != m.train.optimizer;
  if (spec.train.seed != m.train.seed || spec.train.shuffle != m.train.shuffle) batcher_.reset();
  spec.train = m.train;
  spec.data = m.data;
  if (optChanged) {
    // A new optimizer with the new settings; its state carries over when the kind is the same.
    auto next = std::make_unique<rt::Optimizer>(m.train.optimizer, spec.paramCount);
    if (live_->optimizer->spec().kind == m.train.optimizer.kind) {
      auto ns = next->state(), os = live_->optimizer->state();
      for (auto &n : ns)
        for (auto &o : os)
          if (n.name == o.name && n.size == o.size)
            std::memcpy(n.data, o.data, sizeof(float) * size_t(n.size));
      next->setSteps(live_->optimizer->steps());
    }
    live_->optimizer = std::move(next);
  }
  rt::ParamGroups groups = rt::trainableGroups(spec);  // `lr_scale` may have changed
  live_->optimizer->setActiveSpans(std::move(groups.spans), std::move(groups.scales));
}

bool ReplSession::ensureLive(const char *what) {
  if (!checkedModel_ || !live_) {
    if (decls_.empty())
      error(fmt::format("{} needs a model: type declarations or :load FILE first", what));
    else
      error(fmt::format("{} needs a model that checks; fix the errors above first (:show lists "
                        "the declarations)", what));
    return false;
  }
  return true;
}

ReplSession::Saved ReplSession::takeSession() {
  Saved s{std::move(origins_), std::move(decls_), std::move(basePath_), std::move(dataKey_),
          std::move(checkedModel_), std::move(live_), std::move(trainData_), std::move(testData_),
          std::move(batcher_), epoch_, batchPos_, stepCount_, std::move(weighting_), weightingKey_};
  origins_ = {Origin{"<input>", s.origins[0].text}};
  cmdReset();
  return s;
}

void ReplSession::restoreSession(Saved s) {
  // The `<input>` origin keeps every line typed meanwhile (diagnostics quote them).
  s.origins[0] = std::move(origins_[0]);
  origins_ = std::move(s.origins);
  decls_ = std::move(s.decls);
  basePath_ = std::move(s.basePath);
  dataKey_ = std::move(s.dataKey);
  checkedModel_ = std::move(s.checkedModel);
  live_ = std::move(s.live);
  trainData_ = std::move(s.trainData);
  testData_ = std::move(s.testData);
  batcher_ = std::move(s.batcher);
  epoch_ = s.epoch;
  batchPos_ = s.batchPos;
  stepCount_ = s.stepCount;
  weighting_ = std::move(s.weighting);
  weightingKey_ = s.weightingKey;
}

bool ReplSession::load(const std::string &path) {
  std::string text;
  if (!readSourceFile(path, text)) {
    error(fmt::format("cannot read '{}'", path));
    return false;
  }
  // The session's model stays until the file checks: a file with errors does not throw it away.
  // (Into an empty session the file's declarations are kept, so that they can be fixed one by one.)
  const bool hadModel = !decls_.empty();
  Saved saved = takeSession();
  basePath_ = path;
  origins_.push_back({path, text});
  int before = errors_;
  try {
    addDeclarations(text, static_cast<int>(origins_.size()) - 1, 1);
  } catch (...) {
    restoreSession(std::move(saved));
    throw;
  }
  const bool checks = errors_ == before && checkedModel_ && live_;
  if (!checks) {
    errors_ = std::max(errors_, before + 1);  // a script that loads a bad file fails
    if (hadModel) {
      restoreSession(std::move(saved));
      fmt::print(err_, "(not loaded: the session keeps its model)\n");
    }
    return false;
  }
  fmt::print(out_, "loaded {}: {} declaration{}\n", path, decls_.size(), decls_.size() == 1 ? "" : "s");
  return true;
}

// ---- data and training ------------------------------------------------------------------------------

const rt::Dataset &ReplSession::dataset(const std::string &split) {
  const rt::ModelSpec &spec = live_->compiled.spec;
  std::string key;
  for (const auto &d : decls_)
    if (d.kind == "data") key = d.text;
  for (const auto &i : spec.inputs) key += fmt::format("|{}:{}", i.name, i.size);
  for (const auto &t : spec.tasks)
    key += fmt::format("|{}:{}:{}:{}", t.name, int(t.loss), t.outWidth, t.labelWidth);
  if (key != dataKey_) {
    batcher_.reset();
    trainData_.reset();
    testData_.reset();
    dataKey_ = key;
  }
  auto &slot = split == "train" ? trainData_ : testData_;
  if (!slot) {
    auto t0 = std::chrono::steady_clock::now();
    slot = rt::loadSplit(spec, split);
    fmt::print(err_, "loaded the {} split: {} rows in {:.0f} ms\n", split, slot->rows, msSince(t0));
  }
  return *slot;
}

void ReplSession::resetTrainingPosition() {
  batcher_.reset();
  delegated_.reset();
  epoch_ = 0;
  batchPos_ = 0;
  stepCount_ = 0;
}

void ReplSession::trainSteps(int64_t steps) {
  rt::ModelSpec &spec = live_->compiled.spec;
  // The strategies whose weights stay fixed run in the session's own loop; the others, and
  // gradient accumulation, in rt::train.
  if (vocab::has(spec.train.weighting, vocab::kAdaptive) || spec.train.accumulate > 1) {
    trainDelegated(steps);
    return;
  }
  const rt::Dataset &data = dataset("train");
  if (!batcher_) {
    batcher_ = std::make_unique<rt::Batcher>(data, spec.train.batch, spec.train.shuffle,
                                             spec.train.seed);
    batcher_->startEpoch(epoch_);
    if (batchPos_ >= batcher_->batches()) batchPos_ = 0;
  }
  const int64_t T = static_cast<int64_t>(spec.tasks.size());
  std::vector<float> weights = rt::lossWeights(spec);
  std::vector<float> losses(T + 1);
  std::vector<std::vector<float>> outBufs(T);
  std::vector<float *> outPtrs(T);
  for (int64_t t = 0; t < T; ++t) {
    outBufs[t].resize(size_t(spec.maxBatch * spec.tasks[t].outWidth));
    outPtrs[t] = outBufs[t].data();
  }
  rt::Progress progress(err_, rt::Progress::stderrIsTty() && isatty(STDIN_FILENO), true);
  rt::ScopedFlushDenormals flush;  // as rt::train does
  const uint64_t seedMix = rt::mix64(spec.train.seed);
  auto t0 = std::chrono::steady_clock::now();
  int64_t done = 0, samples = 0;
  bool interrupted = false;
  while (done < steps && !interrupted) {
    if (batchPos_ >= batcher_->batches()) {
      ++epoch_;
      batchPos_ = 0;
      batcher_->startEpoch(epoch_);
    }
    int64_t segment = std::min(steps - done, batcher_->batches() - batchPos_);
    const double epochRate = rt::epochLr(spec.train, epoch_, spec.train.epochs);  // `schedule`, as rt::train
    progress.beginEpoch(epoch_ + 1, epoch_ + 1, batcher_->batches());
    double lossSum = 0;
    std::vector<double> taskSum(T, 0.0);
    int64_t segSamples = 0;
    auto s0 = std::chrono::steady_clock::now();
    int64_t k = 0;
    for (; k < segment && !interrupted; ++k) {
      int64_t n = batcher_->gather(batchPos_);
      ++stepCount_;
      mtlc_args args{};
      args.params = live_->params.data();
      args.grads = live_->grads.data();
      args.acts = live_->acts.data();
      args.inputs = batcher_->inputs();
      args.labels = batcher_->labels();
      args.loss_weights = weights.data();
      args.losses = losses.data();
      args.outputs = outPtrs.data();
      args.n = n;
      args.seed = rt::mix64(seedMix ^ uint64_t(stepCount_));
      pool_->attach(args);
      spec.trainStep(&args);
      live_->optimizer->setLr(rt::stepLr(spec.train, live_->optimizer->steps() + 1, epochRate));
      live_->optimizer->step(live_->params.data(), live_->grads.data(), pool_.get());
      ++batchPos_;
      lossSum += losses[T];
      for (int64_t t = 0; t < T; ++t) taskSum[t] += losses[t];
      segSamples += n;
      progress.update(batchPos_, segSamples, lossSum / double(k + 1));
      interrupted = takeInterrupt();  // Ctrl-C: this step is done and kept; stop here
    }
    segment = k;
    progress.endEpoch();
    double secs = msSince(s0) / 1000;
    std::string perTask;
    for (int64_t t = 0; t < T; ++t)
      perTask += fmt::format("{}{} {:.4f}", t ? ", " : "", spec.tasks[t].name, taskSum[t] / double(segment));
    fmt::print(out_, "epoch {} (batch {}/{}): {} step{}, loss {:.4f} ({}), {:.0f} samples/s\n",
               epoch_ + 1, batchPos_, batcher_->batches(), segment, segment == 1 ? "" : "s",
               lossSum / double(segment), perTask, secs > 0 ? double(segSamples) / secs : 0.0);
    done += segment;
    samples += segSamples;
  }
  double secs = msSince(t0) / 1000;
  time_.trainSteps += done;
  time_.trainSamples += samples;
  time_.trainSeconds += secs;
  time_.lastStepMs = done ? secs * 1000 / double(done) : 0;
  if (interrupted)
    fmt::print(out_, "interrupted (Ctrl-C) after {} of {} steps: the model keeps them\n", done, steps);
  fmt::print(out_, "trained {} step{} in {:.2f} s ({:.2f} ms/step); {} steps in all\n", done,
             done == 1 ? "" : "s", secs, time_.lastStepMs, live_->optimizer->steps());
}

// The session's training position as a checkpoint's (trainDelegated resumes rt::train from it):
// the last delegated run's when the session has not moved since, else its step, epoch and batch
// with the epoch's running sums empty.
rt::TrainPosition ReplSession::delegatedPosition() {
  const rt::ModelSpec &spec = live_->compiled.spec;
  int64_t rows = dataset("train").rows;
  if (spec.train.validation > 0)  // rt::train holds out the last rows (Trainer.h)
    rows -= int64_t(std::ceil(spec.train.validation * double(rows) - 1e-9));
  rt::TrainPosition p;
  if (delegated_ && delegated_->step == live_->optimizer->steps() && delegated_->epoch == epoch_ &&
      delegated_->batch == batchPos_ && delegated_->batchSize == spec.train.batch && delegated_->rows == rows &&
      delegated_->seed == spec.train.seed)
    return *delegated_;
  p.seed = spec.train.seed;
  p.step = live_->optimizer->steps();
  p.epoch = epoch_;
  p.batch = batchPos_;
  p.batchSize = spec.train.batch;
  p.rows = rows;
  for (const rt::TaskSpec &t : spec.tasks) p.tasks.push_back(rt::MetricAccumulator(t).state());
  return p;
}

void ReplSession::trainDelegated(int64_t steps) {
  // uncertainty / dwa / gradnorm / pcgrad / mgda and `accumulate` live in rt::train: resume it
  // from the session's parameters, optimizer and weighting state and training position through a
  // temporary checkpoint, read them back, and show what the session's own loop shows (rt::train's
  // report speaks of its files). The position carries the step and epoch, so the warm-up and the
  // schedule continue across :train commands as in one longer `mtlc train`.
  rt::ModelSpec &spec = live_->compiled.spec;
  if (!weighting_ || weightingKey_ != spec.train.weighting) {
    weighting_ = rt::Weighting::create(spec, spec.train.seed);
    weightingKey_ = spec.train.weighting;
  }
  char dir[] = "/tmp/mtlc-repl-XXXXXX";
  if (!mkdtemp(dir)) throw rt::Error("cannot create a temporary directory");
  const std::string in = std::string(dir) + "/in.safetensors", outp = std::string(dir) + "/out.safetensors";
  struct Cleanup {
    const std::string &in, &out;
    const char *dir;
    ~Cleanup() {
      std::remove(in.c_str());
      std::remove(out.c_str());
      rmdir(dir);
    }
  } cleanup{in, outp, dir};
  const rt::TrainPosition from = delegatedPosition();
  rt::saveCheckpoint(in, spec, live_->params.data(), live_->optimizer.get(), weighting_.get(), &from);
  rt::TrainOptions to;
  to.steps = from.step + steps;
  to.epochs = std::numeric_limits<int64_t>::max();  // `steps` ends the run
  to.scheduleEpochs = spec.train.epochs;           // cosine's default t_max, as the session's own loop
  to.resumePath = in;
  to.savePath = outp;
  to.threads = pool_->threads();
  to.quiet = true;
  std::ostringstream trainerLog;  // rt::train's own report, not shown
  auto t0 = std::chrono::steady_clock::now();
  rt::TrainReport report = rt::train(spec, to, trainerLog);
  double secs = msSince(t0) / 1000;
  rt::TensorFile file = rt::readSafeTensors(outp);
  rt::loadParams(file, outp, spec, live_->params.data());
  rt::loadOptimizerState(file, outp, spec, *live_->optimizer);
  rt::loadWeightingState(file, spec, *weighting_);
  delegated_ = rt::loadTrainPosition(file, outp, spec);
  epoch_ = delegated_->epoch;
  batchPos_ = delegated_->batch;
  batcher_.reset();  // the session's own loop starts its batcher at the new epoch
  report.steps -= from.step;  // this command's steps
  stepCount_ += report.steps;
  time_.trainSteps += report.steps;
  time_.trainSeconds += secs;
  time_.lastStepMs = report.steps ? secs * 1000 / double(report.steps) : 0;
  std::string perTask;
  for (const auto &r : report.train)
    if (auto loss = r.metrics.find("loss"); loss != r.metrics.end())
      perTask += fmt::format("{}{} {:.4f}", perTask.empty() ? "" : ", ", r.task, loss->second);
  fmt::print(out_, "weighting {}: {} step{}, loss {}\n", weighting_->describe(), report.steps,
             report.steps == 1 ? "" : "s", perTask.empty() ? std::string("n/a") : "(" + perTask + ")");
  if (report.interruptedBy)
    fmt::print(out_, "interrupted (Ctrl-C) after {} of {} steps: the model keeps them\n", report.steps, steps);
  fmt::print(out_, "trained {} step{} in {:.2f} s ({:.2f} ms/step); {} steps in all\n", report.steps,
             report.steps == 1 ? "" : "s", secs, time_.lastStepMs, live_->optimizer->steps());
}

}  // namespace mtlc::driver
