// conv2d (NCHW, PyTorch semantics) and its two gradients against direct double loops, on
// non-square inputs, several channels, strides 1 and 2, padding 0 and 1, batch n < maxBatch.
// Tolerance: 1e-5 relative + 1e-5 absolute.
#include "Harness.h"

#include <array>

using namespace mtlc;
using namespace mtlc::test;

namespace {

struct Geometry {
  int64_t C, H, W, O, KH, KW, stride, pad;
  int64_t OH() const { return (H + 2 * pad - KH) / stride + 1; }
  int64_t OW() const { return (W + 2 * pad - KW) / stride + 1; }
};

// Visits every (s, o, c, oh, ow, kh, kw) whose input tap (ih, iw) is inside the image.
template <typename Fn>
void forEachTap(const Geometry &g, int64_t n, Fn fn) {
  for (int64_t s = 0; s < n; ++s)
    for (int64_t o = 0; o < g.O; ++o)
      for (int64_t c = 0; c < g.C; ++c)
        for (int64_t oh = 0; oh < g.OH(); ++oh)
          for (int64_t ow = 0; ow < g.OW(); ++ow)
            for (int64_t kh = 0; kh < g.KH; ++kh)
              for (int64_t kw = 0; kw < g.KW; ++kw) {
                int64_t ih = oh * g.stride - g.pad + kh, iw = ow * g.stride - g.pad + kw;
                if (ih < 0 || ih >= g.H || iw < 0 || iw >= g.W) continue;
                int64_t xi = ((s * g.C + c) * g.H + ih) * g.W + iw;
                int64_t yi = ((s * g.O + o) * g.OH() + oh) * g.OW() + ow;
                int64_t wi = ((o * g.C + c) * g.KH + kh) * g.KW + kw;
                fn(xi, yi, wi);
              }
}

// One check's nodes: a layer y = f(x, w) and the gradients dx, dw it gets from dy.
struct ConvNodes {
  Node *x, *w, *y, *dy, *dx, *dw;
};

// Fills x, w and dy, runs n samples and checks y, dx and dw against double sums over the taps of
// the convolution g: conv2d reads x at g's input side (y[out] += x[in]·w); conv_transpose2d
// (`transposed`) is the same relation with x at g's output side (y[in] += x[out]·w).
void checkTaps(Harness &h, const Geometry &g, int64_t n, const ConvNodes &c, bool transposed,
               const std::array<const char *, 3> &names) {
  h.fillUniform(c.x);
  h.fillUniform(c.w);
  h.fillUniform(c.dy);
  h.run(n);
  auto X = values(h, c.x), Wt = values(h, c.w), DY = values(h, c.dy);
  std::vector<double> Y(n * c.y->type.elements()), DX(n * c.x->type.elements()), DW(Wt.size());
  forEachTap(g, n, [&](int64_t in, int64_t out, int64_t wi) {
    int64_t xi = transposed ? out : in, yi = transposed ? in : out;
    Y[yi] += X[xi] * Wt[wi];
    DX[xi] += DY[yi] * Wt[wi];
    DW[wi] += DY[yi] * X[xi];
  });
  requireClose(h.read(c.y), Y, 1e-5, 1e-5, names[0]);
  requireClose(h.read(c.dx), DX, 1e-5, 1e-5, names[1]);
  requireClose(h.read(c.dw), DW, 1e-5, 1e-5, names[2]);
}

void checkConvOn(const Geometry &g, int64_t n, const char *target) {
  INFO("C" << g.C << " H" << g.H << " W" << g.W << " O" << g.O << " k" << g.KH << "x" << g.KW
            << " stride " << g.stride << " pad " << g.pad << " n " << n << " target "
            << (*target ? target : "host"));
  Harness h(6);
  h.options.target = target;
  Node *x = h.input({g.C, g.H, g.W});
  Node *w = h.param({g.O, g.C, g.KH, g.KW});
  Node *y = h.b.conv2d(x, w, g.stride, g.pad);
  Node *dy = h.input({g.O, g.OH(), g.OW()});
  Node *dx = h.b.conv2dBwdData(dy, w, x->type, g.stride, g.pad);
  Node *dw = h.b.conv2dBwdFilter(x, dy, w->type, g.stride, g.pad);
  REQUIRE(y->type == dy->type);
  checkTaps(h, g, n, {x, w, y, dy, dx, dw}, false, {"conv2d", "conv2d_bwd_data", "conv2d_bwd_filter"});
}

// On the host's vectors and on the narrower targets' (AVX2, AVX2 with the Zen mask checks, the
// 4-lane generic form): the stride-1 column copies run in whole vectors, masked at the edges.
void checkConv(const Geometry &g, int64_t n) {
  for (const char *target : {"", "avx2", "zen-avx2", "generic"}) checkConvOn(g, n, target);
}

}  // namespace

