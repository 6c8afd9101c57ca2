// Kernels split across a runtime ThreadPool (mtlc_args::parallel_for) give bit-identical results
// for every thread count: each graph runs serially and with 2, 3 and 4 threads, with
// CodegenOptions::parallelAlways so that even these small kernels split, and small GEMM blocks
// so that the packed path packs and computes several blocks per thread.
#include "Harness.h"

#include <functional>
#include <map>
#include <string>

using namespace mtlc;
using namespace mtlc::test;
using Kind = ir::Output::Kind;

namespace {

// Builds a graph into h; returns the nodes whose values to compare.
using Graph = std::function<std::vector<Node *>(Harness &h)>;

std::vector<std::vector<double>> run(const Graph &graph, int threads, jit::CompileOptions o,
                                     int64_t maxBatch, int64_t n, int *partitions = nullptr,
                                     std::string *llvmIR = nullptr) {
  Harness h(maxBatch);
  o.codegen.parallelAlways = true;
  h.options = o;
  h.threads = threads;
  std::vector<Node *> results = graph(h);
  h.prepare();
  for (const auto &node : h.fn.nodes)
    if (node->op == OpKind::Input || node->op == OpKind::Param) h.fillUniform(node.get(), -1, 1);
  h.run(n, 3);
  if (partitions) *partitions = h.compiled().compileThreads;
  if (llvmIR) *llvmIR = h.compiled().llvmIR;
  std::vector<std::vector<double>> out;
  for (Node *r : results) out.push_back(h.read(r));
  out.push_back(std::vector<double>(h.grads().begin(), h.grads().end()));
  return out;
}

void checkThreads(const std::string &what, const Graph &graph, jit::CompileOptions o = {},
                  int64_t maxBatch = 16, int64_t n = 13) {
  auto serial = run(graph, 1, o, maxBatch, n);
  for (int threads : {2, 3, 4}) {
    auto par = run(graph, threads, o, maxBatch, n);
    REQUIRE(par.size() == serial.size());
    for (size_t i = 0; i < par.size(); ++i) {
      // Grads of parameters no output is bound to stay as poisoned (NaN) in both runs.
      auto a = par[i], b = serial[i];
      for (size_t j = 0; j < a.size(); ++j)
        if (std::isnan(a[j]) && std::isnan(b[j])) a[j] = b[j] = 0;
      requireClose(a, b, 0, 0, what + ", " + std::to_string(threads) + " threads, result " + std::to_string(i));
    }
  }
}

// The module split across compile threads (jit/ParallelCompile.h) computes what one thread's
// compile does, bit for bit.
void checkCompileThreads(const std::string &what, const Graph &graph, jit::CompileOptions o = {},
                         int64_t maxBatch = 16, int64_t n = 13, bool gemmHelpersExpected = false) {
  o.threads = 1;
  int partitions = 0;
  auto one = run(graph, 1, o, maxBatch, n, &partitions);
  CHECK(partitions <= 2);  // the module whole, or its hot kernels and its cold ones apart
  o.threads = 4;
  o.keepIR = true;
  std::string ir;
  auto split = run(graph, 1, o, maxBatch, n, &partitions, &ir);
  CHECK(partitions > 1);  // the entry points and at least one kernel apart
  // A GEMM helper that several kernels call is defined in one partition only.
  std::map<std::string, int> helpers;
  for (size_t at = ir.find("define "); at != std::string::npos; at = ir.find("define ", at + 1)) {
    size_t name = ir.find("@mtlc.gemm.", at), eol = ir.find('\n', at);
    if (name < eol) ++helpers[ir.substr(name, ir.find('(', name) - name)];
  }
  INFO(what << ": " << helpers.size() << " GEMM helpers");
  if (gemmHelpersExpected) CHECK(!helpers.empty());
  for (const auto &[helper, definitions] : helpers) {
    INFO(helper);
    CHECK(definitions == 1);
  }
  REQUIRE(split.size() == one.size());
  for (size_t i = 0; i < split.size(); ++i) {
    auto a = split[i], b = one[i];
    for (size_t j = 0; j < a.size(); ++j)
      if (std::isnan(a[j]) && std::isnan(b[j])) a[j] = b[j] = 0;
    requireClose(a, b, 0, 0, what + ", compiled on 4 threads, result " + std::to_string(i));
  }
}

jit::CompileOptions gemmOptions(codegen::GemmKind kind) {
  jit::CompileOptions o;
  o.codegen.gemmKind = kind;
  o.codegen.gemmKC = 24, o.codegen.gemmMB = 20, o.codegen.gemmNB = 40;
  return o;
}

}  // namespace

