// Optimizers against torch.optim (torch 1.13, float32).
//
// The expected numbers were produced with /usr/bin/python3 (torch 1.13) by this script:
//   p0 = [0.5, -1.25, 2.0, 0.0, -0.3]
//   grads = [[0.1, -0.2, 0.3, -0.4, 0.5], [-0.05, 0.4, 0.0, 1.5, -0.25], [0.2, 0.2, -0.6, 0.01, 0.0]]
//   p = torch.nn.Parameter(torch.tensor(p0)); opt = torch.optim.<X>([p], ...)
//   for g in grads: p.grad = torch.tensor(g); opt.step()
//   print(p.tolist(), opt.state[p])      # "%.9g"
#include "TestUtil.h"

#include "spec/Error.h"
#include "runtime/train/Optimizer.h"
#include "runtime/train/Schedule.h"

#include <cmath>
#include <iomanip>
#include <limits>

using namespace mtlc::rt;

namespace {

const std::vector<float> kP0{0.5f, -1.25f, 2.0f, 0.0f, -0.3f};
const std::vector<std::vector<float>> kGrads{
    {0.1f, -0.2f, 0.3f, -0.4f, 0.5f}, {-0.05f, 0.4f, 0.0f, 1.5f, -0.25f}, {0.2f, 0.2f, -0.6f, 0.01f, 0.0f}};

std::vector<float> run(Optimizer& opt) {
  std::vector<float> p = kP0;
  for (const auto& g : kGrads) opt.step(p.data(), g.data());
  return p;
}

void checkClose(const float* got, const std::vector<float>& want) {
  for (size_t i = 0; i < want.size(); ++i) {
    INFO("element " << i << ": " << std::setprecision(9) << got[i] << " vs torch " << want[i]);
    CHECK(got[i] == Approx(want[i]).epsilon(2e-6).margin(1e-7));
  }
}

const Optimizer::StateTensor& stateNamed(const std::vector<Optimizer::StateTensor>& s, const std::string& n) {
  for (const auto& t : s)
    if (t.name == n) return t;
  FAIL("no state tensor " << n);
  return s.front();
}

}  // namespace

TEST_CASE("sgd matches torch.optim.SGD(lr=0.1)", "[optim]") {
  OptimizerSpec s;
  s.kind = OptimizerKind::Sgd;
  s.lr = 0.1;
  Optimizer opt(s, 5);
  checkClose(run(opt).data(), {0.474999994f, -1.28999996f, 2.02999997f, -0.111000001f, -0.325000018f});
  CHECK(opt.state().size() == 1);  // only optim.step without momentum
  CHECK(opt.steps() == 3);
}

TEST_CASE("sgd with momentum and weight decay matches torch", "[optim]") {
  OptimizerSpec s;
  s.kind = OptimizerKind::Sgd;
  s.lr = 0.1;
  s.momentum = 0.9;
  s.weightDecay = 0.01;
  Optimizer opt(s, 5);
  checkClose(run(opt).data(), {0.45963037f, -1.2848295f, 1.96760356f, -0.177601948f, -0.386153489f});
  auto state = opt.state();
  checkClose(stateNamed(state, "optim.momentum").data,
             {0.249301106f, 0.364332289f, -0.303715676f, 1.0356195f, 0.170731872f});
  CHECK(stateNamed(state, "optim.step").data[0] == 3.0f);
}

TEST_CASE("adam matches torch.optim.Adam(lr=0.01)", "[optim]") {
  OptimizerSpec s;
  s.kind = OptimizerKind::Adam;
  s.lr = 0.01;
  Optimizer opt(s, 5);
  checkClose(run(opt).data(), {0.480755508f, -1.24885345f, 1.9866997f, 0.000270049553f, -0.31472218f});
  auto state = opt.state();
  checkClose(stateNamed(state, "optim.m").data, {0.0236000009f, 0.0397999994f, -0.0357000045f, 0.103600003f, 0.0179999974f});
  checkClose(stateNamed(state, "optim.v").data,
             {5.24775132e-05f, 0.000239760047f, 0.000449820131f, 0.00240753009f, 0.000311937765f});
}

