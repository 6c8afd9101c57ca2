// Embedding lookups and their scatter-add gradient, per-sample concatenation and slicing, against
// plain C++ loops at n below maxBatch. Lookups, concatenation and slices move values, so they must
// match exactly; the embedding gradient sums a few float values per table element: 1e-6 relative
// + 1e-6 absolute. Out-of-range and NaN indices are clamped to [0, V−1] (NaN reads row 0).
#include "Harness.h"

#include <algorithm>
#include <cmath>
#include <limits>

using namespace mtlc;
using namespace mtlc::test;

namespace {

// The row the kernels read for a float index: clamped to [0, V−1], NaN -> 0, truncated.
int64_t clampedRow(double v, int64_t V) {
  if (std::isnan(v)) return 0;
  return (int64_t)std::clamp(v, 0.0, double(V - 1));
}

}  // namespace

TEST_CASE("embedding lookup and its scatter-add gradient", "[codegen][gather]") {
  const int64_t V = 7, D = 5, K = 3, n = 6;
  Harness h(8);
  Node *table = h.param({V, D});
  Node *idx = h.input({K});
  Node *dy = h.input({K * D});
  Node *out = h.b.embedding(table, idx);
  Node *dtable = h.b.embeddingBwd(idx, dy, table->type);
  REQUIRE(out->type == batched({K * D}));
  h.fillUniform(table);
  h.fillUniform(dy);
  float *ip = h.data(idx);
  std::uniform_int_distribution<int> pick(0, (int)V - 1);
  for (int64_t i = 0; i < h.module.maxBatch * K; ++i) ip[i] = (float)pick(h.rng());
  ip[0] = 3, ip[3] = 3;        // the same row twice (gradients add up)
  ip[1] = V - 1, ip[2] = 0;    // both ends
  // Bad indices the runtime would have rejected: the kernels must stay inside the table.
  ip[4] = -3, ip[5] = (float)V, ip[7] = 1e9f, ip[8] = std::numeric_limits<float>::quiet_NaN();
  ip[10] = -std::numeric_limits<float>::infinity();
  h.run(n);

  auto T = values(h, table), I = values(h, idx), DY = values(h, dy);
  std::vector<double> OUT(n * K * D), DT(V * D, 0.0);
  for (int64_t s = 0; s < n; ++s)
    for (int64_t i = 0; i < K; ++i) {
      int64_t r = clampedRow(I[s * K + i], V);
      for (int64_t d = 0; d < D; ++d) {
        OUT[(s * K + i) * D + d] = T[r * D + d];
        DT[r * D + d] += DY[(s * K + i) * D + d];
      }
    }
  requireClose(h.read(out), OUT, 0, 0, "embedding");
  requireClose(h.read(dtable), DT, 1e-6, 1e-6, "embedding_bwd");
}

TEST_CASE("embedding with one index per sample and a wide row", "[codegen][gather]") {
  const int64_t V = 4, D = 37, n = 3;
  Harness h(4);
  Node *table = h.param({V, D});
  Node *idx = h.input({1});
  Node *dy = h.input({D});
  Node *out = h.b.embedding(table, idx);
  Node *dtable = h.b.embeddingBwd(idx, dy, table->type);
  h.fillUniform(table);
  h.fillUniform(dy);
  float *ip = h.data(idx);
  ip[0] = 2, ip[1] = 0, ip[2] = 2, ip[3] = 1;  // sample 3 is past n: row 1 must stay untouched
  h.run(n);

  auto T = values(h, table), DY = values(h, dy);
  std::vector<double> OUT, DT(V * D, 0.0);
  for (int64_t s = 0; s < n; ++s) {
    int64_t r = (int64_t)ip[s];
    OUT.insert(OUT.end(), T.begin() + r * D, T.begin() + (r + 1) * D);
    for (int64_t d = 0; d < D; ++d) DT[r * D + d] += DY[s * D + d];
  }
  requireClose(h.read(out), OUT, 0, 0, "embedding");
  requireClose(h.read(dtable), DT, 1e-6, 1e-6, "embedding_bwd");
  for (int64_t d = 0; d < D; ++d) CHECK(h.read(dtable)[1 * D + d] == 0.0);
}