TEST_CASE("threads: every GEMM form and transposition, bit-identical for any thread count", "[codegen][threads]") {
  using codegen::GemmKind;
  for (GemmKind kind : {GemmKind::Packed, GemmKind::Axpy, GemmKind::Dot})
    for (bool tA : {false, true})
      for (bool tB : {false, true}) {
        Graph g = [&](Harness &h) {
          Node *a = h.param(tA ? std::vector<int64_t>{50, 45} : std::vector<int64_t>{45, 50});
          Node *b = h.param(tB ? std::vector<int64_t>{70, 50} : std::vector<int64_t>{50, 70});
          return std::vector<Node *>{h.b.matmul(a, b, tA, tB)};
        };
        checkThreads("gemm kind " + std::to_string(int(kind)) + (tA ? " Aᵀ" : "") + (tB ? " Bᵀ" : ""), g,
                     gemmOptions(kind));
      }
}

TEST_CASE("threads: the packed GEMM cut into bands of rows and of columns", "[codegen][threads]") {
  // Parameters only ([M,K]·[K,N]), a batched A (M = n), and the weight gradient's form (K = n).
  for (int split : {1, 2})
    for (bool tB : {false, true}) {
      jit::CompileOptions o = gemmOptions(codegen::GemmKind::Packed);
      o.codegen.gemmSplit = split;
      std::string what = std::string(split == 1 ? "rows" : "columns") + (tB ? ", Bᵀ" : "");
      checkThreads("params, " + what, [&](Harness &h) {
        Node *a = h.param({45, 50});
        Node *b = h.param(tB ? std::vector<int64_t>{70, 50} : std::vector<int64_t>{50, 70});
        return std::vector<Node *>{h.b.matmul(a, b, false, tB)};
      }, o);
      checkThreads("batched A, " + what, [&](Harness &h) {
        Node *x = h.input({50});
        Node *w = h.param(tB ? std::vector<int64_t>{70, 50} : std::vector<int64_t>{50, 70});
        return std::vector<Node *>{h.b.matmul(x, w, false, tB)};
      }, o, 64, 61);
      checkThreads("K = n, " + what, [&](Harness &h) {
        Node *dy = h.input({45}), *x = h.input({70});
        return std::vector<Node *>{h.b.matmul(dy, x, true, false)};
      }, o, 64, 61);
    }
}

TEST_CASE("threads: fused epilogues and elementwise chains", "[codegen][threads]") {
  Graph dense = [](Harness &h) {
    Node *x = h.input({60});
    Node *w = h.param({33, 60}), *b = h.param({33});
    Node *y = h.b.unary(OpKind::Gelu, h.b.biasAdd(h.b.matmul(x, w, false, true), b));
    Node *d = h.b.unary(OpKind::Dropout, h.b.unary(OpKind::Tanh, h.input({33})), 0.25, {4});
    return std::vector<Node *>{y, h.b.add(d, h.input({33}))};
  };
  checkThreads("dense + chains", dense, gemmOptions(codegen::GemmKind::Auto));
  checkCompileThreads("dense + chains", dense, gemmOptions(codegen::GemmKind::Auto));
  // Two packed products, so two kernels (in different partitions) call the same GEMM helpers.
  Graph twoDense = [](Harness &h) {
    Node *x = h.input({60});
    Node *y1 = h.b.unary(OpKind::Relu, h.b.matmul(x, h.param({33, 60}), false, true));
    Node *y2 = h.b.unary(OpKind::Tanh, h.b.matmul(x, h.param({33, 60}), false, true));
    return std::vector<Node *>{y1, y2};
  };
  checkCompileThreads("two packed products", twoDense, gemmOptions(codegen::GemmKind::Packed), 16, 13, true);
}

