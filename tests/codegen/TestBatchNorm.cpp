// batchnorm against double loops written from nn.BatchNorm's definition: the training forward
// (batch mean, biased variance) and its running-statistics update (momentum 0.1, unbiased
// variance, num_batches_tracked + 1) over two calls, the eval forward with running statistics,
// the data and γ gradients, over [C,H,W] channels and [F] features, with n < maxBatch and on two
// threads. Inputs have a mean far from 0 and channels of different scales, so centring matters.
// Tolerance: 1e-4 relative + 1e-5 absolute for values (float elementwise work after double
// statistics), 1e-6 relative for the running statistics.
#include "Harness.h"

#include <cmath>

using namespace mtlc;
using namespace mtlc::test;

namespace {

constexpr double kEps = 1e-5, kMomentum = 0.1;

struct Stats {
  std::vector<double> mean, var;  // per channel; biased variance
};

// Per channel (dims[0]) over n samples and the S positions of each.
Stats batchStats(const std::vector<double> &x, int64_t n, int64_t C, int64_t S) {
  Stats st{std::vector<double>(C, 0.0), std::vector<double>(C, 0.0)};
  for (int64_t c = 0; c < C; ++c) {
    for (int64_t s = 0; s < n; ++s)
      for (int64_t p = 0; p < S; ++p) st.mean[c] += x[(s * C + c) * S + p];
    st.mean[c] /= double(n * S);
    for (int64_t s = 0; s < n; ++s)
      for (int64_t p = 0; p < S; ++p) st.var[c] += std::pow(x[(s * C + c) * S + p] - st.mean[c], 2);
    st.var[c] /= double(n * S);
  }
  return st;
}

std::vector<double> normalize(const std::vector<double> &x, const std::vector<double> &mean,
                              const std::vector<double> &var, const std::vector<double> &gamma,
                              const std::vector<double> &beta, int64_t n, int64_t C, int64_t S) {
  std::vector<double> y(n * C * S);
  for (int64_t s = 0; s < n; ++s)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t p = 0; p < S; ++p) {
        int64_t i = (s * C + c) * S + p;
        y[i] = (x[i] - mean[c]) / std::sqrt(var[c] + kEps) * gamma[c] + beta[c];
      }
  return y;
}

// Shifts channel c of every sample by 3·c and scales it by 1 + c: channels differ.
void spreadChannels(Harness &h, const Node *x, int64_t C, int64_t S) {
  float *p = h.data(x);
  for (int64_t s = 0; s < h.module.maxBatch; ++s)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t q = 0; q < S; ++q) p[(s * C + c) * S + q] = p[(s * C + c) * S + q] * float(1 + c) + float(3 * c);
}

struct BatchNormNet {
  Node *x, *gamma, *beta, *mean, *var, *batches, *y;
};

BatchNormNet build(Harness &h, std::vector<int64_t> dims, bool training) {
  BatchNormNet net;
  int64_t C = dims[0];
  net.x = h.input(dims);
  net.gamma = h.param({C});
  net.beta = h.param({C});
  net.mean = h.param({C});
  net.var = h.param({C});
  net.batches = h.param({});
  for (size_t i = h.module.params.size() - 3; i < h.module.params.size(); ++i) h.module.params[i].state = true;
  net.y = training ? h.b.batchNorm(net.x, net.gamma, net.beta, net.mean, net.var, net.batches, kEps)
                   : h.b.batchNormEval(net.x, net.gamma, net.beta, net.mean, net.var, kEps);
  return net;
}

void fill(Harness &h, const BatchNormNet &net, int64_t C, int64_t S) {
  h.fillUniform(net.x, -1, 1);
  spreadChannels(h, net.x, C, S);
  h.fillUniform(net.gamma, 0.5, 1.5);
  h.fillUniform(net.beta);
  h.fillUniform(net.mean);
  h.fillUniform(net.var, 0.5, 1.5);
  h.data(net.batches)[0] = 4;
}