TEST_CASE("adam with betas, eps and L2 weight decay matches torch", "[optim]") {
  OptimizerSpec s;
  s.kind = OptimizerKind::Adam;
  s.lr = 0.05;
  s.beta1 = 0.8;
  s.beta2 = 0.99;
  s.eps = 1e-3;
  s.weightDecay = 0.1;
  Optimizer opt(s, 5);
  checkClose(run(opt).data(), {0.37913844f, -1.20975959f, 1.90308118f, -0.00178888813f, -0.35878554f});
  auto state = opt.state();
  checkClose(stateNamed(state, "optim.m").data, {0.0668138638f, 0.0191579852f, 0.0133332163f, 0.191999495f, 0.00743391737f});
  checkClose(stateNamed(state, "optim.v").data, {0.000806614f, 0.00187498983f, 0.00450234441f, 0.023992978f, 0.0029818099f});
}

TEST_CASE("optimizer state can be restored and continues the same trajectory", "[optim]") {
  OptimizerSpec s;
  s.kind = OptimizerKind::Adam;
  s.lr = 0.01;
  Optimizer full(s, 5);
  std::vector<float> pFull = run(full);

  Optimizer first(s, 5);
  std::vector<float> p = kP0;
  first.step(p.data(), kGrads[0].data());
  Optimizer resumed(s, 5);
  auto from = first.state(), to = resumed.state();
  for (size_t i = 0; i < from.size(); ++i) std::copy(from[i].data, from[i].data + from[i].size, to[i].data);
  resumed.setSteps(first.steps());
  resumed.step(p.data(), kGrads[1].data());
  resumed.step(p.data(), kGrads[2].data());
  CHECK(p == pFull);
}

TEST_CASE("frozen parameters: trainable spans skip them, the optimizer leaves them alone", "[optim]") {
  ModelSpec spec;
  auto add = [&](std::string name, int64_t offset, int64_t size, bool frozen) {
    ParamSpec p;
    p.name = std::move(name);
    p.shape = {size};
    p.offset = offset;
    p.size = size;
    p.frozen = frozen;
    spec.params.push_back(p);
  };
  add("a.0.weight", 0, 2, false);
  add("a.0.bias", 2, 1, true);
  add("b.0.weight", 3, 1, false);
  add("b.0.bias", 4, 1, false);
  spec.paramCount = 5;
  using Spans = std::vector<std::pair<int64_t, int64_t>>;
  CHECK(trainableSpans(spec) == Spans{{0, 2}, {3, 5}});
  spec.params[1].frozen = false;
  CHECK(trainableSpans(spec) == Spans{{0, 5}});
  spec.params[1].frozen = true;

  OptimizerSpec s;
  s.kind = OptimizerKind::Adam;
  s.lr = 0.01;
  Optimizer opt(s, 5);
  opt.setActiveSpans(trainableSpans(spec));
  std::vector<float> p = run(opt);
  CHECK(p[2] == kP0[2]);  // frozen
  CHECK(opt.state()[1].data[2] == 0.0f);  // its first moment never moved either
  // The others follow torch's numbers exactly as without freezing.
  checkClose(p.data(), {0.480755508f, -1.24885345f, 2.0f, 0.000270049553f, -0.31472218f});
}

