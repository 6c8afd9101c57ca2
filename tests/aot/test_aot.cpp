// `mtlc build` bundles (compiler/aot, runtime/embed): the header compiles as strict C99 and C++17,
// the embedded programs link no LLVM / ANTLR / fmt, embedded training matches `mtlc train` step by
// step, per-task predict equals predict, and wrong-sized buffers are refused.
//
// This test links examples/embed's bundle (gen/sensor.o) and libmtlc_embed.a itself.
#include "sensor.h"

#include "runtime/io/SafeTensors.h"

#include <catch2/catch.hpp>

#include <algorithm>
#include <array>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <unistd.h>

namespace fs = std::filesystem;

namespace {

const std::string kSource = MTLC_SOURCE_DIR;
const std::string kWork = std::string(MTLC_BINARY_DIR) + "/test-work/aot";

struct Run {
  int exitCode;
  std::string out;
};

Run run(const std::string &cmd) {
  fs::create_directories(kWork);
  // Per process and call: ctest runs this binary's test sets (aot, aot_install) side by side.
  static int calls = 0;
  const std::string outFile = kWork + "/cmd." + std::to_string(::getpid()) + "." + std::to_string(calls++) + ".out";
  int rc = std::system((cmd + " > " + outFile + " 2>&1").c_str());
  std::ifstream in(outFile);
  std::stringstream ss;
  ss << in.rdbuf();
  return {WIFEXITED(rc) ? WEXITSTATUS(rc) : -1, ss.str()};
}

// The rows of examples/tabular.csv: f0..f7, cls, flag, target.
struct Table {
  std::vector<float> x, cls, flag, target;
  size_t rows = 0;
};

Table readTabular() {
  Table t;
  std::ifstream in(kSource + "/examples/tabular.csv");
  std::string line;
  std::getline(in, line);  // header
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    std::stringstream ss(line);
    std::string cell;
    std::vector<float> v;
    while (std::getline(ss, cell, ',')) v.push_back(std::strtof(cell.c_str(), nullptr));
    REQUIRE(v.size() == 11);
    t.x.insert(t.x.end(), v.begin(), v.begin() + 8);
    t.cls.push_back(v[8]);
    t.flag.push_back(v[9]);
    t.target.push_back(v[10]);
    ++t.rows;
  }
  return t;
}

// Per-step total and task losses from a `mtlc train --log` file (lines with a "step").
std::vector<std::array<double, 4>> readLog(const std::string &path) {
  std::vector<std::array<double, 4>> steps;
  std::ifstream in(path);
  std::string line;
  auto number = [&](const std::string &key, size_t from) {
    size_t at = line.find(key, from);
    REQUIRE(at != std::string::npos);
    return std::strtod(line.c_str() + at + key.size(), nullptr);
  };
  while (std::getline(in, line)) {
    if (line.find("\"step\"") == std::string::npos) continue;
    std::array<double, 4> s{};
    s[0] = number("\"loss\":", 0);
    const char *tasks[] = {"\"cls\":", "\"flag\":", "\"target\":"};
    for (int t = 0; t < 3; ++t) s[size_t(t) + 1] = number("\"loss\":", line.find(tasks[t]));
    steps.push_back(s);
  }
  return steps;
}

// Trains `steps` batches of SENSOR_MAX_BATCH rows in file order; returns total + task losses.
std::vector<std::array<double, 4>> trainEmbedded(sensor_ctx *ctx, const Table &t, int steps) {
  std::vector<std::array<double, 4>> out;
  const int64_t n = SENSOR_MAX_BATCH;
  for (int k = 0; k < steps; ++k) {
    const size_t r = size_t(k) * size_t(n);
    float losses[3], total = 0;
    int st = sensor_train_step(ctx, n, &t.x[r * 8], size_t(n) * 8, &t.cls[r], size_t(n), &t.flag[r], size_t(n),
                               &t.target[r], size_t(n), losses, &total);
    REQUIRE(st == SENSOR_OK);
    out.push_back({total, losses[0], losses[1], losses[2]});
  }
  return out;
}

double maxRelDiff(const std::vector<std::array<double, 4>> &a, const std::vector<std::array<double, 4>> &b) {
  REQUIRE(a.size() == b.size());
  double worst = 0;
  for (size_t s = 0; s < a.size(); ++s)
    for (size_t i = 0; i < 4; ++i)
      worst = std::max(worst, std::fabs(a[s][i] - b[s][i]) / std::max(std::fabs(b[s][i]), 1e-12));
  return worst;
}

}  // namespace

