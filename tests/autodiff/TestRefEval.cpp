// The reference interpreter against hand-computed values (the oracle is checked before it judges).
#include "RefEval.h"

#include "ir/Builder.h"

#include <catch2/catch.hpp>

#include <cmath>

using namespace mtlc;
using ir::Node;
using ir::OpKind;

namespace {

struct Fixture {
  ir::Function fn;
  ir::Builder b{fn};
  test::ref::Env env;
  ir::Type batched(std::vector<int64_t> d) { return ir::Type{std::move(d), true}; }
  Node *input(std::vector<int64_t> dims, std::vector<double> values) {
    env.inputs.push_back(std::move(values));
    return b.input((int)env.inputs.size() - 1, batched(std::move(dims)));
  }
  Node *param(std::vector<int64_t> shape, std::vector<double> values) {
    env.params.push_back(std::move(values));
    return b.param((int)env.params.size() - 1, std::move(shape));
  }
  Node *label(std::vector<int64_t> dims, std::vector<double> values) {
    env.labels.push_back(std::move(values));
    return b.label((int)env.labels.size() - 1, batched(std::move(dims)));
  }
  std::vector<double> eval(Node *n) { return test::ref::evaluate(fn, env, {n}).of(n); }
};

void requireNear(const std::vector<double> &got, const std::vector<double> &want) {
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    INFO("element " << i);
    CHECK(got[i] == Approx(want[i]).epsilon(1e-12).margin(1e-12));
  }
}

}  // namespace

TEST_CASE("reference: elementwise ops and losses", "[autodiff][ref]") {
  Fixture f;
  f.env.n = 1;
  Node *x = f.input({3}, {1.0, -0.5, 2.0});
  requireNear(f.eval(f.b.unary(OpKind::Gelu, x)), {0.8413447460685429, -0.15426876936299347, 1.9544997361036416});
  requireNear(f.eval(f.b.unary(OpKind::LeakyRelu, x, 0.1)), {1.0, -0.05, 2.0});
  requireNear(f.eval(f.b.unary(OpKind::Sigmoid, x)), {1 / (1 + std::exp(-1.0)), 1 / (1 + std::exp(0.5)), 1 / (1 + std::exp(-2.0))});
  // cross entropy of logits (1, -0.5, 2) with class 2: log(e + e^-.5 + e²) − 2
  Node *ce = f.b.loss(OpKind::CrossEntropy, x, f.label({1}, {2}));
  requireNear(f.eval(ce), {std::log(std::exp(1.0) + std::exp(-0.5) + std::exp(2.0)) - 2.0});
  Node *z = f.input({1}, {0.5});
  requireNear(f.eval(f.b.loss(OpKind::BCE, z, f.label({1}, {1}))), {std::log1p(std::exp(-0.5))});
  Node *t = f.label({3}, {0.0, 0.0, 1.0});
  requireNear(f.eval(f.b.loss(OpKind::MSE, x, t)), {(1 + 0.25 + 1) / 3.0});
  requireNear(f.eval(f.b.loss(OpKind::L1, x, t)), {(1 + 0.5 + 1) / 3.0});
}

