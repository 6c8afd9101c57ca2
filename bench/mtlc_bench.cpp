// mtlc_bench: the mtlc side of the benchmark (bench/run.py drives it and prints the tables).
//
//   mtlc_bench MODEL.mtl [--batch N] [--steps N] [--warmup N] [--reps N] [--threads N] [--json]
//                        [--profile-ops]
//     Compiles the program (.mtl → JIT ready, timed; --compile-reps times, the first is the cold
//     one a user sees), loads its train split, initialises the parameters and times full training
//     steps exactly as rt::train does them: gather a batch → spec.trainStep → loss check →
//     optimizer step. After --warmup steps it times --reps blocks of --steps steps and reports the
//     median block (µs per step, samples/s), plus peak RSS (getrusage ru_maxrss) of the process.
//     Only full batches are used, so every step sees the same batch size.
//     --profile-ops: also times every kernel of train_step alone (one-op modules, same shapes,
//     batch N), which shows where a step's time goes even though the kernels are inlined into the
//     entry point and invisible to perf.
//     --profile-step: times every kernel in place instead: the compiler puts a call after each
//     kernel of the entry points (codegen::CodegenOptions::nodeHook), and the time between one
//     kernel's end and the next, summed over the timed steps, is that kernel's. Unlike
//     --profile-ops it sees what a kernel pays for its inputs' place (another core's cache, memory)
//     and for waiting on the slowest thread; the hook costs a call per kernel. With --profile-cpu
//     (1 thread) the time is the thread's CPU time, for comparing kernels on a loaded machine.
//     --predict: also times the predict entry point (eval mode: batchnorm's running statistics)
//     on the last training batch, --reps blocks of --steps calls, the median block per batch.
//
//   mtlc_bench --matmul N | --mkn M,K,N [--trans nn|nt|tn|tt] [--reps N] [--threads N] [--json]
//     One MatMul [N,N]·[N,N] (or op(A) [M,K] · op(B) [K,N]) of two parameters, written to a third
//     parameter's gradient slot, compiled with jit::compile and timed: GFLOP/s = 2·M·K·N / time
//     (median of --reps blocks).
//
// Denormals are flushed to zero as rt::train does (runtime/FloatMode.h); --keep-denormals does not.
// Threads: --threads N (default 1) runs the kernels on an rt::ThreadPool of N threads, as
// `mtlc train --threads N` does (0: every CPU), the optimizer step included; --profile-ops and
// --matmul run their kernels on such a pool too, so each kernel's 1- and 2-thread times compare.
#include "driver/Pipeline.h"
#include "ir/Builder.h"
#include "ir/Verifier.h"
#include "jit/Compile.h"
#include "passes/Fusion.h"
#include "runtime/Arena.h"
#include "runtime/data/Batcher.h"
#include "runtime/train/Init.h"
#include "runtime/train/Optimizer.h"
#include "runtime/parallel/FloatMode.h"
#include "runtime/core/Rng.h"
#include "runtime/parallel/ThreadPool.h"
#include "runtime/train/Trainer.h"

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <sys/resource.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <iostream>
#include <limits>
#include <map>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

using namespace mtlc;
using ojson = nlohmann::ordered_json;