TEST_CASE("the generated header compiles as strict C99 and as C++17") {
  const std::string inc = " -I" + std::string(SENSOR_GEN_DIR) + " -I" + kSource + "/runtime/embed ";
  fs::create_directories(kWork);
  std::ofstream(kWork + "/h.c") << "#include \"sensor.h\"\nint main(void) { return SENSOR_NUM_TASKS - 3; }\n";
  std::ofstream(kWork + "/h.cpp") << "#include \"sensor.h\"\nint main() { return SENSOR_NUM_TASKS - 3; }\n";
  auto c = run("cc -std=c99 -Wall -Wextra -Werror -pedantic -c" + inc + kWork + "/h.c -o " + kWork + "/h_c.o");
  INFO(c.out);
  CHECK(c.exitCode == 0);
  auto cpp = run("c++ -std=c++17 -Wall -Wextra -Werror -pedantic -c" + inc + kWork + "/h.cpp -o " + kWork + "/h_cpp.o");
  INFO(cpp.out);
  CHECK(cpp.exitCode == 0);
}

TEST_CASE("the embedded programs link no LLVM, ANTLR or fmt") {
  for (const char *exe : {EMBED_C_BINARY, EMBED_CPP_BINARY}) {
    auto r = run(std::string("ldd ") + exe);
    INFO(exe << "\n" << r.out);
    REQUIRE(r.exitCode == 0);
    for (const char *lib : {"LLVM", "llvm", "antlr", "fmt", "nlohmann", "libz."})
      CHECK(r.out.find(lib) == std::string::npos);
  }
}

TEST_CASE("embedded train steps give mtlc train's losses") {
  const Table table = readTabular();
  const int steps = 12;
  REQUIRE(table.rows >= size_t(steps) * SENSOR_MAX_BATCH);

  // The program's seed (11) on both sides: same initial parameters by the same rule.
  sensor_ctx *ctx = sensor_create();
  REQUIRE(ctx);
  const std::string initPath = kWork + "/init.safetensors";
  fs::create_directories(kWork);
  REQUIRE(sensor_save(ctx, initPath.c_str()) == SENSOR_OK);
  auto embedded = trainEmbedded(ctx, table, steps);

  const std::string mtl = kSource + "/examples/embed/sensor.mtl";
  auto fromSeed = run(std::string(MTLC_BINARY) + " train -q --steps " + std::to_string(steps) + " --log " + kWork +
                      "/seed.jsonl " + mtl);
  INFO(fromSeed.out);
  REQUIRE(fromSeed.exitCode == 0);
  auto fromInit = run(std::string(MTLC_BINARY) + " train -q --steps " + std::to_string(steps) + " --init " + initPath +
                      " --log " + kWork + "/init.jsonl " + mtl);
  INFO(fromInit.out);
  REQUIRE(fromInit.exitCode == 0);
  auto seedLog = readLog(kWork + "/seed.jsonl"), initLog = readLog(kWork + "/init.jsonl");
  const double dSeed = maxRelDiff(embedded, seedLog), dInit = maxRelDiff(embedded, initLog);
  std::printf("aot parity over %d adam steps: max relative loss difference %.3g (seed), %.3g (--init)\n", steps, dSeed,
              dInit);
  CHECK(dSeed <= 1e-5);
  CHECK(dInit <= 1e-5);

  // Continuing: a checkpoint saved by the bundle continues under mtlc train with the same losses.
  const std::string midPath = kWork + "/mid.safetensors";
  REQUIRE(sensor_save(ctx, midPath.c_str()) == SENSOR_OK);
  CHECK(sensor_steps(ctx) == steps);
  sensor_destroy(ctx);
}

TEST_CASE("predict_<task> equals that task's output of predict") {
  const Table table = readTabular();
  sensor_ctx *ctx = sensor_create();
  REQUIRE(ctx);
  trainEmbedded(ctx, table, 5);
  for (int64_t n : {int64_t(1), int64_t(7), int64_t(SENSOR_MAX_BATCH)}) {
    std::vector<float> cls(size_t(n) * 3), flag(static_cast<size_t>(n)), target(static_cast<size_t>(n));
    REQUIRE(sensor_predict(ctx, n, table.x.data(), size_t(n) * 8, cls.data(), cls.size(), flag.data(), flag.size(),
                           target.data(), target.size()) == SENSOR_OK);
    std::vector<float> c2(cls.size(), -1), f2(flag.size(), -1), t2(target.size(), -1);
    REQUIRE(sensor_predict_cls(ctx, n, table.x.data(), size_t(n) * 8, c2.data(), c2.size()) == SENSOR_OK);
    REQUIRE(sensor_predict_flag(ctx, n, table.x.data(), size_t(n) * 8, f2.data(), f2.size()) == SENSOR_OK);
    REQUIRE(sensor_predict_target(ctx, n, table.x.data(), size_t(n) * 8, t2.data(), t2.size()) == SENSOR_OK);
    CHECK(c2 == cls);
    CHECK(f2 == flag);
    CHECK(t2 == target);
  }
  sensor_destroy(ctx);
}

