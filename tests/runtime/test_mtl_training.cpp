// Multi-task training end to end with hand-written kernels standing in for the compiler's: every
// weighting strategy, partial labels, transfer between task sets (--init) and frozen blocks.
//
// The model: input x : f32[3]; shared trunk = dense(2) on x (linear); task `reg` = dense(1) on the
// trunk, loss mse; a second task (`cls` by default, or any name) = dense(1) on the trunk, loss bce.
//   trunk.0.weight [2, 3] @0, trunk.0.bias [2] @6 (shared), reg.0.weight [1, 2] @8,
//   reg.0.bias [1] @10, <cls>.0.weight [1, 2] @11, <cls>.0.bias [1] @13.
// Forward: z = W·x + b, y = v_r·z + c_r, s = v_c·z + c_c. Losses mask absent (NaN) labels, as the
// generated kernels do: L_reg = mean over present (y − t)², L_cls = mean over present BCE(s, l);
// no present label: loss 0, gradient 0. Entry points: train_step (weighted total, its gradient),
// task_grads (each task's unweighted gradient at t·14), rep_grads (∂L_t/∂z to outputs[2 + t]).
#include "TestUtil.h"

#include "runtime/io/Checkpoint.h"
#include "spec/Error.h"
#include "runtime/train/Init.h"
#include "runtime/train/Metrics.h"
#include "runtime/io/SafeTensors.h"
#include "runtime/train/Trainer.h"
#include "runtime/train/Weighting.h"

#include <nlohmann/json.hpp>

#include <cmath>
#include <sstream>

using namespace mtlc::rt;
using namespace mtlc::rt::test;
using Catch::Matchers::Contains;

