// Nothing is lost on a fault: checkpoints written during training, resumed runs that continue
// bit-exactly (every weighting strategy), SIGKILL at random moments, SIGINT; and NaN/Inf reports
// that name the task, the step and the tensor. All through the real binary.
#include "Run.h"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstring>
#include <csignal>
#include <random>
#include <sstream>
#include <thread>
#include <unistd.h>

namespace {

namespace fs = std::filesystem;

// Three heads on the example table (2000 rows: 63 steps of 32 per epoch), shuffled, with the
// weighting strategy and epochs given.
std::string program(const std::string &weighting, int epochs, const std::string &extra = "",
                    const std::string &optimizer = "adam(lr=0.005)") {
  return "model resume\n"
         "input features : f32[8]\n"
         "shared trunk = features -> dense(32) -> relu -> dense(16) -> relu\n"
         "task cls { trunk -> dense(3) loss cross_entropy metric accuracy }\n"
         "task flag { trunk -> dense(1) loss bce metric accuracy, auc }\n"
         "task target { trunk -> dense(1) loss mse weight 0.5 metric mae }\n"
         "train {\n  optimizer " + optimizer + "\n  batch 32\n  epochs " +
         std::to_string(epochs) + "\n  seed 11\n  weighting " + weighting + "\n" + extra +
         "}\n"
         "data {\n  train csv(\"" + example("tabular.csv") + "\")\n  test csv(\"" + example("tabular_test.csv") +
         "\")\n  features = columns(0..7)\n  cls = cls\n  flag = flag\n  target = target\n}\n";
}


// Starts `mtlc train ARGS` in `dir` without a shell, output to files; returns its pid.
pid_t spawnTrain(const fs::path &dir, const std::vector<std::string> &args) {
  pid_t pid = fork();
  if (pid == 0) {
    if (chdir(dir.c_str()) != 0) _exit(126);
    freopen("/dev/null", "w", stdout);
    freopen((dir / "child-err.txt").c_str(), "w", stderr);
    std::vector<char *> argv{const_cast<char *>(MTLC_BINARY), const_cast<char *>("train")};
    for (const std::string &a : args) argv.push_back(const_cast<char *>(a.c_str()));
    argv.push_back(nullptr);
    execv(MTLC_BINARY, argv.data());
    _exit(127);
  }
  return pid;
}

struct Resumed {
  RunResult full, rest;
};

// In `dir` (holding m.mtl): the whole run, then the same stopped after step `stopAt` and resumed;
// the checkpoints and logs of both must be the same bytes.
Resumed stopAndResume(const fs::path &dir, int stopAt = 100) {
  auto full = runMtlc("train m.mtl -q --save full.safetensors --log full.jsonl", dir.string());
  INFO(full.out << full.err);
  REQUIRE(full.exitCode == 0);
  auto part = runMtlc("train m.mtl -q --steps " + std::to_string(stopAt) + " --save part.safetensors --log part.jsonl",
                      dir.string());
  REQUIRE(part.exitCode == 0);
  auto rest = runMtlc("train m.mtl -q --resume part.safetensors --save part.safetensors --log part.jsonl",
                      dir.string());
  INFO(rest.out << rest.err);
  REQUIRE(rest.exitCode == 0);
  // Same parameters, optimizer and weighting state, position: the same bytes.
  CHECK(slurp(dir / "part.safetensors") == slurp(dir / "full.safetensors"));
  // The same log: every step's losses, weights and learning rate, every epoch's test metrics.
  CHECK(slurp(dir / "part.jsonl") == slurp(dir / "full.jsonl"));
  return {full, rest};
}

}  // namespace