TEST_CASE("wrong sizes, bad values and bad files are refused with a status") {
  const Table table = readTabular();
  sensor_ctx *ctx = sensor_create();
  REQUIRE(ctx);
  std::vector<float> before(sensor_params(ctx), sensor_params(ctx) + SENSOR_PARAM_COUNT);
  const int64_t n = 4;
  float out[3 * 4];
  auto step = [&](int64_t nn, size_t xCount, size_t clsCount, const float *cls) {
    return sensor_train_step(ctx, nn, table.x.data(), xCount, cls, clsCount, table.flag.data(), size_t(nn),
                             table.target.data(), size_t(nn), nullptr, nullptr);
  };
  CHECK(step(n, n * 8 - 1, n, table.cls.data()) == SENSOR_ERR_SIZE);
  CHECK(std::string(sensor_last_error(ctx)).find("features") != std::string::npos);
  CHECK(step(n, n * 8, n + 1, table.cls.data()) == SENSOR_ERR_SIZE);
  CHECK(step(0, 0, 0, table.cls.data()) == SENSOR_ERR_BATCH);
  CHECK(step(SENSOR_MAX_BATCH + 1, (SENSOR_MAX_BATCH + 1) * 8, SENSOR_MAX_BATCH + 1, table.cls.data()) == SENSOR_ERR_BATCH);
  const float badCls[4] = {0, 1, 3, 2};
  CHECK(step(n, n * 8, n, badCls) == SENSOR_ERR_VALUE);
  const float fracCls[4] = {0, 1, 0.5f, 2};
  CHECK(step(n, n * 8, n, fracCls) == SENSOR_ERR_VALUE);
  CHECK(sensor_train_step(ctx, n, nullptr, n * 8, table.cls.data(), n, table.flag.data(), n, table.target.data(), n,
                          nullptr, nullptr) == SENSOR_ERR_NULL);
  CHECK(sensor_predict_cls(ctx, n, table.x.data(), n * 8, out, 3 * n - 1) == SENSOR_ERR_SIZE);
  CHECK(sensor_predict_flag(ctx, n, table.x.data(), n * 8, out, n + 1) == SENSOR_ERR_SIZE);
  // Nothing was trained by the refused calls.
  CHECK(std::vector<float>(sensor_params(ctx), sensor_params(ctx) + SENSOR_PARAM_COUNT) == before);
  CHECK(sensor_steps(ctx) == 0);

  CHECK(sensor_load(ctx, (kWork + "/no-such-file.safetensors").c_str()) == SENSOR_ERR_IO);
  const std::string other = kWork + "/other.safetensors";
  auto r = run(std::string(MTLC_BINARY) + " train -q --steps 1 --save " + other + " " + kSource + "/examples/tabular.mtl");
  INFO(r.out);
  REQUIRE(r.exitCode == 0);
  CHECK(sensor_load(ctx, other.c_str()) == SENSOR_ERR_FORMAT);
  CHECK(std::string(sensor_last_error(ctx)).find("trunk.0.weight") != std::string::npos);
  CHECK(std::string(sensor_strerror(SENSOR_ERR_SIZE)).find("count") != std::string::npos);
  sensor_destroy(ctx);
}