namespace {

constexpr int64_t P = 14, T = 2;
enum class Mode { Train, TaskGrads, RepGrads, Eval };

struct Calls {
  int64_t train = 0, taskGrads = 0, repGrads = 0;
  int64_t nanLabels = 0;  // NaN labels the kernels saw (passed through untouched)
};
Calls calls;

template <Mode mode>
void kernel(const mtlc_args* a) {
  const float* p = a->params;
  const int64_t n = a->n;
  std::vector<float> z(static_cast<size_t>(2 * n)), y(static_cast<size_t>(n)), s(static_cast<size_t>(n));
  double lossR = 0, lossC = 0;
  int64_t mR = 0, mC = 0;
  for (int64_t i = 0; i < n; ++i) {
    const float* x = a->inputs[0] + i * 3;
    for (int k = 0; k < 2; ++k) z[size_t(2 * i + k)] = p[3 * k] * x[0] + p[3 * k + 1] * x[1] + p[3 * k + 2] * x[2] + p[6 + k];
    y[size_t(i)] = p[8] * z[size_t(2 * i)] + p[9] * z[size_t(2 * i + 1)] + p[10];
    s[size_t(i)] = p[11] * z[size_t(2 * i)] + p[12] * z[size_t(2 * i + 1)] + p[13];
    const float t = a->labels[0][i], l = a->labels[1][i];
    if (mode != Mode::Eval) calls.nanLabels += std::isnan(t) + std::isnan(l);
    if (!std::isnan(t)) lossR += double(y[size_t(i)] - t) * double(y[size_t(i)] - t), ++mR;
    if (!std::isnan(l)) {
      const float v = s[size_t(i)];
      lossC += std::max(v, 0.0f) - v * l + std::log1p(std::exp(-std::fabs(v)));
      ++mC;
    }
    a->outputs[0][i] = y[size_t(i)];
    a->outputs[1][i] = s[size_t(i)];
  }
  a->losses[0] = mR ? float(lossR / double(mR)) : 0.0f;
  a->losses[1] = mC ? float(lossC / double(mC)) : 0.0f;
  a->losses[2] = a->loss_weights[0] * a->losses[0] + a->loss_weights[1] * a->losses[1];
  if (mode == Mode::Eval) return;
  if (mode == Mode::Train) ++calls.train;
  if (mode == Mode::TaskGrads) ++calls.taskGrads;
  if (mode == Mode::RepGrads) ++calls.repGrads;
  // Per task t: its own gradient g_t (14 floats) and ∂L_t/∂z ([n, 2]).
  std::vector<float> g(size_t(T * P), 0.0f), dz(size_t(T * 2 * n), 0.0f);
  for (int64_t i = 0; i < n; ++i) {
    const float* x = a->inputs[0] + i * 3;
    const float t = a->labels[0][i], l = a->labels[1][i];
    float dy[2] = {0, 0};  // ∂L_reg/∂y_i, ∂L_cls/∂s_i
    if (!std::isnan(t)) dy[0] = 2.0f * (y[size_t(i)] - t) / float(mR);
    if (!std::isnan(l)) dy[1] = (1.0f / (1.0f + std::exp(-s[size_t(i)])) - l) / float(mC);
    for (int64_t task = 0; task < T; ++task) {
      float* gt = g.data() + task * P;
      const int64_t head = task == 0 ? 8 : 11;
      gt[head] += dy[task] * z[size_t(2 * i)];
      gt[head + 1] += dy[task] * z[size_t(2 * i + 1)];
      gt[head + 2] += dy[task];
      for (int k = 0; k < 2; ++k) {
        const float d = dy[task] * p[head + k];
        dz[size_t(task * 2 * n + 2 * i + k)] = d;
        for (int j = 0; j < 3; ++j) gt[3 * k + j] += d * x[j];
        gt[6 + k] += d;
      }
    }
  }
  if (mode == Mode::Train)
    for (int64_t q = 0; q < P; ++q) a->grads[q] = a->loss_weights[0] * g[size_t(q)] + a->loss_weights[1] * g[size_t(P + q)];
  if (mode == Mode::TaskGrads)
    for (int64_t q = 0; q < T * P; ++q) a->grads[q] = g[size_t(q)];
  if (mode == Mode::RepGrads)
    for (int64_t task = 0; task < T; ++task)
      std::copy(dz.begin() + task * 2 * n, dz.begin() + (task + 1) * 2 * n, a->outputs[T + task]);
}

ModelSpec sharedModel(const std::string& trainCsv, const std::string& testCsv, const std::string& weighting,
                      const std::string& second = "cls") {
  ModelSpec s;
  s.name = "duo";
  s.inputs = {InputSpec{"x", {3}, 3}};
  TaskSpec reg;
  reg.name = "reg";
  reg.loss = LossKind::MSE;
  reg.metrics = {Metric::MAE};
  TaskSpec cls;
  cls.name = second;
  cls.loss = LossKind::BCE;
  cls.weight = 0.5;
  cls.metrics = {Metric::Accuracy, Metric::AUC};
  s.tasks = {reg, cls};
  auto param = [&](std::string name, std::vector<int64_t> shape, int64_t fanIn, std::vector<int> tasks) {
    ParamSpec p;
    p.name = std::move(name);
    p.shape = std::move(shape);
    p.offset = s.paramCount;
    p.size = 1;
    for (int64_t d : p.shape) p.size *= d;
    p.fanIn = fanIn;
    p.block = p.name.substr(0, p.name.find('.'));
    p.tasks = std::move(tasks);  // the tasks whose loss reaches it
    s.params.push_back(p);
    s.paramCount += p.size;
  };
  param("trunk.0.weight", {2, 3}, 3, {0, 1});
  param("trunk.0.bias", {2}, 3, {0, 1});
  param("reg.0.weight", {1, 2}, 2, {0});
  param("reg.0.bias", {1}, 2, {0});
  param(second + ".0.weight", {1, 2}, 2, {1});
  param(second + ".0.bias", {1}, 2, {1});
  REQUIRE(s.paramCount == P);
  s.maxBatch = 64;
  s.actsFloats = 64;
  s.train.optimizer.kind = OptimizerKind::Adam;
  s.train.optimizer.lr = 0.03;
  s.train.batch = 16;
  s.train.epochs = 12;
  s.train.seed = 5;
  s.train.weighting = weightingNamed(weighting);
  if (weighting == "dwa") s.train.weightingParam = 2;
  if (weighting == "gradnorm") s.train.weightingParam = 1.5;
  s.data.train = SourceSpec{"csv", {trainCsv}, {}};
  if (!testCsv.empty()) s.data.test = SourceSpec{"csv", {testCsv}, {}};
  Binding x;
  x.target = "x";
  x.expr.ref.colFirst = 0;
  x.expr.ref.colLast = 2;
  x.width = 3;
  s.data.inputs = {x};
  Binding y;
  y.target = "reg";
  y.expr.ref.field = "y";
  Binding c;
  c.target = second;
  c.expr.op = BindExpr::Op::Gt;
  c.expr.ref.field = "c";
  s.data.labels = {y, c};
  s.trainStep = kernel<Mode::Train>;
  s.evalStep = kernel<Mode::Eval>;
  s.taskGradsStep = kernel<Mode::TaskGrads>;
  s.repGradsStep = kernel<Mode::RepGrads>;
  s.repWidth = 2;
  return s;
}

// y = 2·x0 − x1 + 0.5·x2 + 0.3;  c = x0 + x1 − 0.2. Every `missY`-th y cell and every `missC`-th
// c cell is left empty (absent) when > 0.
void writeCsv(const std::string& path, int rows, uint32_t seed, int missY = 0, int missC = 0) {
  std::ostringstream os;
  os << "x0,x1,x2,y,c\n";
  uint32_t st = seed;
  auto u = [&] {
    st = st * 1664525u + 1013904223u;
    return double(st >> 8) / double(1 << 24) * 2 - 1;
  };
  for (int r = 0; r < rows; ++r) {
    double x0 = u(), x1 = u(), x2 = u();
    os << x0 << ',' << x1 << ',' << x2 << ',';
    if (!(missY > 0 && r % missY == 0)) os << 2 * x0 - x1 + 0.5 * x2 + 0.3;
    os << ',';
    if (!(missC > 0 && r % missC == 1)) os << x0 + x1 - 0.2;
    os << '\n';
  }
  writeText(path, os.str());
}

std::vector<nlohmann::json> readLog(const std::string& path, bool steps = true) {
  std::ifstream in(path);
  std::vector<nlohmann::json> lines;
  for (std::string l; std::getline(in, l);) {
    auto j = nlohmann::json::parse(l);
    if (j.contains("step") == steps) lines.push_back(j);
  }
  return lines;
}

// Each task's mean logged loss over epoch e (1-based), weighting each step by its batch size
// (every label present).
std::vector<double> epochMeans(const std::vector<nlohmann::json>& log, int64_t e, int64_t rows, int64_t batch) {
  std::vector<double> sum(2);
  int64_t seen = 0;
  for (const auto& j : log) {
    if (j["epoch"] != e) continue;
    const int64_t n = std::min(batch, rows - seen);
    seen += n;
    int t = 0;
    for (const char* name : {"reg", "cls"}) sum[size_t(t++)] += j["tasks"][name]["loss"].get<double>() * double(n);
  }
  for (double& s : sum) s /= double(seen);
  return sum;
}

double metric(const std::vector<TaskResult>& rs, const std::string& task, const std::string& m) {
  for (const TaskResult& r : rs)
    if (r.task == task) return r.metrics.at(m);
  FAIL("no task " << task);
  return 0;
}

struct Run {
  TrainReport report;
  std::vector<nlohmann::json> log;
  std::string out;
};

Run trainWith(ModelSpec spec, const TempDir& dir, TrainOptions opt = {}) {
  opt.quiet = true;
  if (opt.logPath.empty()) opt.logPath = dir / "log.jsonl";
  std::ostringstream out;
  calls = Calls{};
  Run r;
  r.report = train(spec, opt, out);
  r.out = out.str();
  r.log = readLog(opt.logPath);
  return r;
}

// Every task's loss falls: the first epoch's mean against the last epoch's.
void checkLearns(const Run& r, int64_t epochs) {
  INFO(r.out);
  std::vector<double> first = epochMeans(r.log, 1, 300, 16), last = epochMeans(r.log, epochs, 300, 16);
  CHECK(last[0] < 0.2 * first[0]);
  CHECK(last[1] < 0.8 * first[1]);
  CHECK(metric(r.report.test, "reg", "loss") < 0.05);
  CHECK(metric(r.report.test, "cls", "accuracy") > 0.9);
}

}  // namespace