TEST_CASE("--resume continues bit-exactly for every weighting strategy") {
  // stch with one warm-up epoch: step 100 is inside epoch 2, which sums the nadir point, and
  // epoch 3 uses it; famo's logits and their Adam state are in the checkpoint.
  for (const char *weighting : {"fixed", "uncertainty", "dwa", "gradnorm", "pcgrad", "mgda", "rlw", "gls",
                                "stch(warmup_epochs=1)", "famo", "nash_mtl(update_weights_every=3)",
                                "excess_mtl"}) {
    DYNAMIC_SECTION(weighting) {
      const std::string name = std::string(weighting).substr(0, std::string(weighting).find('('));
      auto dir = testDir("resume_" + name);
      // 3 epochs: dwa leaves its warm-up (weights 1 for two epochs) in the third.
      std::ofstream(dir / "m.mtl") << program(weighting, 3);
      // Stop mid-epoch 2 (step 100 of 189), then continue from the checkpoint.
      auto [full, rest] = stopAndResume(dir);
      CHECK_THAT(rest.out, Catch::Contains("resumed from part.safetensors at step 100 (epoch 2, 37 batches done)"));
      // The same final report (the table after "trained ... steps").
      auto table = [](const std::string &out) {
        const size_t from = out.find("task "), to = out.find("saved ");
        return out.substr(from, to - from);
      };
      CHECK(table(rest.out) == table(full.out));
    }
  }
}

// The learning rate is a function of the step and its epoch, and each optimizer's state is in the
// checkpoint: a run stopped inside the warm-up or between two drops of the schedule resumes to the
// same bytes, with each step's rate logged.
TEST_CASE("--resume continues bit-exactly mid-schedule and mid-warm-up, for every optimizer") {
  struct Case {
    const char *name, *optimizer, *train;
    double firstLr;  // step 1's rate in the log
  };
  for (const Case &c : {Case{"warmup_cosine", "adamw(lr=0.01)", "  schedule cosine\n  warmup 150\n", 0.01 / 150},
                        Case{"step", "sgd(lr=0.05, momentum=0.9, nesterov=true, weight_decay=1e-4)",
                             "  schedule step(every=1, gamma=0.5)\n  warmup 20\n", 0.05 / 20},
                        Case{"multistep", "rmsprop(lr=0.002, momentum=0.5)", "  schedule multistep(at={1, 2})\n", 0.002},
                        Case{"exponential", "adam(lr=0.005, weight_decay=0.01)", "  schedule exponential(gamma=0.8)\n",
                             0.005}}) {
    DYNAMIC_SECTION(c.name) {
      auto dir = testDir(std::string("resume_lr_") + c.name);
      std::ofstream(dir / "m.mtl") << program("fixed", 3, c.train, c.optimizer);
      // Step 100: inside the 150-step warm-up, or in epoch 2 after the schedule's first drop.
      stopAndResume(dir);
      std::ifstream log(dir / "full.jsonl");
      std::string line;
      std::getline(log, line);
      auto first = nlohmann::json::parse(line);
      REQUIRE(first.contains("lr"));
      CHECK(first["lr"].get<double>() == Approx(c.firstLr).epsilon(1e-12));
    }
  }
}

TEST_CASE("--resume with batchnorm: running statistics saved (PyTorch names, I64 count) and restored") {
  auto dir = testDir("resume_batchnorm");
  std::string text = program("fixed", 2);
  const std::string trunk = "shared trunk = features -> dense(32) -> relu -> dense(16) -> relu\n";
  text.replace(text.find(trunk), trunk.size(),
               "shared trunk = features -> dense(16) -> batchnorm -> relu\n"
               "  -> residual { dense(16) -> batchnorm -> relu -> dense(16) -> batchnorm } -> relu\n");
  std::ofstream(dir / "m.mtl") << text;
  stopAndResume(dir, 70);
  // The buffers as nn.BatchNorm1d's state_dict names them; the count is I64 = the steps taken.
  const std::string bytes = slurp(dir / "full.safetensors");
  for (const char *name : {"trunk.1.running_mean", "trunk.1.running_var", "trunk.3.body.1.weight",
                           "trunk.3.body.4.running_var"})
    CHECK_THAT(bytes, Catch::Contains(std::string("\"") + name + "\""));
  CHECK_THAT(bytes, Catch::Contains("\"trunk.3.body.4.num_batches_tracked\":{\"dtype\":\"I64\",\"shape\":[]"));
}