TEST_CASE("conv2d forward and gradients: stride 1, no padding", "[codegen][conv]") {
  checkConv({3, 9, 7, 4, 3, 3, 1, 0}, 5);
}

TEST_CASE("conv2d forward and gradients: stride 2, padding 1, non-square", "[codegen][conv]") {
  checkConv({2, 11, 8, 5, 3, 3, 2, 1}, 4);
  checkConv({3, 7, 10, 2, 3, 2, 2, 1}, 6);  // non-square kernel, full batch
}

TEST_CASE("conv2d: single channel, 1×1 and 5×5 kernels", "[codegen][conv]") {
  checkConv({1, 6, 5, 3, 1, 1, 1, 0}, 2);
  checkConv({2, 8, 9, 3, 5, 5, 1, 2}, 3);
  checkConv({2, 5, 5, 2, 4, 4, 3, 2}, 1);  // padding reaches whole rows
}

// Few taps at stride 1 run the direct forward kernel (EmitConvDirect.cpp): rows as wide as a
// vector, wider (an overlapping last vector), narrower (half and quarter vectors); padding; 27
// taps (the most) and 28 (the GEMM again); on every target's vector width.
TEST_CASE("conv2d: few input channels, stride 1 (direct forward)", "[codegen][conv]") {
  for (const char *target : {"", "avx512", "avx2", "generic"}) {
    INFO("target " << (*target ? target : "host"));
    checkConvOn({1, 28, 28, 32, 3, 3, 1, 0}, 3, target);  // the flagship's first layer: rows of 26
    checkConvOn({1, 28, 28, 16, 3, 3, 1, 1}, 6, target);  // resnet_fashion's stem: padded, rows of 28
    checkConvOn({1, 18, 18, 5, 3, 3, 1, 0}, 2, target);   // rows of 16
    checkConvOn({1, 7, 13, 3, 3, 3, 1, 1}, 4, target);    // padded, rows of 13
    checkConvOn({2, 6, 9, 3, 2, 3, 1, 0}, 2, target);     // rows of 7
    checkConvOn({3, 5, 6, 4, 3, 3, 1, 1}, 3, target);     // 27 taps, rows of 6
    checkConvOn({7, 5, 9, 2, 2, 2, 1, 0}, 2, target);     // 28 taps: im2col and GEMM
    checkConvOn({1, 6, 5, 3, 3, 3, 1, 0}, 2, target);     // rows of 3: narrower than 4 lanes
  }
}

TEST_CASE("conv2d: the ResNet geometries (7×7 stem, same-size 3×3, strided 1×1 shortcut)", "[codegen][conv]") {
  checkConv({3, 20, 17, 8, 7, 7, 2, 3}, 3);  // stem: 7×7, stride 2, padding 3
  checkConv({3, 9, 8, 4, 7, 7, 1, 3}, 2);    // 7×7 "same"
  checkConv({4, 9, 8, 6, 3, 3, 1, 1}, 4);    // 3×3 "same"
  checkConv({4, 9, 7, 6, 3, 3, 2, 1}, 2);    // 3×3, stride 2: a stage's first block, odd extents
  checkConv({4, 9, 7, 6, 1, 1, 2, 0}, 3);    // its 1×1 stride-2 projection shortcut
}

TEST_CASE("conv2d: planes wider than one GEMM column tile, pointwise", "[codegen][conv]") {
  checkConv({2, 24, 25, 3, 3, 3, 1, 1}, 2);  // OH·OW = 600
  checkConv({3, 24, 23, 4, 1, 1, 1, 0}, 3);  // 1×1: no column matrix, OH·OW = 552
}