TEST_CASE("mtl training: uncertainty logs ½·exp(−s) and its objective, and learns", "[trainer][weighting]") {
  TempDir dir;
  writeCsv(dir / "train.csv", 300, 1);
  writeCsv(dir / "test.csv", 100, 2);
  ModelSpec spec = sharedModel(dir / "train.csv", dir / "test.csv", "uncertainty");
  TrainOptions opt;
  opt.savePath = dir / "u.safetensors";
  Run r = trainWith(spec, dir, opt);
  CHECK(calls.train == r.report.steps);
  CHECK(calls.taskGrads == 0);
  CHECK_THAT(r.out, Contains("weighting: uncertainty\n"));
  const auto& s1 = r.log[0];
  CHECK(s1["tasks"]["reg"]["weight"].get<double>() == 0.5);
  CHECK(s1["tasks"]["cls"]["weight"].get<double>() == 0.5);
  // s = 0: the objective is ½·(L_reg + L_cls).
  CHECK(s1["loss"].get<double>() ==
        Approx(0.5 * (s1["tasks"]["reg"]["loss"].get<double>() + s1["tasks"]["cls"]["loss"].get<double>())));
  // Later: loss = Σ w_i·L_i + ½·Σ s_i with s_i = −log(2·w_i).
  const auto& sl = r.log.back();
  double obj = 0;
  for (const char* t : {"reg", "cls"}) {
    const double w = sl["tasks"][t]["weight"].get<double>(), L = sl["tasks"][t]["loss"].get<double>();
    obj += w * L + 0.5 * -std::log(2 * w);
  }
  CHECK(sl["loss"].get<double>() == Approx(obj).epsilon(1e-5));
  // The regression loss shrinks far below the classification loss, so its weight grows past it.
  CHECK(sl["tasks"]["reg"]["weight"].get<double>() > sl["tasks"]["cls"]["weight"].get<double>());
  checkLearns(r, 12);
  // The checkpoint holds s; --init from it resumes with it.
  TensorFile f = readSafeTensors(dir / "u.safetensors");
  REQUIRE(f.find("mtl.log_var") != nullptr);
  const std::vector<float>& s = f.find("mtl.log_var")->data;
  TrainOptions more;
  more.initPath = dir / "u.safetensors";
  more.steps = 1;
  more.logPath = dir / "more.jsonl";
  Run m = trainWith(spec, dir, more);
  CHECK_THAT(m.out, Contains("(with optimizer state after 228 steps, weighting state)"));
  CHECK(m.log[0]["tasks"]["reg"]["weight"].get<double>() == Approx(0.5 * std::exp(-double(s[0]))));
}