TEST_CASE("clip_grad_norm: torch's clip_grad_norm_ over the trainable spans", "[optim]") {
  // torch.nn.utils.clip_grad_norm_(p, 1.0) on grads [3, 4 | frozen 12 | 0]: total norm 5 over the
  // trainable ones, coefficient 1 / (5 + 1e-6).
  std::vector<float> g{3, 4, 12, 0};
  const std::vector<std::pair<int64_t, int64_t>> spans{{0, 2}, {3, 4}};
  CHECK(clipGradNorm(g.data(), spans, 1.0) == Approx(5.0).epsilon(1e-12));
  CHECK(g[0] == float(3.0 / (5.0 + 1e-6)));
  CHECK(g[1] == float(4.0 / (5.0 + 1e-6)));
  CHECK(g[2] == 12);  // frozen: neither counted nor scaled
  CHECK(g[3] == 0);
  // Below the bound nothing changes; a non-finite norm is returned and the gradient left alone.
  std::vector<float> small{0.3f, 0.4f};
  CHECK(clipGradNorm(small.data(), {{0, 2}}, 1.0) == Approx(0.5).epsilon(1e-7));
  CHECK(small == std::vector<float>{0.3f, 0.4f});
  std::vector<float> bad{1, std::numeric_limits<float>::infinity()};
  CHECK(std::isinf(clipGradNorm(bad.data(), {{0, 2}}, 1.0)));
  CHECK(bad[0] == 1);
}

// The rates torch.optim.lr_scheduler gives an SGD(lr=0.1) in epochs 0..7 when stepped once an
// epoch (printed with repr by /usr/bin/python3, torch 1.13); mtlc's must be the same doubles.
TEST_CASE("schedules: each epoch's rate is torch's to the bit; warm-up ramps over steps", "[optim]") {
  struct Case {
    ScheduleSpec s;
    std::vector<double> torch;
  };
  auto make = [](ScheduleKind kind, double every, double gamma, double etaMin, double tMax) {
    ScheduleSpec s;
    s.kind = kind, s.every = every, s.gamma = gamma, s.etaMin = etaMin, s.tMax = tMax;
    return s;
  };
  const ScheduleSpec step = make(ScheduleKind::Step, 2, 0.5, 0, 0), expo = make(ScheduleKind::Exponential, 1, 0.9, 0, 0),
                     cosine = make(ScheduleKind::Cosine, 1, 0.1, 0.001, 3);
  ScheduleSpec multi = make(ScheduleKind::MultiStep, 1, 0.1, 0, 0);
  multi.at = {1, 3};
  const Case cases[] = {
      {step, {0.1, 0.1, 0.05, 0.05, 0.025, 0.025, 0.0125, 0.0125}},
      {multi, {0.1, 0.010000000000000002, 0.010000000000000002, 0.0010000000000000002, 0.0010000000000000002,
               0.0010000000000000002, 0.0010000000000000002, 0.0010000000000000002}},
      {expo, {0.1, 0.09000000000000001, 0.08100000000000002, 0.07290000000000002, 0.06561000000000002,
              0.05904900000000002, 0.05314410000000002, 0.04782969000000002}},
      // Past t_max the cosine rises again, as CosineAnnealingLR's does.
      {cosine, {0.1, 0.07525000000000001, 0.025750000000000016, 0.001, 0.025749999999999995, 0.07525000000000005,
                0.10000000000000006, 0.07525000000000007}},
  };
  for (const Case &c : cases) {
    TrainSpec ts;
    ts.optimizer.lr = 0.1;
    ts.schedule = c.s;
    for (int64_t e = 0; e < 8; ++e) {
      INFO(mtlc::vocab::name(c.s.kind) << " epoch " << e);
      CHECK(epochLr(ts, e, 8) == c.torch[size_t(e)]);
    }
  }
  TrainSpec ts;
  ts.optimizer.lr = 0.1;
  ts.warmup = 4;
  CHECK(stepLr(ts, 1, 0.05) == 0.1 * 1 / 4);
  CHECK(stepLr(ts, 4, 0.05) == 0.1);
  CHECK(stepLr(ts, 5, 0.05) == 0.05);  // then the epoch's scheduled rate
  CHECK(epochLr(ts, 3, 8) == 0.1);     // no schedule: the optimizer's lr
}