TEST_CASE("--resume mid-epoch on per-pixel tasks: miou's confusion counts and the other sums continue") {
  // 6 steps an epoch, 3 epochs; stopped in the middle of the last, the report's running train
  // metrics of that epoch (pixel_accuracy, miou, abs_err, rel_err) continue from the
  // checkpoint's metric state.
  auto dir = testDir("resume_dense");
  std::ofstream(dir / "m.mtl") << slurp(densePixelProgram());
  auto [full, rest] = stopAndResume(dir, 14);
  auto trainRows = [](const std::string &out) {
    std::istringstream in(out);
    std::string rows, line;
    while (std::getline(in, line))
      if (line.find(" train ") != std::string::npos) rows += line + "\n";
    return rows;
  };
  INFO(full.out << rest.out);
  CHECK(trainRows(full.out).find("0.") != std::string::npos);  // seg and depth rows with values
  CHECK(trainRows(rest.out) == trainRows(full.out));
  CHECK_THAT(slurp(dir / "full.jsonl"), Catch::Contains("\"miou\""));
}

TEST_CASE("batchnorm's running statistics move once per step under every weighting") {
  // MGDA-UB runs rep_grads and train_step in one step, pcgrad and gradnorm task_grads, gls and
  // stch a measuring train_step before theirs, famo one more after the update: each runs the
  // training forward, and num_batches_tracked must still count the steps.
  for (const char *weighting : {"fixed", "pcgrad", "gradnorm", "mgda", "gls", "stch", "famo"}) {
    DYNAMIC_SECTION(weighting) {
      auto dir = testDir(std::string("batchnorm_") + weighting);
      std::string text = program(weighting, 1);
      const std::string trunk = "shared trunk = features -> dense(32) -> relu -> dense(16) -> relu\n";
      text.replace(text.find(trunk), trunk.size(), "shared trunk = features -> dense(16) -> batchnorm -> relu\n");
      std::ofstream(dir / "m.mtl") << text;
      auto r = runMtlc("train m.mtl -q --steps 5 --save bn.safetensors", dir.string());
      INFO(r.out << r.err);
      REQUIRE(r.exitCode == 0);
      const std::string bytes = slurp(dir / "bn.safetensors");
      uint64_t n = 0;
      std::memcpy(&n, bytes.data(), 8);
      const auto header = nlohmann::json::parse(bytes.substr(8, n));
      const auto &entry = header.at("trunk.1.num_batches_tracked");
      CHECK(entry.at("dtype") == "I64");
      int64_t count = -1;
      std::memcpy(&count, bytes.data() + 8 + n + entry.at("data_offsets")[0].get<size_t>(), 8);
      CHECK(count == 5);
    }
  }
}