TEST_CASE("mtl training: dwa weights 1 for two epochs, then T·softmax of the loss ratios", "[trainer][weighting]") {
  TempDir dir;
  writeCsv(dir / "train.csv", 300, 1);
  writeCsv(dir / "test.csv", 100, 2);
  Run r = trainWith(sharedModel(dir / "train.csv", dir / "test.csv", "dwa"), dir);
  CHECK_THAT(r.out, Contains("weighting: dwa(temperature=2)\n"));
  for (const auto& j : r.log) {
    const double a = j["tasks"]["reg"]["weight"].get<double>(), b = j["tasks"]["cls"]["weight"].get<double>();
    CHECK(a + b == Approx(2.0));
    if (j["epoch"].get<int>() <= 2) CHECK((a == 1.0 && b == 1.0));
  }
  // Epoch e ≥ 3 uses the epoch means of e−2 and e−1 (computed here from the logged step losses).
  for (int64_t e : {3, 4, 12}) {
    INFO("epoch " << e);
    std::vector<double> w = dwaWeights(epochMeans(r.log, e - 2, 300, 16), epochMeans(r.log, e - 1, 300, 16), 2.0);
    const auto& j = *std::find_if(r.log.begin(), r.log.end(), [&](const auto& l) { return l["epoch"] == e; });
    CHECK(j["tasks"]["reg"]["weight"].get<double>() == Approx(w[0]).epsilon(1e-5));
    CHECK(j["tasks"]["cls"]["weight"].get<double>() == Approx(w[1]).epsilon(1e-5));
  }
  checkLearns(r, 12);
}

