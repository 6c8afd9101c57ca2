#include "runtime/train/TrainingRun.h"

#include "spec/Error.h"
#include "runtime/core/Rng.h"
#include "runtime/train/Init.h"
#include "runtime/train/Report.h"
#include "runtime/train/Schedule.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <limits>
#include <map>

namespace mtlc::rt {

using ojson = nlohmann::ordered_json;

namespace {

double now() {
  using namespace std::chrono;
  return duration<double>(steady_clock::now().time_since_epoch()).count();
}

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

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

// `validation F`: the last ceil(F·rows) rows of `train` (file order) become the validation set.
Dataset holdOut(Dataset& train, double fraction) {
  const int64_t rows = train.rows, n = int64_t(std::ceil(fraction * double(rows) - 1e-9));
  if (n < 1 || n >= rows)
    throwError("validation {}: {} of the {} training samples would be held out; at least one must be held out and "
               "one trained on", fraction, n, rows);
  const int64_t kept = rows - n;
  Dataset val;
  val.origin = fmt::format("{}, the last {} samples", train.origin, n);
  val.rows = n;
  val.minusOneUnlabelled = train.minusOneUnlabelled;
  auto split = [&](std::vector<Field>& fields, std::vector<Field>& out) {
    for (Field& f : fields) {
      const size_t w = size_t(f.width), head = size_t(kept) * w, tail = size_t(n) * w;
      HugeFloats a(head), b(tail);
      if (!f.data.readFloats(0, head, a.data()) || !f.data.readFloats(head, tail, b.data()))
        throwError("{}: cannot read field `{}`: {}", train.origin, f.name, std::strerror(errno));
      out.push_back(Field{f.name, f.width, FloatStore(std::move(b))});
      f.data = FloatStore(std::move(a));
    }
  };
  split(train.inputs, val.inputs);
  split(train.labels, val.labels);
  if (!train.rowLine.empty()) {
    val.rowLine.assign(train.rowLine.begin() + kept, train.rowLine.end());
    train.rowLine.resize(size_t(kept));
  }
  train.rows = kept;
  train.origin = fmt::format("{}, the first {} samples", train.origin, kept);
  return val;
}

// SIGINT and SIGTERM while training: the first one asks the loop to stop after its step (it then
// writes its checkpoint); the handler is one-shot, so a second signal ends the process as usual.
volatile std::sig_atomic_t gStopSignal = 0;
extern "C" void onStopSignal(int sig) { gStopSignal = sig; }

}  // namespace

// Installs onStopSignal for the run's lifetime, and restores the handlers it found.
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

// The log's step record (Trainer.h), built once: its keys and their order are the same for every step
// of a run, so a step only refills the numbers in place and the tree is not allocated again.
struct StepLogLine {
  ojson json;
  ojson *step = nullptr, *epoch = nullptr, *loss = nullptr, *lr = nullptr, *gradNorm = nullptr;
  std::vector<std::pair<ojson*, ojson*>> tasks;  // each task's "loss" and "weight"

