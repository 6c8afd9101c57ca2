// global_avgpool and upsample (nearest, bilinear with align_corners=False) forward and backward
// against double loops written from PyTorch's definitions (nn.AdaptiveAvgPool2d(1),
// nn.Upsample), on non-square planes, scales 2 and 3, n < maxBatch, and on two threads; plus the
// worked example of nn.Upsample's documentation. Tolerance: 1e-6 relative + 1e-6 absolute.
#include "Harness.h"

#include <algorithm>
#include <cmath>
#include <tuple>

using namespace mtlc;
using namespace mtlc::test;

namespace {

using ir::UpsampleMode;

TEST_CASE("global_avgpool forward and backward", "[codegen][resample]") {
  for (auto [dims, n, threads] : {std::tuple{std::vector<int64_t>{3, 5, 4}, int64_t(4), 1},
                                  std::tuple{std::vector<int64_t>{32, 16, 16}, int64_t(5), 2}}) {
    Harness h(6);
    h.threads = threads;
    Node *x = h.input(dims);
    Node *y = h.b.globalAvgPool(x);
    Node *dy = h.input({dims[0]});
    Node *dx = h.b.globalAvgPoolBwd(dy, x->type);
    h.fillUniform(x, 1, 2);
    h.fillUniform(dy);
    h.run(n);
    const int64_t C = dims[0], P = dims[1] * dims[2];
    auto X = values(h, x), DY = values(h, dy);
    std::vector<double> Y(n * C, 0.0), DX(n * C * P);
    for (int64_t q = 0; q < n * C; ++q)
      for (int64_t p = 0; p < P; ++p) {
        Y[q] += X[q * P + p] / double(P);
        DX[q * P + p] = DY[q] / double(P);
      }
    requireClose(h.read(y), Y, 1e-6, 1e-6, "global_avgpool");
    requireClose(h.read(dx), DX, 1e-6, 1e-6, "global_avgpool_bwd");
  }
}

// Output index o of an axis of `in` values upsampled s times reads sources i0, i1 with weights
// w0, w1: nearest o/s with weight 1; bilinear from the source coordinate (o + ½)/s − ½ clamped at 0.
struct AxisTap {
  int64_t i0, i1;
  double w0, w1;
};
AxisTap axisTap(int64_t o, int64_t in, int64_t s, UpsampleMode mode) {
  if (mode == UpsampleMode::Nearest) return {o / s, o / s, 1, 0};
  double src = std::max((o + 0.5) / double(s) - 0.5, 0.0);
  int64_t i0 = int64_t(src), i1 = std::min(i0 + 1, in - 1);
  return {i0, i1, 1 - (src - double(i0)), src - double(i0)};
}

void checkUpsample(int64_t C, int64_t H, int64_t W, int64_t s, UpsampleMode mode, int64_t n, int threads) {
  INFO("C" << C << " H" << H << " W" << W << " x" << s << (mode == UpsampleMode::Bilinear ? " bilinear" : " nearest")
           << " n " << n << " threads " << threads);
  Harness h(6);
  h.threads = threads;
  Node *x = h.input({C, H, W});
  Node *y = h.b.upsample(x, s, mode);
  Node *dy = h.input(y->type.dims);
  Node *dx = h.b.upsampleBwd(dy, x->type, s, mode);
  h.fillUniform(x);
  h.fillUniform(dy);
  h.run(n);
  const int64_t OH = H * s, OW = W * s;
  auto X = values(h, x), DY = values(h, dy);
  std::vector<double> Y(n * C * OH * OW, 0.0), DX(n * C * H * W, 0.0);
  for (int64_t q = 0; q < n * C; ++q)
    for (int64_t oh = 0; oh < OH; ++oh)
      for (int64_t ow = 0; ow < OW; ++ow) {
        AxisTap th = axisTap(oh, H, s, mode), tw = axisTap(ow, W, s, mode);
        int64_t yi = (q * OH + oh) * OW + ow;
        for (auto [ih, wh] : {std::pair{th.i0, th.w0}, std::pair{th.i1, th.w1}})
          for (auto [iw, ww] : {std::pair{tw.i0, tw.w0}, std::pair{tw.i1, tw.w1}}) {
            int64_t xi = (q * H + ih) * W + iw;
            Y[yi] += wh * ww * X[xi];
            DX[xi] += wh * ww * DY[yi];
          }
      }
  requireClose(h.read(y), Y, 1e-6, 1e-6, "upsample");
  requireClose(h.read(dx), DX, 1e-6, 1e-6, "upsample_bwd");
}

TEST_CASE("upsample nearest and bilinear, scales 2 and 3, forward and backward", "[codegen][resample]") {
  for (UpsampleMode mode : {UpsampleMode::Nearest, UpsampleMode::Bilinear}) {
    checkUpsample(3, 5, 4, 2, mode, 4, 1);
    checkUpsample(2, 4, 7, 3, mode, 5, 1);
    checkUpsample(2, 1, 3, 2, mode, 2, 1);  // a single row: both taps are row 0
    checkUpsample(16, 16, 12, 2, mode, 5, 2);
  }
}

TEST_CASE("upsample bilinear: nn.Upsample's documented example", "[codegen][resample]") {
  // torch.nn.Upsample(scale_factor=2, mode='bilinear') of [[1, 2], [3, 4]] (align_corners=False).
  Harness h(1);
  Node *x = h.input({1, 2, 2});
  Node *y = h.b.upsample(x, 2, UpsampleMode::Bilinear);
  float *p = h.data(x);
  for (int i = 0; i < 4; ++i) p[i] = float(i + 1);
  h.run(1);
  requireClose(h.read(y), {1.00, 1.25, 1.75, 2.00, 1.50, 1.75, 2.25, 2.50,  //
                           2.50, 2.75, 3.25, 3.50, 3.00, 3.25, 3.75, 4.00},
               0, 1e-6, "documented example");
}

TEST_CASE("upsample and global_avgpool give bit-identical results on one and two threads", "[codegen][resample]") {
  std::vector<std::vector<double>> results[2];
  for (int threads : {1, 2}) {
    Harness h(6);
    h.threads = threads;
    Node *x = h.input({16, 24, 20});
    Node *dy = h.input({16, 48, 40});
    Node *up = h.b.upsample(x, 2, UpsampleMode::Bilinear);
    Node *down = h.b.upsampleBwd(dy, x->type, 2, UpsampleMode::Bilinear);
    Node *pooled = h.b.globalAvgPool(x);
    h.fillUniform(x);
    h.fillUniform(dy);
    h.run(5);
    results[threads - 1] = {h.read(up), h.read(down), h.read(pooled)};
  }
  for (size_t i = 0; i < results[0].size(); ++i) {
    INFO("result " << i);
    CHECK(results[0][i] == results[1][i]);
  }
}

}  // namespace
