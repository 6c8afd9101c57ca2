// Sibling products run as one product over their weights' span (passes/SiblingProducts.cpp)
// against the same train_step with the products apart: same parameters, inputs and labels, the
// losses, heads and every gradient must agree. The two differ only in how the products block their
// sums (a span product adds an input gradient's terms in one dot product instead of summing
// separate products), so the tolerance is float rounding: 2e-6 relative + 1e-6 absolute.
#include "Harness.h"

#include "autodiff/Autodiff.h"
#include "ir/Verifier.h"
#include "passes/Passes.h"

using namespace mtlc;
using namespace mtlc::test;
using Kind = ir::Output::Kind;

namespace {

struct Step {
  std::vector<float> losses, grads;
  std::vector<std::vector<float>> heads;
  int spanProducts = 0;  // products reading a parameter span
  int transposes = 0;    // span gradients computed as Aᵀ·C and transposed
};

// A trunk with three heads (16, 8 and 1 wide) and a mixture-like second reader of x: experts
// e0, e1 and a gate g over x, all siblings of the trunk's first product.
Step runStep(bool siblings, int64_t n, codegen::GemmKind kind, int64_t maxBatch) {
  Harness h(maxBatch, "train_step");
  h.options.codegen.gemmKind = kind;
  Node *x = h.input({24});
  Node *W0 = h.param({32, 24}), *b0 = h.param({32});
  Node *We = h.param({16, 24}), *Wg = h.param({16, 24});
  Node *Wa = h.param({16, 32}), *ba = h.param({16});
  Node *Wb = h.param({8, 32}), *bb = h.param({8});
  Node *Wc = h.param({1, 32}), *bc = h.param({1});
  Node *la = h.label({16}), *lb = h.label({8}), *lc = h.label({1});
  auto dense = [&](Node *in, Node *w, Node *b) { return h.b.biasAdd(h.b.matmul(in, w, false, true), b); };
  Node *trunk = h.b.unary(OpKind::Relu, dense(x, W0, b0));
  // e·sigmoid(g): a second pair of readers of x, whose weights have no bias.
  Node *side = h.b.mul(h.b.matmul(x, We, false, true), h.b.unary(OpKind::Sigmoid, h.b.matmul(x, Wg, false, true)));
  Node *ya = h.b.add(dense(trunk, Wa, ba), side), *yb = dense(trunk, Wb, bb), *yc = dense(trunk, Wc, bc);
  Node *La = h.b.loss(OpKind::MSE, ya, la), *Lb = h.b.loss(OpKind::MSE, yb, lb), *Lc = h.b.loss(OpKind::BCE, yc, lc);
  Node *total = h.b.add(h.b.add(h.b.mul(h.lossWeight(0), La), h.b.mul(h.lossWeight(1), Lb)),
                        h.b.mul(h.lossWeight(2), Lc));
  h.bind(La, Kind::TaskLoss, 0);
  h.bind(Lb, Kind::TaskLoss, 1);
  h.bind(Lc, Kind::TaskLoss, 2);
  h.bind(total, Kind::TotalLoss, 0);
  h.bind(ya, Kind::Head, 0);
  h.bind(yb, Kind::Head, 1);
  h.bind(yc, Kind::Head, 2);
  autodiff::appendGradients(h.module, h.fn, total);
  // The lowering's layout: each group's weights back to back (W0, We, Wg read x; Wa, Wb, Wc read
  // the trunk), the biases after them.
  int64_t top = 0;
  for (Node *p : {W0, We, Wg, Wa, Wb, Wc, b0, ba, bb, bc}) {
    auto &info = h.module.params[p->ints[0]];
    info.offset = top;
    top += (info.elements() + 15) / 16 * 16;
  }
  if (siblings) {
    CHECK(passes::fuseSiblingProducts(h.module, h.fn));
    passes::eliminateDeadCode(h.fn);
    auto problems = ir::verify(h.module);
    INFO((problems.empty() ? "" : problems[0]));
    REQUIRE(problems.empty());
  }
  Step s;
  for (const auto &node : h.fn.nodes)
    if (node->op == OpKind::MatMul && node->operands[1]->op == OpKind::Param &&
        node->operands[1]->type.dims[0] != h.module.params[node->operands[1]->ints[0]].shape[0])
      ++s.spanProducts;
  for (const auto &node : h.fn.nodes) s.transposes += node->op == OpKind::Transpose;
  h.prepare();
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> u(-0.6f, 0.6f);
  for (const auto &info : h.module.params)
    for (int64_t i = 0; i < info.elements(); ++i) h.params()[info.offset + i] = u(rng);
  h.fillUniform(x);
  h.fillUniform(la);
  h.fillUniform(lb);
  h.fillClasses(lc, 2);
  h.lossWeights() = {1.0f, 0.5f, 2.0f, 1.0f};
  h.run(n);
  s.losses = h.losses();
  for (const auto &info : h.module.params)
    s.grads.insert(s.grads.end(), h.grads().begin() + info.offset, h.grads().begin() + info.offset + info.elements());
  for (int t = 0; t < 3; ++t)
    s.heads.emplace_back(h.outputBuffer(t).begin(), h.outputBuffer(t).begin() + n * h.module.heads[t].elements());
  return s;
}

void requireAgree(const std::vector<float> &a, const std::vector<float> &b, const char *what) {
  REQUIRE(a.size() == b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    INFO(what << " element " << i << ": " << a[i] << " vs " << b[i]);
    REQUIRE(std::abs(a[i] - b[i]) <= 1e-6 + 2e-6 * std::abs(b[i]));
  }
}

}  // namespace

TEST_CASE("sibling products over a span give the separate products' losses, heads and gradients",
          "[codegen][siblings]") {
  for (auto kind : {codegen::GemmKind::Auto, codegen::GemmKind::Packed, codegen::GemmKind::Axpy}) {
    // maxBatch 32: the x group's gradient ([64, 24]: 24 wide is 1.5 vectors, 64 rows are 4) is
    // computed transposed; at 8 it is not.
    for (auto [maxBatch, n] : {std::pair<int64_t, int64_t>{8, 1}, {8, 5}, {8, 8}, {32, 3}, {32, 32}}) {
      INFO("gemm kind " << int(kind) << ", maxBatch " << maxBatch << ", n = " << n);
      Step apart = runStep(false, n, kind, maxBatch), fused = runStep(true, n, kind, maxBatch);
      CHECK(apart.spanProducts == 0);
      // Forward over each span, the weight gradient of each span, the trunk's input gradient.
      CHECK(fused.spanProducts == 3);
      CHECK(fused.transposes == (maxBatch >= 32 ? 1 : 0));
      requireAgree(fused.losses, apart.losses, "loss");
      requireAgree(fused.grads, apart.grads, "gradient");
      for (int t = 0; t < 3; ++t) requireAgree(fused.heads[t], apart.heads[t], "head");
    }
  }
}
