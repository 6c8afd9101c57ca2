// The trainer end to end, with hand-written kernels standing in for the compiler's.
//
// The model: input x : f32[3]; task `reg` = dense(1) on x, loss mse; task `cls` = dense(1) on x,
// loss bce (optional). Parameters (PyTorch names and layouts):
//   reg.0.weight [1, 3] @0, reg.0.bias [1] @3, cls.0.weight [1, 3] @4, cls.0.bias [1] @7.
// train_step computes, for a batch of n samples,
//   y_i = W_r·x_i + b_r,  z_i = W_c·x_i + b_c
//   L_reg = mean (y_i − t_i)²,  L_cls = mean softplus(z_i) − s_i·z_i  (BCE with logits)
//   total = w_reg·L_reg + w_cls·L_cls
//   ∂total/∂y_i = w_reg·2(y_i − t_i)/n,  ∂total/∂z_i = w_cls·(σ(z_i) − s_i)/n
// and the weight gradients as Σ_i ∂/∂y_i · x_i (bias: Σ_i ∂/∂y_i).
#include "TestUtil.h"

#include "runtime/io/Checkpoint.h"
#include "spec/Error.h"
#include "runtime/io/SafeTensors.h"
#include "runtime/parallel/ThreadPool.h"
#include "runtime/train/Trainer.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <sstream>

using namespace mtlc::rt;
using namespace mtlc::rt::test;
using Catch::Matchers::Contains;

