// End-to-end training through the real binary on small generated data: the loss must fall below
// stated thresholds, and the log, checkpoint and report must have the documented form.
#include "Run.h"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <cmath>
#include <random>

namespace {

// 1200 rows: 6 features; `kind` (3 classes, a linear rule), `flag` (sign of a product), `value`
// (a smooth function). Rows 0..999 train, 1000..1199 test.
void writeData(const std::filesystem::path &dir) {
  std::mt19937 rng(5);
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  std::ofstream train(dir / "train.csv"), test(dir / "test.csv");
  for (auto *f : {&train, &test}) *f << "a,b,c,d,e,g,kind,flag,value\n";
  for (int i = 0; i < 1200; ++i) {
    double x[6];
    for (double &v : x) v = u(rng);
    double s = x[0] + x[1] - 0.5 * x[2];
    int kind = s < -0.4 ? 0 : (s < 0.4 ? 1 : 2);
    int flag = x[3] * x[4] > 0;
    double value = std::sin(2 * x[5]) + 0.5 * x[0];
    auto &out = i < 1000 ? train : test;
    for (double v : x) out << v << ',';
    out << kind << ',' << flag << ',' << value << '\n';
  }
}

const char *kProgram = R"(model small
input x : f32[6]
shared trunk = x -> dense(32) -> relu -> dense(32) -> relu
task kind  { trunk -> dense(3)  loss cross_entropy  metric accuracy }
task flag  { trunk -> dense(1)  loss bce  weight 0.5  metric accuracy, auc }
task value { trunk -> dense(1)  loss mse  metric mae }
train {
  optimizer adam(lr=0.01)
  batch 32
  epochs 12
  seed 3
}
data {
  train csv("train.csv")
  test  csv("test.csv")
  x     = columns(0..5)
  kind  = kind
  flag  = flag
  value = value
}
)";

}  // namespace

TEST_CASE("training a three-head tabular model reaches the stated losses and metrics") {
  auto dir = testDir("train_small");
  writeData(dir);
  std::ofstream(dir / "small.mtl") << kProgram;
  auto log = (dir / "log.jsonl").string(), ckpt = (dir / "final.safetensors").string();
  auto r = runMtlc("train small.mtl --log '" + log + "' --save '" + ckpt + "'", dir.string());
  INFO(r.out << r.err);
  REQUIRE(r.exitCode == 0);

  std::ifstream in(log);
  std::string line;
  std::vector<nlohmann::json> steps, epochs;
  while (std::getline(in, line)) {
    auto j = nlohmann::json::parse(line);
    (j.contains("step") ? steps : epochs).push_back(j);
  }
  // 1000 rows / 32 = 31.25 -> 32 steps per epoch (the last partial batch is kept).
  REQUIRE(steps.size() == 12 * 32);
  CHECK(steps.front()["step"] == 1);
  CHECK(steps.front()["epoch"] == 1);
  CHECK(steps.back()["epoch"] == 12);
  CHECK(steps.front()["tasks"]["flag"]["weight"].get<double>() == Approx(0.5));
  // The logged total is the weighted sum of the logged task losses.
  const auto &s = steps.back();
  double total = s["tasks"]["kind"]["loss"].get<double>() + 0.5 * s["tasks"]["flag"]["loss"].get<double>() +
                 s["tasks"]["value"]["loss"].get<double>();
  CHECK(s["loss"].get<double>() == Approx(total).epsilon(1e-5));

  REQUIRE(epochs.size() == 12);
  const auto &test = epochs.back()["test"];
  INFO(epochs.back().dump());
  CHECK(test["kind"]["accuracy"].get<double>() >= 0.90);
  CHECK(test["flag"]["accuracy"].get<double>() >= 0.85);
  CHECK(test["flag"]["auc"].get<double>() >= 0.92);
  CHECK(test["value"]["loss"].get<double>() <= 0.05);
  CHECK(test["value"]["mae"].get<double>() <= 0.18);
  CHECK(std::filesystem::file_size(ckpt) > 4 * (6 * 32 + 32 * 32 + 3 * 32 + 32 + 32));
}

TEST_CASE("--steps stops early and --init resumes from a checkpoint") {
  auto dir = testDir("train_steps");
  writeData(dir);
  std::ofstream(dir / "small.mtl") << kProgram;
  auto a = runMtlc("train small.mtl --steps 5 --save a.safetensors --log a.jsonl -q", dir.string());
  REQUIRE(a.exitCode == 0);
  int lines = 0;
  std::ifstream in(dir / "a.jsonl");
  for (std::string l; std::getline(in, l);) lines += l.find("\"step\"") != std::string::npos;
  CHECK(lines == 5);
  auto b = runMtlc("train small.mtl --steps 1 --init a.safetensors --log b.jsonl -q", dir.string());
  REQUIRE(b.exitCode == 0);
  std::ifstream lb(dir / "b.jsonl"), la(dir / "a.jsonl");
  std::string first, last;
  std::getline(lb, first);
  for (std::string l; std::getline(la, l);) if (l.find("\"step\"") != std::string::npos) last = l;
  // Starting from the trained weights, the first loss is below the untrained first loss.
  std::ifstream la2(dir / "a.jsonl");
  std::string untrained;
  std::getline(la2, untrained);
  CHECK(nlohmann::json::parse(first)["loss"].get<double>() <
        nlohmann::json::parse(untrained)["loss"].get<double>());
}

TEST_CASE("an --init checkpoint that does not fit the model is refused") {
  auto dir = testDir("train_badinit");
  writeData(dir);
  std::ofstream(dir / "small.mtl") << kProgram;
  std::ofstream(dir / "junk.safetensors") << "not a checkpoint";
  auto r = runMtlc("train small.mtl --steps 1 --init junk.safetensors", dir.string());
  CHECK(r.exitCode == 1);
  CHECK_THAT(r.err, Catch::Contains("junk.safetensors"));
}
