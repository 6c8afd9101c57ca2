#include "GradCheck.h"

#include "autodiff/Autodiff.h"
#include "ir/Verifier.h"
#include "jit/Compile.h"
#include "passes/Passes.h"

#include <catch2/catch.hpp>

#include <cmath>
#include <cstdio>
#include <limits>
#include <random>
#include <sstream>

namespace mtlc::test::gradcheck {

namespace {
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
ir::Type batched(std::vector<int64_t> dims) { return ir::Type{std::move(dims), true}; }
}  // namespace

// ---- Net ----

Net::Net(int64_t maxBatch)
    : fn([&]() -> ir::Function & {
        module.name = "gradcheck";
        module.maxBatch = maxBatch;
        module.functions.push_back(std::make_unique<ir::Function>());
        module.functions.back()->name = "train_step";
        return *module.functions.back();
      }()),
      b(fn) {}

Node *Net::input(std::vector<int64_t> dims, Range r) {
  module.inputs.push_back(batched(dims));
  inputRanges.push_back(r);
  inputVocab.push_back(0);
  return b.input((int)module.inputs.size() - 1, batched(std::move(dims)));
}

Node *Net::indices(int64_t k, int64_t vocab) {
  Node *x = input({k});
  inputVocab.back() = vocab;
  return x;
}

Node *Net::param(const std::string &name, std::vector<int64_t> shape, Range r) {
  ir::ParamInfo info{name, shape, paramFloats};
  // 16-float aligned with a gap after each tensor, like the lowering's table: overruns show.
  paramFloats += (info.elements() + 16 + 15) / 16 * 16;
  module.params.push_back(info);
  paramRanges.push_back(r);
  return b.param((int)module.params.size() - 1, std::move(shape));
}

Node *Net::state(const std::string &name, std::vector<int64_t> shape, Range r) {
  Node *p = param(name, std::move(shape), r);
  module.params.back().state = true;
  return p;
}

Node *Net::batchNorm(Node *x, const std::string &name, double eps) {
  int64_t C = x->type.dims.at(0);
  Node *gamma = param(name + ".weight", {C}, {0.5, 1.5});
  Node *beta = param(name + ".bias", {C}, {-0.5, 0.5});
  Node *mean = state(name + ".running_mean", {C}, {-0.5, 0.5});
  Node *var = state(name + ".running_var", {C}, {0.5, 1.5});
  Node *batches = state(name + ".num_batches_tracked", {}, {0, 0});
  return b.batchNorm(x, gamma, beta, mean, var, batches, eps);
}

Node *Net::reread(const Node *p) { return b.param((int)p->ints[0], p->type.dims); }

Node *Net::dense(Node *x, int64_t units, const std::string &name, Range w) {
  int64_t in = x->type.elements();
  Node *W = param(name + ".weight", {units, in}, w);
  Node *bias = param(name + ".bias", {units}, {-0.3, 0.3});
  return b.biasAdd(b.matmul(x, W, false, true), bias);
}

Node *Net::conv(Node *x, int64_t out, int64_t kh, int64_t kw, int64_t stride, int64_t pad,
                const std::string &name, Range w) {
  Node *W = param(name + ".weight", {out, x->type.dims.at(0), kh, kw}, w);
  Node *bias = param(name + ".bias", {out}, {-0.3, 0.3});
  return b.biasAdd(b.conv2d(x, W, stride, pad), bias);
}

Node *Net::task(OpKind loss, Node *head, double weight, int absentEvery) {
  int t = (int)tasks.size();
  int64_t width = head->type.elements();
  const auto &d = head->type.dims;
  const int64_t pixels = d.size() == 3 ? d[1] * d[2] : 1;  // cross_entropy on [C, H, W]: per pixel
  ir::Type labelType = batched({loss == OpKind::CrossEntropy ? pixels : loss == OpKind::BCE ? 1 : width});
  if (loss == OpKind::BCE && width != 1) throw ir::IRError("gradcheck: bce takes a head of width 1");
  module.labels.push_back(labelType);
  Node *label = b.label(t, labelType);
  Node *L = b.loss(loss, head, label);
  tasks.push_back({loss, weight, loss == OpKind::CrossEntropy ? width / pixels : width, absentEvery, head, L});
  addToTotal(b.mul(b.lossWeight(t), L));
  return L;
}

void Net::addToTotal(Node *term) { total_ = total_ ? b.add(total_, term) : term; }

void Net::finish() {
  module.heads.clear();
  for (size_t t = 0; t < tasks.size(); ++t) {
    module.heads.push_back(tasks[t].head->type);
    fn.outputs.push_back({ir::Output::Kind::Head, (int)t, tasks[t].head});
    fn.outputs.push_back({ir::Output::Kind::TaskLoss, (int)t, tasks[t].lossNode});
  }
  fn.outputs.push_back({ir::Output::Kind::TotalLoss, 0, total_});
}

void buildForward(const Case &c, Net &net) {
  c.build(net);
  REQUIRE(net.total() != nullptr);
  net.finish();
}

void buildDifferentiated(const Case &c, Net &net) {
  buildForward(c, net);
  autodiff::appendGradients(net.module, net.fn, net.total());
  passes::runGraphPasses(net.module, /*verifyEach=*/true);
}

// ---- running compiled code ----

namespace {

// The buffers of one compiled module, laid out like the trainer's.
struct Runner {
  const ir::Module &m;
  jit::CompiledModule code;
  int64_t paramFloats;
  std::vector<float> params, grads, acts, lossWeights, losses;
  std::vector<std::vector<float>> inputs, labels, outputs;