namespace {

// What the kernels saw, for assertions.
struct Seen {
  int64_t calls = 0;
  int64_t maxN = 0;
  std::vector<uint64_t> seeds;
  std::vector<float> firstX;  // x[0][0] of each train batch
  bool aligned = true;
  int64_t nanAtCall = -1;     // make the reg loss NaN at this train call (1-based)
  bool writeOutputs = true;
};
Seen seen;

template <bool Train, bool withCls>
void kernel(const mtlc_args* a) {
  const float* x = a->inputs[0];
  const float* p = a->params;
  const int64_t n = a->n;
  float* act = a->acts;  // y then z, [n] each: uses the arena as the compiler would
  if (reinterpret_cast<uintptr_t>(act) % 64) seen.aligned = false;
  double lossR = 0, lossC = 0;
  for (int64_t i = 0; i < n; ++i) {
    const float* xi = x + i * 3;
    act[i] = p[0] * xi[0] + p[1] * xi[1] + p[2] * xi[2] + p[3];
    const float t = a->labels[0][i];
    lossR += double(act[i] - t) * double(act[i] - t);
    if (withCls) {
      const float z = act[n + i] = p[4] * xi[0] + p[5] * xi[1] + p[6] * xi[2] + p[7];
      const float s = a->labels[1][i];
      lossC += std::max(z, 0.0f) - z * s + std::log1p(std::exp(-std::fabs(z)));
    }
  }
  lossR /= double(n);
  lossC /= double(n);
  const int T = withCls ? 2 : 1;
  a->losses[0] = float(lossR);
  if (withCls) a->losses[1] = float(lossC);
  a->losses[T] = float(a->loss_weights[0] * lossR + (withCls ? a->loss_weights[1] * lossC : 0));
  if (seen.writeOutputs || !Train)
    for (int64_t i = 0; i < n; ++i) {
      a->outputs[0][i] = act[i];
      if (withCls) a->outputs[1][i] = act[n + i];
    }
  if (!Train) return;
  ++seen.calls;
  seen.maxN = std::max(seen.maxN, n);
  seen.seeds.push_back(a->seed);
  seen.firstX.push_back(x[0]);
  if (seen.calls == seen.nanAtCall) a->losses[0] = std::nanf("");
  float* g = a->grads;
  for (int k = 0; k < 8; ++k) g[k] = 0;
  for (int64_t i = 0; i < n; ++i) {
    const float* xi = x + i * 3;
    const float dy = a->loss_weights[0] * 2.0f * (act[i] - a->labels[0][i]) / float(n);
    for (int k = 0; k < 3; ++k) g[k] += dy * xi[k];
    g[3] += dy;
    if (withCls) {
      const float z = act[n + i];
      const float dz = a->loss_weights[1] * (1.0f / (1.0f + std::exp(-z)) - a->labels[1][i]) / float(n);
      for (int k = 0; k < 3; ++k) g[4 + k] += dz * xi[k];
      g[7] += dz;
    }
  }
}

ModelSpec tinyModel(bool withCls, const std::string& trainCsv, const std::string& testCsv) {
  ModelSpec s;
  s.name = "tiny";
  s.inputs = {InputSpec{"x", {3}, 3}};
  TaskSpec reg;
  reg.name = "reg";
  reg.loss = LossKind::MSE;
  reg.metrics = {Metric::MAE};
  s.tasks.push_back(reg);
  auto param = [&](std::string name, std::vector<int64_t> shape, int64_t size) {
    ParamSpec p;
    p.name = std::move(name);
    p.shape = std::move(shape);
    p.offset = s.paramCount;
    p.size = size;
    p.fanIn = 3;
    p.block = p.name.substr(0, 3);
    s.params.push_back(p);
    s.paramCount += size;
  };
  param("reg.0.weight", {1, 3}, 3);
  param("reg.0.bias", {1}, 1);
  if (withCls) {
    TaskSpec cls;
    cls.name = "cls";
    cls.loss = LossKind::BCE;
    cls.weight = 0.5;
    cls.metrics = {Metric::Accuracy, Metric::AUC};
    s.tasks.push_back(cls);
    param("cls.0.weight", {1, 3}, 3);
    param("cls.0.bias", {1}, 1);
  } else {
    s.paramCount = 8;  // the kernel zeroes 8 gradients; the tail is unused
  }
  s.maxBatch = 64;
  s.actsFloats = 2 * s.maxBatch;
  s.train.optimizer.kind = OptimizerKind::Adam;
  s.train.optimizer.lr = 0.05;
  s.train.batch = 16;
  s.train.epochs = 20;
  s.train.seed = 11;
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
  s.data.labels = {y};
  if (withCls) {
    Binding c;
    c.target = "cls";
    c.expr.op = BindExpr::Op::Gt;
    c.expr.ref.field = "c";
    c.expr.value = 0;
    s.data.labels.push_back(c);
  }
  s.trainStep = withCls ? kernel<true, true> : kernel<true, false>;
  s.evalStep = withCls ? kernel<false, true> : kernel<false, false>;
  return s;
}

// y = 2·x0 − x1 + 0.5·x2 + 0.3;  c = x0 + x1 (the cls label is c > 0). A fixed LCG, not <random>.
void writeCsv(const std::string& path, int rows, uint32_t seed) {
  std::ostringstream os;
  os << "x0,x1,x2,y,c\n";
  uint32_t st = seed;
  auto u = [&] {
    st = st * 1664525u + 1013904223u;
    return double(st >> 8) / double(1 << 24) * 2 - 1;
  };
  for (int r = 0; r < rows; ++r) {
    double x0 = u(), x1 = u(), x2 = u();
    os << x0 << ',' << x1 << ',' << x2 << ',' << 2 * x0 - x1 + 0.5 * x2 + 0.3 << ',' << x0 + x1 << '\n';
  }
  writeText(path, os.str());
}

std::vector<nlohmann::json> readLog(const std::string& path) {
  std::ifstream in(path);
  std::vector<nlohmann::json> lines;
  for (std::string l; std::getline(in, l);) lines.push_back(nlohmann::json::parse(l));
  return lines;
}

double metric(const std::vector<TaskResult>& rs, const std::string& task, const std::string& m) {
  for (const TaskResult& r : rs)
    if (r.task == task) return r.metrics.at(m);
  FAIL("no task " << task);
  return 0;
}

}  // namespace

