// Parameter initialisation: bounds, constants, determinism.
#include "TestUtil.h"

#include "runtime/train/Init.h"
#include "runtime/core/Rng.h"

#include <cmath>

using namespace mtlc::rt;

namespace {

ModelSpec spec() {
  ModelSpec s;
  auto add = [&](std::string name, std::vector<int64_t> shape, Init init, int64_t fanIn) {
    ParamSpec p;
    p.name = std::move(name);
    p.shape = shape;
    p.size = 1;
    for (int64_t d : shape) p.size *= d;
    p.offset = s.paramCount;
    p.init = init;
    p.fanIn = fanIn;
    s.paramCount += p.size;
    s.params.push_back(p);
  };
  add("trunk.0.weight", {64, 100}, Init::UniformFanIn, 100);
  add("trunk.0.bias", {64}, Init::UniformFanIn, 100);
  add("trunk.2.weight", {64}, Init::Ones, 1);
  add("trunk.2.bias", {64}, Init::Zeros, 1);
  add("head.0.weight", {3, 64}, Init::UniformFanIn, 64);
  return s;
}

}  // namespace

TEST_CASE("init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)), ones, zeros; deterministic", "[init]") {
  ModelSpec s = spec();
  std::vector<float> a(s.paramCount, 7.0f), b(s.paramCount), c(s.paramCount);
  initParams(s, 42, a.data());
  initParams(s, 42, b.data());
  initParams(s, 43, c.data());
  CHECK(a == b);
  CHECK(a != c);

  auto check = [&](const ParamSpec& p, double bound) {
    double lo = 1e9, hi = -1e9, mean = 0;
    for (int64_t i = 0; i < p.size; ++i) {
      double v = a[p.offset + i];
      lo = std::min(lo, v), hi = std::max(hi, v), mean += v;
    }
    mean /= double(p.size);
    CHECK(lo >= -bound);
    CHECK(hi <= bound);
    // Spread over the whole interval (6400 draws: the extremes are within 1% of the bounds).
    if (p.size > 1000) {
      CHECK(lo < -0.99 * bound);
      CHECK(hi > 0.99 * bound);
      CHECK(std::fabs(mean) < 0.05 * bound);
    }
  };
  check(s.params[0], 0.1);
  check(s.params[1], 0.1);
  check(s.params[4], 0.125);
  for (int64_t i = 0; i < 64; ++i) {
    CHECK(a[s.params[2].offset + i] == 1.0f);
    CHECK(a[s.params[3].offset + i] == 0.0f);
  }
  // The first weight is the first draw of mt19937_64(42) mapped to [-0.1, 0.1).
  Rng rng(42);
  CHECK(a[0] == float(-0.1 + 0.2 * uniform01(rng)));
}

TEST_CASE("init: N(0,1) for embeddings, the cross-stitch mixing matrix", "[init]") {
  ModelSpec s;
  ParamSpec emb;
  emb.name = "emb.0.weight";
  emb.shape = {100, 50};
  emb.size = 5000;
  emb.init = Init::Normal;
  ParamSpec cs;
  cs.name = "cs.0.weight";
  cs.shape = {3, 3};
  cs.offset = 5000;
  cs.size = 9;
  cs.init = Init::CrossStitch;
  s.params = {emb, cs};
  s.paramCount = 5009;
  std::vector<float> w(s.paramCount);
  initParams(s, 1, w.data());
  double mean = 0, sq = 0;
  for (int i = 0; i < 5000; ++i) mean += w[i], sq += double(w[i]) * w[i];
  mean /= 5000;
  const double sd = std::sqrt(sq / 5000 - mean * mean);
  CHECK(std::fabs(mean) < 0.05);  // 5000 draws: the standard error is 0.014
  CHECK(sd == Approx(1.0).margin(0.05));
  const float o = 0.05f;
  CHECK(std::vector<float>(w.begin() + 5000, w.end()) == std::vector<float>{0.9f, o, o, o, 0.9f, o, o, o, 0.9f});
}