void checkTraining(std::vector<int64_t> dims, int64_t n1, int64_t n2, int threads) {
  INFO("dims " << dims.size() << "-D, C " << dims[0] << ", n " << n1 << " then " << n2 << ", threads " << threads);
  Harness h(6);
  h.threads = threads;
  BatchNormNet net = build(h, dims, true);
  const int64_t C = dims[0], S = net.x->type.elements() / C;
  fill(h, net, C, S);
  auto G = values(h, net.gamma), B = values(h, net.beta);
  std::vector<double> RM = values(h, net.mean), RV = values(h, net.var);
  double batches = 4;
  auto X = values(h, net.x);
  for (int64_t n : {n1, n2}) {
    h.run(n);
    Stats st = batchStats(X, n, C, S);
    requireClose(h.read(net.y), normalize(X, st.mean, st.var, G, B, n, C, S), 1e-4, 1e-5, "batchnorm");
    const double N = double(n * S);
    for (int64_t c = 0; c < C; ++c) {
      RM[c] = (1 - kMomentum) * RM[c] + kMomentum * st.mean[c];
      RV[c] = (1 - kMomentum) * RV[c] + kMomentum * st.var[c] * N / (N - 1);
    }
    batches += 1;
    requireClose(values(h, net.mean), RM, 1e-6, 1e-7, "running_mean");
    requireClose(values(h, net.var), RV, 1e-6, 1e-7, "running_var");
    CHECK(h.data(net.batches)[0] == float(batches));
  }
}

}  // namespace

TEST_CASE("batchnorm training over [C,H,W]: batch statistics, running statistics over two calls",
          "[codegen][batchnorm]") {
  checkTraining({3, 5, 4}, 4, 2, 1);
  checkTraining({3, 5, 4}, 1, 3, 1);  // one sample: the plane alone gives the statistics
}

TEST_CASE("batchnorm training over [F] features", "[codegen][batchnorm]") {
  checkTraining({7}, 5, 3, 1);
}

TEST_CASE("batchnorm training split across channels on two threads", "[codegen][batchnorm]") {
  checkTraining({16, 24, 24}, 5, 3, 2);  // n·C·H·W above the split threshold
}

TEST_CASE("batchnorm training with one value per channel leaves the state alone", "[codegen][batchnorm]") {
  // PyTorch refuses such a batch; its unbiased variance is undefined. y is β (x − mean = 0), up to
  // the rounding of x·scale + shift in float with scale = γ/√eps ≈ 316·γ: 1e-3 absolute.
  Harness h(4);
  BatchNormNet net = build(h, {5}, true);
  fill(h, net, 5, 1);
  auto M = values(h, net.mean), V = values(h, net.var), B = values(h, net.beta);
  h.run(1);
  requireClose(h.read(net.y), B, 0, 1e-3, "batchnorm of one value");
  requireClose(values(h, net.mean), M, 0, 0, "running_mean");
  requireClose(values(h, net.var), V, 0, 0, "running_var");
  CHECK(h.data(net.batches)[0] == 4.f);
}

TEST_CASE("batchnorm eval uses the running statistics and changes no state", "[codegen][batchnorm]") {
  for (std::vector<int64_t> dims : {std::vector<int64_t>{3, 5, 4}, std::vector<int64_t>{6}}) {
    Harness h(6);
    BatchNormNet net = build(h, dims, false);
    const int64_t C = dims[0], S = net.x->type.elements() / C;
    fill(h, net, C, S);
    auto X = values(h, net.x), M = values(h, net.mean), V = values(h, net.var);
    h.run(4);
    requireClose(h.read(net.y), normalize(X, M, V, values(h, net.gamma), values(h, net.beta), 4, C, S), 1e-5,
                 1e-6, "batchnorm_eval");
    requireClose(values(h, net.mean), M, 0, 0, "running_mean");
    requireClose(values(h, net.var), V, 0, 0, "running_var");
    CHECK(h.data(net.batches)[0] == 4.f);
  }
}