TEST_CASE("mtlc build options: embedded weights, cpu selection, errors") {
  const std::string mtl = kSource + "/examples/embed/sensor.mtl";
  const std::string ckpt = kWork + "/for-embed.safetensors";
  auto t = run(std::string(MTLC_BINARY) + " train -q --steps 3 --save " + ckpt + " " + mtl);
  REQUIRE(t.exitCode == 0);
  auto b = run(std::string(MTLC_BINARY) + " build " + mtl + " -o " + kWork + "/embedded --weights " + ckpt +
               " --embed-weights --mcpu=x86-64-v3");
  INFO(b.out);
  REQUIRE(b.exitCode == 0);
  std::ifstream h(kWork + "/embedded/sensor.h");
  std::stringstream hs;
  hs << h.rdbuf();
  CHECK(hs.str().find("#define SENSOR_HAS_EMBEDDED_WEIGHTS 1") != std::string::npos);
  CHECK(hs.str().find("cpu x86-64-v3") != std::string::npos);
  // x86-64-v3's kernels are 8-lane AVX2 code (ymm registers), not the SSE shape of the default.
  auto dis = run("objdump -d --no-show-raw-insn " + kWork + "/embedded/sensor.o");
  CHECK(dis.out.find("vfmadd231ps %ymm") != std::string::npos);
  auto nm = run("nm " + kWork + "/embedded/sensor.o");
  CHECK(nm.out.find("D mtlc_sensor_bundle") != std::string::npos);
  CHECK(nm.out.find("mtlc_sensor_train_step") != std::string::npos);
  auto bad = run(std::string(MTLC_BINARY) + " build " + mtl + " -o " + kWork + "/bad --mcpu=no-such-cpu");
  CHECK(bad.exitCode == 2);
  CHECK(run(std::string(MTLC_BINARY) + " build " + mtl).exitCode == 2);  // no -o
  CHECK(run(std::string(MTLC_BINARY) + " build " + mtl + " -o " + kWork + "/x --embed-weights").exitCode == 2);
}

