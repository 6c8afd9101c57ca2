#include "runtime/train/Trainer.h"

#include "runtime/Arena.h"
#include "runtime/data/Batcher.h"
#include "runtime/io/Checkpoint.h"
#include "runtime/parallel/Distributed.h"
#include "runtime/Error.h"
#include "runtime/parallel/FloatMode.h"
#include "runtime/train/Init.h"
#include "runtime/train/Metrics.h"
#include "runtime/train/Optimizer.h"
#include "runtime/io/Progress.h"
#include "runtime/core/Rng.h"
#include "runtime/parallel/ThreadPool.h"
#include "runtime/train/Weighting.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <limits>
#include <optional>

namespace mtlc::rt {

using ojson = nlohmann::ordered_json;

static double now() {
  using namespace std::chrono;
  return duration<double>(steady_clock::now().time_since_epoch()).count();
}

std::vector<float> lossWeights(const ModelSpec& spec) {
  const std::string& w = spec.train.weighting;
  const float T = float(spec.tasks.size());
  std::vector<float> weights;
  for (const TaskSpec& t : spec.tasks) {
    if (w == "fixed" || w.empty() || w == "pcgrad") weights.push_back(float(t.weight));
    else if (w == "uniform" || w == "mgda") weights.push_back(1.0f / T);
    else if (w == "uncertainty") weights.push_back(0.5f);  // ½·exp(−0)
    else if (w == "dwa" || w == "gradnorm") weights.push_back(1.0f);
    else throwError("unknown weighting `{}` (known: fixed, uniform, uncertainty, dwa, gradnorm, pcgrad, mgda)", w);
  }
  return weights;
}

Dataset loadSplit(const ModelSpec& spec, const std::string& split,
                  const std::map<std::string, std::string>& overrides) {
  for (const auto& [key, path] : overrides)
    if (key != "train" && key != "test") throwError("--data {}={}: expected train=PATH or test=PATH", key, path);
  SourceSpec source = split == "train" ? spec.data.train : spec.data.test;
  if (auto it = overrides.find(split); it != overrides.end()) source = sourceFromPath(it->second, split);
  Dataset d = loadDataset(source, spec.data.inputs, spec.data.labels, split);
  // Arrange the buffers in model order (inputs, then tasks), matching bindings by name.
  auto arrange = [&](std::vector<Field>& fields, const std::vector<std::string>& names, const char* what) {
    std::vector<Field> ordered;
    for (const std::string& name : names) {
      auto it = std::find_if(fields.begin(), fields.end(), [&](const Field& f) { return f.name == name; });
      if (it == fields.end()) throwError("{}: no data binding for {} `{}`", d.origin, what, name);
      ordered.push_back(std::move(*it));
    }
    fields = std::move(ordered);
  };
  std::vector<std::string> inputNames, taskNames;
  for (const InputSpec& in : spec.inputs) inputNames.push_back(in.name);
  for (const TaskSpec& t : spec.tasks) taskNames.push_back(t.name);
  arrange(d.inputs, inputNames, "input");
  arrange(d.labels, taskNames, "task");
  for (size_t i = 0; i < spec.inputs.size(); ++i)
    if (d.inputs[i].width != spec.inputs[i].size)
      throwError("{}: input `{}` takes {} values per sample, its binding gives {}", d.origin, spec.inputs[i].name,
                 spec.inputs[i].size, d.inputs[i].width);
  validateInputs(spec.inputs, d);
  validateLabels(spec.tasks, d);
  return d;
}

namespace {

// The buffers one kernel call needs besides params/grads: activations, per-task outputs (then,
// for rep_grads, per-task gradients of the shared representation), losses.
struct Workspace {
  Arena acts;
  std::vector<Arena> outputs;
  std::vector<float*> outputPtrs;
  std::vector<float> losses, weights;
  explicit Workspace(const ModelSpec& spec, bool repGrads = false)
      : acts(spec.actsFloats), losses(spec.tasks.size() + 1), weights(lossWeights(spec)) {
    for (const TaskSpec& t : spec.tasks) outputs.emplace_back(spec.maxBatch * t.outWidth);
    if (repGrads)
      for (size_t t = 0; t < spec.tasks.size(); ++t) outputs.emplace_back(spec.maxBatch * spec.repWidth);
    for (Arena& a : outputs) outputPtrs.push_back(a.data());
  }
};

// The kernels over the current batch, for the weighting strategies (Weighting.h). Every call
// checks the task losses it produced. They run on `rows` of the gathered batch (all of it, or a
// rank's slice in data-parallel training: Distributed.h), reading and writing the batch buffers
// at those rows.
class BatchKernels final : public StepKernels {
 public:
  BatchKernels(const ModelSpec& spec, Workspace& ws, float* params, float* grads, Arena& taskGrads,
               ThreadPool& pool)
      : spec_(spec), ws_(ws), grads_(grads), taskGrads_(taskGrads), present_(spec.tasks.size()) {
    pool.attach(base_);
    base_.params = params;
    base_.acts = ws.acts.data();
    base_.losses = ws.losses.data();
  }
  void begin(const Batcher& b, RowRange rows, int64_t step, int64_t epoch, uint64_t seed) {
    const size_t T = spec_.tasks.size();
    inputs_.resize(spec_.inputs.size());
    for (size_t k = 0; k < inputs_.size(); ++k) inputs_[k] = b.inputs()[k] + rows.begin * spec_.inputs[k].size;
    labels_.resize(T);
    for (size_t k = 0; k < T; ++k) labels_[k] = b.labels()[k] + rows.begin * spec_.tasks[k].labelWidth;
    outputs_.resize(ws_.outputPtrs.size());
    for (size_t k = 0; k < outputs_.size(); ++k)
      outputs_[k] = ws_.outputPtrs[k] + rows.begin * (k < T ? spec_.tasks[k].outWidth : spec_.repWidth);
    base_.inputs = inputs_.data();
    base_.labels = labels_.data();
    base_.outputs = outputs_.data();
    base_.n = rows.count;
    rowBegin_ = rows.begin;
    base_.seed = seed;
    step_ = step;
    epoch_ = epoch;
    for (size_t t = 0; t < T; ++t) present_[t] = countPresent(labels_[t], rows.count * spec_.tasks[t].labelWidth);
  }
  void trainStep(const float* w) override { run(spec_.trainStep, "train_step", w, grads_); }
  void taskGrads(const float* w) override {
    taskGrads_.zero();  // a task's gradient is zero where its loss does not reach
    run(spec_.taskGradsStep, "task_grads", w, taskGrads_.data());
  }
  void repGrads(const float* w) override {
    const size_t T = spec_.tasks.size();
    for (size_t t = 0; t < T; ++t) std::fill_n(outputs_[T + t], base_.n * spec_.repWidth, 0.0f);
    run(spec_.repGradsStep, "rep_grads", w, grads_);
  }
  const float* losses() const override { return ws_.losses.data(); }
  float* grads() override { return grads_; }
  const float* taskGrad(int64_t t) const override { return taskGrads_.data() + t * spec_.paramCount; }
  const float* repGrad(int64_t t) const override { return outputs_[spec_.tasks.size() + size_t(t)]; }
  int64_t n() const override { return base_.n; }
  int64_t present(int64_t t) const override { return present_[size_t(t)]; }

