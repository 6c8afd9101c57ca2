// Fused kernels against the unfused path: each graph is compiled twice, with fusion (one kernel
// per group, epilogue before the single store) and without (one kernel per node), on the same
// inputs; the group's result must agree. The chain runs the same float operations in both (the
// math functions are the same polynomials, vector or scalar), so the tolerance is a few ulp
// (1e-6 relative + 1e-7 absolute) rather than exact only to allow for FMA contraction choices.
// Also: that the groups form (kernel names, interior nodes without storage) and that the fused
// memory plan keeps every operand a group reads out of the group's result slot.
#include "Harness.h"

#include <cmath>
#include <functional>
#include <tuple>

using namespace mtlc;
using namespace mtlc::test;
using Kind = ir::Output::Kind;

namespace {

// Builds the graph into h and returns the node to compare (a group's last node).
using Graph = std::function<Node *(Harness &h)>;

struct Run {
  std::vector<double> values;
  std::string ir;
  size_t interior = 0;  // nodes without storage
};

Run run(const Graph &graph, bool fuse, int64_t maxBatch, int64_t n, jit::CompileOptions o = {}) {
  Harness h(maxBatch);
  o.fuse = fuse;
  o.keepIR = true;
  h.options = o;
  Node *result = graph(h);
  h.prepare();
  for (const auto &node : h.fn.nodes)
    if (node->op == OpKind::Input || node->op == OpKind::Param) h.fillUniform(node.get(), -1.5, 1.5);
  h.run(n, 7);
  Run r{h.read(result), h.compiled().llvmIR, 0};
  for (const auto &node : h.fn.nodes)
    if (h.plan().storage[node->id].base == passes::Storage::Base::None) ++r.interior;
  // The group's result slot never overlaps what the group reads (fused plans extend liveness).
  for (const auto &g : h.fusion().groups) {
    const auto &out = h.plan().storage[g.last()->id];
    if (out.base != passes::Storage::Base::Acts) continue;
    int64_t outEnd = out.offset + g.last()->type.elements() * (g.last()->type.batched ? maxBatch : 1);
    auto check = [&](const Node *operand) {
      const auto &s = h.plan().storage[operand->id];
      if (s.base != passes::Storage::Base::Acts) return;
      int64_t end = s.offset + operand->type.elements() * (operand->type.batched ? maxBatch : 1);
      INFO("group result " << g.last()->id << " and operand " << operand->id);
      CHECK((end <= out.offset || outEnd <= s.offset));
    };
    for (const Node *o2 : g.root->operands) check(o2);
    for (const Node *member : g.chain)
      for (const Node *o2 : member->operands)
        if (h.fusion().group(o2) != &g) check(o2);
  }
  return r;
}

// Compiles `graph` fused and unfused; the results must agree and `kernel` (a fused kernel's name,
// e.g. "matmul+bias_add+relu") must appear in the fused module only.
void checkFused(const Graph &graph, const std::string &kernel, int64_t maxBatch = 8, int64_t n = 5,
                jit::CompileOptions o = {}) {
  Run fused = run(graph, true, maxBatch, n, o), plain = run(graph, false, maxBatch, n, o);
  INFO("kernel " << kernel << ", target " << (o.target.empty() ? "host" : o.target));
  CHECK(fused.ir.find("." + kernel + "\"(") != std::string::npos);
  CHECK(plain.ir.find("." + kernel + "\"(") == std::string::npos);
  CHECK(fused.interior > plain.interior);
  requireClose(fused.values, plain.values, 1e-6, 1e-7, "fused vs unfused");
}

jit::CompileOptions form(codegen::GemmKind kind, const std::string &target = "") {
  jit::CompileOptions o;
  o.codegen.gemmKind = kind;
  o.target = target;
  return o;
}

}  // namespace

TEST_CASE("fusion: dense forward, matmul → bias_add → activation, every GEMM form", "[codegen][fusion]") {
  using codegen::GemmKind;
  for (OpKind act : {OpKind::Relu, OpKind::Tanh, OpKind::Sigmoid, OpKind::Gelu, OpKind::LeakyRelu})
    for (GemmKind kind : {GemmKind::Packed, GemmKind::Dot})
      for (const char *target : {"", "avx2", "zen-avx2"}) {
        Graph g = [act](Harness &h) {
          Node *x = h.input({37});
          Node *w = h.param({21, 37}), *b = h.param({21});
          return h.b.unary(act, h.b.biasAdd(h.b.matmul(x, w, false, true), b), 0.1);
        };
        checkFused(g, std::string("matmul+bias_add+") + ir::mnemonic(act), 8, 7, form(kind, target));
      }
}