namespace {

std::string readText(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string replaced(std::string text, const std::string &from, const std::string &to) {
  const size_t at = text.find(from);
  REQUIRE(at != std::string::npos);
  return text.replace(at, from.size(), to);
}

// examples/embed/sensor.mtl with an AUC metric (so mid-epoch checkpoints hold train.acc.* tensors),
// its data path made absolute, and `extraTrain` added to the train block. Same parameters.
std::string sensorVariant(const std::string &name, const std::string &extraTrain) {
  std::string text = readText(kSource + "/examples/embed/sensor.mtl");
  text = replaced(text, "bce\n  weight 0.5\n  metric accuracy", "bce\n  weight 0.5\n  metric accuracy, auc");
  text = replaced(text, "csv(\"../tabular.csv\")", "csv(\"" + kSource + "/examples/tabular.csv\")");
  text = replaced(text, "shuffle   false\n", "shuffle   false\n" + extraTrain);
  fs::create_directories(kWork);
  const std::string path = kWork + "/" + name + ".mtl";
  std::ofstream(path) << text;
  return path;
}

// "train.position": "STEP EPOCH BATCH" of a trainer's checkpoint.
std::array<int64_t, 3> trainPosition(const std::string &path) {
  const std::string header = readText(path);
  const std::string key = "\"train.position\":\"";
  const size_t at = header.find(key);
  REQUIRE(at != std::string::npos);
  std::array<int64_t, 3> p{};
  REQUIRE(std::sscanf(header.c_str() + at + key.size(), "%" SCNd64 " %" SCNd64 " %" SCNd64, &p[0], &p[1], &p[2]) == 3);
  return p;
}

// Starts `mtlc train` on a long run, waits for its first --checkpoint-every file, then sends
// `signal`: SIGINT makes the trainer save where it stands, SIGKILL leaves the last periodic file.
void trainUntilSignal(const std::string &mtl, const std::string &save, const char *signal) {
  fs::remove(save);
  auto r = run("(" + std::string(MTLC_BINARY) + " train -q --epochs 100000 --checkpoint-every 9 --save " + save + " " +
               mtl + " & pid=$!; while [ ! -e " + save + " ] && kill -0 $pid 2>/dev/null; do sleep 0.05; done; " +
               "sleep 0.2; kill -" + signal + " $pid; wait $pid; true)");
  INFO(r.out);
  REQUIRE(fs::exists(save));
}

// Loads `ckpt` (a file the trainer wrote) and checks it against the trainer: `mtlc train --resume`
// for `steps` more steps and the embedded context on the same batches give the same task losses
// (all of them with fixed weights; the first step's otherwise, as the trainer adapts the weights).
void checkLoadsLikeTheTrainer(const std::string &mtl, const std::string &ckpt, bool fixedWeights) {
  INFO(ckpt);
  const Table table = readTabular();
  sensor_ctx *ctx = sensor_create();
  REQUIRE(ctx);
  const int rc = sensor_load(ctx, ckpt.c_str());
  INFO(sensor_last_error(ctx));
  REQUIRE(rc == SENSOR_OK);
  const std::array<int64_t, 3> pos = trainPosition(ckpt);
  CHECK(sensor_steps(ctx) == pos[0]);
  const int steps = 4;
  const std::string log = kWork + "/resumed.jsonl";
  fs::remove(log);
  auto r = run(std::string(MTLC_BINARY) + " train -q --epochs 100000 --resume " + ckpt + " --steps " + std::to_string(pos[0] + steps) +
               " --log " + log + " " + mtl);
  INFO(r.out);
  REQUIRE(r.exitCode == 0);
  std::vector<std::array<double, 4>> trainer = readLog(log);
  REQUIRE(trainer.size() >= size_t(steps));
  trainer.erase(trainer.begin(), trainer.end() - steps);
  const int64_t n = SENSOR_MAX_BATCH, batches = int64_t(table.rows) / n;
  std::vector<std::array<double, 4>> embedded;
  for (int k = 0; k < steps; ++k) {
    const size_t row = size_t((pos[2] + k) % batches * n);
    float losses[3], total = 0;
    REQUIRE(sensor_train_step(ctx, n, &table.x[row * 8], size_t(n) * 8, &table.cls[row], size_t(n), &table.flag[row],
                              size_t(n), &table.target[row], size_t(n), losses, &total) == SENSOR_OK);
    embedded.push_back({total, losses[0], losses[1], losses[2]});
  }
  if (!fixedWeights) {  // the task losses of the first step: the loaded parameters' only
    trainer.resize(1);
    embedded.resize(1);
    trainer[0][0] = embedded[0][0] = 0;
  }
  const double d = maxRelDiff(embedded, trainer);
  std::printf("%s (step %" PRId64 ", batch %" PRId64 "): loaded; max relative loss difference %.3g\n",
              fs::path(ckpt).filename().c_str(), pos[0], pos[2], d);
  CHECK(d <= 1e-5);
  sensor_destroy(ctx);
}

}  // namespace

TEST_CASE("every checkpoint mtlc train writes loads, mid-epoch ones included") {
  // Adam (optim.*), the AUC's buffers of a mid-epoch position (train.*), and with uncertainty
  // weighting its state (mtl.*).
  const std::string fixed = sensorVariant("sensor_auc", ""),
                    adaptive = sensorVariant("sensor_auc_unc", "  weighting uncertainty\n");
  for (const auto &[mtl, isFixed] : {std::pair{fixed, true}, std::pair{adaptive, false}}) {
    const std::string stem = kWork + "/" + fs::path(mtl).stem().string();
    // --save at the end of a run stopped mid-epoch by --steps, after --checkpoint-every writes.
    auto r = run(std::string(MTLC_BINARY) + " train -q --steps 13 --checkpoint-every 5 --save " + stem +
                 "_save.safetensors " + mtl);
    INFO(r.out);
    REQUIRE(r.exitCode == 0);
    checkLoadsLikeTheTrainer(mtl, stem + "_save.safetensors", isFixed);
    trainUntilSignal(mtl, stem + "_every.safetensors", "KILL");  // the last periodic checkpoint
    checkLoadsLikeTheTrainer(mtl, stem + "_every.safetensors", isFixed);
    trainUntilSignal(mtl, stem + "_sigint.safetensors", "INT");  // the trainer's SIGINT save
    checkLoadsLikeTheTrainer(mtl, stem + "_sigint.safetensors", isFixed);
  }
  // The files hold what the loader has to skip.
  const mtlc::rt::TensorFile f = mtlc::rt::readSafeTensors(kWork + "/sensor_auc_unc_save.safetensors");
  CHECK(f.find("train.acc.flag.scores"));
  CHECK(f.find("mtl.log_var"));
  CHECK(f.find("optim.m"));
}

namespace {

// A C program against a `mtlc build` folder: one train step of the sensor model on the first
// SENSOR_MAX_BATCH rows it is given on stdin-free arguments (a deterministic batch), printing the
// total and the task losses.
const char *kOneStepProgram = R"(#include "sensor.h"
#include <stdio.h>
int main(void) {
  static float x[SENSOR_MAX_BATCH * 8], cls[SENSOR_MAX_BATCH], flag[SENSOR_MAX_BATCH], target[SENSOR_MAX_BATCH];
  float losses[SENSOR_NUM_TASKS], total = 0;
  int i, j, st;
  sensor_ctx *ctx = sensor_create();
  for (i = 0; i < SENSOR_MAX_BATCH; ++i) {
    for (j = 0; j < 8; ++j) x[i * 8 + j] = (float)((i * 7 + j * 3) % 11) / 5.0f - 1.0f;
    cls[i] = (float)(i % 3);
    flag[i] = (float)(i % 2);
    target[i] = x[i * 8] * 0.5f;
  }
  st = sensor_train_step(ctx, SENSOR_MAX_BATCH, x, SENSOR_MAX_BATCH * 8, cls, SENSOR_MAX_BATCH, flag,
                         SENSOR_MAX_BATCH, target, SENSOR_MAX_BATCH, losses, &total);
  if (st != SENSOR_OK) return fprintf(stderr, "%s\n", sensor_last_error(ctx)), 1;
  printf("%.9g %.9g %.9g %.9g\n", total, losses[0], losses[1], losses[2]);
  sensor_destroy(ctx);
  return 0;
}
)";

// A header's comment text with its line breaks (" * " continuations) turned into spaces.
std::string unwrapped(std::string header) {
  for (size_t at; (at = header.find("\n * ")) != std::string::npos;) header.replace(at, 4, " ");
  return header;
}

// Text with every run of white space (the diagnostics' line wrapping, which depends on the
// length of the paths in it) turned into one space.
std::string oneLine(const std::string &text) {
  std::string out;
  for (char c : text) {
    const bool space = c == ' ' || c == '\n' || c == '\t';
    if (!space) out += c;
    else if (!out.empty() && out.back() != ' ') out += ' ';
  }
  return out;
}

// The loss weight the header states for each task ("loss KIND, weight W").
std::vector<double> headerWeights(const std::string &header) {
  std::vector<double> w;
  for (const char *task : {"`cls`", "`flag`", "`target`"}) {
    const size_t at = header.find(task);
    REQUIRE(at != std::string::npos);
    const size_t weight = header.find("weight ", at);
    REQUIRE(weight != std::string::npos);
    w.push_back(std::strtod(header.c_str() + weight + 7, nullptr));
  }
  return w;
}

// Compiles kOneStepProgram against `dir` alone and returns the total and task losses it printed.
std::array<double, 4> runOneStep(const std::string &dir) {
  std::ofstream(kWork + "/one_step.c") << kOneStepProgram;
  const std::string exe = kWork + "/one_step";
  auto c = run(std::string(C_COMPILER) + " -std=c99 -Wall -Wextra -Werror -pedantic " + EMBED_LINK_FLAGS + " -I " +
               dir + " " + kWork + "/one_step.c " + dir + "/libsensor.a -lm -o " + exe);
  INFO(c.out);
  REQUIRE(c.exitCode == 0);
  auto r = run(exe);
  INFO(r.out);
  REQUIRE(r.exitCode == 0);
  std::array<double, 4> v{};
  REQUIRE(std::sscanf(r.out.c_str(), "%lf %lf %lf %lf", &v[0], &v[1], &v[2], &v[3]) == 4);
  return v;
}

}  // namespace