  // After a non-finite loss or gradient: "; <where it first appeared>", or "" when that cannot be
  // told. A parameter or an input that is already non-finite is named; otherwise the model's
  // locator (ModelSpec::locateNonFinite) re-runs the last kernel call with every tensor checked.
  std::string locate() const {
    auto firstBad = [](const float* p, int64_t count) {
      for (int64_t i = 0; i < count; ++i)
        if (!std::isfinite(p[i])) return i;
      return int64_t(-1);
    };
    for (const ParamSpec& p : spec_.params)
      if (int64_t i = firstBad(base_.params + p.offset, p.size); i >= 0)
        return fmt::format("; parameter `{}` holds {} (element {}): the optimizer step before this one made it so "
                           "(a smaller lr or clip_grad_norm may help)", p.name, describeValue(base_.params[p.offset + i]), i);
    for (size_t k = 0; k < spec_.inputs.size(); ++k) {
      const InputSpec& in = spec_.inputs[k];
      if (int64_t i = firstBad(base_.inputs[k], base_.n * in.size); i >= 0)
        return fmt::format("; input `{}` holds {} in sample {} of the batch", in.name,
                           describeValue(base_.inputs[k][i]), rowBegin_ + i / in.size);
    }
    if (!spec_.locateNonFinite || !lastEntry_) return "";
    return spec_.locateNonFinite(lastEntry_, lastArgs_);
  }

 private:
  static std::string describeValue(float v) { return std::isnan(v) ? "NaN" : v > 0 ? "+Inf" : "-Inf"; }