// Validation: the last 20% of the table (400 rows) held out, so an epoch is 50 steps of 32. The
// best value, its epoch and patience's counter are in the checkpoint: a run stopped after the
// counter started resumes to the same bytes (checkpoint, log and --save-best file) and stops early
// at the same epoch; the --save-best file is the best epoch's checkpoint.
TEST_CASE("--resume continues bit-exactly after patience's counter started; --save-best is the best epoch") {
  struct Case {
    const char *name, *optimizer, *train;
    bool stopsEarly;
  };
  // adam stops early at epoch 7 (best 5); the flagship's settings (adamw, cosine with its t_max
  // fixed so that --epochs below keeps the schedule, warm-up) start the counter at epoch 4.
  for (const Case &c : {Case{"adam", "adam(lr=0.03)", "  validation 0.2\n  patience 2\n", true},
                        Case{"adamw_cosine", "adamw(lr=0.03)",
                             "  validation 0.2\n  patience 2\n  schedule cosine(t_max=12)\n  warmup 30\n", false}})
    DYNAMIC_SECTION(c.name) {
      auto dir = testDir(std::string("resume_patience_") + c.name);
      std::ofstream(dir / "m.mtl") << program("fixed", 12, c.train, c.optimizer);
      auto full = runMtlc("train m.mtl -q --save full.safetensors --log full.jsonl --save-best full_best.safetensors",
                          dir.string());
      INFO(full.out << full.err);
      REQUIRE(full.exitCode == 0);
      CHECK_THAT(full.out, Catch::Contains("val: ") && Catch::Contains("the last 400 samples"));
      // The first epoch that was not the best so far: the counter runs from there.
      int64_t counting = 0, bestEpoch = 0;
      {
        std::istringstream lines(full.out);
        int64_t epoch = 0;
        for (std::string line; std::getline(lines, line);) {
          if (line.rfind("epoch ", 0) == 0) epoch = std::stoll(line.substr(6));
          const bool notBest = line.find("best so far") == std::string::npos;
          if (line.find("  val loss ") == 0 && notBest && !counting) counting = epoch;
          if (line.rfind("best epoch ", 0) == 0) bestEpoch = std::stoll(line.substr(11));
        }
      }
      REQUIRE(counting > 0);
      REQUIRE(bestEpoch > 0);
      if (c.stopsEarly) CHECK_THAT(full.out, Catch::Contains("early stop: 2 epochs without a better val loss"));
      CHECK_THAT(full.out, Catch::Contains("best test cls: "));
      // Every epoch record of the log has "val" and "test".
      {
        std::ifstream log(dir / "full.jsonl");
        int records = 0;
        for (std::string line; std::getline(log, line);) {
          auto j = nlohmann::json::parse(line);
          if (j.contains("step")) continue;
          ++records;
          CHECK(j.contains("val"));
          CHECK(j["val"]["cls"].contains("accuracy"));
          CHECK(j.contains("test"));
        }
        CHECK(records >= 3);
      }
      // Stopped 10 steps after the epoch where the counter started, then resumed.
      const std::string stopAt = std::to_string(counting * 50 + 10);
      auto part = runMtlc("train m.mtl -q --steps " + stopAt + " --save part.safetensors --log part.jsonl "
                          "--save-best part_best.safetensors", dir.string());
      REQUIRE(part.exitCode == 0);
      auto rest = runMtlc("train m.mtl -q --resume part.safetensors --save part.safetensors --log part.jsonl "
                          "--save-best part_best.safetensors", dir.string());
      INFO(rest.out << rest.err);
      REQUIRE(rest.exitCode == 0);
      CHECK(slurp(dir / "part.safetensors") == slurp(dir / "full.safetensors"));
      CHECK(slurp(dir / "part.jsonl") == slurp(dir / "full.jsonl"));
      CHECK(slurp(dir / "part_best.safetensors") == slurp(dir / "full_best.safetensors"));
      CHECK_THAT(rest.out, Catch::Contains("best epoch " + std::to_string(bestEpoch) + ":"));
      // The best file is the checkpoint a run of exactly the best epoch's length saves.
      auto upTo = runMtlc("train m.mtl -q --epochs " + std::to_string(bestEpoch) + " --save upto.safetensors",
                          dir.string());
      REQUIRE(upTo.exitCode == 0);
      CHECK(slurp(dir / "upto.safetensors") == slurp(dir / "full_best.safetensors"));
    }
}

// `accumulate 4`: 63 batches an epoch make 15 groups of 4 and a last one of 3 (16 steps). A run
// stops and checkpoints only at a group's end, so --steps 20 stops 16 batches into epoch 2 and the
// checkpoint holds no partial sum; resumed, it continues to the same bytes (with a warm-up and a
// schedule counted in optimizer steps, and a checkpoint every 5 steps on the way).
TEST_CASE("--resume continues bit-exactly with accumulate, stopped between two groups") {
  auto dir = testDir("resume_accumulate");
  std::ofstream(dir / "m.mtl") << program("dwa", 3, "  accumulate 4\n  warmup 10\n  schedule cosine\n",
                                          "adamw(lr=0.01)");
  auto [full, rest] = stopAndResume(dir, 20);
  CHECK_THAT(full.out, Catch::Contains("batch 32 (accumulate 4)"));
  CHECK_THAT(full.out, Catch::Contains("trained 48 steps"));
  CHECK_THAT(rest.out, Catch::Contains("resumed from part.safetensors at step 20 (epoch 2, 16 batches done)"));
  std::ifstream log(dir / "full.jsonl");
  int steps = 0;
  for (std::string line; std::getline(log, line);) {
    auto j = nlohmann::json::parse(line);
    if (!j.contains("step")) continue;
    ++steps;
    if (j["step"] == 5) CHECK(j["lr"].get<double>() == Approx(0.01 * 5 / 10).epsilon(1e-12));  // warm-up in steps
  }
  CHECK(steps == 48);
  auto every = runMtlc("train m.mtl -q --steps 23 --checkpoint-every 5 --save every.safetensors", dir.string());
  REQUIRE(every.exitCode == 0);
  auto resumed = runMtlc("train m.mtl -q --resume every.safetensors --save every.safetensors", dir.string());
  REQUIRE(resumed.exitCode == 0);
  CHECK(slurp(dir / "every.safetensors") == slurp(dir / "full.safetensors"));
}

