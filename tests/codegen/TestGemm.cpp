// The packed GEMM (codegen/EmitGemm.cpp) under every vector shape it can be generated for (AVX-512,
// AVX2 and the 4-lane generic form all run on an AVX-512 host), with register tiles and cache
// blocks forced small so that edge tiles, several K slices, row blocks and column blocks all
// occur, in all four transpositions, with the batch as M or K; against a double reference.
// Tolerance: 1e-5 relative + 2e-5 absolute (float sums of ≤ 200 products of values in [-1, 1)).
//
// [.timing] cases: GFLOP/s of [N,N]·[N,N] for N = 256, 512, 1024 (compare with OpenBLAS's
// cblas_sgemm on one thread, bench/sgemm_openblas).
#include "Harness.h"

#include <ctime>
#include <cstdlib>
#include <fstream>
#include <iostream>

using namespace mtlc;
using namespace mtlc::test;

namespace {

// Seconds of CPU time this thread has used: robust against the time slicing of a shared machine.
double cpuSeconds() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

std::vector<double> reference(const std::vector<double> &A, const std::vector<double> &B, int64_t M,
                              int64_t K, int64_t N, bool tA, bool tB) {
  std::vector<double> C(M * N, 0.0);
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      double sum = 0;
      for (int64_t k = 0; k < K; ++k)
        sum += (tA ? A[k * M + i] : A[i * K + k]) * (tB ? B[j * K + k] : B[k * N + j]);
      C[i * N + j] = sum;
    }
  return C;
}

// Unbatched operands: C[M,N] = op(A)·op(B).
void checkGemm(const jit::CompileOptions &o, int64_t M, int64_t K, int64_t N, bool tA, bool tB) {
  Harness h(2);
  h.options = o;
  auto [a, bn, c] = randomMatmul(h, M, K, N, tA, tB);
  h.run(1);
  auto want = reference(values(h, a), values(h, bn), M, K, N, tA, tB);
  INFO("target " << (o.target.empty() ? "host" : o.target) << ", kind "
                 << int(o.codegen.gemmKind) << ", M K N = " << M << " " << K << " "
                 << N << (tA ? " Aᵀ" : "") << (tB ? " Bᵀ" : "") << ", tile " << o.codegen.gemmMR
                 << "x" << o.codegen.gemmNRV << ", KC " << o.codegen.gemmKC << ", MB "
                 << o.codegen.gemmMB << ", NB " << o.codegen.gemmNB);
  requireClose(h.read(c), want, 1e-5, 2e-5, "gemm");
}

jit::CompileOptions options(const std::string &target, int mr = 0, int nrv = 0, int64_t kc = 0,
                            int64_t mb = 0, int64_t nb = 0) {
  jit::CompileOptions o;
  o.target = target;
  o.codegen.gemmMR = mr, o.codegen.gemmNRV = nrv;
  o.codegen.gemmKC = kc, o.codegen.gemmMB = mb, o.codegen.gemmNB = nb;
  return o;
}

}  // namespace

TEST_CASE("gemm: every transposition, edge tiles, the host's vector shape", "[codegen][gemm]") {
  for (bool tA : {false, true})
    for (bool tB : {false, true}) {
      checkGemm(options(""), 1, 1, 1, tA, tB);
      checkGemm(options(""), 13, 7, 29, tA, tB);
      checkGemm(options(""), 37, 50, 70, tA, tB);
      checkGemm(options(""), 64, 33, 16, tA, tB);
    }
}

TEST_CASE("gemm: several K slices, row blocks and column blocks", "[codegen][gemm]") {
  for (bool tA : {false, true})
    for (bool tB : {false, true}) {
      // KC 24 over K = 70: three slices (24, 23, 23); MB/NB force several blocks.
      checkGemm(options("", 0, 0, 24, 20, 40), 45, 70, 100, tA, tB);
      checkGemm(options("", 5, 1, 16, 10, 16), 23, 33, 35, tA, tB);
    }
}

TEST_CASE("gemm: AVX2 and generic vector shapes, assorted register tiles", "[codegen][gemm]") {
  for (const char *target : {"avx2", "zen-avx2", "generic", "avx512"})
    for (auto [mr, nrv] : {std::pair{1, 1}, {3, 2}, {6, 2}, {4, 3}})
      for (bool tA : {false, true})
        for (bool tB : {false, true}) {
          if (std::string(target) == "avx512" && mr == 1) continue;
          checkGemm(options(target, mr, nrv, 20, 0, 0), 19, 45, 27, tA, tB);
        }
  checkGemm(options("avx512", 14, 2), 30, 30, 70, false, false);
  checkGemm(options("avx512", 6, 4), 30, 30, 70, true, true);
  // The one-row tile the cost model picks for store-bound products (K = 1, a batch of one).
  for (bool tA : {false, true}) {
    checkGemm(options("avx512", 1, 4), 30, 1, 70, tA, false);
    checkGemm(options("avx512", 1, 4), 1, 45, 150, tA, false);
  }
}