TEST_CASE("threads: a conv net's train_step (losses, heads, every gradient)", "[codegen][threads]") {
  Graph net = [](Harness &h) {
    Node *x = h.input({2, 9, 8});
    Node *Wc = h.param({3, 2, 3, 3}), *bc = h.param({3});
    Node *bd = h.param({4});
    Node *y = h.label({4});
    Node *c = h.b.unary(OpKind::Relu, h.b.biasAdd(h.b.conv2d(x, Wc, 1, 0), bc));  // [3,7,6]
    Node *p = h.b.maxPool(c, 2, 2);                                               // [3,3,3]
    Node *a = h.b.avgPool(c, 2, 2);                                               // [3,3,3]
    Node *s = h.b.add(p, a);
    Node *flat = h.b.reshape(s, batched({27}));
    Node *Wd2 = h.param({4, 27});
    Node *z = h.b.biasAdd(h.b.matmul(flat, Wd2, false, true), bd);
    Node *L = h.b.loss(OpKind::MSE, z, y);
    Node *w = h.lossWeight(0);
    Node *dz = h.b.lossBwd(OpKind::MSEBwd, z, y, w);
    Node *dWd = h.b.matmul(dz, flat, true, false), *dbd = h.b.biasGrad(dz);
    Node *ds = h.b.reshape(h.b.matmul(dz, Wd2, false, false), s->type);
    Node *dc = h.b.add(h.b.maxPoolBwd(c, ds, 2, 2), h.b.avgPoolBwd(ds, c->type, 2, 2));
    Node *dr = h.b.unaryBwd(OpKind::ReluBwd, c, dc);
    Node *dWc = h.b.conv2dBwdFilter(x, dr, Wc->type, 1, 0), *dbc = h.b.biasGrad(dr);
    Node *dx = h.b.conv2dBwdData(dr, Wc, x->type, 1, 0);
    h.bind(L, Kind::TaskLoss, 0);
    h.bind(h.b.mul(w, L), Kind::TotalLoss, 0);
    h.bind(z, Kind::Head, 0);
    std::vector<std::pair<Node *, Node *>> grads{{Wc, dWc}, {bc, dbc}, {Wd2, dWd}, {bd, dbd}};
    for (auto [param, grad] : grads) h.bind(grad, Kind::Grad, (int)param->ints[0]);
    return std::vector<Node *>{z, dx};
  };
  checkThreads("conv net", net, {}, 8, 7);
  checkCompileThreads("conv net", net, {}, 8, 7);
}

TEST_CASE("threads: pooling, fused pooling gradients, layer norm, bias add", "[codegen][threads]") {
  Graph g = [](Harness &h) {
    Node *x = h.input({3, 27, 26});
    Node *p = h.b.maxPool(x, 2, 2);
    Node *y = h.input({3, 27, 26});
    Node *dx = h.b.unaryBwd(OpKind::ReluBwd, y, h.b.maxPoolBwd(y, h.input(p->type.dims), 2, 2));
    Node *v = h.input({40});
    Node *ln = h.b.layerNorm(v, h.param({40}), h.param({40}), 1e-5);
    Node *dln = h.b.layerNormBwdData(v, h.param({40}), h.input({40}), 1e-5);
    Node *bias = h.b.unary(OpKind::Relu, h.b.biasAdd(h.b.reshape(p, batched({3, 13, 13})), h.param({3})));
    return std::vector<Node *>{p, dx, ln, dln, bias};
  };
  checkThreads("pool + norm", g, {}, 16, 11);
}

namespace {

// The outlined loop bodies (`*.par` functions) of `graph` compiled for `maxBatch`, with the
// default options: parallelFor outlines only what can be worth splitting.
int outlinedBodies(const Graph &graph, int64_t maxBatch) {
  Harness h(maxBatch);
  h.options.keepIR = true;
  h.threads = 2;
  graph(h);
  h.prepare();
  const std::string &ir = h.compiled().llvmIR;
  int bodies = 0;
  for (size_t at = ir.find("\ndefine "); at != std::string::npos; at = ir.find("\ndefine ", at + 1)) {
    size_t eol = ir.find('\n', at + 1);
    if (ir.substr(at, eol - at).find(".par") != std::string::npos) ++bodies;
  }
  return bodies;
}

}  // namespace

TEST_CASE("threads: a loop not worth splitting even at the largest batch stays in its kernel", "[codegen][threads]") {
  auto relu = [](int64_t width) {
    return Graph([width](Harness &h) { return std::vector<Node *>{h.b.unary(OpKind::Relu, h.input({width}))}; });
  };
  CHECK(outlinedBodies(relu(32), 4) == 0);    // 128 elements at n = 4
  CHECK(outlinedBodies(relu(32), 4096) > 0);  // 131072 at n = 4096: worth it from 2^15 on
  CHECK(outlinedBodies(relu(4096), 16) > 0);
  // Inlined or not, the results are the serial ones for any thread count and batch.
  checkThreads("relu [32], max batch 4", relu(32), {}, 4, 3);
}
