// Max and average pooling forward and backward against double loops: k = 2 and 3, strides equal
// to and smaller than k (overlapping windows accumulate in the backward pass), non-square inputs,
// and ties (first maximum wins, like PyTorch). Tolerance: 1e-6 relative + 1e-6 absolute.
#include "Harness.h"

#include <cmath>

using namespace mtlc;
using namespace mtlc::test;

namespace {

void checkPool(int64_t C, int64_t H, int64_t W, int64_t k, int64_t stride, int64_t n,
               bool ties, const std::string &target = "") {
  INFO("C" << C << " H" << H << " W" << W << " k" << k << " stride " << stride << " n " << n
            << (ties ? " with ties" : "") << " target " << (target.empty() ? "host" : target));
  Harness h(5);
  h.options.target = target;
  Node *x = h.input({C, H, W});
  Node *mx = h.b.maxPool(x, k, stride);
  Node *av = h.b.avgPool(x, k, stride);
  Node *dy = h.input(mx->type.dims);
  Node *dxMax = h.b.maxPoolBwd(x, dy, k, stride);
  Node *dxAvg = h.b.avgPoolBwd(dy, x->type, k, stride);
  h.fillUniform(x);
  h.fillUniform(dy);
  if (ties) {  // few distinct values: many windows hold their maximum more than once
    float *p = h.data(x);
    for (int64_t i = 0; i < 5 * x->type.elements(); ++i) p[i] = std::round(p[i] * 2) / 2;
  }
  h.run(n);

  int64_t OH = mx->type.dims[1], OW = mx->type.dims[2];
  auto X = values(h, x), DY = values(h, dy);
  std::vector<double> MX, AV, DXM(n * C * H * W, 0.0), DXA(n * C * H * W, 0.0);
  for (int64_t q = 0; q < n * C; ++q)
    for (int64_t oh = 0; oh < OH; ++oh)
      for (int64_t ow = 0; ow < OW; ++ow) {
        double best = -INFINITY, sum = 0;
        int64_t bestAt = -1;
        for (int64_t kh = 0; kh < k; ++kh)
          for (int64_t kw = 0; kw < k; ++kw) {
            int64_t at = (q * H + oh * stride + kh) * W + ow * stride + kw;
            if (X[at] > best) best = X[at], bestAt = at;  // strict: the first maximum wins
            sum += X[at];
          }
        MX.push_back(best);
        AV.push_back(sum / double(k * k));
        double g = DY[(q * OH + oh) * OW + ow];
        DXM[bestAt] += g;
        for (int64_t kh = 0; kh < k; ++kh)
          for (int64_t kw = 0; kw < k; ++kw)
            DXA[(q * H + oh * stride + kh) * W + ow * stride + kw] += g / double(k * k);
      }
  requireClose(h.read(mx), MX, 0, 0, "maxpool");
  requireClose(h.read(av), AV, 1e-6, 1e-6, "avgpool");
  requireClose(h.read(dxMax), DXM, 1e-6, 1e-6, "maxpool_bwd");
  requireClose(h.read(dxAvg), DXA, 1e-6, 1e-6, "avgpool_bwd");
}

}  // namespace

TEST_CASE("pooling: k = 2, stride 2, odd extents drop the last row/column", "[codegen][pool]") {
  checkPool(3, 7, 9, 2, 2, 4, false);
}

TEST_CASE("pooling: k = 3, stride 2 (overlapping windows), non-square", "[codegen][pool]") {
  checkPool(2, 9, 6, 3, 2, 5, false);
  checkPool(4, 5, 8, 3, 1, 2, false);
}

TEST_CASE("maxpool: ties go to the first maximum in the window", "[codegen][pool]") {
  checkPool(2, 6, 6, 2, 2, 3, true);
  checkPool(2, 7, 7, 3, 2, 3, true);
}

TEST_CASE("pooling: windows that tile their rows run as vectors (k = stride = 2, 3, 4)", "[codegen][pool]") {
  for (const char *target : {"", "avx2", "zen-avx2", "generic"}) {
    checkPool(2, 26, 26, 2, 2, 3, false, target);   // exact tiling (the flagship's maxpool)
    checkPool(2, 9, 70, 2, 2, 2, false, target);    // 35 outputs per row: several vectors
    checkPool(2, 10, 50, 3, 3, 2, true, target);    // leftover row and columns, ties
    checkPool(1, 9, 37, 4, 4, 2, false, target);
    checkPool(3, 6, 23, 2, 2, 2, true, target);     // rows of 11 outputs, a leftover column, ties
    checkPool(2, 4, 10, 2, 2, 3, false, target);    // rows of 5
    checkPool(2, 7, 7, 2, 2, 2, true, target);      // rows of 3, ties
  }
}