TEST_CASE("fusion: backward, matmul → relu_bwd / tanh_bwd reading the saved output", "[codegen][fusion]") {
  using codegen::GemmKind;
  for (GemmKind kind : {GemmKind::Packed, GemmKind::Axpy}) {
    Graph g = [](Harness &h) {
      Node *dz = h.input({10});
      Node *w = h.param({10, 33});
      Node *y = h.input({33});  // the saved activation
      return h.b.unaryBwd(OpKind::ReluBwd, y, h.b.matmul(dz, w, false, false));
    };
    checkFused(g, "matmul+relu_bwd", 8, 6, form(kind));
    Graph t = [](Harness &h) {
      Node *dz = h.input({10});
      Node *w = h.param({10, 33});
      Node *y = h.input({33});
      Node *d = h.b.unaryBwd(OpKind::TanhBwd, y, h.b.matmul(dz, w, false, false));
      return h.b.mul(d, h.input({33}));  // a second member reading another tensor
    };
    checkFused(t, "matmul+tanh_bwd+mul", 8, 6, form(kind));
  }
}

TEST_CASE("fusion: several K slices, the epilogue only after the last", "[codegen][fusion]") {
  jit::CompileOptions o = form(codegen::GemmKind::Packed);
  o.codegen.gemmKC = 16;  // K = 50: four slices
  Graph g = [](Harness &h) {
    Node *x = h.input({50});
    Node *w = h.param({20, 50}), *b = h.param({20});
    return h.b.unary(OpKind::Sigmoid, h.b.biasAdd(h.b.matmul(x, w, false, true), b));
  };
  checkFused(g, "matmul+bias_add+sigmoid", 8, 8, o);
}

TEST_CASE("fusion: weight gradient (unbatched result) with an addend and a product", "[codegen][fusion]") {
  Graph g = [](Harness &h) {
    Node *dy = h.input({9});
    Node *x = h.input({14});
    Node *dw = h.b.matmul(dy, x, true, false);           // [9, 14], K = n
    Node *sum = h.b.add(dw, h.param({9, 14}));           // e.g. a decay term
    return h.b.mul(sum, h.param({9, 14}));
  };
  checkFused(g, "matmul+add+mul", 8, 5);
}

TEST_CASE("fusion: dropout in a GEMM epilogue hashes the same element indices", "[codegen][fusion]") {
  Graph g = [](Harness &h) {
    Node *x = h.input({29});
    Node *w = h.param({40, 29});
    Node *r = h.b.unary(OpKind::Relu, h.b.matmul(x, w, false, true));
    return h.b.unary(OpKind::Dropout, r, 0.3, {5});
  };
  checkFused(g, "matmul+relu+dropout", 8, 7);
  Graph bwd = [](Harness &h) {
    Node *dz = h.input({12});
    Node *w = h.param({12, 40});
    return h.b.dropoutBwd(h.b.matmul(dz, w, false, false), 0.3, 5);
  };
  checkFused(bwd, "matmul+dropout_bwd", 8, 7);
}

TEST_CASE("fusion: conv2d → bias_add → relu, and the convolution gradients", "[codegen][fusion]") {
  Graph fwd = [](Harness &h) {
    Node *x = h.input({2, 9, 8});
    Node *w = h.param({5, 2, 3, 3}), *b = h.param({5});
    return h.b.unary(OpKind::Relu, h.b.biasAdd(h.b.conv2d(x, w, 1, 1), b));
  };
  checkFused(fwd, "conv2d+bias_add+relu", 4, 3);
  Graph pointwise = [](Harness &h) {
    Node *x = h.input({3, 5, 5});
    Node *w = h.param({4, 3, 1, 1}), *b = h.param({4});
    return h.b.unary(OpKind::Tanh, h.b.biasAdd(h.b.conv2d(x, w, 1, 0), b));
  };
  checkFused(pointwise, "conv2d+bias_add+tanh", 4, 3);
  for (int64_t k : {1, 3}) {
    Graph data = [k](Harness &h) {
      Node *dy = h.input({4, 6, 6});
      Node *w = h.param({4, 2, k, k});
      ir::Type xt = batched({2, 6 + k - 1, 6 + k - 1});
      Node *dx = h.b.conv2dBwdData(dy, w, xt, 1, 0);
      return h.b.unaryBwd(OpKind::ReluBwd, h.input(xt.dims), dx);
    };
    checkFused(data, "conv2d_bwd_data+relu_bwd", 4, 3);
  }
  Graph filter = [](Harness &h) {
    Node *x = h.input({2, 7, 7});
    Node *dy = h.input({3, 5, 5});
    Node *dw = h.b.conv2dBwdFilter(x, dy, unbatched({3, 2, 3, 3}), 1, 0);
    return h.b.add(dw, h.param({3, 2, 3, 3}));
  };
  checkFused(filter, "conv2d_bwd_filter+add", 4, 3);
}

