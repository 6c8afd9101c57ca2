// Test support for codegen: a one-function IR module built with ir::Builder, compiled with the JIT,
// run on host buffers the harness owns. Any node's values can be read back through the memory
// plan, so a test needs no output plumbing; outputs bound with bind() land in the caller's buffers
// as they would in the trainer. Buffers the generated code must overwrite (acts, grads, outputs,
// losses) are filled with NaN before each run, so a kernel that skips an element is caught.
#pragma once

#include "ir/Builder.h"
#include "jit/Compile.h"
#include "passes/Fusion.h"
#include "passes/MemoryPlan.h"

#include <catch2/catch.hpp>

#include "runtime/parallel/ThreadPool.h"

#include <memory>
#include <random>
#include <string>
#include <vector>

namespace mtlc::test {

using ir::Node;
using ir::OpKind;
using ir::Type;

inline Type batched(std::vector<int64_t> dims) { return Type{std::move(dims), true}; }
inline Type unbatched(std::vector<int64_t> dims) { return Type{std::move(dims), false}; }

class Harness {
 public:
  explicit Harness(int64_t maxBatch = 8, std::string fnName = "run");

  ir::Module module;
  ir::Function &fn;
  ir::Builder b;

  // Leaves; each registers its slot in the module's tables.
  Node *input(std::vector<int64_t> dims);
  Node *label(std::vector<int64_t> dims);
  Node *param(std::vector<int64_t> shape);
  Node *lossWeight(int task) { return b.lossWeight(task); }
  // Binds a node to a function output (the module's head table grows for Head outputs).
  void bind(Node *value, ir::Output::Kind kind, int index);

  // How prepare() compiles (fusion, target, tiling overrides).
  jit::CompileOptions options;
  // Runs with a runtime ThreadPool of this many threads (<= 1: no pool, kernels stay serial).
  int threads = 1;
  // mtlc_args::grads_ready and its context for the calls run() makes (null: not told).
  void (*gradsReady)(void *, int64_t, int64_t) = nullptr;
  void *gradsReadyCtx = nullptr;

  // Compiles (once) and allocates every buffer for the module's maxBatch.
  void prepare();
  // The host buffer behind a leaf or any planned node (valid after prepare()).
  float *data(const Node *node);
  // Fills a leaf with uniform random values in [lo, hi).
  void fillUniform(const Node *leaf, double lo = -1, double hi = 1);
  // Fills a label with class indices in [0, classes).
  void fillClasses(const Node *label, int classes);
  std::vector<float> &lossWeights() { return lossWeights_; }
  std::vector<float> &losses() { return losses_; }
  std::vector<float> &outputBuffer(int task) { return outputs_.at(task); }
  std::vector<float> &grads() { return grads_; }
  std::vector<float> &params() { return params_; }  // the arena, by ParamInfo::offset

  // Poisons the buffers the code must write (unless poison is false), then calls the entry point
  // with batch size n.
  bool poison = true;
  void run(int64_t n, uint64_t seed = 1);
  // Runs another function of the module (added by the test) on the same buffers.
  void runFunction(const std::string &name, int64_t n, uint64_t seed = 1);
  // A copy of a node's values after run(): n·elements floats if batched, else elements.
  std::vector<double> read(const Node *node);

  int64_t n() const { return n_; }
  const jit::CompiledModule &compiled() const { return compiled_; }
  const passes::MemoryPlan &plan() const { return plan_; }
  const passes::FusionPlan &fusion() const { return fusion_; }
  std::mt19937 &rng() { return rng_; }

 private:
  float *where(const passes::Storage &s);

  std::string fnName_;
  bool prepared_ = false;
  int64_t n_ = 0;
  jit::CompiledModule compiled_;
  passes::FusionPlan fusion_;
  passes::MemoryPlan plan_;
  std::vector<float> params_, grads_, acts_, lossWeights_, losses_;
  std::vector<std::vector<float>> inputs_, labels_, outputs_;
  int64_t paramFloats_ = 0;
  std::mt19937 rng_{12345};
  std::unique_ptr<rt::ThreadPool> pool_;
};

// Per element |got − want| <= atol + rtol·|want|; reports the first few mismatches.
void requireClose(const std::vector<double> &got, const std::vector<double> &want, double rtol,
                  double atol, const std::string &what);

// Loads a leaf's current host values as doubles (for reference implementations).
std::vector<double> values(Harness &h, const Node *leaf);

// The nodes of C[M,N] = op(A)·op(B) on two parameters filled uniformly in [-1, 1): A is [M, K]
// ([K, M] when tA), B is [K, N] ([N, K] when tB).
struct MatmulNodes {
  Node *a, *b, *c;
};
inline MatmulNodes randomMatmul(Harness &h, int64_t M, int64_t K, int64_t N, bool tA, bool tB) {
  Node *a = h.param(tA ? std::vector<int64_t>{K, M} : std::vector<int64_t>{M, K});
  Node *b = h.param(tB ? std::vector<int64_t>{N, K} : std::vector<int64_t>{K, N});
  Node *c = h.b.matmul(a, b, tA, tB);
  h.fillUniform(a);
  h.fillUniform(b);
  return {a, b, c};
}

// One loss and its backward on one head (prediction `predDims`, label `labelDims`, both per
// sample), the loss bound as task 0's, the prediction uniform in [-3, 3), dL = loss_weights[0].
struct LossFixture {
  Harness h;
  Node *pred, *label, *loss, *grad;
  double dL = 0.7;

  LossFixture(int64_t maxBatch, OpKind fwd, OpKind bwd, std::vector<int64_t> predDims,
          std::vector<int64_t> labelDims, int threads = 1)
      : h(maxBatch) {
    h.threads = threads;
    pred = h.input(std::move(predDims));
    label = h.label(std::move(labelDims));
    loss = h.b.loss(fwd, pred, label);
    grad = h.b.lossBwd(bwd, pred, label, h.lossWeight(0));
    h.bind(loss, ir::Output::Kind::TaskLoss, 0);
    h.fillUniform(pred, -3, 3);
    h.lossWeights()[0] = (float)dL;
  }
  float *P() { return h.data(pred); }
  float *Y() { return h.data(label); }
};

}  // namespace mtlc::test
