// `precision bf16` (CodegenOptions::bf16): every GEMM packs its operands as bf16 (round to nearest
// even) and accumulates their products in fp32 with vdpbf16ps. Checked against a reference that
// rounds the operands to bf16 in C++ and sums the (exact) products in double, so what is left is
// the fp32 accumulation: per element |got − want| <= K·2⁻²⁴·Σ_k |a_k·b_k| (the γ_K bound of a
// K-term float sum). Each check also confirms the tolerance is tight enough to tell: against the
// unrounded operands' product some element is off by more than it. Transpositions, odd K, several
// K slices, edge tiles, conv2d forward and both gradients, and bit-identical results on 1 and 2
// threads. A filter gradient of fewer taps than a vector's 16 lanes keeps fp32 products (EmitConv):
// it is checked the other way round, within the fp32 bound of the unrounded product and outside it
// from the rounded one. Skipped, with a message, on a CPU without AVX-512 BF16.
#include "Harness.h"

#include <cmath>
#include <cstring>

using namespace mtlc;
using namespace mtlc::test;

namespace {

// x rounded to bfloat16, to nearest even (vcvtne2ps2bf16 on the finite values used here).
double bf16(double x) {
  float f = float(x);
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000u;
  std::memcpy(&f, &bits, 4);
  return f;
}

bool bf16Host() {
  jit::CompileOptions o;
  o.codegen.bf16 = true;
  Harness h(1);
  h.b.matmul(h.param({2, 2}), h.param({2, 2}), false, false);
  h.options = o;
  h.prepare();
  return h.compiled().options.bf16;
}

#define REQUIRE_BF16_HOST()                                                      \
  if (!bf16Host()) {                                                             \
    WARN("skipped: this CPU has no AVX-512 BF16, `precision bf16` runs in fp32"); \
    return;                                                                      \
  }

// One product's expectation: the rounded operands' sum in double, the bound on its fp32
// accumulation error, and the unrounded sum (which the check must be able to tell apart).
struct Expected {
  std::vector<double> value, bound, exact, exactBound;
  explicit Expected(size_t n) : value(n), bound(n), exact(n), exactBound(n) {}
  void add(size_t i, double a, double b) {
    value[i] += bf16(a) * bf16(b);
    bound[i] += std::fabs(bf16(a) * bf16(b));
    exact[i] += a * b;
    exactBound[i] += std::fabs(a * b);
  }
};

// got within perTerm·bound[i] of want[i] everywhere, and `other` (the sum in the other precision)
// outside that somewhere: the tolerance is tight enough to fail.
void requireWithin(const std::vector<double> &got, const std::vector<double> &want, const std::vector<double> &bound,
                   const std::vector<double> &other, double perTerm, const std::string &what) {
  REQUIRE(got.size() == want.size());
  int bad = 0;
  bool otherTold = false;
  for (size_t i = 0; i < got.size(); ++i) {
    const double tol = perTerm * bound[i] + 1e-30;
    if (!(std::fabs(got[i] - want[i]) <= tol) && bad++ < 5)
      UNSCOPED_INFO(what << "[" << i << "]: got " << got[i] << ", want " << want[i] << " ± " << tol);
    otherTold |= std::fabs(other[i] - want[i]) > tol;
  }
  CHECK(bad == 0);
  CHECK(otherTold);
}

// got within the accumulation bound of e.value everywhere, and e.exact (the unrounded product)
// outside it somewhere.
void requireBf16(const std::vector<double> &got, const Expected &e, int64_t K, const std::string &what) {
  requireWithin(got, e.value, e.bound, e.exact, double(K) * std::ldexp(1.0, -24), what);
}

// got within the fp32 bound of e.exact everywhere (K terms, each product rounded too), and the
// bf16-rounded operands' sum outside it somewhere.
void requireFp32(const std::vector<double> &got, const Expected &e, int64_t K, const std::string &what) {
  requireWithin(got, e.exact, e.exactBound, e.value, double(K + 1) * std::ldexp(1.0, -24), what);
}

jit::CompileOptions bf16Options(int mr = 0, int nrv = 0, int64_t kc = 0, int64_t mb = 0, int64_t nb = 0) {
  jit::CompileOptions o;
  o.codegen.bf16 = true;
  o.codegen.gemmMR = mr, o.codegen.gemmNRV = nrv;
  o.codegen.gemmKC = kc, o.codegen.gemmMB = mb, o.codegen.gemmNB = nb;
  return o;
}

// C[M,N] = op(A)·op(B) under bf16, checked; returns C's values.
std::vector<double> checkGemm(const jit::CompileOptions &o, int64_t M, int64_t K, int64_t N, bool tA, bool tB,
                              int threads = 1) {
  INFO("M K N = " << M << " " << K << " " << N << (tA ? " Aᵀ" : "") << (tB ? " Bᵀ" : "") << ", tile "
                  << o.codegen.gemmMR << "x" << o.codegen.gemmNRV << ", KC " << o.codegen.gemmKC << ", threads "
                  << threads);
  Harness h(2);
  h.options = o;
  h.threads = threads;
  auto [a, bn, c] = randomMatmul(h, M, K, N, tA, tB);
  h.run(1);
  auto A = values(h, a), B = values(h, bn);
  Expected e(size_t(M * N));
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j)
      for (int64_t k = 0; k < K; ++k)
        e.add(size_t(i * N + j), tA ? A[k * M + i] : A[i * K + k], tB ? B[j * K + k] : B[k * N + j]);
  auto got = h.read(c);
  requireBf16(got, e, K, "gemm");
  return got;
}

}  // namespace