// dx = (γ·rstd / N)·(N·dy − Σdy − x̂·Σ(dy·x̂)), dγ = Σ dy·x̂, dβ = Σ dy, per channel over the batch:
// batchnorm_bwd_stats' one reduction pass, batchnorm_bwd_data's one elementwise pass.
void checkBackward(std::vector<int64_t> dims, int64_t n, int threads) {
  INFO("dims " << dims.size() << "-D, C " << dims[0] << ", n " << n << ", threads " << threads);
  Harness h(6);
  h.threads = threads;
  const int64_t C = dims[0];
  Node *x = h.input(dims), *dy = h.input(dims), *gamma = h.param({C});
  Node *stats = h.b.batchNormBwdStats(x, dy, kEps);
  Node *dx = h.b.batchNormBwdData(x, gamma, dy, stats, kEps);
  Node *dgamma = h.b.batchNormBwdParam(stats, ir::Builder::kBatchNormDGammaRow);
  Node *dbeta = h.b.batchNormBwdParam(stats, ir::Builder::kBatchNormDBetaRow);
  const int64_t S = x->type.elements() / C;
  h.fillUniform(x);
  spreadChannels(h, x, C, S);
  h.fillUniform(dy);
  h.fillUniform(gamma, 0.5, 1.5);
  h.run(n);
  auto X = values(h, x), DY = values(h, dy), G = values(h, gamma);
  Stats st = batchStats(X, n, C, S);
  std::vector<double> DX(n * C * S), DG(C, 0.0), DB(C, 0.0);
  const double N = double(n * S);
  for (int64_t c = 0; c < C; ++c) {
    double rstd = 1 / std::sqrt(st.var[c] + kEps), sumDy = 0, sumDyXhat = 0;
    auto xhat = [&](int64_t i) { return (X[i] - st.mean[c]) * rstd; };
    for (int64_t s = 0; s < n; ++s)
      for (int64_t p = 0; p < S; ++p) {
        int64_t i = (s * C + c) * S + p;
        sumDy += DY[i];
        sumDyXhat += DY[i] * xhat(i);
      }
    DG[c] = sumDyXhat;
    DB[c] = sumDy;
    for (int64_t s = 0; s < n; ++s)
      for (int64_t p = 0; p < S; ++p) {
        int64_t i = (s * C + c) * S + p;
        DX[i] = G[c] * rstd / N * (N * DY[i] - sumDy - xhat(i) * sumDyXhat);
      }
  }
  requireClose(h.read(dx), DX, 1e-4, 1e-5, "batchnorm_bwd_data");
  requireClose(h.read(dgamma), DG, 1e-4, 1e-5, "dγ");
  requireClose(h.read(dbeta), DB, 1e-4, 1e-5, "dβ");
}

TEST_CASE("batchnorm gradients over [C,H,W] and [F]", "[codegen][batchnorm]") {
  checkBackward({3, 5, 4}, 4, 1);
  checkBackward({3, 5, 4}, 1, 1);
  checkBackward({9}, 5, 1);
  checkBackward({16, 24, 24}, 5, 2);
}

TEST_CASE("batchnorm kernels give bit-identical results on one and two threads", "[codegen][batchnorm]") {
  // Channels are split across threads, each channel's sums run in one fixed order.
  std::vector<std::vector<double>> results[2];
  for (int threads : {1, 2}) {
    Harness h(6);
    h.threads = threads;
    BatchNormNet net = build(h, {16, 24, 24}, true);
    Node *dy = h.input({16, 24, 24});
    Node *stats = h.b.batchNormBwdStats(net.x, dy, kEps);
    Node *dx = h.b.batchNormBwdData(net.x, net.gamma, dy, stats, kEps);
    Node *dgamma = h.b.batchNormBwdParam(stats, ir::Builder::kBatchNormDGammaRow);
    fill(h, net, 16, 24 * 24);
    h.fillUniform(dy);
    h.run(5);
    results[threads - 1] = {h.read(net.y), h.read(dx), h.read(dgamma), values(h, net.mean), values(h, net.var)};
  }
  for (size_t i = 0; i < results[0].size(); ++i) {
    INFO("result " << i);
    CHECK(results[0][i] == results[1][i]);
  }
}