TEST_CASE("conv2d: stride-1 rows of several vectors, padding wider than the taps", "[codegen][conv]") {
  checkConv({3, 6, 37, 5, 3, 3, 1, 1}, 3);   // OW = 37: two whole vectors and a partial one
  checkConv({2, 5, 18, 3, 3, 3, 1, 3}, 2);   // padding 3 > 2: whole rows and columns of padding
  checkConv({2, 7, 33, 4, 3, 5, 1, 2}, 3);   // non-square kernel, OW = 33
  checkConv({16, 7, 7, 16, 3, 3, 1, 1}, 2);  // many channels, rows shorter than a vector
}

TEST_CASE("conv2d: stride-2 rows of several vectors", "[codegen][conv]") {
  checkConv({2, 9, 40, 3, 3, 3, 2, 1}, 3);   // OW = 20: a whole vector and a partial one
  checkConv({3, 8, 37, 4, 1, 1, 2, 0}, 2);   // 1×1 projection, OW = 19
  checkConv({2, 6, 35, 3, 5, 3, 2, 2}, 2);   // non-square kernel, padding 2, OW = 18
  checkConv({2, 5, 12, 2, 3, 3, 2, 3}, 2);   // padding 3 > 2: whole padded rows and columns
}

namespace {

// conv_transpose2d (nn.ConvTranspose2d): x[C,H,W], w[C,O,KH,KW]; every input element scatters
// x·w onto the output at (ih·stride − pad + kh, iw·stride − pad + kw) when that lies inside: the
// taps of the convolution from the output back to x, read the other way.
struct TransposeGeometry {
  int64_t C, H, W, O, KH, KW, stride, pad, outPad;
  int64_t OH() const { return (H - 1) * stride - 2 * pad + KH + outPad; }
  int64_t OW() const { return (W - 1) * stride - 2 * pad + KW + outPad; }
};

void checkConvTranspose(const TransposeGeometry &g, int64_t n) {
  INFO("C" << g.C << " H" << g.H << " W" << g.W << " O" << g.O << " k" << g.KH << "x" << g.KW
            << " stride " << g.stride << " pad " << g.pad << " output_padding " << g.outPad << " n " << n);
  Harness h(5);
  Node *x = h.input({g.C, g.H, g.W});
  Node *w = h.param({g.C, g.O, g.KH, g.KW});
  Node *y = h.b.convTranspose2d(x, w, g.stride, g.pad, g.outPad);
  REQUIRE(y->type.dims == std::vector<int64_t>{g.O, g.OH(), g.OW()});
  // The gradients as autodiff builds them: dx = conv2d(dy, w), dw = filter gradient of (dy, x).
  Node *dy = h.input({g.O, g.OH(), g.OW()});
  Node *dx = h.b.conv2d(dy, w, g.stride, g.pad);
  Node *dw = h.b.conv2dBwdFilter(dy, x, w->type, g.stride, g.pad);
  REQUIRE(dx->type == x->type);
  // The convolution whose data gradient this is: from the output [O, OH, OW] back to [C, H, W].
  Geometry conv{g.O, g.OH(), g.OW(), g.C, g.KH, g.KW, g.stride, g.pad};
  REQUIRE(conv.OH() == g.H);
  REQUIRE(conv.OW() == g.W);
  checkTaps(h, conv, n, {x, w, y, dy, dx, dw}, true,
            {"conv_transpose2d", "conv_transpose2d's input gradient", "conv_transpose2d's weight gradient"});
}

}  // namespace

TEST_CASE("conv_transpose2d forward and gradients against the adjoint convolution's taps", "[codegen][conv]") {
  checkConvTranspose({3, 4, 5, 2, 2, 2, 2, 0, 0}, 3);  // the decoder's x2: 2×2, stride 2
  checkConvTranspose({2, 5, 4, 3, 3, 3, 2, 1, 1}, 4);  // 3×3, padding 1, output_padding 1: x2 exactly
  checkConvTranspose({2, 6, 5, 4, 3, 3, 1, 1, 0}, 2);  // stride 1, "same"
  checkConvTranspose({3, 4, 3, 2, 3, 2, 3, 2, 2}, 5);  // non-square kernel, padding above the taps
  checkConvTranspose({4, 7, 6, 3, 1, 1, 1, 0, 0}, 2);  // 1×1: no column matrix
}