  void run(mtlc_entry_fn fn, const char* name, const float* w, float* grads) {
    if (!fn) throwError("internal: model `{}` has no {} entry point", spec_.name, name);
    mtlc_args args = base_;
    args.grads = grads;
    args.loss_weights = w;
    lastEntry_ = name;
    lastArgs_ = args;
    fn(&args);
    for (size_t t = 0; t < spec_.tasks.size(); ++t) {
      const float L = ws_.losses[t];
      if (!std::isfinite(L))
        throwError("task `{}` loss became {} at step {} (epoch {}){}", spec_.tasks[t].name,
                   std::isnan(L) ? "NaN" : "infinite", step_, epoch_, locate());
    }
  }
  const ModelSpec& spec_;
  Workspace& ws_;
  float* grads_;
  Arena& taskGrads_;
  mtlc_args base_{};
  std::vector<const float*> inputs_, labels_;
  std::vector<float*> outputs_;
  int64_t rowBegin_ = 0;  // the first row of the batch these kernels run on
  std::vector<int64_t> present_;
  int64_t step_ = 0, epoch_ = 0;
  const char* lastEntry_ = nullptr;  // the last kernel call, for locate()
  mtlc_args lastArgs_{};
};

std::vector<TaskResult> evaluateWith(const ModelSpec& spec, const float* params, const Dataset& data, Workspace& ws,
                                     ThreadPool* pool) {
  if (!spec.evalStep) throwError("internal: model `{}` has no eval_step entry point", spec.name);
  std::vector<MetricAccumulator> acc;
  for (const TaskSpec& t : spec.tasks) acc.emplace_back(t);
  Batcher batcher(data, spec.maxBatch, /*shuffle=*/false, 0);
  for (int64_t b = 0; b < batcher.batches(); ++b) {
    const int64_t n = batcher.gather(b, pool);
    mtlc_args args{};
    args.params = const_cast<float*>(params);  // evalStep only reads them
    args.grads = nullptr;
    args.acts = ws.acts.data();
    args.inputs = batcher.inputs();
    args.labels = batcher.labels();
    args.loss_weights = ws.weights.data();
    args.losses = ws.losses.data();
    args.outputs = ws.outputPtrs.data();
    args.n = n;
    args.seed = 0;
    if (pool) pool->attach(args);
    spec.evalStep(&args);
    for (size_t t = 0; t < spec.tasks.size(); ++t)
      acc[t].add(ws.outputPtrs[t], batcher.labels()[t], n, ws.losses[t]);
  }
  std::vector<TaskResult> results;
  for (size_t t = 0; t < spec.tasks.size(); ++t) results.push_back({spec.tasks[t].name, acc[t].result()});
  return results;
}

// 4 decimals, or 3 significant digits in exponent form for small values (a loss of 2.1e-05
// should not print as 0.0000); "-" for a metric that does not apply.
std::string fmtValue(double v) {
  if (std::isnan(v)) return "-";
  if (v != 0 && std::fabs(v) < 1e-3) return fmt::format("{:.2e}", v);
  return fmt::format("{:.4f}", v);
}

// "loss 0.1234  accuracy 0.9000  auc 0.9500": the loss, then the task's metrics in program order.
std::string metricsLine(const TaskSpec& task, const TaskResult& r) {
  std::string s = fmt::format("loss {}", fmtValue(r.metrics.at("loss")));
  for (Metric m : task.metrics) s += fmt::format("  {} {}", metricName(m), fmtValue(r.metrics.at(metricName(m))));
  return s;
}

ojson metricsJson(const TaskSpec& task, const TaskResult& r) {
  ojson j = ojson::object();
  const double loss = r.metrics.at("loss");
  j["loss"] = std::isnan(loss) ? ojson(nullptr) : ojson(loss);  // no label of the task in the data
  for (Metric m : task.metrics) {
    double v = r.metrics.at(metricName(m));
    j[metricName(m)] = std::isnan(v) ? ojson(nullptr) : ojson(v);
  }
  return j;
}

std::string optimizerString(const OptimizerSpec& o) {
  if (o.kind == "sgd") {
    std::string s = fmt::format("sgd(lr={}", o.lr);
    if (o.momentum != 0) s += fmt::format(", momentum={}", o.momentum);
    if (o.weightDecay != 0) s += fmt::format(", weight_decay={}", o.weightDecay);
    return s + ")";
  }
  std::string s = fmt::format("adam(lr={}", o.lr);
  if (o.beta1 != 0.9 || o.beta2 != 0.999) s += fmt::format(", beta1={}, beta2={}", o.beta1, o.beta2);
  if (o.eps != 1e-8) s += fmt::format(", eps={}", o.eps);
  if (o.weightDecay != 0) s += fmt::format(", weight_decay={}", o.weightDecay);
  return s + ")";
}

// The final table: one row per task and data split, one column per metric that any task has.
void printSummary(std::ostream& out, const ModelSpec& spec, const TrainReport& r) {
  std::vector<std::string> cols{"loss"};
  for (const TaskSpec& t : spec.tasks)
    for (Metric m : t.metrics)
      if (std::find(cols.begin(), cols.end(), metricName(m)) == cols.end()) cols.push_back(metricName(m));
  size_t taskWidth = 4;
  for (const TaskSpec& t : spec.tasks) taskWidth = std::max(taskWidth, t.name.size());
  std::string head = fmt::format("{:<{}}  {:<5}", "task", taskWidth, "data");
  for (const std::string& c : cols) head += fmt::format("  {:>9}", c);
  out << head << '\n';
  for (size_t t = 0; t < spec.tasks.size(); ++t)
    for (const auto* results : {&r.train, &r.test}) {
      if (t >= results->size()) continue;
      const TaskResult& res = (*results)[t];
      std::string line = fmt::format("{:<{}}  {:<5}", res.task, taskWidth, results == &r.train ? "train" : "test");
      for (const std::string& c : cols) {
        auto it = res.metrics.find(c);
        line += fmt::format("  {:>9}", it == res.metrics.end() ? "" : fmtValue(it->second));
      }
      while (!line.empty() && line.back() == ' ') line.pop_back();  // blank cells at the end
      out << line << '\n';
    }
}

std::vector<std::string> taskNames(const ModelSpec& spec) {
  std::vector<std::string> names;
  for (const TaskSpec& t : spec.tasks) names.push_back(t.name);
  return names;
}

// A resumed run's log: keep what the run logged up to its checkpoint (step lines up to `step`, test
// lines of the `epochs` completed epochs) and drop the rest, a line cut short by a crash included,
// so that the log reads as if the run had never stopped. Rewritten atomically.
void trimLog(const std::string& path, int64_t step, int64_t epochs) {
  std::ifstream in(path);
  if (!in) return;  // a new log
  std::string kept, line;
  while (std::getline(in, line)) {
    ojson j = ojson::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!j.is_object()) continue;
    const bool keep = j.contains("step") ? j["step"].is_number() && j["step"].get<int64_t>() <= step
                                         : j.contains("epoch") && j["epoch"].is_number() && j["epoch"].get<int64_t>() <= epochs;
    if (keep) kept += line + '\n';
  }
  in.close();
  const std::string tmp = path + ".trim";
  {
    std::ofstream o(tmp, std::ios::binary | std::ios::trunc);
    o << kept;
    if (!o.flush()) throwError("{}: cannot rewrite the log", tmp);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) throwError("{}: cannot replace the log: {}", path, std::strerror(errno));
}

// SIGINT and SIGTERM while training: the first one asks the loop to stop after its step (it then
// writes its checkpoint); the handler is one-shot, so a second signal ends the process as usual.
volatile std::sig_atomic_t gStopSignal = 0;
extern "C" void onStopSignal(int sig) { gStopSignal = sig; }

class StopSignals {
 public:
  StopSignals() {
    gStopSignal = 0;
    struct sigaction sa {};
    sa.sa_handler = onStopSignal;
    sa.sa_flags = SA_RESETHAND;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &oldInt_);
    sigaction(SIGTERM, &sa, &oldTerm_);
  }
  ~StopSignals() {
    sigaction(SIGINT, &oldInt_, nullptr);
    sigaction(SIGTERM, &oldTerm_, nullptr);
  }
  int caught() const { return gStopSignal; }