TEST_CASE("mtl training: gradnorm learns weights that sum to T from task gradients", "[trainer][weighting]") {
  TempDir dir;
  writeCsv(dir / "train.csv", 300, 1);
  writeCsv(dir / "test.csv", 100, 2);
  TrainOptions opt;
  opt.savePath = dir / "g.safetensors";
  Run r = trainWith(sharedModel(dir / "train.csv", dir / "test.csv", "gradnorm"), dir, opt);
  CHECK(calls.taskGrads == r.report.steps);
  CHECK(calls.train == 0);
  CHECK_THAT(r.out, Contains("weighting: gradnorm(alpha=1.5) on trunk.0.weight\n"));
  CHECK(r.log[0]["tasks"]["reg"]["weight"].get<double>() == 1.0);
  bool moved = false;
  for (const auto& j : r.log) {
    const double a = j["tasks"]["reg"]["weight"].get<double>(), b = j["tasks"]["cls"]["weight"].get<double>();
    CHECK(a + b == Approx(2.0).epsilon(1e-5));
    CHECK(a > 0);
    CHECK(b > 0);
    moved = moved || std::fabs(a - 1) > 0.05;
    CHECK(j["loss"].get<double>() == Approx(a * j["tasks"]["reg"]["loss"].get<double>() +
                                            b * j["tasks"]["cls"]["loss"].get<double>()).epsilon(1e-5));
  }
  CHECK(moved);
  checkLearns(r, 12);
  TensorFile f = readSafeTensors(dir / "g.safetensors");
  CHECK(f.find("mtl.weights") != nullptr);
  CHECK(f.find("mtl.initial_loss")->data[0] == Approx(r.log[0]["tasks"]["reg"]["loss"].get<double>()));
}

TEST_CASE("mtl training: pcgrad logs the fixed weights and learns", "[trainer][weighting]") {
  TempDir dir;
  writeCsv(dir / "train.csv", 300, 1);
  writeCsv(dir / "test.csv", 100, 2);
  Run r = trainWith(sharedModel(dir / "train.csv", dir / "test.csv", "pcgrad"), dir);
  CHECK(calls.taskGrads == r.report.steps);
  for (const auto& j : r.log) {
    CHECK(j["tasks"]["reg"]["weight"].get<double>() == 1.0);
    CHECK(j["tasks"]["cls"]["weight"].get<double>() == 0.5);
  }
  checkLearns(r, 12);
  // Same seed, same run (the projection orders are seeded).
  Run again = trainWith(sharedModel(dir / "train.csv", dir / "test.csv", "pcgrad"), dir);
  CHECK(again.log.back()["loss"] == r.log.back()["loss"]);
}