TEST_CASE("trainer: two tasks learn, log, report, save; the checkpoint evaluates the same", "[trainer]") {
  TempDir dir;
  writeCsv(dir / "train.csv", 300, 1);
  writeCsv(dir / "test.csv", 100, 2);
  ModelSpec spec = tinyModel(true, dir / "train.csv", dir / "test.csv");
  seen = Seen{};
  TrainOptions opt;
  opt.quiet = true;
  opt.logPath = dir / "log.jsonl";
  opt.savePath = dir / "final.safetensors";
  std::ostringstream out;
  TrainReport r = train(spec, opt, out);
  INFO(out.str());

  // 300 rows / 16 = 18.75 → 19 batches (the last has 12 rows), 20 epochs.
  CHECK(r.steps == 20 * 19);
  CHECK(seen.calls == r.steps);
  CHECK(seen.maxN == 16);
  CHECK(seen.aligned);
  CHECK(seen.seeds[0] != seen.seeds[1]);
  CHECK(metric(r.test, "reg", "loss") < 1e-3);
  CHECK(metric(r.test, "reg", "mae") < 0.03);
  CHECK(metric(r.test, "cls", "accuracy") > 0.93);
  CHECK(metric(r.test, "cls", "auc") > 0.99);
  CHECK(metric(r.train, "reg", "loss") < 1e-2);
  CHECK(r.samplesPerSec > 0);

  std::vector<nlohmann::json> log = readLog(dir / "log.jsonl");
  REQUIRE(log.size() == size_t(20 * 19 + 20));
  CHECK(log[0]["step"] == 1);
  CHECK(log[0]["epoch"] == 1);
  CHECK(log[0]["tasks"]["cls"]["weight"].get<double>() == 0.5);
  CHECK(log[0]["tasks"]["reg"]["weight"].get<double>() == 1.0);
  const auto& s = log[18];
  CHECK(s["loss"].get<double>() ==
        Approx(s["tasks"]["reg"]["loss"].get<double>() + 0.5 * s["tasks"]["cls"]["loss"].get<double>()));
  CHECK(log[19]["epoch"] == 1);
  CHECK(log[19].contains("test"));
  CHECK(log[19]["test"]["cls"].contains("auc"));
  CHECK(log.back()["test"]["reg"]["loss"].get<double>() == Approx(metric(r.test, "reg", "loss")));
  CHECK(log[20]["step"] == 20);
  CHECK(log[20]["epoch"] == 2);

  const std::string text = out.str();
  CHECK_THAT(text, Contains(fmt::format("model tiny: 2 tasks, 8 learnable parameters; adam(lr=0.05), batch 16, 20 epochs, {} "
                                        "thread{}; seed 11",
                                        ThreadPool::hardwareThreads(), ThreadPool::hardwareThreads() == 1 ? "" : "s")));
  CHECK_THAT(text, Contains("epoch 20/20: loss"));
  CHECK_THAT(text, Contains("  test cls: loss"));
  CHECK_THAT(text, Contains("task  data        loss        mae   accuracy        auc\n"));
  CHECK_THAT(text, Contains("saved " + dir / "final.safetensors"));

  // The checkpoint holds the final parameters: evaluating them gives the reported test metrics.
  std::vector<float> params(spec.paramCount);
  loadParams(dir / "final.safetensors", spec, params.data());
  Dataset test = loadSplit(spec, "test");
  std::vector<TaskResult> again = evaluate(spec, params.data(), test);
  CHECK(metric(again, "reg", "loss") == Approx(metric(r.test, "reg", "loss")));
  CHECK(metric(again, "cls", "auc") == metric(r.test, "cls", "auc"));
  CHECK(params[0] == Approx(2.0).margin(0.05));
  CHECK(params[3] == Approx(0.3).margin(0.05));
}

TEST_CASE("trainer: same seed, same run; --seed changes it; --steps stops mid-epoch", "[trainer]") {
  TempDir dir;
  writeCsv(dir / "train.csv", 100, 3);
  ModelSpec spec = tinyModel(true, dir / "train.csv", "");
  std::ostringstream out;
  TrainOptions opt;
  opt.quiet = true;
  opt.epochs = 2;
  auto lossesOf = [&](const TrainOptions& o) {
    TrainOptions withLog = o;
    withLog.logPath = dir / "l.jsonl";
    train(spec, withLog, out);
    std::vector<double> l;
    for (auto& j : readLog(dir / "l.jsonl")) l.push_back(j["loss"].get<double>());
    return l;
  };
  std::vector<double> a = lossesOf(opt), b = lossesOf(opt);
  CHECK(a.size() == 14);  // 100 rows / 16 → 7 batches, 2 epochs, no test source
  CHECK(a == b);
  opt.seed = 12;
  CHECK(lossesOf(opt) != a);

  opt.steps = 10;
  opt.savePath = dir / "s.safetensors";
  seen = Seen{};
  TrainReport r = train(spec, opt, out);
  CHECK(r.steps == 10);
  CHECK(seen.calls == 10);
  CHECK(r.test.empty());
  CHECK(readSafeTensors(dir / "s.safetensors").find("optim.step")->data[0] == 10.0f);
  CHECK_THAT(out.str(), Contains("[stopped at step 10]"));

  // --init continues from the checkpoint, optimizer state included.
  TrainOptions more;
  more.quiet = true;
  more.initPath = dir / "s.safetensors";
  more.steps = 1;
  std::ostringstream out2;
  train(spec, more, out2);
  CHECK_THAT(out2.str(), Contains("parameters from " + dir / "s.safetensors" + " (with optimizer state after 10 steps)"));
}