 private:
  struct sigaction oldInt_ {}, oldTerm_ {};
};

}  // namespace

std::vector<TaskResult> evaluate(const ModelSpec& spec, const float* params, const Dataset& data,
                                 ThreadPool* pool) {
  Workspace ws(spec);
  return evaluateWith(spec, params, data, ws, pool);
}

TrainReport train(const ModelSpec& spec, const TrainOptions& opt, std::ostream& out) {
  if (!spec.trainStep) throwError("internal: model `{}` has no train_step entry point", spec.name);
  const TrainSpec& ts = spec.train;
  if (!opt.resumePath.empty() && !opt.initPath.empty())
    throwError("--resume continues a run and --init starts one from a checkpoint's parameters: give one of them");
  if (opt.checkpointEvery > 0 && opt.savePath.empty())
    throwError("--checkpoint-every needs --save FILE: the checkpoint is written there");
  // --resume: the run's position first, since its seed decides everything else.
  std::optional<TensorFile> resumeFile;
  std::optional<TrainPosition> resumed;
  if (!opt.resumePath.empty()) {
    resumeFile = readSafeTensors(opt.resumePath);
    resumed = loadTrainPosition(*resumeFile, opt.resumePath, spec);
    if (!resumed)
      throwError("{}: no training position in this checkpoint, so there is no run to resume (--init FILE starts a "
                 "new run from its parameters)", opt.resumePath);
    if (opt.seed && *opt.seed != resumed->seed)
      throwError("--seed {} differs from the seed {} of the run in {}", *opt.seed, resumed->seed, opt.resumePath);
  }
  const uint64_t seed = resumed ? resumed->seed : opt.seed.value_or(ts.seed);
  const int64_t epochs = opt.epochs >= 0 ? opt.epochs : ts.epochs;
  const int64_t T = int64_t(spec.tasks.size());
  if (ts.batch > spec.maxBatch)
    throwError("internal: batch {} exceeds the kernels' maximum batch {}", ts.batch, spec.maxBatch);

  // ---- data
  Dataset trainData = loadSplit(spec, "train", opt.dataOverrides);
  const bool root = !opt.comm || opt.comm->rank() == 0;  // data-parallel: rank 0 alone evaluates
  const bool hasTest = root && (spec.data.test.present() || opt.dataOverrides.count("test"));
  Dataset testData = hasTest ? loadSplit(spec, "test", opt.dataOverrides) : Dataset{};

  // One rank of a data-parallel job takes one thread unless told otherwise: the ranks of a job
  // usually share a machine, and each taking every CPU would oversubscribe it.
  const bool ranks = opt.comm && opt.comm->size() > 1;
  ThreadPool pool(opt.threads == 0 && ranks ? 1 : opt.threads);
  ScopedFlushDenormals flush(opt.flushDenormals);

  // ---- arenas, weighting, initial parameters, optimizer
  std::unique_ptr<Weighting> weighting = Weighting::create(spec, seed);
  Arena params(spec.paramCount), grads(spec.paramCount);
  Arena taskGrads(weighting->needsTaskGrads() ? T * spec.paramCount : 0);
  Workspace ws(spec, weighting->needsRepGrads());
  Optimizer optimizer(ts.optimizer, spec.paramCount);
  const std::vector<std::pair<int64_t, int64_t>> activeSpans = trainableSpans(spec);
  optimizer.setActiveSpans(activeSpans);
  std::string initNote;
  std::vector<std::string> initLines, freshNames;
  initParams(spec, seed, params.data());  // then --init or --resume overwrites what it has
  if (resumed) {
    const std::string& path = opt.resumePath;
    if (resumed->batchSize != ts.batch || resumed->rows != trainData.rows)
      throwError("{}: the run trained with batch {} on {} samples; this one has batch {} and {} samples, so it "
                 "cannot continue it", path, resumed->batchSize, resumed->rows, ts.batch, trainData.rows);
    loadParams(*resumeFile, path, spec, params.data());
    if (!loadOptimizerState(*resumeFile, path, optimizer))
      throwError("{}: the checkpoint has no {} optimizer state for this model", path, ts.optimizer.kind);
    if (!loadWeightingState(*resumeFile, spec, *weighting))
      throwError("{}: the checkpoint has no `{}` weighting state for tasks {}", path, weighting->describe(),
                 fmt::join(taskNames(spec), ", "));
    initNote = fmt::format("resumed from {} at step {} (epoch {}, {} batches done)", path, resumed->step,
                           resumed->epoch + 1, resumed->batch);
  } else if (!opt.initPath.empty()) {
    TensorFile file = readSafeTensors(opt.initPath);
    InitReport ir = loadMatchingParams(file, opt.initPath, spec, params.data());
    freshNames = ir.freshNames;
    if (ir.complete() && ir.unused.empty()) {
      // The same model: continue where it stopped, optimizer and weighting state included.
      bool withState = loadOptimizerState(file, opt.initPath, optimizer);
      bool withWeighting = !weighting->state().empty() && loadWeightingState(file, spec, *weighting);
      std::string extra;
      if (withState) extra = fmt::format("with optimizer state after {} steps", optimizer.steps());
      if (withWeighting) extra += fmt::format("{}weighting state", extra.empty() ? "with " : ", ");
      initNote = fmt::format("parameters from {}{}", opt.initPath, extra.empty() ? "" : " (" + extra + ")");
    } else {
      // Another model (transfer): the parameters that fit, and no optimizer or weighting state.
      if (ir.complete())
        initNote = fmt::format("parameters from {}: all {} loaded (a checkpoint of another model: optimizer state "
                               "not restored)", opt.initPath, ir.loaded.size());
      else
        initNote = fmt::format("parameters from {}: {} of {} loaded, {} initialised fresh (seed {})", opt.initPath,
                               ir.loaded.size(), spec.params.size(), ir.fresh.size(), seed);
      initLines.push_back(fmt::format("init: loaded {}", fmt::join(ir.loaded, ", ")));
      if (!ir.fresh.empty()) initLines.push_back(fmt::format("init: fresh {}", fmt::join(ir.fresh, ", ")));
      if (!ir.unused.empty()) initLines.push_back(fmt::format("init: not used from the checkpoint: {}", fmt::join(ir.unused, ", ")));
    }
  } else {
    initNote = fmt::format("seed {}", seed);
  }
  if (opt.comm) opt.comm->broadcastFromRoot(params.data(), spec.paramCount);  // every rank starts from rank 0's

  std::ofstream log;
  if (!opt.logPath.empty()) {
    if (resumed) {
      trimLog(opt.logPath, resumed->step, resumed->epoch);
      log.open(opt.logPath, std::ios::app);
    } else {
      log.open(opt.logPath);
    }
    if (!log) throwError("{}: cannot open the log file for writing", opt.logPath);
  }

  int64_t learnable = 0;  // the summary's count: parameters the optimizer updates (the arena also holds padding)
  for (const ParamSpec& p : spec.params)
    if (!p.frozen) learnable += p.size;
  out << fmt::format("model {}: {} task{}, {} learnable parameters; {}, batch {}, {} epoch{}, {} thread{}; {}\n",
                     spec.name, T, T == 1 ? "" : "s", learnable, optimizerString(ts.optimizer), ts.batch, epochs,
                     epochs == 1 ? "" : "s", pool.threads(), pool.threads() == 1 ? "" : "s", initNote);
  for (const std::string& l : initLines) out << l << '\n';
  if (ts.weighting != "fixed" && !ts.weighting.empty()) out << fmt::format("weighting: {}\n", weighting->describe());
  {  // frozen blocks, in parameter order
    std::vector<std::string> blocks;
    std::map<std::string, std::pair<int64_t, int64_t>> sizes;  // block -> parameters, values
    for (const ParamSpec& p : spec.params) {
      if (!p.frozen) continue;
      if (!sizes.count(p.block)) blocks.push_back(p.block);
      sizes[p.block].first += 1;
      sizes[p.block].second += p.size;
      if (std::find(freshNames.begin(), freshNames.end(), p.name) != freshNames.end())
        out << fmt::format("warning: frozen parameter `{}` was not loaded from the checkpoint; it keeps its random "
                           "initial values\n", p.name);
    }
    std::vector<std::string> parts;
    for (const std::string& b : blocks)
      parts.push_back(fmt::format("{} ({} parameter{}, {} values)", b, sizes[b].first, sizes[b].first == 1 ? "" : "s",
                                  sizes[b].second));
    if (!parts.empty()) out << fmt::format("frozen: {}; the optimizer leaves them unchanged\n", fmt::join(parts, ", "));
  }
  out << fmt::format("train: {} ({} samples)", trainData.origin, trainData.rows);
  if (hasTest) out << fmt::format("; test: {} ({} samples)", testData.origin, testData.rows);
  out << '\n';
  {  // partial labels
    std::vector<std::string> parts;
    bool partial = false;
    for (int64_t t = 0; t < T; ++t) {
      const Field& f = trainData.labels[size_t(t)];
      const int64_t total = int64_t(f.data.size()), present = countPresent(f.data.data(), total);
      partial = partial || present < total;
      parts.push_back(fmt::format("{} {}/{}", spec.tasks[size_t(t)].name, present, total));
    }
    if (partial) out << fmt::format("labels present (train): {}\n", fmt::join(parts, ", "));
  }
  out << std::flush;

  // ---- the loop
  Batcher batcher(trainData, ts.batch, ts.shuffle, seed);
  BatchKernels kernels(spec, ws, params.data(), grads.data(), taskGrads, pool);
  std::optional<DataParallelKernels> parallel;  // more than one rank: the global batch's results
  if (opt.comm && opt.comm->size() > 1) {
    parallel.emplace(spec, *opt.comm, kernels,
                     StepBuffers{grads.data(), taskGrads.size() ? taskGrads.data() : nullptr, ws.losses.data(),
                                 &ws.outputPtrs});
    out << describeSlices(*opt.comm, ts.batch) << '\n' << std::flush;
  }
  Progress progress(std::cerr, Progress::stderrIsTty(), !opt.quiet);
  std::vector<MetricAccumulator> trainAcc;
  for (const TaskSpec& t : spec.tasks) trainAcc.emplace_back(t);
  TrainReport report;
  const double nan = std::numeric_limits<double>::quiet_NaN();
  double loopSeconds = 0;
  int64_t samplesSeen = 0;
  report.steps = resumed ? resumed->step : 0;
  bool stop = opt.steps >= 0 && report.steps >= opt.steps;
  const int64_t firstEpoch = resumed ? resumed->epoch : 0;
  double totalSum = 0;  // the epoch's Σ total·n, samples and batches so far (saved in checkpoints)
  int64_t epochSamples = 0, batchesDone = 0, epoch = firstEpoch;
  bool epochEnded = false;  // the epoch's end (weighting, evaluation) ran: the next one starts fresh
  // What a checkpoint written now holds (the loop's position after its last step).
  auto position = [&] {
    TrainPosition p;
    p.seed = seed;
    p.step = report.steps;
    p.batchSize = ts.batch;
    p.rows = trainData.rows;
    if (epochEnded) {
      p.epoch = epoch + 1;
      for (const TaskSpec& t : spec.tasks) p.tasks.push_back(MetricAccumulator(t).state());
    } else {
      p.epoch = epoch;
      p.batch = batchesDone;
      p.lossSum = totalSum;
      p.samples = epochSamples;
      for (const MetricAccumulator& a : trainAcc) p.tasks.push_back(a.state());
    }
    return p;
  };
  auto checkpoint = [&] {
    if (log.is_open()) log.flush();  // the log holds at least the checkpoint's steps (trimLog drops the rest)
    const TrainPosition p = position();
    saveCheckpoint(opt.savePath, spec, params.data(), &optimizer, weighting.get(), &p);
  };
  // Data-parallel: a signal ends the rank at once (Distributed.h); stopping after a step would
  // need every rank to stop at the same one.
  std::optional<StopSignals> signals;
  if (!parallel) signals.emplace();
  for (int64_t e = firstEpoch; e < epochs && !stop; ++e) {
    epoch = e;
    epochEnded = false;
    batcher.startEpoch(e);
    for (MetricAccumulator& a : trainAcc) a.reset();
    totalSum = 0;
    epochSamples = batchesDone = 0;
    if (resumed && e == resumed->epoch) {  // continue the epoch the checkpoint stopped in
      totalSum = resumed->lossSum;
      epochSamples = resumed->samples;
      batchesDone = resumed->batch;
      for (int64_t t = 0; t < T; ++t) trainAcc[t].restore(resumed->tasks[t]);
    }
    const int64_t batches = batcher.batches();
    if (batchesDone > batches)
      throwError("{}: the checkpoint is {} batches into epoch {}, which has {}", opt.resumePath, batchesDone, e + 1,
                 batches);
    progress.beginEpoch(e + 1, epochs, batches);
    const double epochStart = now();
    const int64_t epochSamplesBefore = epochSamples;
    for (int64_t b = batchesDone; b < batches; ++b) {
      const int64_t n = batcher.gather(b, &pool);
      batcher.prefetch(b + 1, &pool);  // the next batch, on idle workers while this step runs
      const int64_t step = report.steps + 1;
      for (int64_t t = 0; t < T; ++t) ws.outputPtrs[t][0] = float(nan);  // tells whether trainStep wrote outputs
      RowRange rows{0, n};
      if (parallel) {
        parallel->begin(batcher.labels(), n);
        rows = parallel->rows();
      }
      const uint64_t stepSeed = mix64(mix64(seed) ^ uint64_t(step));
      kernels.begin(batcher, rows, step, e + 1, parallel ? parallel->dropoutSeed(stepSeed) : stepSeed);
      const StepResult sr = parallel ? weighting->step(*parallel, step) : weighting->step(kernels, step);
      if (!std::isfinite(sr.total))
        throwError("the total loss became {} at step {} (epoch {}){}", std::isnan(sr.total) ? "NaN" : "infinite", step,
                   e + 1, kernels.locate());
      double gradNorm = nan;
      if (ts.clipGradNorm > 0) {
        gradNorm = clipGradNorm(grads.data(), activeSpans, ts.clipGradNorm);
        if (!std::isfinite(gradNorm))
          throwError("the gradient norm became {} at step {} (epoch {}) while every task loss was finite{}",
                     std::isnan(gradNorm) ? "NaN" : "infinite", step, e + 1, kernels.locate());
      }
      optimizer.step(params.data(), grads.data(), &pool);
      ++batchesDone;
      report.steps = step;
      for (int64_t t = 0; t < T; ++t) {
        const float* o = std::isnan(ws.outputPtrs[t][0]) ? nullptr : ws.outputPtrs[t];
        trainAcc[t].add(o, batcher.labels()[t], n, ws.losses[t]);
      }
      totalSum += sr.total * double(n);
      epochSamples += n;
      samplesSeen += n;
      if (log.is_open()) {
        ojson j;
        j["step"] = step;
        j["epoch"] = e + 1;
        j["loss"] = sr.total;
        ojson tasks = ojson::object();
        for (int64_t t = 0; t < T; ++t) tasks[spec.tasks[t].name] = {{"loss", ws.losses[t]}, {"weight", sr.weights[t]}};
        j["tasks"] = tasks;
        if (ts.clipGradNorm > 0) j["grad_norm"] = gradNorm;
        log << j.dump() << '\n';
      }
      progress.update(b + 1, epochSamples, totalSum / double(epochSamples));
      if (opt.checkpointEvery > 0 && step % opt.checkpointEvery == 0) checkpoint();
      if (signals && signals->caught()) {
        report.interruptedBy = signals->caught();
        stop = true;
        break;
      }
      if (opt.steps >= 0 && report.steps >= opt.steps) {
        stop = true;
        break;
      }
    }
    progress.endEpoch();
    if (parallel) parallel->checkInSync(params.data(), e + 1);
    if (batchesDone == batches) {  // only complete epochs feed the weighting (dwa)
      std::vector<double> means;
      for (int64_t t = 0; t < T; ++t) means.push_back(trainAcc[t].result()["loss"]);
      weighting->endEpoch(means);
    }
    const double epochSeconds = now() - epochStart;
    loopSeconds += epochSeconds;
    std::string taskLosses;
    for (int64_t t = 0; t < T; ++t)
      taskLosses += fmt::format("{}{} {}", t ? ", " : "", spec.tasks[t].name, fmtValue(trainAcc[t].result()["loss"]));
    const double rate = epochSeconds > 0 ? double(epochSamples - epochSamplesBefore) / epochSeconds : 0.0;
    out << fmt::format("epoch {}/{}: loss {} ({}){}  {:.1f}s  {:.0f} samples/s\n", e + 1, epochs,
                       fmtValue(epochSamples ? totalSum / double(epochSamples) : nan), taskLosses,
                       stop && epochSamples < trainData.rows ? fmt::format("  [stopped at step {}]", report.steps) : "",
                       epochSeconds, rate);
    if (hasTest) {
      report.test = evaluateWith(spec, params.data(), testData, ws, &pool);
      for (size_t t = 0; t < report.test.size(); ++t)
        out << fmt::format("  test {}: {}\n", report.test[t].task, metricsLine(spec.tasks[t], report.test[t]));
      if (log.is_open()) {
        ojson j;
        j["epoch"] = e + 1;
        ojson tj = ojson::object();
        for (size_t t = 0; t < report.test.size(); ++t) tj[report.test[t].task] = metricsJson(spec.tasks[t], report.test[t]);
        j["test"] = tj;
        log << j.dump() << '\n';
      }
    }
    epochEnded = batchesDone == batches;
    out << std::flush;
    if (log.is_open()) log.flush();
  }
  if (hasTest && report.test.empty()) {  // no epoch ran (--epochs 0 / --steps 0): evaluate as loaded
    report.test = evaluateWith(spec, params.data(), testData, ws, &pool);
    for (size_t t = 0; t < report.test.size(); ++t)
      out << fmt::format("  test {}: {}\n", report.test[t].task, metricsLine(spec.tasks[t], report.test[t]));
  }
  report.train.clear();
  for (int64_t t = 0; t < T; ++t)
    if (trainAcc[t].samples() > 0) report.train.push_back({spec.tasks[t].name, trainAcc[t].result()});
  report.seconds = loopSeconds;
  report.samplesPerSec = loopSeconds > 0 ? double(samplesSeen) / loopSeconds : 0;

  out << fmt::format("trained {} step{} in {:.1f}s ({:.0f} samples/s)\n", report.steps, report.steps == 1 ? "" : "s",
                     report.seconds, report.samplesPerSec);
  if (parallel) out << describeCollectives(*opt.comm, report.steps, report.seconds) << '\n';
  if (!report.train.empty() || !report.test.empty()) printSummary(out, spec, report);
  if (!opt.savePath.empty()) {
    checkpoint();
    out << fmt::format("saved {} ({}, at step {})\n", opt.savePath,
                       weighting->state().empty() ? "parameters and optimizer state"
                                                  : "parameters, optimizer and weighting state",
                       report.steps);
  }
  if (report.interruptedBy)
    out << fmt::format("interrupted by {} after step {}{}\n", report.interruptedBy == SIGINT ? "SIGINT" : "SIGTERM",
                       report.steps,
                       opt.savePath.empty() ? " (no --save FILE: nothing written)"
                                            : fmt::format("; continue with --resume {}", opt.savePath));
  out << std::flush;
  return report;
}

}  // namespace mtlc::rt
