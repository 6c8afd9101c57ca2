// The gradient-check driver.
//
// A Case builds a small model with ir::Builder the way lower/Lower.cpp does: leaves, layers, per
// task a Label, the loss and Mul(LossWeight, loss), summed with Add into the total. The build
// function runs twice, giving two identical graphs:
//   - the reference copy stays forward-only and is evaluated in double by RefEval;
//   - the JIT copy gets autodiff::appendGradients(total), passes::runGraphPasses (verifying after
//     each pass) and jit::compile, and its train_step is called like the trainer calls it.
// The JIT's gradient of every element of every parameter is then compared with the central
// difference (L(θ+h) − L(θ−h)) / 2h of the double-precision reference total loss,
// h = 1e-6·max(1, |θ|), and must satisfy |g − fd| <= atol + rtol·|fd| (the case's tolerances;
// the error is dominated by the float kernels, the double finite differences are good to ~1e-9).
//
// The call runs with n < maxBatch. Input rows past n hold NaN (label rows past n too, except
// cross-entropy's, which hold class 0), so a kernel that reads past the batch shows; acts, grads,
// losses and outputs are NaN-filled before every call, so a gradient element that is never
// written fails. The losses and heads the JIT reports are checked against the reference as well
// (forward tolerance: 2e-5 relative + 2e-6 absolute), and head rows past n must stay untouched.
//
// Dropout: the reference is identity-with-mask, the mask probed from the JIT (see GradCheck.cpp);
// dropout cases are also checked against float central differences of the JIT's own forward with
// the same seed (so the same mask), step 1e-2, the looser tolerance 2e-3 + 2e-2·|fd|.
#pragma once

#include "RefEval.h"

#include "ir/Builder.h"

#include <functional>
#include <string>
#include <vector>

namespace mtlc::test::gradcheck {

using ir::Node;
using ir::OpKind;

struct Range {
  double lo = -1, hi = 1;
};

// One model under construction: the module, its one function "train_step", and how to fill the
// leaves.
class Net {
 public:
  explicit Net(int64_t maxBatch);
  Net(const Net &) = delete;

  ir::Module module;
  ir::Function &fn;
  ir::Builder b;

  Node *input(std::vector<int64_t> dims, Range r = {-1, 1});
  // An input of k integer indices in [0, vocab) per sample (stored as floats), for embedding.
  Node *indices(int64_t k, int64_t vocab);
  Node *param(const std::string &name, std::vector<int64_t> shape, Range r = {-0.5, 0.5});
  // A state parameter (ParamInfo::state: batchnorm's running statistics), drawn from r like a
  // parameter; it has no gradient, so the check skips it.
  Node *state(const std::string &name, std::vector<int64_t> shape, Range r);
  // Training-mode batchnorm over x's dims[0] with its weight, bias and running statistics.
  Node *batchNorm(Node *x, const std::string &name, double eps = 1e-5);
  // Another read of an existing parameter (a fresh Param node with the same index): tied weights.
  Node *reread(const Node *param);
  // y = x·Wᵀ + b with W [units, in] (PyTorch's layout), as lowering emits a dense layer.
  Node *dense(Node *x, int64_t units, const std::string &name, Range w = {-0.6, 0.6});
  // conv2d + bias_add; w [out, in, kh, kw].
  Node *conv(Node *x, int64_t out, int64_t kh, int64_t kw, int64_t stride, int64_t pad,
             const std::string &name, Range w = {-0.4, 0.4});
  // A task: its label, the loss, and weight·loss added to the total (the weight is the run-time
  // loss_weights entry, as in lowering). Returns the loss node. absentEvery > 0 makes label values
  // absent (NaN) within the batch: value e of the n·width values is absent when
  // e % absentEvery == absentEvery − 1 (so 1: every label absent).
  Node *task(OpKind loss, Node *head, double weight = 1.0, int absentEvery = 0);
  // Adds any scalar term to the total (for a Const-scaled term).
  void addToTotal(Node *term);

  // Binds the outputs (TaskLoss, TotalLoss, Head per task); called by the driver after build.
  void finish();
  Node *total() const { return total_; }

  struct TaskSpec {
    OpKind loss;
    double weight;
    int64_t classes;  // cross_entropy: the head width
    int absentEvery;
    Node *head, *lossNode;
  };
  std::vector<Range> inputRanges, paramRanges;
  std::vector<int64_t> inputVocab;  // per input: > 0 for integer indices in [0, vocab)
  std::vector<TaskSpec> tasks;
  int64_t paramFloats = 0;

 private:
  Node *total_ = nullptr;
};

struct Case {
  std::string group;  // the op under test; one TEST_CASE per group runs its cases
  std::string name;
  std::function<void(Net &)> build;
  double rtol = 1e-4, atol = 1e-5;
  int64_t n = 3, maxBatch = 5;
  uint64_t seed = 1;
  // Required distance from every non-differentiable point (see RefEval.h); data are redrawn
  // (with the next seed) until the reference evaluation keeps this margin.
  double minMargin = 1e-3;
};

// What a case observed: the worst errors over all checked gradient elements.
struct Report {
  std::string group, name;
  int64_t elements = 0;     // gradient elements checked
  double maxAbs = 0;        // max |g − fd|
  double maxRel = 0;        // max |g − fd| / |fd| over elements with |fd| >= 1e-3
  double maxRatio = 0;      // max |g − fd| / (atol + rtol·|fd|): <= 1 passes
  std::string worstAt;      // where maxRatio was reached
  double forwardRel = 0;    // max relative error of the JIT's losses against the reference
  double margin = 0;        // distance from the nearest non-differentiable point
  int draws = 0;            // data draws until the margin held
  double rtol = 0, atol = 0;
  // Dropout cases only: JIT gradient against float central differences of the JIT's own
  // forward (same seed, so the same mask), step 1e-2, tolerance 2e-3 + 2e-2·|fd|.
  double jitFdMaxAbs = -1;
  // What failed (0 everywhere for a passing case), with the first few offenders in `details`.
  int badMask = 0;     // a dropout mask that keeps everything or nothing
  int badForward = 0;  // losses / head values off the reference, or head rows past n written
  int badGrads = 0;    // gradient elements outside the tolerance
  int badJitFd = 0;    // dropout: gradient elements off the JIT's own finite differences
  std::string details;
};

// Every case, in one table: the TEST_CASEs and the coverage test read it.
const std::vector<Case> &allCases();

// Builds the reference copy (forward only) or the JIT copy (finished, differentiated, passes run).
void buildForward(const Case &c, Net &net);
void buildDifferentiated(const Case &c, Net &net);

// Runs one case and measures it without judging it: setup problems (a graph that fails to verify,
// a parameter without a gradient, no draw away from the kinks) still REQUIRE. `mutate`, if given,
// edits the differentiated graph before it is compiled (the self-test plants bugs with it).
Report measure(const Case &c, const std::function<void(ir::Function &)> &mutate = {});
// measure() with Catch2 assertions; prints the worst errors (WARN) and records the report for
// the table printed at exit.
Report runCase(const Case &c);
// Runs every case of a group (each as a DYNAMIC_SECTION); fails if the group has none.
void runGroup(const std::string &group);

// The groups that have a TEST_CASE (registered by GRADCHECK_GROUP in TestGradCheck.cpp).
std::vector<std::string> &registeredGroups();

}  // namespace mtlc::test::gradcheck