  StepLogLine(const ModelSpec& spec, bool withGradNorm) {
    json["step"] = int64_t(0);
    json["epoch"] = int64_t(0);
    json["loss"] = 0.0;
    json["lr"] = 0.0;
    ojson byTask = ojson::object();
    for (const TaskSpec& t : spec.tasks) byTask[t.name] = {{"loss", 0.0f}, {"weight", 0.0f}};
    json["tasks"] = std::move(byTask);
    if (withGradNorm) json["grad_norm"] = 0.0;
    // Pointers into the finished tree: nothing is inserted after this.
    step = &json["step"], epoch = &json["epoch"], loss = &json["loss"], lr = &json["lr"];
    for (const TaskSpec& t : spec.tasks) {
      ojson& task = json["tasks"][t.name];
      tasks.emplace_back(&task["loss"], &task["weight"]);
    }
    if (withGradNorm) gradNorm = &json["grad_norm"];
  }
};

TrainingRun::TrainingRun(const ModelSpec& spec, const TrainOptions& options, std::ostream& out)
    : spec_(spec), opt_(options), out_(out), ts_(spec.train), T_(int64_t(spec.tasks.size())),
      trainData_(options.trainData ? *options.trainData : loadedTrain_),
      testData_(options.trainData && options.testData ? *options.testData : loadedTest_) {}

TrainingRun::~TrainingRun() = default;

TrainReport TrainingRun::run() {
  checkOptions();
  readResumePoint();
  seed_ = resumed_ ? resumed_->seed : opt_.seed.value_or(ts_.seed);
  epochs_ = opt_.epochs >= 0 ? opt_.epochs : ts_.epochs;
  if (ts_.batch > spec_.maxBatch)
    throwError("internal: batch {} exceeds the kernels' maximum batch {}", ts_.batch, spec_.maxBatch);
  loadData();
  // One rank of a data-parallel job takes one thread unless told otherwise: the ranks of a job
  // usually share a machine, and each taking every CPU would oversubscribe it.
  const bool ranks = opt_.comm && opt_.comm->size() > 1;
  pool_.emplace(opt_.threads == 0 && ranks ? 1 : opt_.threads);
  flush_.emplace(opt_.flushDenormals);
  createState();
  initialiseParams();
  openLog();
  printStart();
  startLoop();
  for (int64_t e = firstEpoch_; e < epochs_ && !stop_; ++e) runEpoch(e);
  return finish();
}

// ---- start ----------------------------------------------------------------------------------------

void TrainingRun::checkOptions() const {
  if (!spec_.trainStep) throwError("internal: model `{}` has no train_step entry point", spec_.name);
  if (!opt_.resumePath.empty() && !opt_.initPath.empty())
    throwError("--resume continues a run and --init starts one from a checkpoint's parameters: give one of them");
  if (opt_.checkpointEvery > 0 && opt_.savePath.empty())
    throwError("--checkpoint-every needs --save FILE: the checkpoint is written there");
  const bool validation = ts_.validation > 0 || spec_.data.val.present();
  if (!validation && !opt_.saveBestPath.empty())
    throwError("--save-best keeps the best epoch on the validation set, and this run has none: add `val SOURCE` to "
               "the data block or `validation 0.1` to the train block");
  if (opt_.comm && opt_.comm->size() > 1 && ts_.accumulate > 1)
    throwError("accumulate {}: gradient accumulation is not available in a data-parallel job; the ranks "
               "already split each batch, so a larger `batch` gives the larger step", ts_.accumulate);
}

// --resume: the run's position first, since its seed decides everything else.
void TrainingRun::readResumePoint() {
  if (opt_.resumePath.empty()) return;
  resumeFile_ = readSafeTensors(opt_.resumePath);
  resumed_ = loadTrainPosition(*resumeFile_, opt_.resumePath, spec_);
  if (!resumed_)
    throwError("{}: no training position in this checkpoint, so there is no run to resume (--init FILE starts a "
               "new run from its parameters)", opt_.resumePath);
  if (opt_.seed && *opt_.seed != resumed_->seed)
    throwError("--seed {} differs from the seed {} of the run in {}", *opt_.seed, resumed_->seed, opt_.resumePath);
}

void TrainingRun::loadData() {
  root_ = !opt_.comm || opt_.comm->rank() == 0;  // data-parallel: rank 0 alone evaluates
  if (opt_.trainData) {  // in-memory data: the caller's, not copied
    if (ts_.validation > 0)
      throwError("validation {}: a fraction of in-memory training data cannot be held out; pass the "
                 "validation rows as a source (data {{ val SOURCE }})",
                 ts_.validation);
    hasTest_ = root_ && opt_.testData;
  } else {
    loadedTrain_ = loadSplit(spec_, "train", opt_.dataOverrides, !opt_.quiet);
    hasTest_ = root_ && (spec_.data.test.present() || opt_.dataOverrides.count("test"));
    if (hasTest_) loadedTest_ = loadSplit(spec_, "test", opt_.dataOverrides, !opt_.quiet);
    if (ts_.validation > 0) {
      Dataset val = holdOut(loadedTrain_, ts_.validation);
      if (root_) valData_ = std::move(val);
    }
  }
  if (ts_.validation == 0 && root_ && spec_.data.val.present())
    valData_ = loadSplit(spec_, "val", opt_.dataOverrides, !opt_.quiet);
  hasVal_ = root_ && valData_.rows > 0;
}

void TrainingRun::createState() {
  weighting_ = Weighting::create(spec_, seed_);
  params_.resize(spec_.paramCount);
  // Ranks on one machine share their gradient arenas, so the sum needs no transfer (Distributed.h).
  grad_ = opt_.comm && opt_.comm->size() > 1 ? opt_.comm->sharedGradients(spec_.paramCount) : nullptr;
  if (!grad_) {
    grads_.resize(spec_.paramCount);
    grad_ = grads_.data();
  }
  taskGrads_.resize(weighting_->needsTaskGrads() ? T_ * spec_.paramCount : 0);
  if (ts_.accumulate > 1) accum_.resize(spec_.paramCount);
  groupLosses_.assign(size_t(T_), 0.0f);
  ws_.emplace(spec_, weighting_->needsRepGrads());
  optimizer_.emplace(ts_.optimizer, spec_.paramCount);
  ParamGroups groups = trainableGroups(spec_);  // `lr_scale`: the spans cut where the rate's factor changes
  activeSpans_ = groups.spans;
  optimizer_->setActiveSpans(activeSpans_, std::move(groups.scales));
}

void TrainingRun::initialiseParams() {
  initParams(spec_, seed_, params_.data());  // then --init or --resume overwrites what it has
  if (resumed_) resumeState();
  else if (!opt_.initPath.empty()) transferFrom(opt_.initPath);
  else initNote_ = fmt::format("seed {}", seed_);
  if (opt_.comm) opt_.comm->broadcastFromRoot(params_.data(), spec_.paramCount);  // every rank starts from rank 0's
}

void TrainingRun::resumeState() {
  const std::string& path = opt_.resumePath;
  if (resumed_->batchSize != ts_.batch || resumed_->rows != trainData_.rows)
    throwError("{}: the run trained with batch {} on {} samples; this one has batch {} and {} samples, so it "
               "cannot continue it", path, resumed_->batchSize, resumed_->rows, ts_.batch, trainData_.rows);
  loadParams(*resumeFile_, path, spec_, params_.data());
  if (!loadOptimizerState(*resumeFile_, path, spec_, *optimizer_))
    throwError("{}: the checkpoint has no {} optimizer state for this model", path, vocab::name(ts_.optimizer.kind));
  if (!loadWeightingState(*resumeFile_, spec_, *weighting_))
    throwError("{}: the checkpoint has no `{}` weighting state for tasks {}", path, weighting_->describe(),
               fmt::join(taskNames(spec_), ", "));
  initNote_ = fmt::format("resumed from {} at step {} (epoch {}, {} batches done)", path, resumed_->step,
                          resumed_->epoch + 1, resumed_->batch);
}

// --init FILE: the parameters that fit; a checkpoint of this very model brings its optimizer and
// weighting state too, so that a saved run continues where it stopped.
void TrainingRun::transferFrom(const std::string& path) {
  TensorFile file = readSafeTensors(path);
  InitReport ir = loadMatchingParams(file, path, spec_, params_.data());
  freshNames_ = ir.freshNames;
  if (ir.complete() && ir.unused.empty()) {
    bool withState = loadOptimizerState(file, path, spec_, *optimizer_);
    bool withWeighting = !weighting_->state().empty() && loadWeightingState(file, spec_, *weighting_);
    std::string extra;
    if (withState) extra = fmt::format("with optimizer state after {} steps", optimizer_->steps());
    if (withWeighting) extra += fmt::format("{}weighting state", extra.empty() ? "with " : ", ");
    initNote_ = fmt::format("parameters from {}{}", path, extra.empty() ? "" : " (" + extra + ")");
    return;
  }
  // Another model (transfer): the parameters that fit, and no optimizer or weighting state.
  if (ir.complete())
    initNote_ = fmt::format("parameters from {}: all {} loaded (a checkpoint of another model: optimizer state "
                            "not restored)", path, ir.loaded.size());
  else
    initNote_ = fmt::format("parameters from {}: {} of {} loaded, {} initialised fresh (seed {})", path,
                            ir.loaded.size(), spec_.params.size(), ir.fresh.size(), seed_);
  initLines_.push_back(fmt::format("init: loaded {}", fmt::join(ir.loaded, ", ")));
  if (!ir.fresh.empty()) initLines_.push_back(fmt::format("init: fresh {}", fmt::join(ir.fresh, ", ")));
  if (!ir.unused.empty())
    initLines_.push_back(fmt::format("init: not used from the checkpoint: {}", fmt::join(ir.unused, ", ")));
}

void TrainingRun::openLog() {
  if (opt_.logPath.empty()) return;
  if (resumed_) {
    trimLog(opt_.logPath, resumed_->step, resumed_->epoch);
    log_.open(opt_.logPath, std::ios::app);
  } else {
    log_.open(opt_.logPath);
  }
  if (!log_) throwError("{}: cannot open the log file for writing", opt_.logPath);
}

void TrainingRun::printStart() {
  const int threads = pool_->threads();
  int64_t learnable = 0;  // the summary's count: parameters the optimizer updates (the arena also holds padding)
  for (const ParamSpec& p : spec_.params)
    if (p.learnable()) learnable += p.size;
  const std::string batch = ts_.accumulate > 1 ? fmt::format("{} (accumulate {})", ts_.batch, ts_.accumulate)
                                               : std::to_string(ts_.batch);
  out_ << fmt::format("model {}: {} task{}, {} learnable parameters; {}, batch {}, {} epoch{}, {} thread{}; {}\n",
                      spec_.name, T_, T_ == 1 ? "" : "s", learnable, optimizerString(ts_.optimizer), batch, epochs_,
                      epochs_ == 1 ? "" : "s", threads, threads == 1 ? "" : "s", initNote_);
  for (const std::string& l : initLines_) out_ << l << '\n';
  if (ts_.weighting != WeightingKind::Fixed) out_ << fmt::format("weighting: {}\n", weighting_->describe());
  if (const std::string s = scheduleString(ts_); !s.empty()) out_ << fmt::format("learning rate: {}\n", s);
  if (!ts_.lrScale.empty()) {
    std::vector<std::string> scales;
    for (const auto& [block, f] : ts_.lrScale) scales.push_back(fmt::format("{} ×{}", block, f));
    out_ << fmt::format("lr_scale: {} (their learning rate times the factor)\n", fmt::join(scales, ", "));
  }
  std::vector<std::string> frozen;
  printFrozen(frozen);
  if (!frozen.empty()) out_ << fmt::format("frozen: {}; the optimizer leaves them unchanged\n", fmt::join(frozen, ", "));
  out_ << fmt::format("train: {} ({} samples)", trainData_.origin, trainData_.rows);
  if (hasVal_) out_ << fmt::format("; val: {} ({} samples)", valData_.origin, valData_.rows);
  if (hasTest_) out_ << fmt::format("; test: {} ({} samples)", testData_.origin, testData_.rows);
  out_ << '\n';
  if (hasVal_)
    out_ << fmt::format("select: {}{}\n",
                        ts_.selectTask.empty() ? "the total validation loss" : ts_.selectTask + "." + ts_.selectMetric,
                        ts_.patience > 0 ? fmt::format(", patience {} epoch{}", ts_.patience, ts_.patience == 1 ? "" : "s")
                                         : "");
  printLabelCounts();
  out_ << std::flush;
}

// The frozen blocks, in parameter order, into `parts`; warns about a frozen parameter that --init
// did not load.
void TrainingRun::printFrozen(std::vector<std::string>& parts) {
  std::vector<std::string> blocks;
  std::map<std::string, std::pair<int64_t, int64_t>> sizes;  // block -> parameters, values
  for (const ParamSpec& p : spec_.params) {
    if (!p.frozen) continue;
    if (!sizes.count(p.block)) blocks.push_back(p.block);
    sizes[p.block].first += 1;
    sizes[p.block].second += p.size;
    if (std::find(freshNames_.begin(), freshNames_.end(), p.name) != freshNames_.end())
      out_ << fmt::format("warning: frozen parameter `{}` was not loaded from the checkpoint; it keeps its random "
                          "initial values\n", p.name);
  }
  for (const std::string& b : blocks)
    parts.push_back(fmt::format("{} ({} parameter{}, {} values)", b, sizes[b].first, sizes[b].first == 1 ? "" : "s",
                                sizes[b].second));
}

// Partial labels: the present counts of each task, when any label is missing.
void TrainingRun::printLabelCounts() {
  std::vector<std::string> parts;
  bool partial = false;
  for (int64_t t = 0; t < T_; ++t) {
    const Field& f = trainData_.labels[size_t(t)];
    const int64_t total = int64_t(f.data.size()), present = countPresent(f.data.data(), total);
    partial = partial || present < total;
    parts.push_back(fmt::format("{} {}/{}", spec_.tasks[size_t(t)].name, present, total));
  }
  if (partial) out_ << fmt::format("labels present (train): {}\n", fmt::join(parts, ", "));
}

void TrainingRun::startLoop() {
  batcher_.emplace(trainData_, ts_.batch, ts_.shuffle, seed_);
  kernels_.emplace(spec_, *ws_, params_.data(), grad_, taskGrads_, *pool_);
  if (opt_.comm && opt_.comm->size() > 1) {
    parallel_.emplace(spec_, *opt_.comm, *kernels_,
                      StepBuffers{grad_, taskGrads_.size() ? taskGrads_.data() : nullptr, ws_->losses.data(),
                                  &ws_->outputPtrs});
    out_ << describeSlices(*opt_.comm, ts_.batch) << '\n' << std::flush;
  }
  progress_.emplace(std::cerr, Progress::stderrIsTty(), !opt_.quiet);
  for (const TaskSpec& t : spec_.tasks) trainAcc_.emplace_back(t);
  report_.steps = resumed_ ? resumed_->step : 0;
  stop_ = opt_.steps >= 0 && report_.steps >= opt_.steps;
  firstEpoch_ = epoch_ = resumed_ ? resumed_->epoch : 0;
  if (resumed_ && resumed_->validated) {
    validated_ = true;
    bestEpoch_ = resumed_->bestEpoch;
    bestValue_ = resumed_->bestValue;
    badEpochs_ = resumed_->badEpochs;
    if (ts_.patience > 0 && badEpochs_ >= ts_.patience) stop_ = report_.earlyStopped = true;  // it stopped early
  }
  // Data-parallel: a signal ends the rank at once (Distributed.h); stopping after a step would
  // need every rank to stop at the same one.
  if (!parallel_) signals_ = std::make_unique<StopSignals>();
}

// ---- the loop -------------------------------------------------------------------------------------

void TrainingRun::runEpoch(int64_t e) {
  const int64_t batches = beginEpoch(e);
  const double epochStart = now();
  const int64_t epochSamplesBefore = epochSamples_;
  for (int64_t b = batchesDone_; b < batches; ++b)
    if (!runStep(b, e, batches)) {
      stop_ = true;
      break;
    }
  endEpoch(e, batches, epochStart, epochSamplesBefore);
}

// Resets the epoch's accumulators (or restores them, in the epoch a checkpoint stopped in) and
// returns its batch count.
int64_t TrainingRun::beginEpoch(int64_t e) {
  epoch_ = e;
  epochEnded_ = false;
  batcher_->startEpoch(e);
  for (MetricAccumulator& a : trainAcc_) a.reset();
  totalSum_ = 0;
  epochSamples_ = batchesDone_ = 0;
  if (resumed_ && e == resumed_->epoch) {  // continue the epoch the checkpoint stopped in
    totalSum_ = resumed_->lossSum;
    epochSamples_ = resumed_->samples;
    batchesDone_ = resumed_->batch;
    for (int64_t t = 0; t < T_; ++t) trainAcc_[t].restore(resumed_->tasks[t]);
  }
  epochLr_ = epochLr(ts_, e, opt_.scheduleEpochs >= 0 ? opt_.scheduleEpochs : epochs_);
  const int64_t batches = batcher_->batches();
  if (batchesDone_ > batches)
    throwError("{}: the checkpoint is {} batches into epoch {}, which has {}", opt_.resumePath, batchesDone_, e + 1,
               batches);
  progress_->beginEpoch(e + 1, epochs_, batches);
  return batches;
}

// Batch b of epoch e (of `batches`); the last batch of its group (accumulate) takes the step.
bool TrainingRun::runStep(int64_t b, int64_t e, int64_t batches) {
  runBatch(b, e, groupBatches_);
  if ((b + 1) % ts_.accumulate != 0 && b + 1 != batches) return true;
  return optimizerStep(e);
}

// The gradient of batch b, `micro` batches into its group: into grads_ (accumulate 1) or added,
// scaled by 1/N, to the group's sum in accum_; its losses into the epoch's and the group's sums.
StepResult TrainingRun::runBatch(int64_t b, int64_t e, int64_t micro) {
  ThreadPool& pool = *pool_;
  Workspace& ws = *ws_;
  const int64_t n = batcher_->gather(b, &pool);
  batcher_->prefetch(b + 1, &pool);  // the next batch, on idle workers while this step runs
  const int64_t step = report_.steps + 1;
  for (int64_t t = 0; t < T_; ++t) ws.outputPtrs[t][0] = float(kNaN);  // tells whether trainStep wrote outputs
  RowRange rows{0, n};
  if (parallel_) {
    parallel_->begin(batcher_->labels(), n);
    rows = parallel_->rows();
  }
  uint64_t stepSeed = mix64(mix64(seed_) ^ uint64_t(step));
  if (micro > 0) stepSeed = mix64(stepSeed + uint64_t(micro));  // the group's later batches (Trainer.h)
  kernels_->begin(*batcher_, rows, step, e + 1, parallel_ ? parallel_->dropoutSeed(stepSeed) : stepSeed);
  const StepResult sr = parallel_ ? weighting_->step(*parallel_, step) : weighting_->step(*kernels_, step);
  if (!std::isfinite(sr.total))
    throwError("the total loss became {} at step {} (epoch {}){}", std::isnan(sr.total) ? "NaN" : "infinite", step,
               e + 1, kernels_->locate());
  if (ts_.accumulate > 1) {
    const float scale = 1.0f / float(ts_.accumulate);
    float* acc = accum_.data();
    const float* g = grad_;
    if (micro == 0)
      for (int64_t i = 0; i < spec_.paramCount; ++i) acc[i] = g[i] * scale;
    else
      for (int64_t i = 0; i < spec_.paramCount; ++i) acc[i] += g[i] * scale;
  }
  ++batchesDone_;
  for (int64_t t = 0; t < T_; ++t) {
    const float* o = std::isnan(ws.outputPtrs[t][0]) ? nullptr : ws.outputPtrs[t];
    trainAcc_[t].add(o, batcher_->labels()[t], n, ws.losses[t]);
    groupLosses_[size_t(t)] += ws.losses[t];
  }
  ++groupBatches_;
  groupTotal_ += sr.total;
  groupWeights_ = sr.weights;
  totalSum_ += sr.total * double(n);
  epochSamples_ += n;
  samplesSeen_ += n;
  progress_->update(b + 1, epochSamples_, totalSum_ / double(epochSamples_));
  return sr;
}

// The optimizer step of the group just ended: clipping, the update, the log line, then the
// checkpoint policy (every checkpointEvery steps; a stop signal or the step limit ends the run
// after this step, and finish writes the final checkpoint). False: the run stops.
bool TrainingRun::optimizerStep(int64_t e) {
  const int64_t step = report_.steps + 1;
  float* g = ts_.accumulate > 1 ? accum_.data() : grad_;
  double gradNorm = kNaN;
  if (ts_.clipGradNorm > 0) {
    gradNorm = clipGradNorm(g, activeSpans_, ts_.clipGradNorm);
    if (!std::isfinite(gradNorm))
      throwError("the gradient norm became {} at step {} (epoch {}) while every task loss was finite{}",
                 std::isnan(gradNorm) ? "NaN" : "infinite", step, e + 1, kernels_->locate());
  }
  optimizer_->setLr(stepLr(ts_, step, epochLr_));
  optimizer_->step(params_.data(), g, &*pool_);
  report_.steps = step;
  logStep(step, e, gradNorm);
  // Last of the step's work on its (last) batch: a strategy may rerun the kernels (famo).
  if (parallel_) weighting_->afterUpdate(*parallel_, step);
  else weighting_->afterUpdate(*kernels_, step);
  if (parallel_) parallel_->syncState(params_.data());  // after every kernel call of the step
  groupBatches_ = 0;
  groupTotal_ = 0;
  std::fill(groupLosses_.begin(), groupLosses_.end(), 0.0f);
  if (opt_.checkpointEvery > 0 && step % opt_.checkpointEvery == 0) checkpoint();
  if (signals_ && signals_->caught()) {
    report_.interruptedBy = signals_->caught();
    return false;
  }
  return !(opt_.steps >= 0 && report_.steps >= opt_.steps);
}

// The step's log line: the means over its group's batches (one batch without accumulate).
void TrainingRun::logStep(int64_t step, int64_t e, double gradNorm) {
  if (!log_.is_open() && !opt_.onLogLine) return;
  if (!stepLine_) stepLine_ = std::make_unique<StepLogLine>(spec_, ts_.clipGradNorm > 0);
  StepLogLine& l = *stepLine_;
  *l.step = step;
  *l.epoch = e + 1;
  *l.loss = groupTotal_ / double(groupBatches_);
  *l.lr = optimizer_->lr();
  for (int64_t t = 0; t < T_; ++t) {
    *l.tasks[size_t(t)].first = groupLosses_[size_t(t)] / float(groupBatches_);
    *l.tasks[size_t(t)].second = groupWeights_[size_t(t)];
  }
  if (l.gradNorm) *l.gradNorm = gradNorm;
  writeLogLine(l.json.dump());
}

void TrainingRun::writeLogLine(const std::string& line) {
  if (log_.is_open()) log_ << line << '\n';
  if (opt_.onLogLine) opt_.onLogLine(line);
}

// The epoch's end; `epochStart` and `samplesBefore` (a resumed epoch's samples already counted)
// give its rate.
void TrainingRun::endEpoch(int64_t e, int64_t batches, double epochStart, int64_t samplesBefore) {
  progress_->endEpoch();
  if (parallel_) parallel_->checkInSync(params_.data(), e + 1);
  if (batchesDone_ == batches) {  // only complete epochs feed the weighting (dwa)
    std::vector<double> means;
    for (int64_t t = 0; t < T_; ++t) means.push_back(trainAcc_[t].result()["loss"]);
    weighting_->endEpoch(means);
  }
  const double epochSeconds = now() - epochStart;
  loopSeconds_ += epochSeconds;
  std::string taskLosses;
  for (int64_t t = 0; t < T_; ++t)
    taskLosses += fmt::format("{}{} {}", t ? ", " : "", spec_.tasks[t].name, fmtValue(trainAcc_[t].result()["loss"]));
  const double rate = epochSeconds > 0 ? double(epochSamples_ - samplesBefore) / epochSeconds : 0.0;
  out_ << fmt::format("epoch {}/{}: loss {} ({}){}  {:.1f}s  {:.0f} samples/s\n", e + 1, epochs_,
                      fmtValue(epochSamples_ ? totalSum_ / double(epochSamples_) : kNaN), taskLosses,
                      stop_ && epochSamples_ < trainData_.rows ? fmt::format("  [stopped at step {}]", report_.steps) : "",
                      epochSeconds, rate);
  epochEnded_ = batchesDone_ == batches;
  if (hasVal_ && epochEnded_) evaluateVal(e);
  if (parallel_ && ts_.patience > 0 && epochEnded_) {  // rank 0 alone validates: every rank stops with it
    float stop = report_.earlyStopped ? 1.0f : 0.0f;
    opt_.comm->broadcastFromRoot(&stop, 1);
    if (stop != 0) stop_ = report_.earlyStopped = true;
  }
  if (hasTest_) evaluateTest(e);
  if (hasVal_ && epochEnded_ && bestEpoch_ == e + 1) report_.bestTest = report_.test;
  out_ << std::flush;
  if (log_.is_open()) log_.flush();
}

// The test set after epoch e: printed, and logged as {"epoch": e + 1, "val": {...}, "test": {...}}
// ("val" when the epoch was validated).
void TrainingRun::evaluateTest(int64_t e) {
  report_.test = evaluateWith(spec_, params_.data(), testData_, *ws_, &*pool_);
  for (size_t t = 0; t < report_.test.size(); ++t)
    out_ << fmt::format("  test {}: {}\n", report_.test[t].task, metricsLine(spec_.tasks[t], report_.test[t]));
  if (!log_.is_open() && !opt_.onLogLine) return;
  ojson j;
  j["epoch"] = e + 1;
  auto results = [&](const std::vector<TaskResult>& rs) {
    ojson o = ojson::object();
    for (size_t t = 0; t < rs.size(); ++t) o[rs[t].task] = metricsJson(spec_.tasks[t], rs[t]);
    return o;
  };
  if (hasVal_ && epochEnded_) j["val"] = results(report_.val);
  j["test"] = results(report_.test);
  writeLogLine(j.dump());
}

// The selected value of a validation result (Trainer.h): a task's metric, or Σ weight·loss.
double TrainingRun::selectedValue(const std::vector<TaskResult>& val) const {
  if (ts_.selectTask.empty()) {
    double total = 0;
    for (size_t t = 0; t < val.size(); ++t) total += spec_.tasks[t].weight * val[t].metrics.at("loss");
    return total;
  }
  for (const TaskResult& r : val)
    if (r.task == ts_.selectTask) {
      auto it = r.metrics.find(ts_.selectMetric);
      return it == r.metrics.end() ? kNaN : it->second;
    }
  return kNaN;
}

// The validation set after a complete epoch e: printed; a better selected value is the new best
// (written to --save-best), else one more epoch without improvement (patience stops the run).
void TrainingRun::evaluateVal(int64_t e) {
  report_.val = evaluateWith(spec_, params_.data(), valData_, *ws_, &*pool_);
  for (size_t t = 0; t < report_.val.size(); ++t)
    out_ << fmt::format("  val  {}: {}\n", report_.val[t].task, metricsLine(spec_.tasks[t], report_.val[t]));
  const double v = selectedValue(report_.val);
  const bool lower = ts_.selectTask.empty() || lowerIsBetter(ts_.selectMetric);
  const bool better = std::isfinite(v) && (bestEpoch_ == 0 || (lower ? v < bestValue_ : v > bestValue_));
  validated_ = true;
  if (better) {
    bestValue_ = v;
    bestEpoch_ = e + 1;
    badEpochs_ = 0;
  } else {
    ++badEpochs_;
  }
  const std::string what = ts_.selectTask.empty() ? "val loss" : ts_.selectTask + "." + ts_.selectMetric;
  out_ << fmt::format("  {} {}: {}\n", what, fmtValue(v),
                      better ? "best so far" : fmt::format("best {} at epoch {}", fmtValue(bestValue_), bestEpoch_));
  if (better && !opt_.saveBestPath.empty()) {
    const TrainPosition p = position();
    saveCheckpoint(opt_.saveBestPath, spec_, params_.data(), &*optimizer_, weighting_.get(), &p);
  }
  if (ts_.patience > 0 && badEpochs_ >= ts_.patience && e + 1 < epochs_) {
    out_ << fmt::format("early stop: {} epoch{} without a better {} (best epoch {})\n", badEpochs_,
                        badEpochs_ == 1 ? "" : "s", what, bestEpoch_);
    report_.earlyStopped = true;
    stop_ = true;
  }
}

// ---- checkpoints ----------------------------------------------------------------------------------

// What a checkpoint written now holds (the loop's position after its last step).
TrainPosition TrainingRun::position() const {
  TrainPosition p;
  p.seed = seed_;
  p.step = report_.steps;
  p.batchSize = ts_.batch;
  p.rows = trainData_.rows;
  p.validated = validated_;
  p.bestEpoch = bestEpoch_;
  p.bestValue = bestValue_;
  p.badEpochs = badEpochs_;
  if (epochEnded_) {
    p.epoch = epoch_ + 1;
    for (const TaskSpec& t : spec_.tasks) p.tasks.push_back(MetricAccumulator(t).state());
  } else {
    p.epoch = epoch_;
    p.batch = batchesDone_;
    p.lossSum = totalSum_;
    p.samples = epochSamples_;
    for (const MetricAccumulator& a : trainAcc_) p.tasks.push_back(a.state());
  }
  return p;
}

void TrainingRun::checkpoint() {
  if (log_.is_open()) log_.flush();  // the log holds at least the checkpoint's steps (trimLog drops the rest)
  const TrainPosition p = position();
  saveCheckpoint(opt_.savePath, spec_, params_.data(), &*optimizer_, weighting_.get(), &p);
}

// ---- finish ---------------------------------------------------------------------------------------

// The best validation epoch and its test metrics: kept when this process evaluated it, else
// (a resumed run whose best epoch came before) evaluated from the --save-best file.
void TrainingRun::printBest() {
  report_.bestEpoch = bestEpoch_;
  report_.bestValue = bestValue_;
  if (bestEpoch_ == 0) {
    out_ << "best epoch: none (no complete epoch was validated)\n";
    return;
  }
  const std::string what = ts_.selectTask.empty() ? "val loss" : ts_.selectTask + "." + ts_.selectMetric;
  out_ << fmt::format("best epoch {}: {} {}{}\n", bestEpoch_, what, fmtValue(bestValue_),
                      opt_.saveBestPath.empty() ? "" : fmt::format(" (saved in {})", opt_.saveBestPath));
  if (!hasTest_) return;
  if (report_.bestTest.empty() && !opt_.saveBestPath.empty()) {
    Arena best;
    best.resize(spec_.paramCount);
    std::copy(params_.data(), params_.data() + spec_.paramCount, best.data());  // the padding
    loadParams(opt_.saveBestPath, spec_, best.data());
    report_.bestTest = evaluateWith(spec_, best.data(), testData_, *ws_, &*pool_);
  }
  if (report_.bestTest.empty()) {
    out_ << fmt::format("  (its test metrics are in the log of the run before --resume: no --save-best file)\n");
    return;
  }
  for (size_t t = 0; t < report_.bestTest.size(); ++t)
    out_ << fmt::format("  best test {}: {}\n", report_.bestTest[t].task,
                        metricsLine(spec_.tasks[t], report_.bestTest[t]));
}

TrainReport TrainingRun::finish() {
  if (hasTest_ && report_.test.empty()) {  // no epoch ran (--epochs 0 / --steps 0): evaluate as loaded
    report_.test = evaluateWith(spec_, params_.data(), testData_, *ws_, &*pool_);
    for (size_t t = 0; t < report_.test.size(); ++t)
      out_ << fmt::format("  test {}: {}\n", report_.test[t].task, metricsLine(spec_.tasks[t], report_.test[t]));
  }
  report_.train.clear();
  for (int64_t t = 0; t < T_; ++t)
    if (trainAcc_[t].samples() > 0) report_.train.push_back({spec_.tasks[t].name, trainAcc_[t].result()});
  report_.seconds = loopSeconds_;
  report_.samplesPerSec = loopSeconds_ > 0 ? double(samplesSeen_) / loopSeconds_ : 0;
  out_ << fmt::format("trained {} step{} in {:.1f}s ({:.0f} samples/s)\n", report_.steps, report_.steps == 1 ? "" : "s",
                      report_.seconds, report_.samplesPerSec);
  if (parallel_) out_ << describeCollectives(*opt_.comm, report_.steps, report_.seconds) << '\n';
  if (!report_.train.empty() || !report_.test.empty()) printSummary(out_, spec_, report_);
  if (hasVal_) printBest();
  if (!opt_.savePath.empty()) {
    checkpoint();
    out_ << fmt::format("saved {} ({}, at step {})\n", opt_.savePath,
                        weighting_->state().empty() ? "parameters and optimizer state"
                                                    : "parameters, optimizer and weighting state",
                        report_.steps);
  }
  if (report_.interruptedBy)
    out_ << fmt::format("interrupted by {} after step {}{}\n", report_.interruptedBy == SIGINT ? "SIGINT" : "SIGTERM",
                        report_.steps,
                        opt_.savePath.empty() ? " (no --save FILE: nothing written)"
                                              : fmt::format("; continue with --resume {}", opt_.savePath));
  out_ << std::flush;
  return report_;
}

}  // namespace mtlc::rt