// Two batches of 16 accumulated are one batch of 32 (equal halves, shuffle off, sgd without
// momentum): the same steps, losses and parameters up to float rounding.
TEST_CASE("accumulate 2 of batch 16 trains as batch 32") {
  auto dir = testDir("accumulate_equivalence");
  std::string text = program("fixed", 1, "  shuffle false\n", "sgd(lr=0.05)");
  std::string half = text, whole = text;
  half.replace(half.find("batch 32"), 8, "batch 16\n  accumulate 2");
  std::ofstream(dir / "half.mtl") << half;
  std::ofstream(dir / "whole.mtl") << whole;
  // 2000 rows: 62 steps of 32 (the 63rd has 16 rows, a short group for `accumulate`).
  auto a = runMtlc("train half.mtl -q --steps 62 --log half.jsonl", dir.string());
  auto b = runMtlc("train whole.mtl -q --steps 62 --log whole.jsonl", dir.string());
  INFO(a.out << a.err << b.out << b.err);
  REQUIRE(a.exitCode == 0);
  REQUIRE(b.exitCode == 0);
  std::ifstream la(dir / "half.jsonl"), lb(dir / "whole.jsonl");
  int steps = 0;
  double worst = 0;
  for (std::string x, y; std::getline(la, x) && std::getline(lb, y);) {
    auto ja = nlohmann::json::parse(x), jb = nlohmann::json::parse(y);
    if (!ja.contains("step")) continue;
    ++steps;
    CHECK(ja["step"] == jb["step"]);
    const double p = ja["loss"].get<double>(), q = jb["loss"].get<double>();
    worst = std::max(worst, std::abs(p - q) / std::abs(q));
  }
  CHECK(steps == 62);
  CHECK(worst < 1e-5);
}

TEST_CASE("a val source is evaluated after every epoch; --save-best needs a validation set") {
  auto dir = testDir("val_source");
  std::ofstream(dir / "m.mtl") << [] {
    std::string p = program("fixed", 2, "  select flag.auc\n");
    const std::string val = "  val csv(\"" + example("tabular_test.csv") + "\")\n";
    return p.insert(p.find("  test csv("), val);
  }();
  auto r = runMtlc("train m.mtl -q --save-best best.safetensors", dir.string());
  INFO(r.out << r.err);
  REQUIRE(r.exitCode == 0);
  CHECK_THAT(r.out, Catch::Contains("; val: ") && Catch::Contains("select: flag.auc"));
  CHECK_THAT(r.out, Catch::Contains("  val  flag: loss "));
  CHECK_THAT(r.out, Catch::Contains("best epoch "));
  CHECK(fs::exists(dir / "best.safetensors"));
  std::ofstream(dir / "plain.mtl") << program("fixed", 1);
  auto none = runMtlc("train plain.mtl -q --save-best best.safetensors", dir.string());
  CHECK(none.exitCode == 1);
  CHECK_THAT(none.err,
             Catch::Contains("--save-best keeps the best epoch on the validation set, and this run has none"));
}