TEST_CASE("mtlc build of an adaptive weighting builds, training with its current weights fixed") {
  const std::string mtl = sensorVariant("sensor_unc", "  weighting uncertainty\n");
  const std::string dir = kWork + "/unc";
  fs::remove_all(dir);
  auto b = run(std::string(MTLC_BINARY) + " build " + mtl + " -o " + dir);
  INFO(b.out);
  REQUIRE(b.exitCode == 0);
  CHECK(oneLine(b.out).find("note: weighting `uncertainty` adapts the loss weights") != std::string::npos);
  std::string header = readText(dir + "/sensor.h");
  CHECK(unwrapped(header).find("keeps them fixed at the strategy's current weights (its initial ones)") !=
        std::string::npos);
  // Uncertainty starts at s = log sigma^2 = 0: w = exp(-s) / 2 = 0.5 for every task.
  for (double w : headerWeights(header)) CHECK(w == 0.5);
  std::array<double, 4> l = runOneStep(dir);
  CHECK(std::fabs(l[0] - 0.5 * (l[1] + l[2] + l[3])) <= 1e-6 * std::fabs(l[0]));

  // From a trained checkpoint: the weights of its state, exp(-s_t) / 2 with s = mtl.log_var.
  const std::string ckpt = kWork + "/sensor_unc_trained.safetensors";
  auto t = run(std::string(MTLC_BINARY) + " train -q --steps 40 --save " + ckpt + " " + mtl);
  INFO(t.out);
  REQUIRE(t.exitCode == 0);
  fs::remove_all(dir);
  b = run(std::string(MTLC_BINARY) + " build " + mtl + " -o " + dir + " --weights " + ckpt);
  INFO(b.out);
  REQUIRE(b.exitCode == 0);
  header = readText(dir + "/sensor.h");
  CHECK(unwrapped(header).find("(those of its state in sensor_unc_trained.safetensors)") != std::string::npos);
  const mtlc::rt::TensorFile f = mtlc::rt::readSafeTensors(ckpt);
  const mtlc::rt::Tensor *logVar = f.find("mtl.log_var");
  REQUIRE(logVar);
  REQUIRE(logVar->data.size() == 3);
  const std::vector<double> w = headerWeights(header);
  for (size_t i = 0; i < 3; ++i) {
    const double expected = 0.5 * std::exp(-double(logVar->data[i]));
    CHECK(std::fabs(w[i] - expected) <= 1e-6 * expected);
    CHECK(std::fabs(w[i] - 0.5) > 1e-4);  // training moved them
  }
  l = runOneStep(dir);
  CHECK(std::fabs(l[0] - (w[0] * l[1] + w[1] * l[2] + w[2] * l[3])) <= 1e-5 * std::fabs(l[0]));
}