TEST_CASE("gemm: the direct forms (axpy, dot) and forced packing, every target", "[codegen][gemm]") {
  using codegen::GemmKind;
  for (const char *target : {"avx512", "avx2", "zen-avx2", "generic"})
    for (GemmKind kind : {GemmKind::Packed, GemmKind::Axpy, GemmKind::Dot})
      for (bool tA : {false, true})
        for (bool tB : {false, true}) {
          jit::CompileOptions o = options(target);
          o.codegen.gemmKind = kind;  // falls back to Auto where the form does not apply
          checkGemm(o, 1, 40, 33, tA, tB);
          checkGemm(o, 19, 37, 3, tA, tB);
          checkGemm(o, 9, 64, 17, tA, tB);
          o.codegen.gemmMR = 3;
          checkGemm(o, 7, 5, 50, tA, tB);
        }
}

// The cost model's choices on shapes whose measured times decided them (test_codegen
// "[gemmforms]" prints each form's rate). Batch-1 weight gradient dW = dyᵀ·x, 256×1×784: with
// K = 1 the stores are the product, and on Zen 3 the axpy form's 6×2 tiles took 22.3 µs against
// 27.9 µs for 14×1 (half cache lines per row) and 37.5 µs packed (a call and a packed B per tile).
// On Zen 4 (AVX-512) one-row 1×4 tiles, which write C as one sequential stream, took about half
// the time of 14×2 or 6×4 (mtlc_bench --mkn 256,1,784 --trans tn --gemm-kind axpy --gemm-tile).
TEST_CASE("gemm: form and register tile chosen by the cost model", "[codegen][gemm]") {
  auto choice = [](const char *target, int64_t M, int64_t K, int64_t N, bool tA, bool tB) {
    return codegen::gemmChoice(codegen::namedTarget(target), nullptr, 1, M, K, N, tA, tB);
  };
  CHECK(choice("zen-avx2", 256, 1, 784, true, false) == "axpy 6x2");
  CHECK(choice("avx2", 256, 1, 784, true, false) == "axpy 6x2");
  CHECK(choice("avx2", 128, 1, 256, true, false) == "axpy 6x2");
  CHECK(choice("avx512", 256, 1, 784, true, false) == "axpy 1x4");
  CHECK(choice("avx512", 128, 1, 256, true, false) == "axpy 1x4");
  // K = 4 is no longer store-bound: the tile of many rows again.
  CHECK(choice("avx512", 256, 4, 784, true, false) == "axpy 14x2");
  // Long K: packing pays, with the tile that keeps both FMA ports busy.
  CHECK(choice("avx2", 256, 256, 784, false, false) == "packed 6x2");
  CHECK(choice("avx2", 256, 784, 256, false, true) == "packed 6x2");
  CHECK(choice("avx512", 256, 256, 784, true, false).rfind("packed", 0) == 0);
  // A single row against a transposed weight: lane-wise dot products.
  CHECK(choice("avx2", 1, 784, 256, false, true).rfind("dot", 0) == 0);
}

TEST_CASE("gemm: the batch as M and as K with small blocks", "[codegen][gemm]") {
  for (const char *target : {"", "avx2"})
  for (codegen::GemmKind kind : {codegen::GemmKind::Auto, codegen::GemmKind::Packed}) {
    Harness h(40);
    h.options = options(target, 0, 0, 16, 12, 0);
    h.options.codegen.gemmKind = kind;
    Node *x = h.input({21});
    Node *w = h.param({9, 21});
    Node *y = h.b.matmul(x, w, false, true);  // [n, 9], M = n
    Node *dy = h.input({9});
    Node *dw = h.b.matmul(dy, x, true, false);  // [9, 21], K = n
    h.fillUniform(x);
    h.fillUniform(w);
    h.fillUniform(dy);
    for (int64_t n : {1, 13, 40}) {
      h.run(n);
      auto X = values(h, x), W = values(h, w), DY = values(h, dy);
      X.resize(n * 21), DY.resize(n * 9);
      requireClose(h.read(y), reference(X, W, n, 21, 9, false, true), 1e-5, 2e-5, "x·Wᵀ");
      requireClose(h.read(dw), reference(DY, X, 9, n, 21, true, false), 1e-5, 2e-5, "dyᵀ·x");
    }
  }
}