TEST_CASE("SIGKILL at 20 random moments: the checkpoint left always resumes to the uninterrupted run") {
  auto dir = testDir("resume_kill");
  std::ofstream(dir / "m.mtl") << program("dwa", 8);
  auto full = runMtlc("train m.mtl -q --save full.safetensors --log full.jsonl", dir.string());
  INFO(full.out << full.err);
  REQUIRE(full.exitCode == 0);
  const std::string expectedCkpt = slurp(dir / "full.safetensors"), expectedLog = slurp(dir / "full.jsonl");

  std::mt19937 rng(2026);
  int kills = 0, attempts = 0;
  while (kills < 20 && attempts < 60) {
    ++attempts;
    fs::remove(dir / "ck.safetensors");
    fs::remove(dir / "ck.jsonl");
    pid_t pid = spawnTrain(dir, {"m.mtl", "-q", "--save", "ck.safetensors", "--checkpoint-every", "2", "--log",
                                 "ck.jsonl"});
    REQUIRE(pid > 0);
    // Once the first checkpoint exists (the compile is done), kill it at a random moment of the run.
    int status = 0;
    bool exited = false;
    while (!fs::exists(dir / "ck.safetensors") && !exited) {
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
      exited = waitpid(pid, &status, WNOHANG) == pid;
    }
    if (!exited) {
      std::this_thread::sleep_for(std::chrono::microseconds(std::uniform_int_distribution<int>(0, 400000)(rng)));
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
    }
    if (!WIFSIGNALED(status)) continue;  // it finished first: not a kill
    ++kills;
    INFO("kill " << kills << " (attempt " << attempts << ")");
    auto resumed = runMtlc("train m.mtl -q --resume ck.safetensors --save ck.safetensors --log ck.jsonl",
                           dir.string());
    INFO(resumed.out << resumed.err);
    REQUIRE(resumed.exitCode == 0);
    CHECK(slurp(dir / "ck.safetensors") == expectedCkpt);
    CHECK(slurp(dir / "ck.jsonl") == expectedLog);
  }
  CHECK(kills == 20);
}

TEST_CASE("SIGINT stops after the step, writes the checkpoint, exits 130; the run resumes") {
  auto dir = testDir("resume_sigint");
  std::ofstream(dir / "m.mtl") << program("fixed", 20);
  fs::remove(dir / "ck.safetensors");
  pid_t pid = spawnTrain(dir, {"m.mtl", "-q", "--save", "ck.safetensors", "--checkpoint-every", "50"});
  int status = 0;
  while (!fs::exists(dir / "ck.safetensors")) {
    REQUIRE(waitpid(pid, &status, WNOHANG) == 0);
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  kill(pid, SIGINT);
  waitpid(pid, &status, 0);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 130);
  auto again = runMtlc("train m.mtl -q --epochs 20 --resume ck.safetensors", dir.string());
  INFO(again.out << again.err);
  CHECK(again.exitCode == 0);
  CHECK_THAT(again.out, Catch::Contains("resumed from ck.safetensors at step"));
  CHECK_THAT(again.out, Catch::Contains("trained 1260 steps"));  // 20 epochs of 63 steps in all
}

TEST_CASE("--resume refuses what it cannot continue") {
  auto dir = testDir("resume_errors");
  std::ofstream(dir / "m.mtl") << program("fixed", 1);
  std::ofstream(dir / "b.mtl") << [] {
    std::string p = program("fixed", 1);
    return p.replace(p.find("batch 32"), 8, "batch 16");
  }();
  REQUIRE(runMtlc("train m.mtl -q --steps 3 --save a.safetensors", dir.string()).exitCode == 0);
  auto both = runMtlc("train m.mtl -q --resume a.safetensors --init a.safetensors", dir.string());
  CHECK(both.exitCode == 1);
  CHECK_THAT(both.err, Catch::Contains("give one of them"));
  auto noSave = runMtlc("train m.mtl -q --checkpoint-every 5", dir.string());
  CHECK(noSave.exitCode == 1);
  CHECK_THAT(noSave.err, Catch::Contains("--checkpoint-every needs --save FILE"));
  auto seed = runMtlc("train m.mtl -q --resume a.safetensors --seed 4", dir.string());
  CHECK(seed.exitCode == 1);
  CHECK_THAT(seed.err, Catch::Contains("--seed 4 differs from the seed 11 of the run in a.safetensors"));
  auto batch = runMtlc("train b.mtl -q --resume a.safetensors", dir.string());
  CHECK(batch.exitCode == 1);
  CHECK_THAT(batch.err, Catch::Contains("a.safetensors: the run trained with batch 32 on 2000 samples; this one has "
                                        "batch 16 and 2000 samples, so it cannot continue it"));
  // A parameters-only file (no training position), written here by hand: header + one tensor.
  {
    std::string header = R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})";
    while ((8 + header.size()) % 8) header += ' ';
    uint64_t n = header.size();
    std::ofstream f(dir / "plain.safetensors", std::ios::binary);
    f.write(reinterpret_cast<const char *>(&n), 8);
    f << header;
    float v = 1;
    f.write(reinterpret_cast<const char *>(&v), 4);
  }
  auto plain = runMtlc("train m.mtl -q --resume plain.safetensors", dir.string());
  CHECK(plain.exitCode == 1);
  CHECK_THAT(plain.err, Catch::Contains("plain.safetensors: no training position in this checkpoint"));
}