TEST_CASE("concat joins per-sample vectors in operand order", "[codegen][gather]") {
  const int64_t n = 5;
  const std::vector<int64_t> widths{2, 5, 1, 17};
  Harness h(8);
  std::vector<Node *> parts;
  for (int64_t w : widths) parts.push_back(h.input({w}));
  Node *out = h.b.concat(parts);
  REQUIRE(out->type == batched({25}));
  for (Node *p : parts) h.fillUniform(p);
  h.run(n);

  std::vector<double> want;
  for (int64_t s = 0; s < n; ++s)
    for (size_t p = 0; p < parts.size(); ++p) {
      auto P = values(h, parts[p]);
      want.insert(want.end(), P.begin() + s * widths[p], P.begin() + (s + 1) * widths[p]);
    }
  requireClose(h.read(out), want, 0, 0, "concat");
}

TEST_CASE("concat of a single part is a copy", "[codegen][gather]") {
  Harness h(4);
  Node *x = h.input({6});
  Node *out = h.b.concat({x});
  h.fillUniform(x);
  h.run(3);
  auto X = values(h, x);
  requireClose(h.read(out), std::vector<double>(X.begin(), X.begin() + 18), 0, 0, "concat");
}

TEST_CASE("slice takes a window of each sample; slice_bwd writes one back into zeros", "[codegen][gather]") {
  const int64_t n = 6, d = 9;
  for (auto [offset, width] : std::vector<std::pair<int64_t, int64_t>>{{3, 4}, {0, 9}, {8, 1}, {0, 2}}) {
    INFO("offset " << offset << " width " << width);
    Harness h(8);
    Node *x = h.input({d}), *dy = h.input({width});
    Node *out = h.b.slice(x, offset, width);
    Node *dx = h.b.sliceBwd(dy, ir::Type{{d}, true}, offset);
    h.fillUniform(x);
    h.fillUniform(dy);
    h.run(n);
    auto X = values(h, x), DY = values(h, dy);
    std::vector<double> want, back(size_t(n * d), 0.0);
    for (int64_t s = 0; s < n; ++s) {
      want.insert(want.end(), X.begin() + s * d + offset, X.begin() + s * d + offset + width);
      for (int64_t j = 0; j < width; ++j) back[size_t(s * d + offset + j)] = DY[size_t(s * width + j)];
    }
    requireClose(h.read(out), want, 0, 0, "slice");
    requireClose(h.read(dx), back, 0, 0, "slice_bwd");
  }
}

TEST_CASE("slices of a concat give the parts back", "[codegen][gather]") {
  Harness h(8);
  Node *a = h.input({3}), *c = h.input({4});
  Node *joined = h.b.concat({a, c});
  Node *sa = h.b.slice(joined, 0, 3), *sc = h.b.slice(joined, 3, 4);
  h.fillUniform(a);
  h.fillUniform(c);
  h.run(7);
  auto A = values(h, a), C = values(h, c);
  requireClose(h.read(sa), std::vector<double>(A.begin(), A.begin() + 21), 0, 0, "first part");
  requireClose(h.read(sc), std::vector<double>(C.begin(), C.begin() + 28), 0, 0, "second part");
}

TEST_CASE("transpose moves every element of a matrix across, tile edges included", "[codegen][gather]") {
  for (auto [R, C] : {std::pair<int64_t, int64_t>{1, 1}, {3, 5}, {16, 16}, {37, 19}, {144, 100}, {1, 40}}) {
    INFO(R << " x " << C);
    Harness h(2);
    Node *x = h.param({R, C});
    Node *y = h.b.transpose(x);
    h.prepare();
    h.fillUniform(x);
    h.run(1);
    const std::vector<double> in = values(h, x), out = h.read(y);
    REQUIRE(out.size() == size_t(R * C));
    bool same = true;
    for (int64_t r = 0; r < R; ++r)
      for (int64_t c = 0; c < C; ++c) same = same && out[size_t(c * R + r)] == in[size_t(r * C + c)];
    CHECK(same);
  }
}
