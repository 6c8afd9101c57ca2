// `train { precision bf16 }` through the real binary on the flagship (examples/fashion.mtl): the
// per-step losses of 30 steps stay within 1e-2 relative of fp32's (bf16 operands carry 8 bits of
// mantissa, about 4e-3 relative per operand; the fp32 master weights keep the runs together over
// a few steps), and differ from them (the products did run in bf16). On a CPU without AVX-512
// BF16 (simulated with MTLC_TARGET_CPU=skylake-avx512) mtlc notes the fallback once and trains
// exactly as fp32 does.
#include "Run.h"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <cmath>

namespace {

// The flagship program with `precision P` added to its train block, written beside the tests' files.
std::string flagship(const std::string &precision) {
  std::string text = slurp(example("fashion.mtl"));
  const std::string at = "train {\n";
  text.insert(text.find(at) + at.size(), "  precision " + precision + "\n");
  return writeFile("fashion_" + precision + ".mtl", text);
}

// The total loss of every step of `mtlc train FILE --steps 30 --threads 1`.
std::vector<double> stepLosses(const std::string &file, const std::string &env, RunResult &run) {
  auto log = testDir("precision") / (std::filesystem::path(file).stem().string() + ".jsonl");
  run = runMtlc("train '" + file + "' --steps 30 --threads 1 --quiet --log '" + log.string() + "'", ".", env);
  std::vector<double> losses;
  std::istringstream in(slurp(log));
  for (std::string line; std::getline(in, line);) {
    auto j = nlohmann::json::parse(line);
    if (j.contains("step") && j.contains("loss")) losses.push_back(j["loss"].get<double>());
  }
  return losses;
}

size_t count(const std::string &text, const std::string &what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

const std::string kNote = "note: precision bf16: this CPU has no AVX-512 BF16";

}  // namespace

TEST_CASE("precision bf16 trains the flagship within 1e-2 of fp32's losses") {
  RunResult fp32Run, bf16Run;
  auto fp32 = stepLosses(flagship("fp32"), "", fp32Run);
  auto bf16 = stepLosses(flagship("bf16"), "", bf16Run);
  REQUIRE(fp32Run.exitCode == 0);
  REQUIRE(bf16Run.exitCode == 0);
  REQUIRE(fp32.size() == 30);
  REQUIRE(bf16.size() == 30);
  if (bf16Run.err.find(kNote) != std::string::npos) {
    WARN("skipped: this CPU has no AVX-512 BF16, `precision bf16` runs in fp32");
    return;
  }
  bool differ = false;
  for (size_t i = 0; i < fp32.size(); ++i) {
    INFO("step " << i + 1 << ": fp32 " << fp32[i] << ", bf16 " << bf16[i]);
    CHECK(std::fabs(bf16[i] - fp32[i]) <= 1e-2 * std::fabs(fp32[i]));
    differ |= bf16[i] != fp32[i];
  }
  CHECK(differ);
}

TEST_CASE("precision bf16 without AVX-512 BF16: one note, then fp32") {
  // Skylake-SP has AVX-512 but not its BF16 extension; its code runs on any later AVX-512 CPU.
  const std::string env = "MTLC_TARGET_CPU=skylake-avx512";
  RunResult fp32Run, bf16Run;
  auto fp32 = stepLosses(flagship("fp32"), env, fp32Run);
  auto bf16 = stepLosses(flagship("bf16"), env, bf16Run);
  REQUIRE(fp32Run.exitCode == 0);
  REQUIRE(bf16Run.exitCode == 0);
  CHECK(count(bf16Run.err, kNote) == 1);
  CHECK(count(fp32Run.err, "note: precision") == 0);
  CHECK(bf16 == fp32);
  CHECK(bf16.size() == 30);
}