TEST_CASE("mtl training: mgda on the representation (MGDA-UB) and on the shared parameters", "[trainer][weighting]") {
  TempDir dir;
  writeCsv(dir / "train.csv", 300, 1);
  writeCsv(dir / "test.csv", 100, 2);
  for (bool rep : {true, false}) {
    INFO((rep ? "rep_grads" : "task_grads"));
    ModelSpec spec = sharedModel(dir / "train.csv", dir / "test.csv", "mgda");
    spec.train.epochs = 20;
    if (!rep) spec.repGradsStep = nullptr, spec.repWidth = 0;
    Run r = trainWith(spec, dir);
    CHECK_THAT(r.out, Contains(rep ? "MGDA-UB on the 2-wide shared representation" : "on the shared parameters' gradients"));
    CHECK(calls.repGrads == (rep ? r.report.steps : 0));
    CHECK(calls.train == (rep ? r.report.steps : 0));
    CHECK(calls.taskGrads == (rep ? 0 : r.report.steps));
    bool interior = false;
    for (const auto& j : r.log) {
      const double a = j["tasks"]["reg"]["weight"].get<double>(), b = j["tasks"]["cls"]["weight"].get<double>();
      CHECK(a + b == Approx(1.0).epsilon(1e-6));
      CHECK(a >= 0);
      CHECK(b >= 0);
      interior = interior || (a > 0.01 && b > 0.01);
    }
    CHECK(interior);
    std::vector<double> first = epochMeans(r.log, 1, 300, 16), last = epochMeans(r.log, 20, 300, 16);
    CHECK(last[0] < 0.5 * first[0]);
    CHECK(last[1] < 0.9 * first[1]);
  }
}

TEST_CASE("partial labels: accepted, passed through, metrics and means over present labels", "[trainer][partial]") {
  TempDir dir;
  writeCsv(dir / "train.csv", 300, 1, /*missY=*/3, /*missC=*/2);  // 100 y and 150 c cells empty
  // The test set has no label at all for cls.
  writeText(dir / "test.csv", "x0,x1,x2,y,c\n0.5,0.1,0.2,1.3,\n-0.3,0.4,0.1,-0.65,nan\n");
  ModelSpec spec = sharedModel(dir / "train.csv", dir / "test.csv", "fixed");
  Run r = trainWith(spec, dir);
  INFO(r.out);
  CHECK_THAT(r.out, Contains("labels present (train): reg 200/300, cls 150/300\n"));
  CHECK(calls.nanLabels == 12 * 250);  // the kernels saw every absent label, every epoch
  CHECK(metric(r.report.train, "reg", "loss") < 0.05);
  CHECK(metric(r.report.test, "reg", "loss") < 1e-3);
  CHECK(std::isnan(metric(r.report.test, "cls", "loss")));
  CHECK(std::isnan(metric(r.report.test, "cls", "accuracy")));
  auto epochs = readLog(dir / "log.jsonl", false);
  REQUIRE(!epochs.empty());
  CHECK(epochs.back()["test"]["cls"]["loss"].is_null());
  CHECK(epochs.back()["test"]["cls"]["auc"].is_null());
  CHECK(epochs.back()["test"]["reg"]["loss"].is_number());
}