TEST_CASE("a bundle with DSelect-k's gates starts from mtlc train's initial parameters") {
  // Init::Uniform's bound travels in the bundle description: the embedded runtime's draws must be
  // the trainer's, gates included (z within gamma/100, w within 0.05).
  const std::string dir = kWork + "/dselect";
  fs::remove_all(dir);
  const std::string mtl = kSource + "/examples/dselect_synthetic.mtl";
  auto b = run(std::string(MTLC_BINARY) + " build " + mtl + " -o " + dir);
  INFO(b.out);
  REQUIRE(b.exitCode == 0);
  const std::string embedded = dir + "/embedded.safetensors", trainer = dir + "/trainer.safetensors";
  std::ofstream(dir + "/save.c") << "#include \"dselect_synthetic.h\"\n"
                                    "int main(void) {\n"
                                    "  dselect_synthetic_ctx *c = dselect_synthetic_create();\n"
                                    "  return !c || dselect_synthetic_save(c, \"" << embedded << "\") != 0;\n"
                                    "}\n";
  auto c = run(std::string(C_COMPILER) + " -std=c99 -Wall -Wextra -Werror -pedantic " + EMBED_LINK_FLAGS + " -I " +
               dir + " " + dir + "/save.c " + dir + "/libdselect_synthetic.a -lm -o " + dir + "/save");
  INFO(c.out);
  REQUIRE(c.exitCode == 0);
  REQUIRE(run(dir + "/save").exitCode == 0);
  auto t = run(std::string(MTLC_BINARY) + " train -q --steps 0 --save " + trainer + " " + mtl);
  INFO(t.out);
  REQUIRE(t.exitCode == 0);
  const mtlc::rt::TensorFile e = mtlc::rt::readSafeTensors(embedded), tr = mtlc::rt::readSafeTensors(trainer);
  int gates = 0;
  for (const auto &tensor : e.tensors) {
    const mtlc::rt::Tensor *other = tr.find(tensor.name);
    REQUIRE(other);
    CHECK(other->data == tensor.data);
    if (tensor.name.find(".gate.") == std::string::npos) continue;
    ++gates;
    const float bound = tensor.name.find(".z.") != std::string::npos ? 0.01f : 0.05f;
    float widest = 0;
    for (float v : tensor.data) widest = std::max(widest, std::fabs(v));
    CHECK(widest <= bound);
    CHECK(widest > 0);
  }
  CHECK(gates == 8);
}

