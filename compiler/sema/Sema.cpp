// Semantic analysis: the model declaration, names, inputs, shared blocks, tasks, the train block.
// Layer rules are in ShapeInference.cpp, the data block in DataBinding.cpp.
#include "sema/SemaInternal.h"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <fmt/format.h>
#include <stdexcept>

namespace mtlc::sema {

namespace detail {

const char *nameKindWord(NameKind k) {
  switch (k) {
  case NameKind::Input: return "input";
  case NameKind::Shared: return "shared block";
  case NameKind::Task: return "task";
  }
  return "?";
}

namespace {

// A common spelling from another framework, mapped to ours (the table's aliases).
std::string aliasHint(const std::string &name, vocab::AliasOf table) {
  const char *ours = vocab::aliasOf(table, name.c_str());
  return ours ? fmt::format("; did you mean '{}'?", ours) : "";
}

}  // namespace

std::optional<Model> Analyzer::run() {
  checkModelDecl();
  declareNames();
  checkInputs();
  checkShared();
  checkTasks();
  finishBlocks();
  checkTrain();
  checkStepSize();
  checkData();
  if (diags_.hasErrors()) return std::nullopt;
  return std::move(model_);
}

// ---- model NAME ---------------------------------------------------------------------------------

void Analyzer::checkModelDecl() {
  if (prog_.models.empty()) {
    SourceRange where{{1, 1}, {1, 1}};
    if (!prog_.order.empty()) where = prog_.order.front().loc;
    diags_.error(where, "missing the model declaration: a program starts with 'model NAME'");
    return;
  }
  const ast::ModelDecl &m = prog_.models.front();
  model_.name = m.name;
  for (size_t i = 1; i < prog_.models.size(); ++i) {
    diags_.error(prog_.models[i].loc, "a program declares one model; this is the second");
    diags_.note(m.loc, "the model is declared here");
  }
  const auto &first = prog_.order.front();
  if (first.kind != ast::Program::ItemKind::Model) {
    diags_.error(m.loc, "'model " + m.name + "' must come first, before every other declaration");
    diags_.note(first.loc, "the first declaration is here");
  }
}

// ---- Names --------------------------------------------------------------------------------------

void Analyzer::declareNames() {
  for (const auto &item : prog_.order) {
    const std::string *name = nullptr;
    SourceRange loc;
    NameKind kind;
    switch (item.kind) {
    case ast::Program::ItemKind::Input:
      name = &prog_.inputs[item.index].name;
      loc = prog_.inputs[item.index].nameLoc;
      kind = NameKind::Input;
      break;
    case ast::Program::ItemKind::Shared:
      name = &prog_.shared[item.index].name;
      loc = prog_.shared[item.index].nameLoc;
      kind = NameKind::Shared;
      break;
    case ast::Program::ItemKind::Task:
      name = &prog_.tasks[item.index].name;
      loc = prog_.tasks[item.index].nameLoc;
      kind = NameKind::Task;
      break;
    default: continue;
    }
    if (auto it = names_.find(*name); it != names_.end()) {
      diags_.error(loc, fmt::format("'{}' is already defined", *name));
      diags_.note(it->second.loc,
                  fmt::format("'{}' is first defined here, as {} {}", *name,
                              it->second.kind == NameKind::Input ? "an" : "a",
                              nameKindWord(it->second.kind)));
      continue;
    }
    if (kind != NameKind::Input && (*name == "mtl" || *name == "optim")) {
      diags_.error(loc, fmt::format("the name '{}' is reserved: checkpoints use '{}.' for "
                                    "training state",
                                    *name, *name));
    }
    size_t index = 0;
    switch (kind) {
    case NameKind::Input:
      index = inputDecls_.size();
      inputDecls_.push_back(&prog_.inputs[item.index]);
      break;
    case NameKind::Shared:
      index = sharedDecls_.size();
      sharedDecls_.push_back(&prog_.shared[item.index]);
      break;
    case NameKind::Task:
      index = taskDecls_.size();
      taskDecls_.push_back(&prog_.tasks[item.index]);
      if (static_cast<int64_t>(index) == limits::kMaxTasks)
        diags_.error(loc, fmt::format("too many tasks: a model has at most {}; '{}' is task {}",
                                      limits::kMaxTasks, *name, index + 1));
      break;
    }
    names_[*name] = {kind, index, loc};
  }
  // The expert block ending each shared block, known before any is checked (a misplaced or
  // misspelt one is reported with the layers; readers then get no follow-on errors).
  for (const ast::SharedDecl *d : sharedDecls_) {
    BlockKind kind = BlockKind::None;
    const ast::Call *call = nullptr;
    for (const ast::LayerCall &l : d->pipeline.layers) {
      const vocab::Entry *row = vocab::find(vocab::layers(), l.name.c_str());
      const bool bodyLayer = row && (row->flags & vocab::kBody);  // residual: no expert block
      BlockKind k = row && (row->flags & vocab::kBlock) ? blockKind(LayerKind(row->kind))
                    : l.hasBody && !bodyLayer          ? BlockKind::Unknown
                                                       : BlockKind::None;
      if (k != BlockKind::None) {
        kind = k;
        call = &l;
        break;
      }
    }
    sharedBlock_.push_back(kind);
    sharedBlockCall_.push_back(call);
  }
}

// ---- input NAME : f32[...] ------------------------------------------------------------------------

void Analyzer::checkInputs() {
  for (const ast::InputDecl *d : inputDecls_) {
    Input in;
    in.name = d->name;
    in.loc = d->loc;
    bool ok = true;
    if (d->dtype != "f32") {
      diags_.error(d->dtypeLoc, fmt::format("unsupported element type '{}': inputs are f32{}",
                                            d->dtype, d->dtype == "F32" ? "; did you mean 'f32'?" : ""));
      ok = false;
    }
    for (const ast::Value &v : d->dims) {
      if (!v.isInteger || !(v.number >= 1)) {
        diags_.error(v.loc, fmt::format("a dimension must be an integer of at least 1, got {}", v.text));
        ok = false;
        continue;
      }
      if (v.number > static_cast<double>(kMaxInt)) {
        diags_.error(v.loc, fmt::format("dimension {} is too large (at most {})", v.text, kMaxInt));
        ok = false;
        continue;
      }
      in.shape.push_back(static_cast<int64_t>(v.number));
    }
    if (ok) {
      int64_t n = elementCount(in.shape);
      if (n < 0 || n > kMaxInt) {
        diags_.error(d->shapeLoc, fmt::format("input '{}' has too many values per sample (at most {})",
                                              d->name, kMaxInt));
        ok = false;
      }
    }
    model_.inputs.push_back(std::move(in));
    inputOk_.push_back(ok);
    categoriesLoc_.push_back({});
  }
}

// ---- Pipelines ------------------------------------------------------------------------------------

std::optional<Shape> Analyzer::resolveSource(const ast::Pipeline &ap, bool isShared,
                                             size_t sharedIndex, int taskIndex, Pipeline &out,
                                             Origin &origin, bool &ok) {
  ok = true;
  if (ap.sourceKind != ast::Pipeline::SourceKind::Name)
    return resolveBlockSource(ap, isShared, sharedIndex, taskIndex, out, origin, ok);
  out.source = ap.source;
  auto it = names_.find(ap.source);
  if (it == names_.end()) {
    std::vector<std::string> candidates;
    for (const auto &[name, info] : names_)
      if (info.kind == NameKind::Input || (info.kind == NameKind::Shared && (!isShared || info.index < sharedIndex)))
        candidates.push_back(name);
    std::string hint = didYouMean(ap.source, candidates);
    if (hint.empty() && std::find(knownLayers().begin(), knownLayers().end(), ap.source) != knownLayers().end())
      hint = "; a pipeline starts from an input or a shared block, then '->' and its layers";
    diags_.error(ap.sourceNameLoc, fmt::format("unknown name '{}'{}", ap.source, hint));
    ok = false;
    return std::nullopt;
  }
  const NameInfo &info = it->second;
  switch (info.kind) {
  case NameKind::Task:
    diags_.error(ap.sourceNameLoc, fmt::format("'{}' is a task; a pipeline starts from an input "
                                               "or a shared block",
                                               ap.source));
    diags_.note(info.loc, fmt::format("task '{}' is defined here", ap.source));
    ok = false;
    return std::nullopt;
  case NameKind::Input:
    out.sourceIsInput = true;
    out.sourceKind = SourceKind::Input;
    out.sourceIndex = static_cast<int>(info.index);
    if (!inputOk_[info.index]) return std::nullopt;
    origin = {inputDecls_[info.index]->shapeLoc,
              fmt::format("input '{}' has shape {}", ap.source, shapeStr(model_.inputs[info.index].shape))};
    return model_.inputs[info.index].shape;
  case NameKind::Shared:
    if (isShared && info.index == sharedIndex) {
      diags_.error(ap.sourceNameLoc, fmt::format("shared block '{}' cannot start from itself", ap.source));
      ok = false;
      return std::nullopt;
    }
    if (isShared && info.index > sharedIndex) {
      diags_.error(ap.sourceNameLoc,
                   fmt::format("shared block '{}' is defined later; a shared block can only start "
                               "from an input or a shared block defined before it",
                               ap.source));
      diags_.note(info.loc, fmt::format("'{}' is defined here", ap.source));
      ok = false;
      return std::nullopt;
    }
    out.sourceIsInput = false;
    out.sourceKind = SourceKind::Shared;
    out.sourceIndex = static_cast<int>(info.index);
    if (rejectBlockRead(ap.source, ap.sourceNameLoc, info.index, isShared)) {
      ok = false;
      return std::nullopt;
    }
    if (!sharedOut_[info.index]) return std::nullopt;
    origin = sharedOrigin_[info.index];
    return sharedOut_[info.index];
  }
  return std::nullopt;
}

void Analyzer::checkShared() {
  for (size_t i = 0; i < sharedDecls_.size(); ++i) {
    const ast::SharedDecl &d = *sharedDecls_[i];
    Pipeline p;
    p.name = d.name;
    p.loc = d.loc;
    Origin origin;
    bool ok;
    std::optional<Shape> in = resolveSource(d.pipeline, true, i, -1, p, origin, ok);
    if (in) p.inShape = *in;
    LayerContext ctx;
    ctx.isShared = true;
    ctx.inputIndex = !ok ? -2 : p.sourceKind == SourceKind::Input ? p.sourceIndex : -1;
    std::optional<Shape> outShape = checkLayers(d.pipeline.layers, in, origin, p, ctx);
    if (outShape) {
      p.outShape = *outShape;
      // Notes about this block's output point at its last layer (or its source).
      SourceRange at = d.pipeline.layers.empty() ? d.nameLoc : d.pipeline.layers.back().loc;
      sharedOrigin_.push_back({at, fmt::format("shared block '{}' produces {}", d.name, shapeStr(*outShape))});
    } else {
      sharedOrigin_.push_back({});
    }
    sharedOut_.push_back(outShape);
    model_.shared.push_back(std::move(p));
  }
}

// ---- Tasks --------------------------------------------------------------------------------------

void Analyzer::checkTasks() {
  for (size_t i = 0; i < taskDecls_.size(); ++i) checkTask(*taskDecls_[i], i);
  if (taskDecls_.empty() && !prog_.models.empty())
    diags_.error(prog_.models.front().loc,
                 fmt::format("model '{}' has no tasks; add one, e.g. task NAME {{ SOURCE -> dense(1) "
                             "loss mse }}",
                             prog_.models.front().name));
}

bool Analyzer::reportStrayMetric(const ast::TaskDecl &t, const ast::Pipeline &word) {
  // The metric statement the word follows, if any: the list it was meant to continue.
  const ast::MetricName *before = nullptr;
  for (const ast::MetricName &m : t.metrics) {
    const SourceLoc &a = m.loc.end, &b = word.sourceLoc.begin;
    if (a.line < b.line || (a.line == b.line && a.column < b.column)) before = &m;
  }
  const std::vector<std::string> &metrics = knownMetrics();
  const bool exact = std::find(metrics.begin(), metrics.end(), word.source) != metrics.end();
  // A misspelt metric only right after a metric list (elsewhere it may be a misspelt source).
  const std::string metric = exact ? word.source : before ? closestMatch(word.source, metrics) : "";
  if (metric.empty()) return false;
  if (before)
    diags_.error(word.sourceLoc, fmt::format("expected ',' before '{}': metrics are separated by commas, "
                                             "as in 'metric {}, {}'",
                                             word.source, before->name, metric));
  else
    diags_.error(word.sourceLoc, fmt::format("'{}' is a metric, but no 'metric' statement lists it; write "
                                             "'metric {}'",
                                             word.source, metric));
  return true;
}

void Analyzer::checkTask(const ast::TaskDecl &t, size_t index) {
  Task task;
  task.name = t.name;
  task.loc = t.loc;
  task.head.name = t.name;
  task.head.loc = t.loc;
  bool lossMisspelt = false;
  std::vector<ast::Pipeline> pipelines = taskPipelines(t, lossMisspelt);
  SourceRange lastLoc;
  std::optional<Shape> out = checkHead(t, index, pipelines, task, lastLoc);
  bool headOk = out.has_value();
  const bool lossOk = checkLoss(t, lossMisspelt, task);
  if (lossOk && headOk) headOk = checkHeadWidth(t, *out, lastLoc, task);
  checkTaskWeight(t, task);
  checkMetrics(t, lossOk, task);
  taskHeadOk_.push_back(headOk && lossOk);
  model_.tasks.push_back(std::move(task));
}

// The task's pipelines, less the statements whose keyword is misspelt (`los mse` parses as two
// one-name pipelines): those are reported, and neither the word nor its value is a pipeline.
std::vector<ast::Pipeline> Analyzer::taskPipelines(const ast::TaskDecl &t, bool &lossMisspelt) {
  std::vector<ast::Pipeline> pipelines;
  for (size_t k = 0; k < t.pipelines.size(); ++k) {
    const ast::Pipeline &p = t.pipelines[k];
    auto bareName = [&](const ast::Pipeline &q) {
      return q.sourceKind == ast::Pipeline::SourceKind::Name && q.layers.empty() &&
             !names_.count(q.source);
    };
    std::string keyword = bareName(p) ? closestMatch(p.source, {"loss", "weight", "metric"}) : "";
    if (keyword.empty()) {
      if (bareName(p) && reportStrayMetric(t, p)) continue;
      pipelines.push_back(p);
      continue;
    }
    diags_.error(p.sourceNameLoc, fmt::format("unknown statement '{}' in task '{}'; did you mean "
                                              "'{}'?",
                                              p.source, t.name, keyword));
    lossMisspelt |= keyword == "loss";
    if (k + 1 < t.pipelines.size() && bareName(t.pipelines[k + 1])) ++k;  // its value
  }
  return pipelines;
}

// The task's one pipeline into task.head; its 1-D output shape, or nullopt (reported) when it is
// missing, unknown or not 1-D. `lastLoc` is where the head ends, for notes.
std::optional<Shape> Analyzer::checkHead(const ast::TaskDecl &t, size_t index,
                                         const std::vector<ast::Pipeline> &pipelines, Task &task,
                                         SourceRange &lastLoc) {
  if (pipelines.empty()) {
    diags_.error(t.nameLoc, fmt::format("task '{}' has no pipeline; start its body with e.g. "
                                        "'trunk -> dense(1)'",
                                        t.name));
    return std::nullopt;
  }
  for (size_t k = 1; k < pipelines.size(); ++k) {
    const ast::Pipeline &extra = pipelines[k];
    std::string hint = extra.sourceKind == ast::Pipeline::SourceKind::Name &&
                               std::find(knownLayers().begin(), knownLayers().end(), extra.source) !=
                                   knownLayers().end()
                           ? fmt::format(" (missing '->' before '{}'?)", extra.source)
                           : "";
    diags_.error(extra.sourceLoc, fmt::format("task '{}' has a second pipeline{}", t.name, hint));
    diags_.note(pipelines[0].loc, "its pipeline is here");
  }
  const ast::Pipeline &ap = pipelines[0];
  Origin origin;
  bool ok;
  std::optional<Shape> in = resolveSource(ap, false, 0, static_cast<int>(index), task.head, origin, ok);
  if (in) task.head.inShape = *in;
  LayerContext ctx;
  ctx.inputIndex = !ok ? -2 : task.head.sourceKind == SourceKind::Input ? task.head.sourceIndex : -1;
  std::optional<Shape> out = checkLayers(ap.layers, in, origin, task.head, ctx);
  if (out) task.head.outShape = *out;
  lastLoc = ap.layers.empty() ? ap.sourceLoc : ap.layers.back().loc;
  if (out && out->size() != 1 && out->size() != 3) {
    diags_.error(lastLoc, fmt::format("the head of task '{}' must end with a 1-D output (or [C, H, W] for a "
                                      "per-pixel loss), but it produces {}; end it with 'flatten' or 'dense(n)'",
                                      t.name, shapeStr(*out)));
    return std::nullopt;
  }
  return out;
}

// The loss: exactly one, a row of the table, no arguments. True when task.loss is set.
bool Analyzer::checkLoss(const ast::TaskDecl &t, bool lossMisspelt, Task &task) {
  if (t.losses.empty()) {
    if (!lossMisspelt)  // a misspelt `loss` keyword was reported
      diags_.error(t.nameLoc, fmt::format("task '{}' has no loss; add e.g. 'loss cross_entropy', "
                                          "'loss bce' or 'loss mse'",
                                          t.name));
    return false;
  }
  for (size_t k = 1; k < t.losses.size(); ++k) {
    diags_.error(t.losses[k].loc, fmt::format("task '{}' has a second loss", t.name));
    diags_.note(t.losses[0].loc, "its loss is given here");
  }
  const ast::Call &l = t.losses[0];
  if (!vocab::parse(l.name.c_str(), task.loss)) {
    std::string hint = aliasHint(l.name, vocab::AliasOf::Loss);
    if (hint.empty()) hint = didYouMean(l.name, knownLosses());
    if (hint.empty()) hint = "; the losses are " + joinWords(knownLosses(), "and");
    diags_.error(l.nameLoc, fmt::format("unknown loss '{}'{}", l.name, hint));
    return false;
  }
  if (l.hasArgs()) diags_.error(l.loc, fmt::format("loss '{}' takes no arguments", l.name));
  return true;
}

// The head's width against the loss; sets the label width. False (reported) on a mismatch. A
// [C, H, W] head is a per-pixel task: C is the width here (classes, channels), the label is [H, W]
// (cross_entropy) or [C, H, W].
bool Analyzer::checkHeadWidth(const ast::TaskDecl &t, const Shape &out, SourceRange lastLoc, Task &task) {
  const ast::Call &l = t.losses[0];
  const int64_t width = out[0];
  const bool dense = out.size() == 3;
  const std::string widthNote = fmt::format("the head of task '{}' produces {}", t.name, shapeStr(out));
  switch (task.loss) {
  case rt::LossKind::CrossEntropy:
    task.labelWidth = dense ? out[1] * out[2] : 1;
    if (width >= 2) return true;
    diags_.error(l.nameLoc, fmt::format("cross_entropy needs a head width of at least 2 (one "
                                        "output per class{}), but task '{}' produces {}; for a "
                                        "0/1 label use 'bce'",
                                        dense ? ", the first dimension of [C, H, W]" : "", t.name, shapeStr(out)));
    diags_.note(lastLoc, widthNote);
    return false;
  case rt::LossKind::BCE:
    task.labelWidth = 1;
    if (dense) {
      diags_.error(l.nameLoc, fmt::format("bce takes a 1-D head, but task '{}' produces {}; a [C, H, W] head "
                                          "takes cross_entropy, mse, l1 or cosine",
                                          t.name, shapeStr(out)));
      diags_.note(lastLoc, widthNote);
      return false;
    }
    if (width == 1) return true;
    diags_.error(l.nameLoc, fmt::format("bce needs a head width of 1 (one logit), but task "
                                        "'{}' produces {}; for {} classes use 'cross_entropy'",
                                        t.name, shapeStr(out), width));
    diags_.note(lastLoc, widthNote);
    return false;
  case rt::LossKind::MSE:
  case rt::LossKind::L1:
    task.labelWidth = elementCount(out);
    return true;
  case rt::LossKind::Cosine:
    task.labelWidth = elementCount(out);
    if (width >= 2) return true;
    diags_.error(l.nameLoc, fmt::format("cosine needs at least 2 channels (the vector it compares the "
                                        "label's direction with), but task '{}' produces {}",
                                        t.name, shapeStr(out)));
    diags_.note(lastLoc, widthNote);
    return false;
  }
  return true;
}

// The weight: at most one, a number >= 0.
void Analyzer::checkTaskWeight(const ast::TaskDecl &t, Task &task) {
  for (size_t k = 0; k < t.weights.size(); ++k) {
    const ast::Value &w = t.weights[k];
    if (k > 0) {
      diags_.error(w.loc, fmt::format("task '{}' has a second weight", t.name));
      diags_.note(t.weights[0].loc, "its weight is given here");
      continue;
    }
    if (!std::isfinite(w.number))
      diags_.error(w.loc, fmt::format("the number {} is out of range", w.text));
    else if (w.number < 0)
      diags_.error(w.loc, fmt::format("a task weight must be at least 0, got {}", w.text));
    else
      task.weight = w.number;
  }
}

namespace {

// What a metric needs of the task's loss, in words, with the losses that give it:
// "a classification loss (cross_entropy or bce)", "a binary task (loss bce)".
std::string metricNeeds(rt::Metric m) {
  const unsigned needs = vocab::row(m).needs;
  std::vector<std::string> losses;
  for (const vocab::Entry &l : vocab::losses())
    if (l.flags & needs) losses.push_back(l.name);
  const char *what = needs == vocab::kClassifier  ? "a classification loss"
                     : needs == vocab::kBinary    ? "a binary task"
                     : needs == vocab::kClasses   ? "class indices"
                     : needs == vocab::kDirection ? "a direction loss"
                                                  : "a regression loss";
  return fmt::format("{} ({}{})", what, losses.size() == 1 ? "loss " : "", joinWords(losses, "or"));
}

}  // namespace

// Metrics: known, not repeated, valid for the loss.
void Analyzer::checkMetrics(const ast::TaskDecl &t, bool lossOk, Task &task) {
  std::map<std::string, SourceRange> seen;
  for (const ast::MetricName &m : t.metrics) {
    rt::Metric metric;
    if (!vocab::parse(m.name.c_str(), metric)) {
      std::string hint = aliasHint(m.name, vocab::AliasOf::Metric);
      if (hint.empty()) hint = didYouMean(m.name, knownMetrics());
      if (hint.empty()) hint = "; the metrics are " + joinWords(knownMetrics(), "and");
      diags_.error(m.loc, fmt::format("unknown metric '{}'{}", m.name, hint));
      continue;
    }
    if (auto s = seen.find(m.name); s != seen.end()) {
      diags_.error(m.loc, fmt::format("metric '{}' is listed twice", m.name));
      diags_.note(s->second, "first listed here");
      continue;
    }
    seen[m.name] = m.loc;
    if (lossOk && !vocab::metricFits(metric, task.loss)) {
      diags_.error(m.loc, fmt::format("metric '{}' needs {}, but task '{}' uses {}", m.name, metricNeeds(metric),
                                      t.name, vocab::name(task.loss)));
      continue;
    }
    task.metrics.push_back(metric);
  }
}

// ---- train { ... } --------------------------------------------------------------------------------

namespace {

// "sgd(lr=...) or adam(...)": each optimizer with its first required argument, if any.
std::string optimizerForms() {
  std::vector<std::string> forms;
  for (const vocab::Entry &o : vocab::optimizers()) {
    const vocab::Arg &first = o.args[0];
    forms.push_back(fmt::format("{}({})", o.name, first.name && first.required ? fmt::format("{}=...", first.name) : "..."));
  }
  return joinWords(forms, "or");
}

// The weightings with `flag`, in words: "fixed and pcgrad".
std::string weightingsWith(vocab::Flag flag) {
  std::vector<std::string> names;
  for (const vocab::Entry &w : vocab::weightings())
    if (w.flags & flag) names.push_back(w.name);
  return joinWords(names, "and");
}

}  // namespace

void Analyzer::checkOptimizer(const ast::Setting &s) {
  if (!s.isCall) {
    diags_.error(s.valueLoc, fmt::format("optimizer must be {}, got {}", optimizerForms(), ast::str(s.value)));
    return;
  }
  const ast::Call &c = s.call;
  rt::OptimizerSpec &o = model_.train.optimizer;
  if (!vocab::parse(c.name.c_str(), o.kind)) {
    std::string hint = didYouMean(c.name, knownOptimizers());
    if (hint.empty()) hint = "; the optimizers are " + joinWords(knownOptimizers(), "and");
    diags_.error(c.nameLoc, fmt::format("unknown optimizer '{}'{}", c.name, hint));
    return;
  }
  const vocab::Entry &row = vocab::row(o.kind);
  std::vector<ParamDef> params = paramsOf(row);
  BoundArgs a = bindArgs(c, fmt::format("optimizer '{}'", row.name), params, row.example, diags_);
  for (const ParamDef &p : params) {
    double *field = o.setting(p.name);
    if (!field) throw std::logic_error("optimizer argument '" + p.name + "' has no field in rt::OptimizerSpec");
    *field = a.num(p.name);
  }
  // torch.optim.SGD refuses Nesterov momentum without momentum: it would be plain sgd.
  if (o.kind == rt::OptimizerKind::Sgd && o.nesterov != 0 && o.momentum == 0)
    diags_.error(a.at("nesterov").loc, "nesterov=true needs momentum > 0, e.g. sgd(lr=0.1, momentum=0.9, nesterov=true)");
}

// `schedule step(every=30)`: a row of the vocabulary's schedules, its arguments into ScheduleSpec.
void Analyzer::checkSchedule(const ast::Setting &s) {
  if (!s.isCall) {
    diags_.error(s.valueLoc, fmt::format("schedule must be one of {}, got {}", joinWords(knownSchedules(), "or"),
                                         ast::str(s.value)));
    return;
  }
  const ast::Call &c = s.call;
  rt::ScheduleSpec sched;
  if (!vocab::parse(c.name.c_str(), sched.kind)) {
    std::string hint = didYouMean(c.name, knownSchedules());
    if (hint.empty()) hint = "; the schedules are " + joinWords(knownSchedules(), "and");
    diags_.error(c.nameLoc, fmt::format("unknown schedule '{}'{}", c.name, hint));
    return;
  }
  const vocab::Entry &row = vocab::row(sched.kind);
  std::vector<ParamDef> params = paramsOf(row);
  BoundArgs a = bindArgs(c, fmt::format("schedule '{}'", row.name), params, row.example, diags_);
  for (const ParamDef &p : params) {
    if (p.type == ParamDef::Type::IntList) {
      sched.at = a.at(p.name).list;
      continue;
    }
    double *field = sched.setting(p.name);
    if (!field) throw std::logic_error("schedule argument '" + p.name + "' has no field in rt::ScheduleSpec");
    *field = a.num(p.name);
  }
  model_.train.schedule = sched;
}

void Analyzer::checkWeighting(const ast::Setting &s) {
  if (!s.isCall) {
    diags_.error(s.valueLoc, fmt::format("weighting must be a strategy name such as fixed or "
                                         "uniform, got {}",
                                         ast::str(s.value)));
    return;
  }
  const ast::Call &c = s.call;
  rt::WeightingKind kind;
  if (!vocab::parse(c.name.c_str(), kind)) {
    std::string hint = didYouMean(c.name, knownWeightings());
    if (hint.empty()) hint = "; the strategies are " + joinWords(knownWeightings(), "and");
    diags_.error(c.nameLoc, fmt::format("unknown weighting '{}'{}", c.name, hint));
    return;
  }
  const vocab::Entry &row = vocab::row(kind);
  std::vector<ParamDef> params = paramsOf(row);
  BoundArgs a = bindArgs(c, "weighting '" + c.name + "'", params, row.example, diags_);
  const bool takesRepGrad = std::any_of(params.begin(), params.end(), [](const ParamDef &p) { return p.name == "rep_grad"; });
  for (const ast::KeywordArg &k : c.keyword)
    if (k.key == "rep_grad" && !takesRepGrad) {
      std::vector<std::string> with;
      for (const vocab::Entry &e : vocab::weightings())
        for (const vocab::Arg &arg : e.args)
          if (arg.name && std::string(arg.name) == "rep_grad") with.push_back(e.name);
      diags_.note(k.keyLoc, fmt::format("rep_grad (the task gradients at the shared representation) is an "
                                        "argument of {} only",
                                        joinWords(with, "and")));
    }
  model_.train.weighting = kind;
  if (!params.empty()) model_.train.weightingParam = a.num(params[0].name);
  model_.train.weightingArgs.clear();
  for (const ParamDef &p : params) model_.train.weightingArgs.push_back(a.num(p.name));
  model_.train.repGrad = kind == rt::WeightingKind::Mgda;
  for (size_t i = 0; i < params.size(); ++i) {
    if (params[i].name != "rep_grad" || a.num(params[i].name) == 0) continue;
    model_.train.repGrad = true;
    SourceRange argLoc = i < c.positional.size() ? c.positional[i].loc : c.nameLoc;
    for (const ast::KeywordArg &k : c.keyword)
      if (k.key == "rep_grad") argLoc = k.loc;
    checkRepGrad(c, argLoc);
  }

  // Only the strategies that use the tasks' `weight` lines scale the task losses by them
  // (runtime/train/Weighting.h); the others compute their own weights, so a weight line there is a
  // setting with no effect.
  if (!vocab::has(kind, vocab::kUsesTaskWeights)) {
    for (const ast::TaskDecl &t : prog_.tasks) {
      if (t.weights.empty()) continue;
      diags_.warning(t.weights[0].loc,
                     fmt::format("task '{}': weight {} is ignored under weighting '{}', which sets the "
                                 "task weights itself (only {} use them)",
                                 t.name, t.weights[0].text, c.name, weightingsWith(vocab::kUsesTaskWeights)));
      diags_.note(c.nameLoc, fmt::format("weighting '{}' is chosen here", c.name));
    }
  }
  if (vocab::has(kind, vocab::kTaskGradients)) checkGradientWeighting(c);
}

// The gradient-based strategies balance the tasks' gradients on what they share: they need two
// tasks and shared parameters.
void Analyzer::checkGradientWeighting(const ast::Call &c) {
  const size_t tasks = model_.tasks.size();
  if (tasks < 2) {
    diags_.error(c.nameLoc, fmt::format("weighting '{}' balances the gradients of several tasks and "
                                        "needs at least two, but the model has {}",
                                        c.name, tasks));
  } else if (model_.shared.empty()) {
    diags_.error(c.nameLoc, fmt::format("weighting '{}' acts on the gradients of what the tasks "
                                        "share, but the model has no shared block; declare one "
                                        "(shared NAME = SOURCE -> ...) and read it from the tasks",
                                        c.name));
  } else if (std::all_of(sharedOut_.begin(), sharedOut_.end(), [](const auto &o) { return o.has_value(); })) {
    bool params = false;
    for (const Pipeline &p : model_.shared)
      for (const Layer &l : p.layers) params |= l.hasParams();
    if (!params)
      diags_.error(c.nameLoc, fmt::format("weighting '{}' acts on the gradients of the shared "
                                          "parameters, but no shared block has learnable "
                                          "parameters",
                                          c.name));
  }
}

// rep_grad=true asks for the task gradients at the one shared block every task's head reads. A model
// without one is refused, by every method with the argument alike, rather than quietly given the
// shared parameters' gradients: only mgda, which has no such argument, falls back by design
// (docs/mtl-methods.md). The note names the first head that breaks the single boundary.
void Analyzer::checkRepGrad(const ast::Call &c, SourceRange argLoc) {
  if (model_.tasks.size() < 2 || model_.shared.empty() || model_.sharedBoundary() >= 0) return;
  diags_.error(argLoc, fmt::format("weighting '{}' with rep_grad=true takes the task gradients at the one "
                                   "shared block every task's head reads, but the tasks of model '{}' do "
                                   "not all read one; drop rep_grad=true to use the gradients of the "
                                   "shared parameters",
                                   c.name, model_.name));
  const Task *first = nullptr;
  for (const Task &t : model_.tasks) {
    const Pipeline &h = t.head;
    std::string why;
    switch (h.sourceKind) {
      case SourceKind::Input: why = fmt::format("reads the input '{}', not a shared block", h.source); break;
      case SourceKind::Gate: why = fmt::format("reads gate({}), its own mix of the experts", h.source); break;
      case SourceKind::Column: why = fmt::format("reads column({}), its own column", h.source); break;
      case SourceKind::Concat: why = "reads a concat(...) of several tensors"; break;
      case SourceKind::Shared:
        if (first && first->head.sourceIndex != h.sourceIndex)
          why = fmt::format("reads '{}', task '{}' reads '{}'", h.source, first->name, first->head.source);
        first = first ? first : &t;
        break;
    }
    if (why.empty()) continue;
    SourceRange where = t.loc;
    for (const ast::TaskDecl &d : prog_.tasks)
      if (d.name == t.name && !d.pipelines.empty()) where = d.pipelines.front().sourceLoc;
    diags_.note(where, fmt::format("task '{}' {}", t.name, why));
    return;
  }
}

// A setting's values, the first included.
static std::vector<ast::SettingValue> settingValues(const ast::Setting &s) {
  std::vector<ast::SettingValue> values;
  ast::SettingValue first;
  first.key = s.key;
  first.keyLoc = s.keyLoc;
  first.isCall = s.isCall;
  first.call = s.call;
  first.value = s.value;
  first.loc = s.valueLoc;
  values.push_back(std::move(first));
  values.insert(values.end(), s.more.begin(), s.more.end());
  return values;
}

// Records `name` at `loc` in `seen`; false, with `error` there and `note` at the first, when it
// was already there.
bool Analyzer::firstMention(std::map<std::string, SourceRange> &seen, const std::string &name, SourceRange loc,
                            const std::string &error, const char *note) {
  if (auto prev = seen.find(name); prev != seen.end()) {
    diags_.error(loc, error);
    diags_.note(prev->second, note);
    return false;
  }
  seen[name] = loc;
  return true;
}

// `name` (at `loc`) in `freeze` or `lr_scale`: a shared block or a task, else an error.
bool Analyzer::checkBlockName(const std::string &name, SourceRange loc, const std::string &setting) {
  auto it = names_.find(name);
  if (it == names_.end()) {
    std::vector<std::string> candidates;
    for (const auto &[n, info] : names_)
      if (info.kind != NameKind::Input) candidates.push_back(n);
    std::string hint = didYouMean(name, candidates);
    if (hint.empty()) hint = fmt::format("; {} takes the names of shared blocks and tasks", setting);
    diags_.error(loc, fmt::format("unknown block '{}' in {}{}", name, setting, hint));
    return false;
  }
  if (it->second.kind == NameKind::Input) {
    diags_.error(loc, fmt::format("'{}' is an input, which has no parameters; {} takes the names of shared "
                                  "blocks and tasks",
                                  name, setting));
    diags_.note(it->second.loc, fmt::format("input '{}' is declared here", name));
    return false;
  }
  return true;
}

void Analyzer::checkFreeze(const ast::Setting &s) {
  std::map<std::string, SourceRange> seen;
  for (const ast::SettingValue &v : settingValues(s)) {
    if (!v.isCall || v.call.hasParens || v.call.hasBody) {
      diags_.error(v.loc, fmt::format("freeze takes the names of shared blocks and tasks, got {}",
                                      v.isCall ? ast::str(v.call)
                                               : (v.key.empty() ? "" : v.key + "=") + ast::str(v.value)));
      continue;
    }
    const std::string &name = v.call.name;
    if (!checkBlockName(name, v.loc, "freeze")) continue;
    if (!firstMention(seen, name, v.loc, fmt::format("'{}' is frozen twice", name), "first listed here")) continue;
    model_.train.freeze.push_back(name);
  }
}

// `lr_scale BLOCK=F, ...`: a learning-rate multiplier F >= 0 for each listed shared block or task.
void Analyzer::checkLrScale(const ast::Setting &s) {
  std::map<std::string, SourceRange> seen;
  for (const ast::SettingValue &v : settingValues(s)) {
    if (v.key.empty()) {
      diags_.error(v.loc, fmt::format("lr_scale takes BLOCK=FACTOR (e.g. lr_scale trunk=0.1), got {}",
                                      v.isCall ? ast::str(v.call) : ast::str(v.value)));
      continue;
    }
    if (!checkBlockName(v.key, v.keyLoc, "lr_scale")) continue;
    if (!(v.value.number >= 0) || !std::isfinite(v.value.number)) {
      diags_.error(v.value.loc, fmt::format("lr_scale {}: the factor must be a number >= 0, got {}", v.key,
                                            ast::str(v.value)));
      continue;
    }
    if (!firstMention(seen, v.key, v.keyLoc, fmt::format("'{}' has two lr_scale factors", v.key), "first given here"))
      continue;
    model_.train.lrScale.emplace_back(v.key, v.value.number);
  }
}

void Analyzer::checkTrain() {
  if (prog_.trains.empty()) return;  // all defaults
  for (size_t i = 1; i < prog_.trains.size(); ++i) {
    diags_.error(prog_.trains[i].keywordLoc, "a program has one train block; this is the second");
    diags_.note(prog_.trains[0].keywordLoc, "the first train block is here");
  }
  static const std::vector<std::string> settings = {"optimizer", "batch", "epochs", "weighting", "seed",
                                                    "shuffle", "freeze", "clip_grad_norm", "schedule", "warmup",
                                                    "validation", "select", "patience",
                                                    "accumulate", "lr_scale", "precision"};
  std::vector<std::string> optimizerArgs;  // of any optimizer
  for (const vocab::Entry &o : vocab::optimizers())
    for (const vocab::Arg &a : o.args)
      if (a.name) optimizerArgs.push_back(a.name);
  std::map<std::string, SourceRange> seen;
  rt::TrainSpec &tr = model_.train;
  for (const ast::Setting &s : prog_.trains[0].settings) {
    if (std::find(settings.begin(), settings.end(), s.name) == settings.end()) {
      std::string hint;
      if (std::find(optimizerArgs.begin(), optimizerArgs.end(), s.name) != optimizerArgs.end())
        hint = fmt::format("; '{}' is an argument of the optimizer: optimizer adam({}=...)", s.name, s.name);
      else if (s.name == "batch_size")
        hint = "; did you mean 'batch'?";
      else if (s.name == "epoch")
        hint = "; did you mean 'epochs'?";
      else
        hint = didYouMean(s.name, settings);
      if (hint.empty()) hint = "; the settings are " + joinWords(settings, "and");
      diags_.error(s.nameLoc, fmt::format("unknown train setting '{}'{}", s.name, hint));
      continue;
    }
    if (auto it = seen.find(s.name); it != seen.end()) {
      diags_.error(s.nameLoc, fmt::format("'{}' is set twice", s.name));
      diags_.note(it->second, "first set here");
      continue;
    }
    seen[s.name] = s.nameLoc;
    if (s.name == "freeze" || s.name == "lr_scale") {
      s.name == "freeze" ? checkFreeze(s) : checkLrScale(s);
      continue;
    }
    if (!s.more.empty()) {
      diags_.error(s.more.front().loc, fmt::format("'{}' takes one value; only freeze and lr_scale take a list",
                                                   s.name));
      continue;
    }
    if (!s.key.empty()) {
      diags_.error(s.keyLoc, fmt::format("'{}' takes a value, not NAME=VALUE; only lr_scale takes those", s.name));
      continue;
    }
    if (s.name == "optimizer") {
      checkOptimizer(s);
    } else if (s.name == "schedule") {
      checkSchedule(s);
    } else if (s.name == "weighting") {
      checkWeighting(s);
    } else if (s.name == "select") {
      checkSelect(s);
    } else if (s.name == "validation") {
      if (s.isCall || s.value.kind != ast::Value::Kind::Number || !(s.value.number > 0 && s.value.number < 1))
        diags_.error(s.valueLoc, fmt::format("validation must be a fraction between 0 and 1 (the share of the "
                                             "training set held out), got {}",
                                             s.isCall ? ast::str(s.call) : ast::str(s.value)));
      else
        tr.validation = s.value.number;
    } else if (s.name == "shuffle") {
      if (s.isCall && !s.call.hasParens && (s.call.name == "true" || s.call.name == "false"))
        tr.shuffle = s.call.name == "true";
      else
        diags_.error(s.valueLoc, fmt::format("shuffle must be true or false, got {}",
                                             s.isCall ? ast::str(s.call) : ast::str(s.value)));
    } else if (s.name == "precision") {
      if (s.isCall && !s.call.hasParens && (s.call.name == "fp32" || s.call.name == "bf16"))
        tr.precision = s.call.name == "bf16" ? rt::Precision::Bf16 : rt::Precision::Fp32;
      else
        diags_.error(s.valueLoc, fmt::format("precision must be fp32 or bf16 (bfloat16 products, fp32 "
                                             "accumulation), got {}",
                                             s.isCall ? ast::str(s.call) : ast::str(s.value)));
    } else if (s.name == "clip_grad_norm") {
      if (s.isCall || s.value.kind != ast::Value::Kind::Number || !(s.value.number > 0))
        diags_.error(s.valueLoc, fmt::format("clip_grad_norm must be a positive number (the largest gradient "
                                             "norm), got {}", s.isCall ? ast::str(s.call) : ast::str(s.value)));
      else
        tr.clipGradNorm = s.value.number;
    } else {  // batch, epochs, seed, warmup, patience, accumulate: integers
      checkIntegerSetting(s);
    }
  }
  if (tr.accumulate > 1) checkAccumulate(seen);
}

// `accumulate N` sums the gradients of N batches: a weighting whose step is more than a weighted
// sum of the batch's losses with weights fixed during the epoch (its own optimizer step, task
// gradients) has no per-batch meaning to sum, so only fixed, uniform and dwa combine with it.
void Analyzer::checkAccumulate(const std::map<std::string, SourceRange> &seen) {
  const rt::WeightingKind w = model_.train.weighting;
  if (w == rt::WeightingKind::Fixed || w == rt::WeightingKind::Uniform || w == rt::WeightingKind::Dwa) return;
  diags_.error(seen.at("accumulate"),
               fmt::format("accumulate sums the gradients of several batches, and weighting '{}' {}: "
                           "accumulate works with fixed, uniform and dwa",
                           vocab::name(w),
                           vocab::has(w, vocab::kTaskGradients) ? "combines each batch's task gradients"
                                                                : "changes its weights batch by batch"));
  diags_.note(seen.at("weighting"), "the weighting is chosen here");
}

// `select TASK.METRIC`: a task of the model and `loss` or one of its metrics.
void Analyzer::checkSelect(const ast::Setting &s) {
  const std::string text = s.isCall ? s.call.name : ast::str(s.value);
  const size_t dot = text.find('.');
  if (!s.isCall || s.call.hasParens || dot == std::string::npos) {
    diags_.error(s.valueLoc, fmt::format("select takes TASK.METRIC (e.g. {}.loss), got {}",
                                         model_.tasks.empty() ? "task" : model_.tasks[0].name,
                                         s.isCall ? ast::str(s.call) : text));
    return;
  }
  const std::string task = text.substr(0, dot), metric = text.substr(dot + 1);
  std::vector<std::string> tasks;
  for (const Task &t : model_.tasks) tasks.push_back(t.name);
  auto it = std::find_if(model_.tasks.begin(), model_.tasks.end(), [&](const Task &t) { return t.name == task; });
  if (it == model_.tasks.end()) {
    std::string hint = didYouMean(task, tasks);
    if (hint.empty()) hint = "; the tasks are " + joinWords(tasks, "and");
    diags_.error(s.valueLoc, fmt::format("select: unknown task '{}'{}", task, hint));
    return;
  }
  std::vector<std::string> metrics = {"loss"};
  for (auto m : it->metrics) metrics.push_back(vocab::name(m));
  if (std::find(metrics.begin(), metrics.end(), metric) == metrics.end()) {
    std::string hint = didYouMean(metric, metrics);
    if (hint.empty()) hint = fmt::format("; task '{}' has {}", task, joinWords(metrics, "and"));
    diags_.error(s.valueLoc, fmt::format("select: task '{}' has no metric '{}'{}", task, metric, hint));
    return;
  }
  model_.train.selectTask = task;
  model_.train.selectMetric = metric;
}

// batch, epochs, warmup, patience, accumulate (at least 1) and seed (a uint64).
void Analyzer::checkIntegerSetting(const ast::Setting &s) {
  rt::TrainSpec &tr = model_.train;
  if (s.isCall || !s.value.isInteger) {
    diags_.error(s.valueLoc, fmt::format("{} must be an integer, got {}", s.name,
                                         s.isCall ? ast::str(s.call) : ast::str(s.value)));
    return;
  }
  const ast::Value &v = s.value;
  if (s.name == "seed") {
    errno = 0;
    const std::string &digits = v.text;
    unsigned long long seed = digits.empty() || digits[0] == '-' ? 0 : std::strtoull(digits.c_str(), nullptr, 10);
    if (!digits.empty() && digits[0] == '-') {
      diags_.error(v.loc, fmt::format("seed must be at least 0, got {}", v.text));
    } else if (errno == ERANGE) {
      diags_.error(v.loc, fmt::format("seed {} is too large (at most {})", v.text,
                                      std::numeric_limits<uint64_t>::max()));
    } else {
      tr.seed = seed;
    }
    return;
  }
  if (v.number < 1) {
    diags_.error(v.loc, fmt::format("{} must be at least 1, got {}", s.name, v.text));
    return;
  }
  if (v.number > static_cast<double>(kMaxInt)) {
    diags_.error(v.loc, fmt::format("{} {} is too large (at most {})", s.name, v.text, kMaxInt));
    return;
  }
  (s.name == "batch"      ? tr.batch
   : s.name == "warmup"   ? tr.warmup
   : s.name == "patience" ? tr.patience
   : s.name == "accumulate" ? tr.accumulate
                          : tr.epochs) = static_cast<int64_t>(v.number);
}

}  // namespace detail

std::optional<Model> analyze(const ast::Program &program, const std::string &file,
                             Diagnostics &diags, const DataOverrides &dataOverrides) {
  size_t first = diags.diagnostics().size();
  try {
    detail::Analyzer a(program, file, diags, dataOverrides);
    auto model = a.run();
    diags.sortByLocation(first);
    return model;
  } catch (const std::exception &e) {
    diags.error(std::string("internal error in semantic analysis: ") + e.what());
  } catch (...) {
    diags.error("internal error in semantic analysis");
  }
  return std::nullopt;
}

}  // namespace mtlc::sema