TEST_CASE("a non-finite loss names the task, the step and the tensor where it first appeared") {
  auto dir = testDir("nonfinite");
  // One huge feature value: the squared error of that sample overflows float.
  {
    std::ofstream csv(dir / "big.csv");
    csv << "a,b,y\n";
    for (int i = 0; i < 64; ++i) csv << (i == 37 ? "1e30" : std::to_string(0.01 * i)) << ',' << 0.5 << ',' << 1 << '\n';
  }
  std::ofstream(dir / "m.mtl") << "model blowup\ninput x : f32[2]\nshared trunk = x -> dense(4)\n"
                                  "task y { trunk -> dense(1) loss mse }\n"
                                  "train { optimizer sgd(lr=0.01) batch 64 epochs 1 shuffle false }\n"
                                  "data { train csv(\"big.csv\") x = columns(0..1) y = y }\n";
  auto r = runMtlc("train m.mtl -q", dir.string());
  INFO(r.out << r.err);
  CHECK(r.exitCode == 1);
  CHECK_THAT(r.err, Catch::Contains("task `y` loss became infinite at step 1 (epoch 1)"));
  // The square overflows inside the loss's reduction: the loss node is the first non-finite tensor.
  CHECK_THAT(r.err, Catch::Contains("the first non-finite value of train_step is +Inf in %"));
  CHECK_THAT(r.err, Catch::Contains(" mse `y.loss` [] at element 0, whose operands (%"));
  CHECK_THAT(r.err, Catch::Contains(" bias_add `y.0` [n,1], %"));
}

TEST_CASE("a diverging run: the parameter that became non-finite is named; clip_grad_norm logs the norm") {
  auto dir = testDir("diverge");
  std::ofstream(dir / "m.mtl") << [] {
    std::string p = program("fixed", 1);
    return p.replace(p.find("adam(lr=0.005)"), 14, "sgd(lr=1e18)");
  }();
  auto r = runMtlc("train m.mtl -q", dir.string());
  INFO(r.out << r.err);
  CHECK(r.exitCode == 1);
  CHECK_THAT(r.err, Catch::Contains("loss became"));
  CHECK_THAT(r.err, Catch::Contains("at step 2 (epoch 1)") || Catch::Contains("at step 3 (epoch 1)"));
  CHECK_THAT(r.err, Catch::Contains("parameter `") || Catch::Contains("the first non-finite value of train_step"));

  std::ofstream(dir / "c.mtl") << program("fixed", 1, "  clip_grad_norm 0.5\n");
  auto c = runMtlc("train c.mtl -q --steps 20 --log c.jsonl", dir.string());
  INFO(c.out << c.err);
  REQUIRE(c.exitCode == 0);
  std::ifstream in(dir / "c.jsonl");
  int steps = 0, clipped = 0;
  for (std::string line; std::getline(in, line);) {
    auto j = nlohmann::json::parse(line);
    if (!j.contains("step")) continue;
    ++steps;
    REQUIRE(j.contains("grad_norm"));
    CHECK(j["grad_norm"].get<double>() > 0);
    clipped += j["grad_norm"].get<double>() > 0.5;
  }
  CHECK(steps == 20);
  CHECK(clipped > 0);  // the untrained model's gradients exceed 0.5
}