  Runner(const ir::Module &mod, int64_t paramFloats) : m(mod), paramFloats(paramFloats) {
    code = jit::compile(m);
    int64_t B = m.maxBatch;
    params.assign(paramFloats + 16, 0.f);
    grads.assign(paramFloats + 16, 0.f);
    acts.assign(code.actsFloats + 16, 0.f);
    for (const auto &t : m.inputs) inputs.emplace_back(B * t.elements(), kNaN);
    for (const auto &t : m.labels) labels.emplace_back(B * t.elements(), kNaN);
    for (const auto &t : m.heads) outputs.emplace_back(B * t.elements(), kNaN);
    lossWeights.assign(m.labels.size() + 1, 1.f);
    losses.assign(m.labels.size() + 1, 0.f);
  }

  void run(int64_t n, uint64_t seed, const std::string &fn = "train_step") {
    std::fill(acts.begin(), acts.end(), kNaN);
    std::fill(grads.begin(), grads.end(), kNaN);
    std::fill(losses.begin(), losses.end(), kNaN);
    for (auto &o : outputs) std::fill(o.begin(), o.end(), kNaN);
    std::vector<const float *> in, lab;
    std::vector<float *> out;
    for (auto &v : inputs) in.push_back(v.data());
    for (auto &v : labels) lab.push_back(v.data());
    for (auto &v : outputs) out.push_back(v.data());
    mtlc_args args{params.data(), grads.data(),       acts.data(),   in.data(), lab.data(),
                   lossWeights.data(), losses.data(), out.data(),    n,         seed,
                   nullptr,            nullptr,       0,         nullptr,   nullptr};
    code.entry(fn)(&args);
  }
};

// The keep mask of a dropout site as the JIT draws it: a probe module with one dropout of the same
// p and salt over an input of ones, called with the same n and seed. The mask is a function of
// (seed, salt, element index) only (codegen/EmitElementwise.cpp), so the model's own dropout draws
// the same one; the forward comparison with the reference (which uses this mask) would show it if
// not, and the dropout cases also check the JIT's gradient against finite differences of the
// JIT's own forward, which needs no mask at all.
std::vector<double> probeDropoutMask(const Node &d, int64_t maxBatch, int64_t n, uint64_t seed) {
  ir::Module m;
  m.name = "dropout_probe";
  m.maxBatch = maxBatch;
  m.functions.push_back(std::make_unique<ir::Function>());
  ir::Function &fn = *m.functions.back();
  fn.name = "probe";
  ir::Builder b(fn);
  const ir::Type &t = d.operands[0]->type;
  m.inputs.push_back(t);
  m.heads.push_back(t);
  Node *y = b.unary(OpKind::Dropout, b.input(0, t), d.f, d.ints);
  fn.outputs.push_back({ir::Output::Kind::Head, 0, y});
  Runner r(m, 0);
  int64_t E = t.elements();
  std::fill(r.inputs[0].begin(), r.inputs[0].begin() + n * E, 1.f);
  r.run(n, seed, "probe");
  std::vector<double> keep(n * E);
  const double scale = 1 / (1 - d.f);
  for (int64_t i = 0; i < n * E; ++i) {
    float v = r.outputs[0][i];
    INFO("dropout probe element " << i << " = " << v);
    REQUIRE((v == 0.f || std::abs(v - scale) <= 1e-6 * scale));
    keep[i] = v != 0.f;
  }
  return keep;
}

std::vector<Report> &reports() {
  // Printed once at exit: the table of worst errors per case.
  struct Table {
    std::vector<Report> rows;
    ~Table() {
      if (rows.empty()) return;
      std::printf("\ngradient checks: JIT (float) vs central differences of the double reference\n");
      std::printf("%-14s %-50s %6s %9s %9s %7s %9s %8s %5s  %s\n", "group", "case", "elems",
                  "max|err|", "max rel", "tol use", "fwd rel", "margin", "draws", "tolerance");
      for (const Report &r : rows)
        std::printf("%-14s %-50.50s %6lld %9.2e %9.2e %7.3f %9.2e %8.1e %5d  %.0e rel + %.0e abs%s\n",
                    r.group.c_str(), r.name.c_str(), (long long)r.elements, r.maxAbs, r.maxRel,
                    r.maxRatio, r.forwardRel, r.margin, r.draws, r.rtol, r.atol,
                    r.jitFdMaxAbs >= 0 ? (" | jit-fd max|err| " + std::to_string(r.jitFdMaxAbs)).c_str() : "");
    }
  };
  static Table table;
  return table.rows;
}

double relErr(double got, double want) { return std::abs(got - want) / std::max(std::abs(want), 1e-6); }

}  // namespace

std::vector<std::string> &registeredGroups() {
  static std::vector<std::string> groups;
  return groups;
}

Report measure(const Case &c, const std::function<void(ir::Function &)> &mutate) {
  Report rep;
  rep.group = c.group;
  rep.name = c.name;
  rep.rtol = c.rtol;
  rep.atol = c.atol;
  REQUIRE(c.n < c.maxBatch);  // kernels must respect the run-time batch

  Net refNet(c.maxBatch), jitNet(c.maxBatch);
  buildForward(c, refNet);
  REQUIRE_NOTHROW(buildDifferentiated(c, jitNet));
  const ir::Module &m = jitNet.module;
  auto problems = ir::verify(m);
  INFO((problems.empty() ? std::string() : problems[0]));
  REQUIRE(problems.empty());
  if (mutate) mutate(jitNet.fn);
  const int T = (int)jitNet.tasks.size();

  // Every parameter reaches the loss here, so each has a Grad output; state has none.
  std::vector<bool> hasGrad(m.params.size());
  for (const auto &o : jitNet.fn.outputs)
    if (o.kind == ir::Output::Kind::Grad) hasGrad.at(o.index) = true;
  for (size_t p = 0; p < m.params.size(); ++p) {
    INFO("parameter " << m.params[p].name
                      << (m.params[p].state ? " is state but has a gradient output" : " has no gradient output"));
    REQUIRE(hasGrad[p] == !m.params[p].state);
  }

  std::vector<const Node *> dropouts;
  for (const auto &up : refNet.fn.nodes)
    if (up->op == OpKind::Dropout) dropouts.push_back(up.get());

  Runner run(m, jitNet.paramFloats);
  ref::Env env;
  env.n = c.n;
  const uint64_t stepSeed = 0x5eed0000 + c.seed;
  ref::Values refValues;
  for (rep.draws = 1;; ++rep.draws) {
    // Draw parameters, inputs and labels (as floats: the reference sees the exact same values).
    std::mt19937_64 rng(c.seed * 7919 + rep.draws);
    auto uniform = [&](Range r) { return (float)std::uniform_real_distribution<double>(r.lo, r.hi)(rng); };
    env.params.clear();
    for (size_t p = 0; p < m.params.size(); ++p) {
      const auto &info = m.params[p];
      std::vector<double> v;
      for (int64_t e = 0; e < info.elements(); ++e) {
        float x = uniform(jitNet.paramRanges[p]);
        run.params[info.offset + e] = x;
        v.push_back(x);
      }
      env.params.push_back(std::move(v));
    }
    env.inputs.clear();
    for (size_t i = 0; i < m.inputs.size(); ++i) {
      int64_t E = m.inputs[i].elements();
      std::vector<double> v;
      const int64_t vocab = jitNet.inputVocab[i];
      for (int64_t e = 0; e < c.n * E; ++e) {
        float x = vocab > 0 ? (float)std::uniform_int_distribution<int64_t>(0, vocab - 1)(rng)
                            : uniform(jitNet.inputRanges[i]);
        run.inputs[i][e] = x;  // rows past n stay NaN
        v.push_back(x);
      }
      env.inputs.push_back(std::move(v));
    }
    env.labels.clear();
    env.lossWeights.clear();
    for (int t = 0; t < T; ++t) {
      const auto &spec = jitNet.tasks[t];
      int64_t width = m.labels[t].elements();
      std::vector<double> v;
      for (int64_t e = 0; e < c.maxBatch * width; ++e) {
        float x;
        if (spec.loss == OpKind::CrossEntropy)  // rows past n: a valid class, so a stray read can't crash
          x = e < c.n * width ? (float)std::uniform_int_distribution<int64_t>(0, spec.classes - 1)(rng) : 0.f;
        else if (e >= c.n * width)
          x = kNaN;
        else if (spec.loss == OpKind::BCE)
          x = (float)std::uniform_int_distribution<int>(0, 1)(rng);
        else
          x = uniform({-1, 1});
        if (e < c.n * width && spec.absentEvery > 0 && e % spec.absentEvery == spec.absentEvery - 1)
          x = kNaN;  // an absent label (partial labels)
        run.labels[t][e] = x;
        if (e < c.n * width) v.push_back(x);
      }
      env.labels.push_back(std::move(v));
      run.lossWeights[t] = (float)spec.weight;
      env.lossWeights.push_back((float)spec.weight);
    }
    env.dropoutKeep.clear();
    for (const Node *d : dropouts) env.dropoutKeep[d->ints[0]] = probeDropoutMask(*d, c.maxBatch, c.n, stepSeed);

    refValues = ref::evaluate(refNet.fn, env);
    rep.margin = refValues.kink.margin;
    if (rep.margin >= c.minMargin) break;
    INFO("no draw keeps the data " << c.minMargin << " away from a non-differentiable point; last: "
                                   << refValues.kink.where);
    REQUIRE(rep.draws < 50);
  }
  std::ostringstream details;
  for (const Node *d : dropouts) {  // a meaningful mask: some kept, some dropped
    const auto &keep = env.dropoutKeep[d->ints[0]];
    double kept = 0;
    for (double k : keep) kept += k;
    if (kept == 0 || kept == (double)keep.size()) {
      ++rep.badMask;
      details << "dropout salt " << d->ints[0] << " keeps " << kept << " of " << keep.size() << "\n";
    }
  }

  // ---- the JIT's forward: losses and heads against the reference ----
  run.run(c.n, stepSeed);
  const double fwdRtol = 2e-5, fwdAtol = 2e-6;
  for (int t = 0; t <= T; ++t) {
    const Node *node = t < T ? ref::output(refNet.fn, ir::Output::Kind::TaskLoss, t)
                             : ref::output(refNet.fn, ir::Output::Kind::TotalLoss);
    double want = refValues.of(node)[0], got = run.losses[t];
    rep.forwardRel = std::max(rep.forwardRel, relErr(got, want));
    if (!(std::abs(got - want) <= fwdAtol + fwdRtol * std::abs(want))) {
      ++rep.badForward;
      details << (t < T ? "task loss " + std::to_string(t) : std::string("total loss")) << ": jit "
              << got << ", reference " << want << "\n";
    }
  }
  for (int t = 0; t < T; ++t) {
    const auto &want = refValues.of(refNet.tasks[t].head);
    for (size_t i = 0; i < want.size(); ++i)
      if (!(std::abs(run.outputs[t][i] - want[i]) <= fwdAtol + fwdRtol * std::abs(want[i])) &&
          rep.badForward++ < 8)
        details << "head " << t << "[" << i << "]: jit " << run.outputs[t][i] << ", reference "
                << want[i] << "\n";
    for (size_t i = want.size(); i < run.outputs[t].size(); ++i)
      if (!std::isnan(run.outputs[t][i]) && rep.badForward++ < 8)
        details << "head " << t << " row past n written at " << i << "\n";
  }

  // ---- gradients: every element of every parameter against central differences ----
  std::vector<std::vector<double>> jitGrads;
  for (const auto &info : m.params)
    jitGrads.emplace_back(run.grads.begin() + info.offset, run.grads.begin() + info.offset + info.elements());
  for (size_t p = 0; p < m.params.size(); ++p) {
    if (m.params[p].state) continue;
    auto &theta = env.params[p];
    for (size_t e = 0; e < theta.size(); ++e) {
      const double saved = theta[e], h = 1e-6 * std::max(1.0, std::abs(saved));
      theta[e] = saved + h;
      double up = ref::totalLoss(refNet.fn, env);
      theta[e] = saved - h;
      double down = ref::totalLoss(refNet.fn, env);
      theta[e] = saved;
      double fd = (up - down) / (2 * h), g = jitGrads[p][e], err = std::abs(g - fd);
      double ratio = err / (c.atol + c.rtol * std::abs(fd));
      if (!(ratio <= 1) && rep.badGrads++ < 8)
        details << "  " << m.params[p].name << "[" << e << "]: jit " << g << ", finite difference "
                << fd << "\n";
      if (std::isnan(g)) ratio = err = INFINITY;
      ++rep.elements;
      rep.maxAbs = std::max(rep.maxAbs, err);
      if (std::abs(fd) >= 1e-3) rep.maxRel = std::max(rep.maxRel, err / std::abs(fd));
      if (ratio > rep.maxRatio) {
        rep.maxRatio = ratio;
        std::ostringstream at;
        at << m.params[p].name << "[" << e << "] (jit " << g << ", fd " << fd << ")";
        rep.worstAt = at.str();
      }
    }
  }

  // ---- dropout: also against the JIT's own float forward with the same seed (same mask) ----
  // Looser by necessity: float losses, step 1e-2 (the check TestTrainStep uses).
  if (!dropouts.empty()) {
    rep.jitFdMaxAbs = 0;
    const float step = 1e-2f;
    for (size_t p = 0; p < m.params.size(); ++p) {
      const auto &info = m.params[p];
      if (info.state) continue;
      for (int64_t e = 0; e < info.elements(); ++e) {
        float &x = run.params[info.offset + e];
        const float saved = x;
        x = saved + step;
        run.run(c.n, stepSeed);
        double up = run.losses[T];
        x = saved - step;
        run.run(c.n, stepSeed);
        double down = run.losses[T];
        x = saved;
        double fd = (up - down) / (2.0 * step), err = std::abs(jitGrads[p][e] - fd);
        rep.jitFdMaxAbs = std::max(rep.jitFdMaxAbs, err);
        if (!(err <= 2e-3 + 2e-2 * std::abs(fd)) && rep.badJitFd++ < 4)
          details << "  (jit fd) " << info.name << "[" << e << "]: jit " << jitGrads[p][e]
                  << ", float finite difference " << fd << "\n";
      }
    }
  }
  rep.details = details.str();
  return rep;
}

Report runCase(const Case &c) {
  Report rep = measure(c);
  INFO(c.group << " / " << c.name << " (tolerance " << c.rtol << "·|fd| + " << c.atol << ", "
               << rep.elements << " gradient elements)\n" << rep.details);
  CHECK(rep.badMask == 0);     // each dropout mask keeps some elements and drops some
  CHECK(rep.badForward == 0);  // losses and heads match the reference; rows past n untouched
  CHECK(rep.badGrads == 0);    // every gradient element matches the reference's central difference
  CHECK(rep.badJitFd == 0);    // dropout: matches the JIT's own finite differences too
  WARN(c.group << " / " << c.name << ": " << rep.elements << " elements, max|err| " << rep.maxAbs
               << ", max rel " << rep.maxRel << ", tolerance used " << rep.maxRatio << " at "
               << rep.worstAt << "; forward rel " << rep.forwardRel << "; margin " << rep.margin
               << " (" << rep.draws << " draw" << (rep.draws > 1 ? "s" : "") << ")"
               << (rep.jitFdMaxAbs >= 0 ? "; jit-fd max|err| " + std::to_string(rep.jitFdMaxAbs) : ""));
  reports().push_back(rep);
  return rep;
}

void runGroup(const std::string &group) {
  int count = 0;
  for (const Case &c : allCases()) {
    if (c.group != group) continue;
    ++count;
    DYNAMIC_SECTION(c.name) { runCase(c); }
  }
  INFO("no gradient-check case in group " << group);
  REQUIRE(count > 0);
}

}  // namespace mtlc::test::gradcheck