TEST_CASE("fusion: elementwise chains and a bias_add root", "[codegen][fusion]") {
  Graph chain = [](Harness &h) {
    Node *x = h.input({3, 11});
    Node *g = h.b.unary(OpKind::Gelu, x);
    Node *s = h.b.unary(OpKind::Sigmoid, g);
    Node *d = h.b.unary(OpKind::Dropout, s, 0.5, {2});
    return h.b.add(d, h.input({3, 11}));
  };
  checkFused(chain, "gelu+sigmoid+dropout+add", 8, 6);
  Graph bwd = [](Harness &h) {
    Node *x = h.input({20});
    Node *dy = h.input({20});
    Node *a = h.b.add(dy, h.input({20}));  // two upstream gradients summed
    return h.b.unaryBwd(OpKind::GeluBwd, x, a);
  };
  checkFused(bwd, "add+gelu_bwd", 8, 6);
  Graph bias = [](Harness &h) {
    Node *x = h.input({4, 6, 6});
    Node *p = h.b.maxPool(x, 2, 2);  // [4,3,3]: not a root kind, so the bias add roots the group
    return h.b.unary(OpKind::Tanh, h.b.biasAdd(p, h.param({4})));
  };
  checkFused(bias, "bias_add+tanh", 8, 6);
}

TEST_CASE("fusion: pooling gradients and concat root groups too (injective kernels)", "[codegen][fusion]") {
  for (int64_t H : {26, 27}) {  // exact tiling, and a leftover row and column
    Graph g = [H](Harness &h) {
      Node *y = h.input({3, H, H});  // the relu output the pool read
      Node *dp = h.input({3, 13, 13});
      return h.b.unaryBwd(OpKind::ReluBwd, y, h.b.maxPoolBwd(y, dp, 2, 2));
    };
    checkFused(g, "maxpool_bwd+relu_bwd", 4, 3);
  }
  Graph overlap = [](Harness &h) {
    Node *y = h.input({2, 9, 9});
    Node *dp = h.input({2, 4, 4});
    return h.b.unaryBwd(OpKind::TanhBwd, y, h.b.maxPoolBwd(y, dp, 3, 2));
  };
  checkFused(overlap, "maxpool_bwd+tanh_bwd", 4, 3);
  Graph avg = [](Harness &h) {
    Node *dp = h.input({2, 4, 4});
    Node *dx = h.b.avgPoolBwd(dp, batched({2, 8, 8}), 2, 2);
    return h.b.unaryBwd(OpKind::ReluBwd, h.input({2, 8, 8}), dx);
  };
  checkFused(avg, "avgpool_bwd+relu_bwd", 4, 3);
  Graph cat = [](Harness &h) {
    Node *c = h.b.concat({h.input({5}), h.input({7})});
    return h.b.unary(OpKind::Sigmoid, c);
  };
  checkFused(cat, "concat+sigmoid", 4, 3);
}

TEST_CASE("fusion: a value read twice or bound to an output stays unfused", "[codegen][fusion]") {
  Harness h(4);
  Node *x = h.input({6});
  Node *w = h.param({5, 6});
  Node *y = h.b.matmul(x, w, false, true);
  Node *r = h.b.unary(OpKind::Relu, y);
  Node *t = h.b.unary(OpKind::Tanh, y);  // y has two uses: no group with y as root
  Node *s = h.b.add(r, t);
  h.bind(s, Kind::Head, 0);
  h.prepare();
  CHECK(h.fusion().group(y) == nullptr);
  CHECK(h.plan().storage[y->id].base == passes::Storage::Base::Acts);
}