TEST_CASE("partial labels: metrics skip absent labels; epoch means weight batches by present labels", "[metrics][partial]") {
  const float nan = std::nanf("");
  TaskSpec reg;
  reg.loss = LossKind::MSE;
  reg.outWidth = reg.labelWidth = 2;
  reg.metrics = {Metric::MSE, Metric::MAE};
  MetricAccumulator m(reg);
  std::vector<float> o1{1, 2, 3, 4}, l1{1.5f, nan, nan, nan};  // 1 present label value
  std::vector<float> o2{0, 0, 0, 0}, l2{1, 2, 3, nan};         // 3 present
  m.add(o1.data(), l1.data(), 2, 0.25);
  m.add(o2.data(), l2.data(), 2, 14.0 / 3);
  auto r = m.result();
  CHECK(r.at("loss") == Approx((0.25 * 1 + 14.0 / 3 * 3) / 4));
  CHECK(r.at("mse") == Approx((0.25 + 1 + 4 + 9) / 4));
  CHECK(r.at("mae") == Approx((0.5 + 1 + 2 + 3) / 4));
  CHECK(m.presentLabels() == 4);
  CHECK(m.samples() == 4);

  TaskSpec ce;
  ce.loss = LossKind::CrossEntropy;
  ce.outWidth = 3;
  ce.metrics = {Metric::Accuracy};
  MetricAccumulator a(ce);
  std::vector<float> out{0.1f, 2.0f, -1.0f, 3.0f, 0.0f, 0.5f, 0.0f, 0.0f, 1.0f}, lab{1, nan, 0};
  a.add(out.data(), lab.data(), 3, 0.5);
  CHECK(a.result().at("accuracy") == Approx(0.5));  // row 0 right, row 2 wrong, row 1 absent
  std::vector<float> none{nan, nan, nan};
  a.add(out.data(), none.data(), 3, 0.0);  // a batch without labels adds nothing
  CHECK(a.result().at("loss") == Approx(0.5));

  TaskSpec flag;
  flag.loss = LossKind::BCE;
  flag.metrics = {Metric::Accuracy, Metric::AUC};
  MetricAccumulator b(flag);
  std::vector<float> s{0.9f, -0.2f, 0.3f, 5.0f}, y{1, 0, nan, nan};
  b.add(s.data(), y.data(), 4, 0.3);
  CHECK(b.result().at("auc") == 1.0);
  CHECK(b.result().at("accuracy") == 1.0);
  MetricAccumulator empty(flag);
  empty.add(s.data(), none.data(), 3, 0.0);
  CHECK(std::isnan(empty.result().at("loss")));
  CHECK(std::isnan(empty.result().at("auc")));
  CHECK(std::isnan(empty.result().at("accuracy")));
}

TEST_CASE("transfer: a trunk trained with heads reg, cls seeds a model with heads reg, aux", "[trainer][transfer]") {
  TempDir dir;
  writeCsv(dir / "train.csv", 300, 1);
  ModelSpec first = sharedModel(dir / "train.csv", "", "fixed");
  first.train.epochs = 3;
  TrainOptions opt;
  opt.savePath = dir / "ab.safetensors";
  trainWith(first, dir, opt);
  TensorFile ab = readSafeTensors(dir / "ab.safetensors");

  ModelSpec second = sharedModel(dir / "train.csv", "", "fixed", "aux");
  TrainOptions t;
  t.initPath = dir / "ab.safetensors";
  t.steps = 0;
  t.savePath = dir / "ac.safetensors";
  Run r = trainWith(second, dir, t);
  INFO(r.out);
  const std::string path = dir / "ab.safetensors";
  CHECK_THAT(r.out, Contains("parameters from " + path + ": 4 of 6 loaded, 2 initialised fresh (seed 5)\n"));
  CHECK_THAT(r.out, Contains("init: loaded trunk.0.weight [2, 3], trunk.0.bias [2], reg.0.weight [1, 2], reg.0.bias [1]\n"));
  CHECK_THAT(r.out, Contains("init: fresh aux.0.weight [1, 2] (not in the checkpoint), aux.0.bias [1] (not in the checkpoint)\n"));
  CHECK_THAT(r.out, Contains("init: not used from the checkpoint: cls.0.weight [1, 2], cls.0.bias [1]\n"));
  CHECK_THAT(r.out, !Contains("with optimizer state"));
  TensorFile ac = readSafeTensors(dir / "ac.safetensors");
  for (const char* name : {"trunk.0.weight", "trunk.0.bias", "reg.0.weight", "reg.0.bias"})
    CHECK(ac.find(name)->data == ab.find(name)->data);
  std::vector<float> fresh(P);
  initParams(second, 5, fresh.data());
  CHECK(ac.find("aux.0.weight")->data == std::vector<float>(fresh.begin() + 11, fresh.begin() + 13));
  // The optimizer starts afresh: its step count is 0 in the new checkpoint.
  CHECK(ac.find("optim.step")->data[0] == 0.0f);

  // A checkpoint of a bigger model (an extra head, a bigger optimizer state) fills every parameter
  // of this one, but its optimizer state is not this model's and is left out.
  std::vector<TensorView> views;
  for (const Tensor& x : ab.tensors)
    if (x.name.rfind("optim.", 0) != 0) views.push_back({x.name, x.shape, x.data.data()});
  std::vector<float> extra(20, 1.0f);
  views.push_back({"more.0.weight", {1, 2}, extra.data()});
  for (const char* n : {"optim.step", "optim.m", "optim.v"}) views.push_back({n, {n[6] == 's' ? 1 : 20}, extra.data()});
  writeSafeTensors(dir / "big.safetensors", views);
  TrainOptions big;
  big.initPath = dir / "big.safetensors";
  big.steps = 1;
  Run b = trainWith(first, dir, big);
  CHECK_THAT(b.out, Contains(": all 6 loaded (a checkpoint of another model: optimizer state not restored)\n"));
  CHECK_THAT(b.out, Contains("init: not used from the checkpoint: more.0.weight [1, 2]\n"));

  // The new model, with the trunk frozen, trains its heads only.
  second.params[0].frozen = second.params[1].frozen = true;
  t.steps = 30;
  Run f = trainWith(second, dir, t);
  CHECK_THAT(f.out, Contains("frozen: trunk (2 parameters, 8 values); the optimizer leaves them unchanged\n"));
  TensorFile trained = readSafeTensors(dir / "ac.safetensors");
  CHECK(trained.find("trunk.0.weight")->data == ab.find("trunk.0.weight")->data);
  CHECK(trained.find("trunk.0.bias")->data == ab.find("trunk.0.bias")->data);
  CHECK(trained.find("aux.0.weight")->data != std::vector<float>(fresh.begin() + 11, fresh.begin() + 13));
  CHECK(trained.find("reg.0.bias")->data != ab.find("reg.0.bias")->data);
}