namespace {

using Clock = std::chrono::steady_clock;
double msBetween(Clock::time_point t0, Clock::time_point t1) {
  return std::chrono::duration<double, std::milli>(t1 - t0).count();
}

double msSince(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

double median(std::vector<double> v) {
  if (v.empty()) return std::numeric_limits<double>::quiet_NaN();
  std::sort(v.begin(), v.end());
  size_t h = v.size() / 2;
  return v.size() % 2 ? v[h] : 0.5 * (v[h - 1] + v[h]);
}

// User + system CPU seconds of this process so far.
double cpuSeconds() {
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  return double(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) + 1e-6 * double(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

double peakRssMiB() {
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  return double(ru.ru_maxrss) / 1024.0;  // ru_maxrss is in KiB on Linux
}

struct Options {
  std::string model;
  int64_t batch = 0;  // 0: the program's
  int64_t steps = 50, warmup = 5, reps = 5, compileReps = 5, threads = 1, compileThreads = 0;
  int64_t matmul = 0;
  std::vector<int64_t> mkn;  // --mkn M,K,N: a non-square product
  std::string trans = "nn";
  std::vector<int64_t> gemmBlocks;  // --gemm-blocks KC,MB,NB: the matmul's cache blocks (0: chosen)
  std::vector<int> gemmTile;        // --gemm-tile MR,NRV: its register tile (0: chosen)
  std::string gemmKind = "auto";    // --gemm-kind auto|packed|axpy|dot
  std::string precision;            // --precision fp32|bf16: overrides the program's (both modes)
  uint64_t seed = 42;
  bool json = false, profileOps = false, profileStep = false, keepDenormals = false, predict = false;
};

// ---- model benchmark ---------------------------------------------------------------------------

struct Compiled {
  driver::CheckedProgram checked;
  driver::CompiledProgram program;
  double ms = 0;
};

// --profile-step: the kernels' time inside train_step, by the node each kernel writes last.
struct StepProfile {
  bool timing = false;             // inside a timed train_step
  bool cpuClock = false;           // --profile-cpu: the calling thread's CPU time, not wall time
  double last = 0;                 // µs: the previous kernel's end (or the step's start)
  std::map<int32_t, double> us;    // summed over the timed steps
  double now() const {
    if (!cpuClock) return std::chrono::duration<double, std::micro>(Clock::now().time_since_epoch()).count();
    timespec t{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return 1e6 * double(t.tv_sec) + 1e-3 * double(t.tv_nsec);
  }
};
StepProfile gStepProfile;

// The nodeHook: called after every kernel with the id of the node it wrote last.
void stepHook(int32_t node, const float *, int64_t) {
  const double now = gStepProfile.now();
  if (gStepProfile.timing) gStepProfile.us[node] += now - gStepProfile.last;
  gStepProfile.last = now;
}

// .mtl → JIT-ready entry points, with the batch (and so the kernels' maxBatch) overridden.
Compiled compileModel(const Options &o) {
  Compiled c;
  auto t0 = Clock::now();
  c.checked = driver::checkFile(o.model);
  if (!c.checked.model) throw std::runtime_error(c.checked.diags->str());
  if (o.batch > 0) c.checked.model->train.batch = o.batch;
  if (!o.precision.empty())
    c.checked.model->train.precision = o.precision == "bf16" ? rt::Precision::Bf16 : rt::Precision::Fp32;
  c.program = driver::compileProgram(c.checked, passes::PassSettings{}, /*keepLlvmText=*/false, nullptr,
                                     int(o.compileThreads),
                                     o.profileStep ? reinterpret_cast<uint64_t>(&stepHook) : 0);
  if (std::string note = driver::precisionNote(c.program); !note.empty()) std::cerr << "note: " << note << '\n';
  c.ms = msSince(t0);
  return c;
}

// Host buffers for one call of a one-function module (the per-op profile).
struct OpRun {
  jit::CompiledModule code;
  rt::Arena params, grads, acts;
  std::vector<rt::Arena> inputs, outputs;
  std::vector<const float *> inputPtrs;
  std::vector<float *> outputPtrs;
  std::vector<float> weights{1.f, 1.f}, losses{0.f, 0.f};
  mtlc_args args{};
};

// Times every kernel of train_step on its own: a module holding just that node, with leaves for
// its operands (batched → inputs, unbatched → parameters, loss weights → constants) and the result
// bound to an output (batched → head 0, unbatched → a parameter's gradient slot).
ojson profileOps(const ir::Module &src, int64_t batch, int64_t reps, double stepUs, rt::ThreadPool &pool) {
  const ir::Function *train = src.function("train_step");
  struct Row {
    std::string what;
    double us;
  };
  std::vector<Row> rows;
  double totalUs = 0;
  for (const auto &up : train->nodes) {
    const ir::Node &node = *up;
    if (ir::fusionClass(node.op) == ir::FusionClass::Leaf || node.op == ir::OpKind::Reshape) continue;
    ir::Module m;
    m.name = "op";
    m.maxBatch = batch;
    m.functions.push_back(std::make_unique<ir::Function>());
    ir::Function &fn = *m.functions.back();
    fn.name = "run";
    ir::Builder b(fn);
    int64_t paramFloats = 0;
    auto addParamInfo = [&](const std::vector<int64_t> &shape) {
      ir::ParamInfo info{"p" + std::to_string(m.params.size()), shape, paramFloats};
      paramFloats += (info.elements() + 15) / 16 * 16;
      m.params.push_back(info);
      return int(m.params.size() - 1);
    };
    std::vector<ir::Node *> operands;
    std::vector<bool> labelLike;
    for (const ir::Node *op : node.operands) {
      if (op->op == ir::OpKind::Const) {
        operands.push_back(b.constant(op->f));
      } else if (op->op == ir::OpKind::LossWeight) {
        operands.push_back(b.constant(1.0));
      } else if (op->type.batched) {
        m.inputs.push_back(op->type);
        labelLike.push_back(op->op == ir::OpKind::Label);
        operands.push_back(b.input(int(m.inputs.size() - 1), op->type));
      } else {
        int idx = addParamInfo(op->type.dims);
        operands.push_back(b.param(idx, op->type.dims));
      }
    }
    ir::Node *out = fn.add(node.op, operands, node.type, node.ints, node.f, node.name);
    if (node.type.batched) {
      m.heads.push_back(node.type);
      fn.outputs.push_back({ir::Output::Kind::Head, 0, out});
    } else {
      fn.outputs.push_back({ir::Output::Kind::Grad, addParamInfo(node.type.dims), out});
    }
    auto problems = ir::verify(m);
    if (!problems.empty()) throw std::logic_error("profile module for %" + std::to_string(node.id) + ": " + problems[0]);

    OpRun r;
    r.code = jit::compile(m);
    r.params.resize(paramFloats + 16);
    r.grads.resize(paramFloats + 16);
    r.acts.resize(r.code.actsFloats + 16);
    std::mt19937 rng(7);
    std::uniform_real_distribution<float> dist(-0.5f, 0.5f);
    for (int64_t i = 0; i < r.params.size(); ++i) r.params[i] = dist(rng);
    for (size_t i = 0; i < m.inputs.size(); ++i) {
      r.inputs.emplace_back(batch * m.inputs[i].elements());
      if (!labelLike[i])  // labels stay 0: a valid class index and a valid 0/1 target
        for (int64_t j = 0; j < r.inputs.back().size(); ++j) r.inputs.back()[j] = dist(rng);
    }
    for (const ir::Type &t : m.heads) r.outputs.emplace_back(batch * t.elements());
    for (auto &a : r.inputs) r.inputPtrs.push_back(a.data());
    for (auto &a : r.outputs) r.outputPtrs.push_back(a.data());
    r.args = mtlc_args{r.params.data(), r.grads.data(), r.acts.data(), r.inputPtrs.data(), r.inputPtrs.data(),
                       r.weights.data(), r.losses.data(), r.outputPtrs.data(), batch, 1, nullptr, nullptr, 0,
                       nullptr, nullptr};
    pool.attach(r.args);
    mtlc_entry_fn f = r.code.entry("run");
    auto t0 = Clock::now();
    f(&r.args);
    f(&r.args);
    double once = std::max(msSince(t0) / 2, 1e-4);
    int64_t iters = std::max<int64_t>(1, int64_t(20.0 / once));  // ~20 ms per block
    std::vector<double> us;
    for (int64_t rep = 0; rep < reps; ++rep) {
      t0 = Clock::now();
      for (int64_t i = 0; i < iters; ++i) f(&r.args);
      us.push_back(msSince(t0) * 1000.0 / double(iters));
    }
    std::string shapes;
    for (const ir::Node *op : node.operands) shapes += (shapes.empty() ? "" : ", ") + op->type.str();
    rows.push_back({fmt::format("%{} {}{} ({}) -> {}", node.id, ir::mnemonic(node.op),
                                node.name.empty() ? "" : " " + node.name, shapes, node.type.str()),
                    median(us)});
    totalUs += rows.back().us;
  }
  std::stable_sort(rows.begin(), rows.end(), [](const Row &a, const Row &b) { return a.us > b.us; });
  ojson j;
  j["batch"] = batch;
  j["kernels_total_us"] = totalUs;
  j["step_us"] = stepUs;
  ojson list = ojson::array();
  for (const Row &r : rows)
    list.push_back({{"kernel", r.what}, {"us", r.us}, {"share", totalUs > 0 ? r.us / totalUs : 0.0}});
  j["kernels"] = list;
  return j;
}

int benchModel(const Options &o) {
  ojson j;
  j["model"] = o.model;
  rt::ThreadPool pool(int(o.threads));
  j["threads_requested"] = o.threads;
  j["threads"] = pool.threads();
  j["threads_supported"] = true;
  j["ftz"] = !o.keepDenormals;

  // ---- compile: the first one is cold (what `mtlc train` pays), then warm repeats
  std::vector<double> compileMs;
  std::unique_ptr<Compiled> compiled;
  try {
    for (int64_t i = 0; i < std::max<int64_t>(1, o.compileReps); ++i) {
      compiled.reset();  // frees the previous JIT before the next compile
      compiled = std::make_unique<Compiled>(compileModel(o));
      compileMs.push_back(compiled->ms);
    }
  } catch (const std::exception &e) {
    j["supported"] = false;
    j["error"] = e.what();
    if (o.json) std::cout << j.dump(2) << '\n';
    else std::cerr << "mtlc_bench: " << o.model << ": cannot compile:\n" << e.what() << '\n';
    return 1;
  }
  j["supported"] = true;
  const Compiled &c = *compiled;
  const rt::ModelSpec &spec = c.program.spec;
  const int64_t B = spec.train.batch;
  j["name"] = spec.name;
  j["batch"] = B;
  j["params"] = spec.paramCount;
  j["acts_floats"] = spec.actsFloats;
  j["optimizer"] = mtlc::vocab::name(spec.train.optimizer.kind);
  j["compile_ms"] = compileMs.front();
  j["compile_ms_median"] = median(compileMs);
  j["compile_ms_all"] = compileMs;
  j["compile_threads"] = compiled ? compiled->program.code->compileThreads : 0;
  j["compile_stages_ms"] = {{"parse", c.checked.times.parseMs},
                            {"sema", c.checked.times.semaMs},
                            {"lower", c.checked.times.lowerMs},
                            {"codegen_jit", c.checked.times.codegenMs}};
  if (!spec.trainStep) throw std::runtime_error("the compiled model has no train_step");
  if (B > spec.maxBatch) throw std::runtime_error("batch exceeds the kernels' maximum batch");

  // ---- data, arenas, parameters, optimizer: as rt::train sets them up
  auto t0 = Clock::now();
  rt::Dataset data = rt::loadSplit(spec, "train");
  j["load_ms"] = msSince(t0);
  j["rows"] = data.rows;
  const int64_t fullBatches = data.rows / B;
  if (fullBatches < 1) throw std::runtime_error("fewer rows than one batch");

  const int64_t T = int64_t(spec.tasks.size());
  rt::Arena params(spec.paramCount), grads(spec.paramCount), acts(spec.actsFloats);
  std::vector<rt::Arena> outputs;
  std::vector<float *> outputPtrs;
  for (const rt::TaskSpec &t : spec.tasks) outputs.emplace_back(spec.maxBatch * t.outWidth);
  for (rt::Arena &a : outputs) outputPtrs.push_back(a.data());
  std::vector<float> losses(T + 1), weights = rt::lossWeights(spec);
  rt::initParams(spec, o.seed, params.data());
  rt::Optimizer optimizer(spec.train.optimizer, spec.paramCount);
  rt::Batcher batcher(data, B, spec.train.shuffle, o.seed);
  int64_t epoch = 0, b = 0, step = 0;
  batcher.startEpoch(epoch);

  // Where a step's time goes (summed over the timed steps): gather, train_step, optimizer.
  double gatherUs = 0, kernelUs = 0, optimizerUs = 0;
  auto trainStep = [&]() {
    auto p0 = Clock::now();
    if (b == fullBatches) {
      batcher.startEpoch(++epoch);
      b = 0;
    }
    const int64_t n = batcher.gather(b++, &pool);
    if (b < fullBatches) batcher.prefetch(b, &pool);  // as rt::train does
    ++step;
    mtlc_args args{};
    args.params = params.data();
    args.grads = grads.data();
    args.acts = acts.data();
    args.inputs = batcher.inputs();
    args.labels = batcher.labels();
    args.loss_weights = weights.data();
    args.losses = losses.data();
    args.outputs = outputPtrs.data();
    args.n = n;
    args.seed = rt::mix64(rt::mix64(o.seed) ^ uint64_t(step));
    pool.attach(args);
    auto p1 = Clock::now();
    gStepProfile.last = gStepProfile.now();
    spec.trainStep(&args);
    for (int64_t t = 0; t <= T; ++t)
      if (!std::isfinite(losses[t])) throw std::runtime_error(fmt::format("loss became {} at step {}", losses[t], step));
    auto p2 = Clock::now();
    optimizer.step(params.data(), grads.data(), &pool);
    gatherUs += msBetween(p0, p1) * 1000.0, kernelUs += msBetween(p1, p2) * 1000.0;
    optimizerUs += msSince(p2) * 1000.0;
  };

  for (int64_t i = 0; i < o.warmup; ++i) trainStep();
  gatherUs = kernelUs = optimizerUs = 0;
  gStepProfile.timing = true;
  std::vector<double> repUs;
  double firstLoss = std::numeric_limits<double>::quiet_NaN();
  const double cpu0 = cpuSeconds();
  const auto wall0 = Clock::now();
  for (int64_t rep = 0; rep < std::max<int64_t>(1, o.reps); ++rep) {
    t0 = Clock::now();
    for (int64_t i = 0; i < o.steps; ++i) trainStep();
    repUs.push_back(msSince(t0) * 1000.0 / double(std::max<int64_t>(1, o.steps)));
    if (rep == 0) firstLoss = losses[T];
  }
  // CPU time over wall time of the timed steps: about 1 on an idle core, less when other processes
  // took the core away (the numbers are then pessimistic).
  const double cpuUtil = (cpuSeconds() - cpu0) / (msSince(wall0) / 1000.0);
  gStepProfile.timing = false;
  const double us = median(repUs);
  j["cpu_util"] = cpuUtil;
  j["steps"] = o.steps;
  j["warmup"] = o.warmup;
  j["reps"] = repUs.size();
  j["us_per_step"] = us;
  j["samples_per_s"] = double(B) * 1e6 / us;
  j["rep_us_per_step"] = repUs;
  const double timedSteps = double(repUs.size() * std::max<int64_t>(1, o.steps));
  j["phase_us"] = {{"gather", gatherUs / timedSteps}, {"train_step", kernelUs / timedSteps},
                   {"optimizer", optimizerUs / timedSteps}};
  j["loss_after_first_rep"] = firstLoss;
  j["loss_last"] = losses[T];
  j["peak_rss_mib"] = peakRssMiB();
  if (o.predict) {
    if (!spec.predict) throw std::runtime_error("the compiled model has no predict");
    mtlc_args args{};
    args.params = params.data();
    args.acts = acts.data();
    args.inputs = batcher.inputs();
    args.outputs = outputPtrs.data();
    args.n = B;
    pool.attach(args);
    for (int64_t i = 0; i < o.warmup; ++i) spec.predict(&args);
    std::vector<double> predictUs;
    for (int64_t rep = 0; rep < std::max<int64_t>(1, o.reps); ++rep) {
      t0 = Clock::now();
      for (int64_t i = 0; i < o.steps; ++i) spec.predict(&args);
      predictUs.push_back(msSince(t0) * 1000.0 / double(std::max<int64_t>(1, o.steps)));
    }
    j["predict_us_per_batch"] = median(predictUs);
    j["predict_samples_per_s"] = double(B) * 1e6 / median(predictUs);
  }
  if (o.profileOps) j["profile"] = profileOps(c.program.lowered.module, B, o.reps, us, pool);
  if (o.profileStep) {
    const double timedSteps = double(repUs.size() * std::max<int64_t>(1, o.steps));
    const ir::Function *train = c.program.lowered.module.function("train_step");
    const passes::FusionPlan fusion = passes::planFusion(*train);  // as compiled: fusion on
    std::vector<std::pair<double, std::string>> rows;
    double total = 0;
    // A group's siblings are stored by its kernel (hooked after its last node): one row.
    for (const auto &up : train->nodes)
      if (fusion.runsInGroup(up.get()) && gStepProfile.us.count(int32_t(up->id))) {
        gStepProfile.us[int32_t(fusion.group(up.get())->last()->id)] += gStepProfile.us[int32_t(up->id)];
        gStepProfile.us.erase(int32_t(up->id));
      }
    for (const auto &up : train->nodes) {
      auto it = gStepProfile.us.find(int32_t(up->id));
      if (it == gStepProfile.us.end()) continue;
      // A fused kernel is named by its members in order: "%2 conv2d+bias_add+relu trunk.1", a
      // per-sample prologue first, the siblings last ("%56 maxpool_bwd+relu_bwd+conv2d_bwd_filter+bias_grad").
      const ir::Node &last = *up;
      const passes::FusionGroup *group = fusion.group(&last);
      const ir::Node &root = group ? *group->root : last;
      const ir::Node &first = group && !group->prologue.empty() ? *group->prologue.front() : root;
      std::string ops;
      if (group)
        for (const ir::Node *member : group->prologue) ops += std::string(ir::mnemonic(member->op)) + "+";
      ops += ir::mnemonic(root.op);
      if (group)
        for (const auto *members : {&group->chain, &group->siblings})
          for (const ir::Node *member : *members) ops += "+" + std::string(ir::mnemonic(member->op));
      std::string shapes;
      for (const ir::Node *op : root.operands) shapes += (shapes.empty() ? "" : ", ") + op->type.str();
      rows.push_back({it->second / timedSteps, fmt::format("%{} {}{} ({}) -> {}", first.id, ops,
                                                          last.name.empty() ? "" : " " + last.name, shapes,
                                                          last.type.str())});
      total += rows.back().first;
    }
    std::stable_sort(rows.begin(), rows.end(), [](const auto &a, const auto &b) { return a.first > b.first; });
    ojson list = ojson::array();
    for (const auto &[us, what] : rows) list.push_back({{"kernel", what}, {"us", us}});
    j["step_profile"] = {{"batch", B},
                         {"kernels_total_us", total},
                         {"step_us", us},
                         {"phase_us", j["phase_us"]},
                         {"kernels", list}};
  }

  if (o.json) {
    std::cout << j.dump(2) << '\n';
  } else {
    std::cout << fmt::format(
        "{} (batch {}, {}): compile {:.1f} ms (median of {}: {:.1f} ms)\n"
        "  {:.1f} µs/step, {:.0f} samples/s (median of {} x {} steps after {} warm-up)\n"
        "  mean per step: gather {:.1f} µs, train_step {:.1f} µs, optimizer {:.1f} µs\n"
        "  peak RSS {:.1f} MiB, loss {:.4f} -> {:.4f}\n",
        spec.name, B, mtlc::vocab::name(spec.train.optimizer.kind), compileMs.front(), compileMs.size(), median(compileMs), us,
        double(B) * 1e6 / us, repUs.size(), o.steps, o.warmup, gatherUs / timedSteps, kernelUs / timedSteps,
        optimizerUs / timedSteps, peakRssMiB(), firstLoss, losses[T]);
    if (o.predict)
      std::cout << fmt::format("  predict: {:.1f} µs/batch, {:.0f} samples/s\n", j["predict_us_per_batch"].get<double>(),
                               j["predict_samples_per_s"].get<double>());
    if (o.profileOps) {
      const ojson &p = j["profile"];
      std::cout << fmt::format("  kernels alone: {:.1f} µs in total (the step: {:.1f} µs)\n",
                               p["kernels_total_us"].get<double>(), us);
      for (const auto &k : p["kernels"])
        std::cout << fmt::format("  {:>9.1f} µs {:>5.1f}%  {}\n", k["us"].get<double>(),
                                 100 * k["share"].get<double>(), k["kernel"].get<std::string>());
    }
    if (o.profileStep) {
      const ojson &p = j["step_profile"];
      const double total = p["kernels_total_us"].get<double>();
      std::cout << fmt::format("  kernels in place: {:.1f} µs of the train_step's {:.1f} µs\n", total,
                               kernelUs / timedSteps);
      for (const auto &k : p["kernels"])
        std::cout << fmt::format("  {:>9.1f} µs {:>5.1f}%  {}\n", k["us"].get<double>(),
                                 total > 0 ? 100 * k["us"].get<double>() / total : 0.0, k["kernel"].get<std::string>());
    }
  }
  return 0;
}

// ---- matmul alone --------------------------------------------------------------------------------

int benchMatmul(const Options &o) {
  const int64_t M = o.mkn.empty() ? o.matmul : o.mkn[0], K = o.mkn.empty() ? o.matmul : o.mkn[1],
                N = o.mkn.empty() ? o.matmul : o.mkn[2];
  if (o.trans.size() != 2 || o.trans.find_first_not_of("nt") != std::string::npos)
    throw std::runtime_error("--trans: expected nn, nt, tn or tt");
  const bool tA = o.trans[0] == 't', tB = o.trans[1] == 't';
  ir::Module m;
  m.name = "matmul";
  m.maxBatch = 1;
  m.functions.push_back(std::make_unique<ir::Function>());
  ir::Function &fn = *m.functions.back();
  fn.name = "run";
  ir::Builder b(fn);
  auto up = [](int64_t v) { return (v + 15) / 16 * 16; };
  const std::vector<int64_t> aDims = tA ? std::vector<int64_t>{K, M} : std::vector<int64_t>{M, K};
  const std::vector<int64_t> bDims = tB ? std::vector<int64_t>{N, K} : std::vector<int64_t>{K, N};
  const int64_t aAt = 0, bAt = up(M * K), cAt = bAt + up(K * N), floats = cAt + up(M * N);
  m.params.push_back({"a", aDims, aAt});
  m.params.push_back({"b", bDims, bAt});
  m.params.push_back({"c", {M, N}, cAt});
  ir::Node *c = b.matmul(b.param(0, aDims), b.param(1, bDims), tA, tB);
  fn.outputs.push_back({ir::Output::Kind::Grad, 2, c});
  auto problems = ir::verify(m);
  if (!problems.empty()) throw std::logic_error(problems[0]);

  auto t0 = Clock::now();
  jit::CompileOptions copts;
  if (!o.gemmBlocks.empty()) {
    copts.codegen.gemmKC = o.gemmBlocks[0];
    copts.codegen.gemmMB = o.gemmBlocks[1];
    copts.codegen.gemmNB = o.gemmBlocks[2];
  }
  if (!o.gemmTile.empty()) copts.codegen.gemmMR = o.gemmTile[0], copts.codegen.gemmNRV = o.gemmTile[1];
  const std::map<std::string, codegen::GemmKind> kinds{{"auto", codegen::GemmKind::Auto},
      {"packed", codegen::GemmKind::Packed}, {"axpy", codegen::GemmKind::Axpy}, {"dot", codegen::GemmKind::Dot}};
  if (!kinds.count(o.gemmKind)) throw std::runtime_error("--gemm-kind: expected auto, packed, axpy or dot");
  copts.codegen.gemmKind = kinds.at(o.gemmKind);
  copts.codegen.bf16 = o.precision == "bf16";
  jit::CompiledModule code = jit::compile(m, copts);
  const double compileMs = msSince(t0);
  rt::Arena params(floats), grads(floats), acts(code.actsFloats + 16);
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> dist(-1.f, 1.f);
  for (int64_t i = 0; i < cAt; ++i) params[i] = dist(rng);
  float weight = 1.f, loss = 0.f;
  mtlc_args args{params.data(), grads.data(), acts.data(), nullptr, nullptr, &weight, &loss, nullptr, 1, 1,
                 nullptr, nullptr, 0, nullptr, nullptr};
  rt::ThreadPool pool(int(o.threads));
  pool.attach(args);
  mtlc_entry_fn f = code.entry("run");

  t0 = Clock::now();
  f(&args);
  f(&args);
  const double once = std::max(msSince(t0) / 2, 1e-4);

  // Spot check against a double-precision dot product.
  const float *A = params.data() + aAt, *Bm = params.data() + bAt, *C = grads.data() + cAt;
  double maxErr = 0;
  std::mt19937 pick(3);
  for (int s = 0; s < 64; ++s) {
    int64_t i = int64_t(pick() % M), jj = int64_t(pick() % N);
    double want = 0;
    for (int64_t k = 0; k < K; ++k)
      want += double(tA ? A[k * M + i] : A[i * K + k]) * double(tB ? Bm[jj * K + k] : Bm[k * N + jj]);
    maxErr = std::max(maxErr, std::abs(want - double(C[i * N + jj])));
  }

  const int64_t iters = std::max<int64_t>(1, int64_t(200.0 / once));  // ~0.2 s per block
  std::vector<double> gflops;
  for (int64_t rep = 0; rep < std::max<int64_t>(1, o.reps); ++rep) {
    t0 = Clock::now();
    for (int64_t i = 0; i < iters; ++i) f(&args);
    double s = msSince(t0) / 1000.0;
    gflops.push_back(2.0 * double(M) * double(K) * double(N) * double(iters) / s / 1e9);
  }
  ojson j;
  j["n"] = N;
  j["mkn"] = {M, K, N};
  j["us_per_call"] = 2.0 * double(M) * double(K) * double(N) / (median(gflops) * 1e3);
  j["trans"] = o.trans;
  j["threads"] = pool.threads();
  j["compile_ms"] = compileMs;
  j["iters_per_rep"] = iters;
  j["reps"] = gflops.size();
  j["gflops"] = median(gflops);
  j["rep_gflops"] = gflops;
  j["max_abs_err"] = maxErr;
  if (o.json) std::cout << j.dump(2) << '\n';
  else
    std::cout << fmt::format("matmul {}x{}x{} ({}, {} thread{}): {:.2f} GFLOP/s, {:.1f} µs (median of {} x {} calls), "
                             "compile {:.1f} ms, max |err| {:.2e}\n",
                             M, K, N, o.trans, pool.threads(), pool.threads() == 1 ? "" : "s", median(gflops),
                             j["us_per_call"].get<double>(), gflops.size(), iters, compileMs, maxErr);
  return 0;
}

}  // namespace

int main(int argc, char **argv) {
  Options o;
  CLI::App app{"mtlc_bench: time mtlc's compile and training steps, or its matmul kernel"};
  app.add_option("model", o.model, "the .mtl program");
  app.add_option("--batch", o.batch, "batch size (overrides the program's; the kernels follow)");
  app.add_option("--steps", o.steps, "training steps per timed repetition");
  app.add_option("--warmup", o.warmup, "untimed steps first");
  app.add_option("--reps", o.reps, "timed repetitions; the median is reported");
  app.add_option("--compile-reps", o.compileReps, "compiles (the first is reported, and the median)");
  app.add_option("--compile-threads", o.compileThreads,
                 "threads LLVM compiles on (default 0: every CPU, as mtlc does)");
  app.add_option("--threads", o.threads, "kernel threads (default 1; 0: every CPU)")->check(CLI::Range(0, 1024));
  app.add_option("--seed", o.seed, "initialisation / shuffle seed");
  app.add_option("--matmul", o.matmul, "time one N x N matmul instead of a model");
  app.add_option("--mkn", o.mkn, "time one [M,K]x[K,N] matmul instead (M,K,N)")->expected(3)->delimiter(',');
  app.add_option("--trans", o.trans, "with --matmul: nn, nt, tn or tt");
  app.add_option("--gemm-blocks", o.gemmBlocks, "with --matmul: cache blocks KC,MB,NB (0: chosen; for tuning)")
      ->expected(3)->delimiter(',');
  app.add_option("--gemm-tile", o.gemmTile, "with --matmul: register tile MR,NRV (0: chosen; for tuning)")
      ->expected(2)->delimiter(',');
  app.add_option("--gemm-kind", o.gemmKind, "with --matmul: auto, packed, axpy or dot (for tuning)");
  app.add_option("--precision", o.precision, "fp32 or bf16: the products' precision (default: the program's)")
      ->check(CLI::IsMember({"fp32", "bf16"}));
  app.add_flag("--json", o.json, "one JSON object on stdout");
  app.add_flag("--profile-ops", o.profileOps, "also time each train_step kernel alone");
  app.add_flag("--predict", o.predict, "also time predict (eval mode) on a training batch");
  app.add_flag("--profile-step", o.profileStep, "also time each train_step kernel in place (a call after every kernel)");
  app.add_flag("--profile-cpu", gStepProfile.cpuClock,
               "with --profile-step and 1 thread: the thread's CPU time per kernel, which other "
               "processes' load does not inflate (a worker thread's share is not counted)");
  bool ftz = false;
  app.add_flag("--ftz", ftz, "flush denormals to zero (MXCSR FTZ+DAZ), as rt::train does: the default");
  app.add_flag("--keep-denormals", o.keepDenormals, "do not flush denormals (mtlc train --keep-denormals)");
  CLI11_PARSE(app, argc, argv);
  if (!o.mkn.empty()) o.matmul = std::max<int64_t>(o.matmul, 1);
  if (o.matmul <= 0 && o.model.empty()) {
    std::cerr << app.help();
    return 2;
  }
  rt::ScopedFlushDenormals flush(!o.keepDenormals);
  try {
    return o.matmul > 0 ? benchMatmul(o) : benchModel(o);
  } catch (const std::exception &e) {
    std::cerr << "mtlc_bench: " << e.what() << '\n';
    return 1;
  }
}