TEST_CASE("reference: layernorm, conv, pools, matmul views", "[autodiff][ref]") {
  Fixture f;
  f.env.n = 1;
  // layernorm over [1,2,3,4]: mean 2.5, biased variance 1.25
  Node *v = f.input({4}, {1, 2, 3, 4});
  Node *ln = f.b.layerNorm(v, f.param({4}, {1, 1, 2, 1}), f.param({4}, {0, 0, 0, 1}), 0.0);
  double s = 1 / std::sqrt(1.25);
  requireNear(f.eval(ln), {-1.5 * s, -0.5 * s, 2 * 0.5 * s, 1.5 * s + 1});

  // a 3×3 image 1..9, a 2×2 kernel of ones
  Node *img = f.input({1, 3, 3}, {1, 2, 3, 4, 5, 6, 7, 8, 9});
  Node *ones = f.param({1, 1, 2, 2}, {1, 1, 1, 1});
  requireNear(f.eval(f.b.conv2d(img, ones, 1, 0)), {12, 16, 24, 28});
  requireNear(f.eval(f.b.conv2d(img, ones, 2, 1)), {1, 5, 11, 28});
  requireNear(f.eval(f.b.maxPool(img, 2, 1)), {5, 6, 8, 9});
  requireNear(f.eval(f.b.avgPool(img, 2, 1)), {3, 4, 6, 7});

  // matmul: batched a [n=2, 2] contracted over the batch with b [n=2, 3]
  Fixture g;
  g.env.n = 2;
  Node *a = g.input({2}, {1, 2, 3, 4});
  Node *bb = g.input({3}, {1, 0, 2, 0, 1, 1});
  requireNear(g.eval(g.b.matmul(a, bb, true, false)), {1, 3, 5, 2, 4, 8});  // aᵀ·b = [[1,3,5],[2,4,8]]
  Node *W = g.param({3, 2}, {1, 0, 0, 1, 1, 1});
  requireNear(g.eval(g.b.matmul(a, W, false, true)), {1, 2, 3, 3, 4, 7});   // a·Wᵀ
}

TEST_CASE("reference: batchnorm, global_avgpool, upsample", "[autodiff][ref]") {
  Fixture f;
  f.env.n = 2;
  // batchnorm over 2 channels of [2,1,2]: channel 0 holds {1,3 | 5,7}: mean 4, biased variance 5;
  // channel 1 holds {2,4 | 2,4}: mean 3, biased variance 1.
  Node *x = f.input({2, 1, 2}, {1, 3, 2, 4, 5, 7, 2, 4});
  Node *gamma = f.param({2}, {2, 1}), *beta = f.param({2}, {0, 0.5});
  Node *mean = f.param({2}, {1, 2}), *var = f.param({2}, {4, 1}), *count = f.param({}, {0});
  Node *bn = f.b.batchNorm(x, gamma, beta, mean, var, count, 0.0);
  double s = 2 / std::sqrt(5.0);
  requireNear(f.eval(bn), {-3 * s, -1 * s, -0.5, 1.5, 1 * s, 3 * s, -0.5, 1.5});
  // eval: the running statistics, eps 0: channel 0 (x − 1)/2·2, channel 1 (x − 2)/1 + 0.5
  requireNear(f.eval(f.b.batchNormEval(x, gamma, beta, mean, var, 0.0)), {0, 2, 0.5, 2.5, 4, 6, 0.5, 2.5});
  requireNear(f.eval(f.b.globalAvgPool(x)), {2, 3, 6, 3});

  // nn.Upsample's documented example: [[1, 2], [3, 4]] ×2
  Fixture g;
  g.env.n = 1;
  Node *img = g.input({1, 2, 2}, {1, 2, 3, 4});
  requireNear(g.eval(g.b.upsample(img, 2, ir::UpsampleMode::Nearest)),
              {1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4});
  requireNear(g.eval(g.b.upsample(img, 2, ir::UpsampleMode::Bilinear)),
              {1.00, 1.25, 1.75, 2.00, 1.50, 1.75, 2.25, 2.50, 2.50, 2.75, 3.25, 3.50, 3.00, 3.25, 3.75, 4.00});
}

TEST_CASE("reference: kink margins", "[autodiff][ref]") {
  Fixture f;
  f.env.n = 1;
  Node *x = f.input({4}, {0.5, -0.002, 3, 1});
  Node *r = f.b.unary(OpKind::Relu, x);
  auto values = test::ref::evaluate(f.fn, f.env, {r});
  CHECK(values.kink.margin == Approx(0.002));
  Node *img = f.input({1, 2, 2}, {1, 0.9995, 0.2, 0.3});
  Node *p = f.b.maxPool(img, 2, 2);
  values = test::ref::evaluate(f.fn, f.env, {p});
  CHECK(values.kink.margin == Approx(0.0005).epsilon(1e-6));
}