TEST_CASE("trainer: file order without shuffle, data overrides, train-only outputs", "[trainer]") {
  TempDir dir;
  writeCsv(dir / "train.csv", 40, 4);
  writeText(dir / "other.csv", "x0,x1,x2,y,c\n9,0,0,1,1\n8,0,0,1,1\n7,0,0,1,-1\n");
  ModelSpec spec = tinyModel(true, dir / "train.csv", "");
  spec.train.shuffle = false;
  spec.train.batch = 2;
  TrainOptions opt;
  opt.quiet = true;
  opt.epochs = 1;
  opt.dataOverrides["train"] = dir / "other.csv";
  opt.dataOverrides["test"] = dir / "other.csv";
  seen = Seen{};
  seen.writeOutputs = false;  // a trainStep that leaves outputs alone: train metrics are loss only
  std::ostringstream out;
  TrainReport r = train(spec, opt, out);
  CHECK(seen.firstX == std::vector<float>{9, 7});  // file order, last partial batch of 1 row
  CHECK(r.steps == 2);
  REQUIRE(r.train.size() == 2);
  CHECK(std::isnan(r.train[1].metrics.at("accuracy")));
  CHECK(std::isfinite(r.train[1].metrics.at("loss")));
  CHECK(r.test.size() == 2);
  CHECK_THAT(out.str(), Contains("train: " + dir / "other.csv" + " (3 samples); test: " + dir / "other.csv" + " (3 samples)"));
  opt.dataOverrides["valid"] = "x.csv";
  CHECK_THROWS_WITH(train(spec, opt, out), "--data valid=x.csv: expected train=PATH or test=PATH");
}

TEST_CASE("trainer: user errors are reported with their position", "[trainer]") {
  TempDir dir;
  writeCsv(dir / "train.csv", 40, 5);
  ModelSpec spec = tinyModel(true, dir / "train.csv", "");
  TrainOptions opt;
  opt.quiet = true;
  std::ostringstream out;

  SECTION("a loss becomes NaN") {
    seen = Seen{};
    seen.nanAtCall = 3;
    CHECK_THROWS_WITH(train(spec, opt, out), "task `reg` loss became NaN at step 3 (epoch 1)");
  }
  SECTION("a bce label outside [0, 1]") {
    writeText(dir / "bad.csv", "x0,x1,x2,y,c\n1,2,3,4,0\n1,2,3,4,1\n");
    spec.data.labels[1].expr.op = BindExpr::Op::Field;  // cls = c directly
    opt.dataOverrides["train"] = dir / "bad.csv";
    // c = 0, 1 are fine labels; make one 2.
    writeText(dir / "bad.csv", "x0,x1,x2,y,c\n1,2,3,4,0\n1,2,3,4,2\n");
    CHECK_THROWS_WITH(train(spec, opt, out), dir / "bad.csv" + ":3: task `cls` label 2 is outside [0, 1] (bce needs 0/1 labels)");
  }
  SECTION("a bad csv") {
    writeText(dir / "bad.csv", "x0,x1,x2,y,c\n1,2,3,4,0\n1,2,3,4\n");
    opt.dataOverrides["train"] = dir / "bad.csv";
    CHECK_THROWS_WITH(train(spec, opt, out), dir / "bad.csv" + ":3: expected 5 columns, found 4");
  }
  SECTION("an --init checkpoint of another shape") {
    std::vector<float> w(4);
    writeSafeTensors(dir / "w.safetensors", {{"reg.0.weight", {1, 4}, w.data()}});
    opt.initPath = dir / "w.safetensors";
    CHECK_THROWS_WITH(train(spec, opt, out),
                      dir / "w.safetensors" + ": no tensor in the checkpoint matches a parameter of model `tiny` by name "
                                              "and shape (shapes differ: reg.0.weight (checkpoint [1, 4], model [1, 3]))");
    writeSafeTensors(dir / "w.safetensors", {{"other.0.weight", {1, 4}, w.data()}});
    CHECK_THROWS_WITH(train(spec, opt, out), dir / "w.safetensors" +
                                                 ": no tensor in the checkpoint matches a parameter of model `tiny` by name and shape");
  }
  SECTION("a weighting whose entry point the model lacks") {
    spec.train.weighting = WeightingKind::PCGrad;
    CHECK_THROWS_WITH(train(spec, opt, out), "internal: weighting `pcgrad` needs the `task_grads` entry point, which "
                                             "model `tiny` was compiled without");
  }
}