TEST_CASE("transfer: shapes must match; the report names both shapes", "[checkpoint][transfer]") {
  TempDir dir;
  ModelSpec spec = sharedModel("x.csv", "", "fixed");
  std::vector<float> w(8, 0.5f), b(2, 0.25f), r(3, 1.0f);
  writeSafeTensors(dir / "c.safetensors", {{"trunk.0.weight", {2, 4}, w.data()}, {"trunk.0.bias", {2}, b.data()},
                                           {"reg.0.weight", {1, 3}, r.data()}, {"optim.step", {1}, r.data()},
                                           {"mtl.log_var", {2}, r.data()}});
  std::vector<float> params(P, -7.0f);
  InitReport rep = loadMatchingParams(readSafeTensors(dir / "c.safetensors"), dir / "c.safetensors", spec, params.data());
  CHECK(rep.loaded == std::vector<std::string>{"trunk.0.bias [2]"});
  CHECK(rep.fresh == std::vector<std::string>{"trunk.0.weight (checkpoint [2, 4], model [2, 3])",
                                              "reg.0.weight (checkpoint [1, 3], model [1, 2])",
                                              "reg.0.bias [1] (not in the checkpoint)",
                                              "cls.0.weight [1, 2] (not in the checkpoint)",
                                              "cls.0.bias [1] (not in the checkpoint)"});
  CHECK(rep.unused == std::vector<std::string>{"trunk.0.weight [2, 4]", "reg.0.weight [1, 3]"});
  CHECK_FALSE(rep.complete());
  CHECK(params[6] == 0.25f);
  CHECK(params[0] == -7.0f);  // untouched
  writeSafeTensors(dir / "d.safetensors", {{"trunk.0.weight", {2, 4}, w.data()}});
  CHECK_THROWS_WITH(loadMatchingParams(readSafeTensors(dir / "d.safetensors"), "d.safetensors", spec, params.data()),
                    "d.safetensors: no tensor in the checkpoint matches a parameter of model `duo` by name and shape "
                    "(shapes differ: trunk.0.weight (checkpoint [2, 4], model [2, 3]))");
}