namespace {

// A convolution layer's backward after its activation and max-pool: dy = act_bwd(y, maxpool_bwd(y,
// dp)) [+ extra], read only by the filter and bias gradients, so it runs per sample in their kernel.
struct PrologueShape {
  int64_t C, H, W, O, K, stride, pad, poolK, poolStride;
  OpKind act;
  bool addend;      // an elementwise add after the activation's gradient (a side operand per sample)
  bool ties;        // y rounded to a few values: windows with several maxima
};

struct PrologueRun {
  std::vector<double> dw, db;
  std::string ir;
  bool dyStored;
};

PrologueRun runPrologue(const PrologueShape &p, bool fuse, int64_t maxBatch, int64_t n, int threads, bool bf16) {
  Harness h(maxBatch);
  h.options.fuse = fuse;
  h.options.keepIR = true;
  h.options.codegen.bf16 = bf16;  // the filter GEMM's bf16 forms where the host has them
  h.threads = threads;
  const int64_t OH = (p.H + 2 * p.pad - p.K) / p.stride + 1, OW = (p.W + 2 * p.pad - p.K) / p.stride + 1;
  const int64_t PH = (OH - p.poolK) / p.poolStride + 1, PW = (OW - p.poolK) / p.poolStride + 1;
  Node *x = h.input({p.C, p.H, p.W});
  Node *y = h.input({p.O, OH, OW});
  Node *dp = h.input({p.O, PH, PW});
  Node *dy = h.b.unaryBwd(p.act, y, h.b.maxPoolBwd(y, dp, p.poolK, p.poolStride));
  Node *extra = p.addend ? h.input({p.O, OH, OW}) : nullptr;
  if (extra) dy = h.b.add(dy, extra);
  Node *db = h.b.biasGrad(dy);
  Node *dw = h.b.conv2dBwdFilter(x, dy, unbatched({p.O, p.C, p.K, p.K}), p.stride, p.pad);
  h.prepare();
  for (Node *in : {x, y, dp, extra})
    if (in) h.fillUniform(in, -1.5, 1.5);
  if (p.ties) {
    float *v = h.data(y);
    for (int64_t i = 0; i < maxBatch * y->type.elements(); ++i) v[i] = std::round(v[i]);  // -1, 0, 1, 2
  }
  h.run(n, 7);
  return {h.read(dw), h.read(db), h.compiled().llvmIR,
          h.plan().storage[dy->id].base != passes::Storage::Base::None};
}

}  // namespace

TEST_CASE("fusion: the pool and activation gradients per sample inside the filter and bias gradients",
          "[codegen][fusion]") {
  const std::vector<PrologueShape> shapes{
      {1, 28, 28, 32, 3, 1, 0, 2, 2, OpKind::ReluBwd, false, false},  // the flagship's first layer
      {2, 9, 8, 3, 3, 1, 0, 2, 2, OpKind::ReluBwd, false, true},      // [3,7,6]: a leftover row, ties
      {1, 11, 9, 4, 3, 2, 1, 3, 2, OpKind::TanhBwd, false, false},    // strided, padded, overlapping
      {3, 10, 13, 5, 5, 1, 2, 2, 2, OpKind::ReluBwd, true, true},     // "same" 5x5, an addend, ties
      {3, 12, 12, 32, 3, 1, 1, 2, 2, OpKind::ReluBwd, false, false},  // 27 taps < 32 channels
  };
  for (const PrologueShape &p : shapes)
    for (auto [maxBatch, n, threads, bf16] : {std::tuple{4, 3, 1, false}, std::tuple{16, 13, 2, false},
                                              std::tuple{4, 3, 1, true}}) {
      INFO("x [" << p.C << "," << p.H << "," << p.W << "] O " << p.O << " k " << p.K << " s " << p.stride
                 << " p " << p.pad << " pool " << p.poolK << "/" << p.poolStride << " batch " << n << " threads "
                 << threads << (bf16 ? " bf16" : ""));
      PrologueRun fused = runPrologue(p, true, maxBatch, n, threads, bf16);
      PrologueRun plain = runPrologue(p, false, maxBatch, n, threads, bf16);
      const std::string kernel = p.addend ? "maxpool_bwd+" + std::string(ir::mnemonic(p.act)) + "+add+conv2d_bwd_filter+bias_grad"
                                          : "maxpool_bwd+" + std::string(ir::mnemonic(p.act)) + "+conv2d_bwd_filter+bias_grad";
      CHECK(fused.ir.find("." + kernel + "\"(") != std::string::npos);
      CHECK(plain.ir.find("." + kernel + "\"(") == std::string::npos);
      CHECK_FALSE(fused.dyStored);
      CHECK(plain.dyStored);
      // The same products and the same sums in the same order: the bits do not change.
      requireClose(fused.dw, plain.dw, 0, 0, "filter gradient, fused vs unfused");
      requireClose(fused.db, plain.db, 0, 0, "bias gradient, fused vs unfused");
      // The chunks are fixed, not per thread: two threads give the bits of one.
      if (threads > 1) {
        PrologueRun serial = runPrologue(p, true, maxBatch, n, 1, bf16);
        requireClose(fused.dw, serial.dw, 0, 0, "filter gradient, 2 threads vs 1");
        requireClose(fused.db, serial.db, 0, 0, "bias gradient, 2 threads vs 1");
      }
    }
}