TEST_CASE("trainer: uniform weighting passes 1/T to the kernels", "[trainer]") {
  TempDir dir;
  writeCsv(dir / "train.csv", 20, 6);
  ModelSpec spec = tinyModel(true, dir / "train.csv", "");
  spec.train.weighting = WeightingKind::Uniform;
  CHECK(lossWeights(spec) == std::vector<float>{0.5f, 0.5f});
  spec.train.weighting = WeightingKind::Fixed;
  CHECK(lossWeights(spec) == std::vector<float>{1.0f, 0.5f});
}

// Four SGD steps (momentum 0.9, lr 0.1, batch 4, file order, two epochs of 8 rows) of a single
// dense(1) regression, compared with torch. Produced with /usr/bin/python3 (torch 1.13):
//   lin = nn.Linear(3, 1); weight = [[0.1, -0.2, 0.3]], bias = [0.05]
//   opt = torch.optim.SGD(lin.parameters(), lr=0.1, momentum=0.9)
//   for epoch in range(2): for b in range(2):
//     loss = F.mse_loss(lin(X[4b:4b+4]), Y[4b:4b+4]); opt.zero_grad(); loss.backward(); opt.step()
//   step losses 1.33890617 2.78558612 0.0704243258 0.709466994
//   weight 1.96859527, 0.263184786, 0.121873438   bias 0.37931788
TEST_CASE("trainer: SGD with momentum over four steps matches torch", "[trainer]") {
  TempDir dir;
  writeText(dir / "d.csv",
            "x0,x1,x2,y\n0.5,-1.0,2.0,1.25\n1.5,0.5,-0.5,2.0\n-1.0,0.25,0.75,-0.5\n0.0,2.0,1.0,0.75\n"
            "2.0,-0.5,0.0,3.0\n-0.25,-0.75,1.5,-1.0\n1.0,1.0,1.0,1.5\n-2.0,0.5,-1.0,-2.5\n");
  ModelSpec spec = tinyModel(false, dir / "d.csv", "");
  spec.train.optimizer = OptimizerSpec{OptimizerKind::Sgd, 0.1, 0.9};
  spec.train.batch = 4;
  spec.train.epochs = 2;
  spec.train.shuffle = false;
  // The same maths as kernel<true, false>, kept apart so that the comparison with torch reads alone.
  spec.trainStep = [](const mtlc_args* a) {
    const float* x = a->inputs[0];
    const float* p = a->params;
    const int64_t n = a->n;
    double loss = 0;
    float* g = a->grads;
    for (int k = 0; k < 8; ++k) g[k] = 0;
    for (int64_t i = 0; i < n; ++i) {
      const float* xi = x + i * 3;
      const float y = p[0] * xi[0] + p[1] * xi[1] + p[2] * xi[2] + p[3];
      const float d = y - a->labels[0][i];
      loss += double(d) * d;
      const float dy = a->loss_weights[0] * 2.0f * d / float(n);
      for (int k = 0; k < 3; ++k) g[k] += dy * xi[k];
      g[3] += dy;
      a->outputs[0][i] = y;
    }
    a->losses[0] = float(loss / double(n));
    a->losses[1] = a->loss_weights[0] * a->losses[0];
  };
  spec.evalStep = spec.trainStep;
  std::vector<float> w{0.1f, -0.2f, 0.3f}, b{0.05f};
  writeSafeTensors(dir / "init.safetensors", {{"reg.0.weight", {1, 3}, w.data()}, {"reg.0.bias", {1}, b.data()}});
  TrainOptions opt;
  opt.quiet = true;
  opt.initPath = dir / "init.safetensors";
  opt.savePath = dir / "out.safetensors";
  opt.logPath = dir / "log.jsonl";
  std::ostringstream out;
  train(spec, opt, out);
  std::vector<nlohmann::json> log = readLog(dir / "log.jsonl");
  REQUIRE(log.size() == 4);
  const double torchLoss[] = {1.33890617, 2.78558612, 0.0704243258, 0.709466994};
  for (int i = 0; i < 4; ++i) CHECK(log[i]["loss"].get<double>() == Approx(torchLoss[i]).epsilon(1e-5));
  TensorFile f = readSafeTensors(dir / "out.safetensors");
  const std::vector<float>& W = f.find("reg.0.weight")->data;
  CHECK(W[0] == Approx(1.96859527f).epsilon(1e-5));
  CHECK(W[1] == Approx(0.263184786f).epsilon(1e-5));
  CHECK(W[2] == Approx(0.121873438f).epsilon(1e-5));
  CHECK(f.find("reg.0.bias")->data[0] == Approx(0.37931788f).epsilon(1e-5));
  CHECK(f.find("optim.momentum") != nullptr);
}
