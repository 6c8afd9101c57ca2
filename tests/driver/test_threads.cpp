// `mtlc train --threads N` end to end: a model wide enough that its GEMMs, epilogues and
// elementwise loops are split across the pool trains bit-identically with 1, 2 and 3 threads
// (same per-step losses in the log, same bytes in the saved checkpoint).
#include "Run.h"

#include <catch2/catch.hpp>

#include <random>

namespace {

// 1024 rows of 64 features, a 4-class label and a real value.
void writeWideData(const std::filesystem::path &dir) {
  std::mt19937 rng(11);
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  std::ofstream out(dir / "wide.csv");
  for (int c = 0; c < 64; ++c) out << "f" << c << ',';
  out << "kind,value\n";
  for (int i = 0; i < 1024; ++i) {
    double s = 0, v = 0;
    for (int c = 0; c < 64; ++c) {
      double x = u(rng);
      s += (c % 3 == 0 ? x : -0.5 * x);
      v += c < 8 ? x * x : 0;
      out << x << ',';
    }
    out << (s < -1 ? 0 : s < 0 ? 1 : s < 1 ? 2 : 3) << ',' << v << '\n';
  }
}

// Batch 128: the first layer is a 128×64·64×512 product (2^22 multiply-adds, split into tiles
// across threads), its bias + gelu epilogue 64K elements.
const char *kWide = R"(model wide
input x : f32[64]
shared trunk = x -> dense(512) -> gelu -> dense(256) -> relu
task kind  { trunk -> dense(4) loss cross_entropy metric accuracy }
task value { trunk -> dense(1) loss mse weight 0.5 }
train {
  optimizer sgd(lr=0.05, momentum=0.9)
  batch 128
  epochs 1
  seed 7
}
data {
  train csv("wide.csv")
  x     = columns(0..63)
  kind  = kind
  value = value
}
)";

}  // namespace

TEST_CASE("--threads N trains bit-identically for every N") {
  auto dir = testDir("train_threads");
  writeWideData(dir);
  std::ofstream(dir / "wide.mtl") << kWide;
  std::string firstLog, firstCheckpoint;
  for (int threads : {1, 2, 3}) {
    INFO("threads " << threads);
    std::string t = std::to_string(threads);
    auto r = runMtlc("train wide.mtl --steps 6 --threads " + t + " --save w" + t + ".safetensors --log w" + t +
                         ".jsonl -q",
                     dir.string());
    REQUIRE(r.exitCode == 0);
    CHECK_THAT(r.out, Catch::Contains(threads == 1 ? ", 1 thread; " : ", " + t + " threads; "));
    std::string log = slurp(dir / ("w" + t + ".jsonl")), checkpoint = slurp(dir / ("w" + t + ".safetensors"));
    REQUIRE(log.size() > 100);
    REQUIRE(checkpoint.size() > 4 * 64 * 512);
    if (threads == 1) {
      firstLog = log;
      firstCheckpoint = checkpoint;
      continue;
    }
    CHECK(log == firstLog);
    CHECK(checkpoint == firstCheckpoint);
  }
}

TEST_CASE("--threads takes a count from 0 (every CPU) up") {
  auto dir = testDir("train_threads_usage");
  std::ofstream(dir / "wide.mtl") << kWide;
  auto r = runMtlc("train wide.mtl --threads -2", dir.string());
  CHECK(r.exitCode == 2);
  CHECK_THAT(r.err, Catch::Contains("--threads"));
}