TEST_CASE("timing: square matmul GFLOP/s", "[.timing][gemm]") {
  for (const char *trans : {"nn", "nt", "tn"})
    for (int64_t N : {256, 512, 1024}) {
      Harness h(1);
      h.poison = false;
      bool tA = trans[0] == 't', tB = trans[1] == 't';
      Node *a = h.param({N, N}), *bn = h.param({N, N});
      h.b.matmul(a, bn, tA, tB);
      h.fillUniform(a);
      h.fillUniform(bn);
      h.run(1);
      int reps = int(std::max<int64_t>(1, (int64_t(1) << 31) / (N * N * N)));
      double best = 1e30;
      for (int block = 0; block < 5; ++block) {
        double t0 = cpuSeconds();
        for (int r = 0; r < reps; ++r) h.run(1);
        double s = cpuSeconds() - t0;
        best = std::min(best, s / reps);
      }
      std::cout << "matmul " << trans << " N=" << N << ": " << 2.0 * N * N * N / best * 1e-9
                << " GFLOP/s (" << h.compiled().options.target.name << ", thread CPU time)\n";
    }
}

// Writes the optimised LLVM IR of a [N,N]·[N,N] matmul to $MTLC_DUMP_IR (for llc / llvm-mca).
TEST_CASE("dump: matmul IR", "[.dump]") {
  const char *path = std::getenv("MTLC_DUMP_IR");
  if (!path) return;
  Harness h(1);
  h.options.keepIR = true;
  const char *t = std::getenv("MTLC_TRANS");
  bool tA = t && t[0] == 't', tB = t && t[1] == 't';
  Node *a = h.param({512, 512}), *bn = h.param({512, 512});
  h.b.matmul(a, bn, tA, tB);
  h.prepare();
  std::ofstream(path) << h.compiled().llvmIR;
}

// Calibration of the GEMM form choice: the models' shapes under each form, and what Auto picks.
TEST_CASE("timing: gemm forms on the models' shapes", "[.timing][gemmforms]") {
  using codegen::GemmKind;
  struct Shape { int64_t M, K, N; bool tA, tB; };
  const Shape shapes[] = {
      {64, 5408, 64, false, true}, {64, 64, 5408, false, false}, {64, 64, 5408, true, false},
      {64, 784, 256, false, true}, {64, 256, 784, false, false}, {256, 64, 784, true, false},
      {256, 784, 256, false, true}, {256, 256, 784, false, false}, {256, 256, 784, true, false},
      {32, 9, 676, false, false},  {32, 676, 9, false, true},     {1, 784, 256, false, true},
      {1, 256, 784, false, false}, {256, 1, 784, true, false},    {256, 100, 128, false, true},
      {64, 256, 128, false, true}, {64, 128, 10, false, true},    {64, 10, 128, false, false}};
  for (const Shape &s : shapes) {
    std::cout << s.M << "x" << s.K << "x" << s.N << (s.tA ? " Aᵀ" : "") << (s.tB ? " Bᵀ" : "") << ":";
    for (GemmKind kind : {GemmKind::Auto, GemmKind::Packed, GemmKind::Axpy, GemmKind::Dot}) {
      if (kind == GemmKind::Axpy && s.tB) continue;
      if (kind == GemmKind::Dot && !(s.tB && !s.tA)) continue;
      Harness h(1);
      h.poison = false;
      h.options.codegen.gemmKind = kind;
      Node *a = h.param(s.tA ? std::vector<int64_t>{s.K, s.M} : std::vector<int64_t>{s.M, s.K});
      Node *bn = h.param(s.tB ? std::vector<int64_t>{s.N, s.K} : std::vector<int64_t>{s.K, s.N});
      h.b.matmul(a, bn, s.tA, s.tB);
      h.fillUniform(a);
      h.fillUniform(bn);
      h.run(1);
      double flops = 2.0 * s.M * s.N * s.K;
      int reps = int(std::max(1.0, 2e8 / flops));
      double best = 1e30;
      for (int block = 0; block < 5; ++block) {
        double t0 = cpuSeconds();
        for (int r = 0; r < reps; ++r) h.run(1);
        best = std::min(best, (cpuSeconds() - t0) / reps);
      }
      const char *name[] = {"auto", "packed", "axpy", "dot"};
      std::cout << "  " << name[int(kind)] << " " << flops / best * 1e-9;
    }
    std::cout << " GFLOP/s\n";
  }
}