TEST_CASE("cmake --install gives a prefix that builds and links embedding programs alone", "[.][install]") {
  const std::string prefix = kWork + "/prefix", out = kWork + "/installed-build";
  fs::remove_all(prefix);
  fs::remove_all(out);
  auto inst = run(std::string(CMAKE_COMMAND_PATH) + " --install " + MTLC_BINARY_DIR + " --prefix " + prefix);
  INFO(inst.out);
  REQUIRE(inst.exitCode == 0);
  // The rules install the compiler, the embed library and its header (lib or lib64 per platform).
  CHECK(fs::exists(prefix + "/bin/mtlc"));
  CHECK(fs::exists(prefix + "/include/mtlc_embed.h"));
  const std::string lib = fs::exists(prefix + "/lib64/libmtlc_embed.a") ? prefix + "/lib64" : prefix + "/lib";
  CHECK(fs::exists(lib + "/libmtlc_embed.a"));

  // The installed mtlc writes everything a program needs into OUT; the examples compile with OUT
  // as their only include folder and its archive as their only library besides libm.
  auto b = run(prefix + "/bin/mtlc build " + kSource + "/examples/embed/sensor.mtl -o " + out);
  INFO(b.out);
  REQUIRE(b.exitCode == 0);
  for (const char *file : {"sensor.h", "sensor.o", "mtlc_embed.h", "libsensor.a"}) CHECK(fs::exists(out + "/" + file));
  const std::string flags = std::string(" ") + EMBED_LINK_FLAGS + " -Wall -Wextra -Werror -pedantic -I " + out + " ";
  struct Program {
    std::string compile, exe;
  };
  const std::vector<Program> programs = {
      {std::string(C_COMPILER) + " -std=c99" + flags + kSource + "/examples/embed/main.c " + out + "/*.a -lm",
       kWork + "/installed_c"},
      {std::string(CXX_COMPILER) + " -std=c++17" + flags + kSource + "/examples/embed/main.cpp " + out + "/*.a -lm",
       kWork + "/installed_cpp"},
      // The installed library and header with the model's object, for programs that link objects.
      {std::string(C_COMPILER) + " -std=c99" + flags + "-I " + prefix + "/include " + kSource +
           "/examples/embed/main.c " + out + "/sensor.o " + lib + "/libmtlc_embed.a -lm",
       kWork + "/installed_c_objects"}};
  for (const Program &p : programs) {
    auto c = run(p.compile + " -o " + p.exe);
    INFO(p.compile << "\n" << c.out);
    REQUIRE(c.exitCode == 0);
    auto r = run(p.exe + " " + p.exe + ".safetensors");
    INFO(r.out);
    CHECK(r.exitCode == 0);
    CHECK(r.out.find("reloaded") != std::string::npos);
  }
  // A C program needs no C++ runtime: the archive leaves nothing of libstdc++ undefined.
  auto nm = run("nm -u " + out + "/libsensor.a");
  CHECK(nm.out.find("_Z") == std::string::npos);
  CHECK(nm.out.find("__cxa") == std::string::npos);
  CHECK(nm.out.find("__gxx") == std::string::npos);
}

TEST_CASE("sensor_set_lr: a program schedules the rate; a warm-up by hand is mtlc train's `warmup`") {
  const Table table = readTabular();
  sensor_ctx *ctx = sensor_create();
  REQUIRE(ctx);
  CHECK(sensor_lr(ctx) == 0.01);  // the program's adam(lr=0.01)
  CHECK(sensor_set_lr(ctx, 0) == SENSOR_ERR_VALUE);
  CHECK(sensor_set_lr(ctx, std::nan("")) == SENSOR_ERR_VALUE);
  CHECK(sensor_lr(ctx) == 0.01);
  fs::create_directories(kWork);
  const std::string initPath = kWork + "/lr_init.safetensors";
  REQUIRE(sensor_save(ctx, initPath.c_str()) == SENSOR_OK);
  // Four steps at 0.01·s/4, then four at 0.01: `warmup 4`.
  std::vector<std::array<double, 4>> embedded;
  const int64_t n = SENSOR_MAX_BATCH;
  for (int k = 0; k < 8; ++k) {
    REQUIRE(sensor_set_lr(ctx, k < 4 ? 0.01 * double(k + 1) / 4 : 0.01) == SENSOR_OK);
    const size_t r = size_t(k) * size_t(n);
    float losses[3], total = 0;
    REQUIRE(sensor_train_step(ctx, n, &table.x[r * 8], size_t(n) * 8, &table.cls[r], size_t(n), &table.flag[r],
                              size_t(n), &table.target[r], size_t(n), losses, &total) == SENSOR_OK);
    embedded.push_back({total, losses[0], losses[1], losses[2]});
  }
  sensor_destroy(ctx);
  std::stringstream text;
  text << std::ifstream(kSource + "/examples/embed/sensor.mtl").rdbuf();
  std::string program = text.str();
  program.replace(program.find("  batch     16"), 0, "  warmup    4\n");
  std::ofstream(kWork + "/warmup.mtl") << program;
  auto trained = run(std::string(MTLC_BINARY) + " train -q --steps 8 --init " + initPath + " --data train=" + kSource +
                     "/examples/tabular.csv --log " + kWork + "/warmup.jsonl " + kWork + "/warmup.mtl");
  INFO(trained.out);
  REQUIRE(trained.exitCode == 0);
  const double d = maxRelDiff(embedded, readLog(kWork + "/warmup.jsonl"));
  std::printf("aot warm-up by set_lr over 8 adam steps: max relative loss difference %.3g\n", d);
  CHECK(d <= 1e-5);
}
