// `mtlc train --seeds N` through the real binary: each run is the plain run of its seed, the files
// get per-seed names, and the summary is the mean ± sample standard deviation of the runs'.
#include "Run.h"
#include "driver/Seeds.h"

#include <catch2/catch.hpp>

#include <cmath>
#include <regex>
#include <sstream>
#include <vector>

namespace fs = std::filesystem;

TEST_CASE("seedPath puts .seedS before the extension") {
  using mtlc::driver::seedPath;
  CHECK(seedPath("run.jsonl", 7) == "run.seed7.jsonl");
  CHECK(seedPath("out/m.safetensors", 12) == "out/m.seed12.safetensors");
  CHECK(seedPath("out.d/run", 3) == "out.d/run.seed3");
  CHECK(seedPath(".log", 1) == ".log.seed1");
  CHECK(seedPath("", 1).empty());
}

TEST_CASE("meanAndStd is the sample standard deviation (n - 1)") {
  using mtlc::driver::meanAndStd;
  auto [m, s] = meanAndStd({1.0, 2.0, 6.0});
  CHECK(m == Approx(3.0));
  CHECK(s == Approx(std::sqrt(7.0)));  // ((4 + 1 + 9) / 2)^½
  CHECK(meanAndStd({5.0}).second == 0.0);
  CHECK(std::isnan(meanAndStd({}).first));
}

TEST_CASE("--seeds 3 --single-task: three runs, per-seed files, mean ± std of the runs' Δm") {
  auto dir = testDir("seeds");
  for (const auto &e : fs::directory_iterator(dir)) fs::remove_all(e.path());
  const std::string model = example("tabular.mtl");
  auto r = runMtlc("train --epochs 1 --quiet --seed 5 --seeds 3 --single-task --log run.jsonl --save m.safetensors '" +
                       model + "'",
                   dir.string());
  INFO(r.out << r.err);
  REQUIRE(r.exitCode == 0);
  for (int s : {5, 6, 7}) {
    CHECK(r.out.find("seed " + std::to_string(s) + " (run " + std::to_string(s - 4) + " of 3)") != std::string::npos);
    CHECK(fs::exists(dir / ("run.seed" + std::to_string(s) + ".jsonl")));
    CHECK(fs::exists(dir / ("m.seed" + std::to_string(s) + ".safetensors")));
  }
  CHECK(!fs::exists(dir / "run.jsonl"));
  CHECK(r.out.find("over 3 seeds (5…7)") != std::string::npos);

  // Each run's own Δm line, then the summary's mean ± std of them.
  std::vector<double> each;
  std::regex line(R"(^Δm ([+-][0-9.]+)% (\(|± ([0-9.]+)%))");
  std::istringstream in(r.out);
  std::string text;
  double mean = NAN, sd = NAN;
  while (std::getline(in, text)) {
    std::smatch m;
    if (!std::regex_search(text, m, line)) continue;
    if (m[2] == "(") each.push_back(std::stod(m[1]));
    else mean = std::stod(m[1]), sd = std::stod(m[3]);
  }
  REQUIRE(each.size() == 3);
  const auto [wantMean, wantSd] = mtlc::driver::meanAndStd(each);
  CHECK(mean == Approx(wantMean).margin(2e-4));
  CHECK(sd == Approx(wantSd).margin(2e-4));
  CHECK(wantSd > 0);  // the seeds made a difference

  // Run 2 is exactly `mtlc train --seed 6`: the same log, byte for byte.
  auto alone = runMtlc("train --epochs 1 --quiet --seed 6 --log alone.jsonl '" + model + "'", dir.string());
  REQUIRE(alone.exitCode == 0);
  CHECK(slurp(dir / "alone.jsonl") == slurp(dir / "run.seed6.jsonl"));
}

TEST_CASE("--seeds starts at the program's seed without --seed") {
  auto dir = testDir("seeds_program");
  auto r = runMtlc("train --epochs 1 --quiet --seeds 2 '" + example("tabular.mtl") + "'", dir.string());
  INFO(r.out << r.err);
  REQUIRE(r.exitCode == 0);
  CHECK(r.out.find("seed 7 (run 1 of 2)") != std::string::npos);  // tabular.mtl's `seed 7`
  CHECK(r.out.find("over 2 seeds (7…8): test metrics") != std::string::npos);
  const size_t summary = r.out.find("over 2 seeds");
  REQUIRE(summary != std::string::npos);
  CHECK(std::regex_search(r.out.substr(summary), std::regex(R"(\ncls +accuracy +[0-9.]+ ± [0-9.e-]+)")));
}

TEST_CASE("--seeds: a count below 1 and --resume are refused, naming the option") {
  const std::string model = example("tabular.mtl");
  auto zero = runMtlc("train --seeds 0 '" + model + "'");
  CHECK(zero.exitCode == 2);
  CHECK_THAT(zero.err, Catch::Contains("--seeds"));
  CHECK_THAT(zero.err, Catch::Contains("got 0"));
  auto word = runMtlc("train --seeds three '" + model + "'");
  CHECK(word.exitCode == 2);
  CHECK_THAT(word.err, Catch::Contains("--seeds"));
  auto resume = runMtlc("train --seeds 2 --resume '" + model + "' '" + model + "'");
  CHECK(resume.exitCode == 2);
  CHECK_THAT(resume.err, Catch::Contains("--seeds with --resume"));
}