TEST_CASE("bf16 gemm: every transposition, odd K, edge tiles", "[codegen][bf16]") {
  REQUIRE_BF16_HOST();
  for (bool tA : {false, true})
    for (bool tB : {false, true}) {
      checkGemm(bf16Options(), 13, 7, 29, tA, tB);
      checkGemm(bf16Options(), 37, 50, 70, tA, tB);
      checkGemm(bf16Options(), 64, 33, 16, tA, tB);
      checkGemm(bf16Options(), 20, 100, 40, tA, tB);  // k blocks of 32 and a tail
      checkGemm(bf16Options(), 17, 64, 33, tA, tB);   // k blocks of 32, no tail
    }
}

TEST_CASE("bf16 gemm: several K slices, row and column blocks, forced tiles", "[codegen][bf16]") {
  REQUIRE_BF16_HOST();
  for (bool tA : {false, true})
    for (bool tB : {false, true}) {
      checkGemm(bf16Options(0, 0, 24, 20, 40), 45, 70, 100, tA, tB);
      checkGemm(bf16Options(5, 1, 16, 10, 16), 23, 33, 35, tA, tB);
      checkGemm(bf16Options(0, 0, 23), 19, 101, 27, tA, tB);  // an odd slice depth
      checkGemm(bf16Options(14, 2), 30, 30, 70, tA, tB);
      checkGemm(bf16Options(6, 4), 30, 30, 70, tA, tB);
    }
  checkGemm(bf16Options(), 256, 784, 64, false, true);  // the MLP's first layer
}

TEST_CASE("bf16 gemm: the same bits on 1 and 2 threads", "[codegen][bf16]") {
  REQUIRE_BF16_HOST();
  for (bool tA : {false, true})
    for (bool tB : {false, true}) {
      jit::CompileOptions o = bf16Options();
      o.codegen.parallelAlways = true;
      std::vector<double> one = checkGemm(o, 70, 90, 100, tA, tB, 1), two = checkGemm(o, 70, 90, 100, tA, tB, 2);
      CHECK(one == two);
    }
}

TEST_CASE("bf16 conv2d forward and gradients", "[codegen][bf16]") {
  REQUIRE_BF16_HOST();
  struct Geometry {
    int64_t C, H, W, O, K, stride, pad;
  };
  for (Geometry g : {Geometry{1, 28, 28, 32, 3, 1, 0}, Geometry{3, 9, 11, 5, 3, 2, 1}, Geometry{4, 6, 6, 8, 1, 1, 0}}) {
    INFO("C" << g.C << " H" << g.H << " W" << g.W << " O" << g.O << " k" << g.K << " stride " << g.stride << " pad "
             << g.pad);
    const int64_t OH = (g.H + 2 * g.pad - g.K) / g.stride + 1, OW = (g.W + 2 * g.pad - g.K) / g.stride + 1, n = 3;
    Harness h(4);
    h.options = bf16Options();
    Node *x = h.input({g.C, g.H, g.W});
    Node *w = h.param({g.O, g.C, g.K, g.K});
    Node *y = h.b.conv2d(x, w, g.stride, g.pad);
    Node *dy = h.input({g.O, OH, OW});
    Node *dx = h.b.conv2dBwdData(dy, w, x->type, g.stride, g.pad);
    Node *dw = h.b.conv2dBwdFilter(x, dy, w->type, g.stride, g.pad);
    h.fillUniform(x);
    h.fillUniform(w);
    h.fillUniform(dy);
    h.run(n);
    auto X = values(h, x), Wt = values(h, w), DY = values(h, dy);
    Expected Y(size_t(n * g.O * OH * OW)), DX(size_t(n * g.C * g.H * g.W)), DW(Wt.size());
    for (int64_t s = 0; s < n; ++s)
      for (int64_t o = 0; o < g.O; ++o)
        for (int64_t c = 0; c < g.C; ++c)
          for (int64_t oh = 0; oh < OH; ++oh)
            for (int64_t ow = 0; ow < OW; ++ow)
              for (int64_t kh = 0; kh < g.K; ++kh)
                for (int64_t kw = 0; kw < g.K; ++kw) {
                  int64_t ih = oh * g.stride - g.pad + kh, iw = ow * g.stride - g.pad + kw;
                  if (ih < 0 || ih >= g.H || iw < 0 || iw >= g.W) continue;
                  size_t xi = size_t(((s * g.C + c) * g.H + ih) * g.W + iw);
                  size_t yi = size_t(((s * g.O + o) * OH + oh) * OW + ow);
                  size_t wi = size_t(((o * g.C + c) * g.K + kh) * g.K + kw);
                  Y.add(yi, X[xi], Wt[wi]);
                  DX.add(xi, DY[yi], Wt[wi]);
                  DW.add(wi, DY[yi], X[xi]);
                }
    // K of each product: taps per output, output channels per input tap, positions per filter tap
    // (the filter gradient adds the per-chunk sums: n·OH·OW terms in all).
    requireBf16(h.read(y), Y, g.C * g.K * g.K, "conv2d");
    requireBf16(h.read(dx), DX, g.O * g.K * g.K, "conv2d_bwd_data");
    if (g.C * g.K * g.K < 16) requireFp32(h.read(dw), DW, n * OH * OW, "conv2d_bwd_filter (fp32)");
    else requireBf16(h.read(dw), DW, n * OH * OW, "conv2d_bwd_filter");
  }
}
