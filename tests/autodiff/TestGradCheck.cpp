// Finite-difference gradient checks of every op and loss (cases in Cases.cpp, driver in
// GradCheck.cpp), one TEST_CASE per op with one section per case, and the coverage test that
// keeps the op table and the cases in step: adding an op to ir/Ops.def without classifying it
// here, or a forward op without a case that differentiates through it, fails.
#include "GradCheck.h"

#include <catch2/catch.hpp>

#include <algorithm>
#include <functional>
#include <map>
#include <set>
#include <unordered_set>

using namespace mtlc;
using namespace mtlc::test::gradcheck;

namespace {

bool registerGroup(const char *group) {
  registeredGroups().push_back(group);
  return true;
}

}  // namespace

#define GRADCHECK_CAT2(a, b) a##b
#define GRADCHECK_CAT(a, b) GRADCHECK_CAT2(a, b)
// One TEST_CASE per op group, registered so the coverage test sees which groups run.
#define GRADCHECK_GROUP(group)                                                                   \
  static const bool GRADCHECK_CAT(gradcheckGroup, __LINE__) = registerGroup(group);            \
  TEST_CASE("gradcheck: " group, "[autodiff][gradcheck]") { runGroup(group); }

GRADCHECK_GROUP("dense")
GRADCHECK_GROUP("matmul")
GRADCHECK_GROUP("conv2d")
GRADCHECK_GROUP("conv_transpose2d")
GRADCHECK_GROUP("maxpool")
GRADCHECK_GROUP("avgpool")
GRADCHECK_GROUP("reshape")
GRADCHECK_GROUP("relu")
GRADCHECK_GROUP("leaky_relu")
GRADCHECK_GROUP("sigmoid")
GRADCHECK_GROUP("tanh")
GRADCHECK_GROUP("gelu")
GRADCHECK_GROUP("smooth_step")
GRADCHECK_GROUP("dropout")
GRADCHECK_GROUP("layernorm")
GRADCHECK_GROUP("batchnorm")
GRADCHECK_GROUP("global_avgpool")
GRADCHECK_GROUP("upsample")
GRADCHECK_GROUP("add")
GRADCHECK_GROUP("mul")
GRADCHECK_GROUP("softmax")
GRADCHECK_GROUP("mix")
GRADCHECK_GROUP("embedding")
GRADCHECK_GROUP("concat")
GRADCHECK_GROUP("slice")
GRADCHECK_GROUP("transpose")
GRADCHECK_GROUP("dselect")
GRADCHECK_GROUP("cross_entropy")
GRADCHECK_GROUP("bce")
GRADCHECK_GROUP("mse")
GRADCHECK_GROUP("l1")
GRADCHECK_GROUP("cosine")
GRADCHECK_GROUP("loss_weights")

namespace {

using K = ir::OpKind;

// Every op of the table, straight from Ops.def.
const std::vector<K> &tableOps() {
  static const std::vector<K> ops = {
#define MTLC_OP(Name, mnem, arity, cls) K::Name,
#include "ir/Ops.def"
  };
  return ops;
}

// The forward ops (leaves, layers, losses): each needs a gradient-check case. Keep in step with
// ir/Ops.def; an op in none of the three lists fails the coverage test.
const std::set<K> kLeaves = {K::Input, K::Label, K::Param, K::LossWeight, K::Const};
const std::set<K> kForward = {
    K::Input,   K::Label,     K::Param,     K::LossWeight, K::Const,     K::MatMul,  K::BiasAdd,
    K::Conv2d,  K::MaxPool,   K::AvgPool,   K::Reshape,    K::Relu,      K::LeakyRelu, K::Sigmoid,
    K::Tanh,    K::Gelu,      K::Dropout,   K::LayerNorm,  K::Add,       K::Softmax, K::Mix,
    K::Embedding, K::Concat,  K::Mul,       K::CrossEntropy, K::BCE,     K::MSE,     K::L1,
    K::BatchNorm, K::GlobalAvgPool, K::Upsample, K::ConvTranspose2d, K::Cosine, K::SmoothStep, K::Slice,
    K::Transpose};
// The backward ops autodiff emits: each must appear in some case's differentiated graph, which
// (the cases putting parameters upstream of every op) means its kernel's output is checked.
const std::set<K> kBackward = {
    K::BiasGrad,         K::ReduceBatch,       K::Conv2dBwdData,  K::Conv2dBwdFilter, K::MaxPoolBwd,
    K::AvgPoolBwd,       K::ReluBwd,           K::LeakyReluBwd,   K::SigmoidBwd,      K::TanhBwd,
    K::GeluBwd,          K::DropoutBwd,        K::LayerNormBwdData, K::LayerNormBwdGamma,
    K::SoftmaxBwd,       K::MixBwdWeights,     K::MixBwdInput,    K::EmbeddingBwd,
    K::CrossEntropyBwd,  K::BCEBwd,            K::MSEBwd,         K::L1Bwd,
    K::BatchNormBwdStats, K::BatchNormBwdData, K::BatchNormBwdParam, K::GlobalAvgPoolBwd, K::UpsampleBwd, K::CosineBwd,
    K::SmoothStepBwd,    K::SliceBwd};
// Listed among the forward ops but emitted only by autodiff and without a gradient rule of its
// own: checked like a backward op. Moving one into the forward path (lowering emitting it with
// parameters upstream) needs a rule and a case in kForward (as slice got for DSelect-k's gates).
const std::set<K> kBackwardOnly = {};
// Forward ops of the entry points that are never differentiated (eval_step, predict): no gradient
// rule; their kernels are checked against double loops in tests/codegen (TestBatchNorm.cpp).
const std::set<K> kEvalOnly = {K::BatchNormEval};

}  // namespace

TEST_CASE("gradcheck coverage: every op of Ops.def has a case", "[autodiff][gradcheck]") {
  // 1. The two lists partition the table.
  for (K op : tableOps()) {
    INFO("op " << ir::mnemonic(op) << " is in none (or several) of the forward / backward lists "
                                      "of tests/autodiff/TestGradCheck.cpp: classify it and add a case");
    CHECK(kForward.count(op) + kBackward.count(op) + kBackwardOnly.count(op) + kEvalOnly.count(op) == 1);
  }
  CHECK(kForward.size() + kBackward.size() + kBackwardOnly.size() + kEvalOnly.size() == tableOps().size());

  // 2. What the cases build.
  std::map<K, std::string> forwardWithParamUpstream, forwardSeen, backwardSeen;
  for (const Case &c : allCases()) {
    Net fwd(c.maxBatch);
    buildForward(c, fwd);
    std::unordered_set<const ir::Node *> dependsOnParam;
    for (const auto &up : fwd.fn.nodes) {
      const ir::Node *n = up.get();
      forwardSeen.emplace(n->op, c.name);
      bool dep = n->op == K::Param;
      for (const ir::Node *o : n->operands) dep = dep || dependsOnParam.count(o);
      if (!dep) continue;
      dependsOnParam.insert(n);
      // The op's backward rule runs only when some operand needs a gradient.
      bool operandNeeds = std::any_of(n->operands.begin(), n->operands.end(),
                                      [&](const ir::Node *o) { return dependsOnParam.count(o) > 0; });
      if (operandNeeds) forwardWithParamUpstream.emplace(n->op, c.name);
    }
    Net diff(c.maxBatch);
    buildDifferentiated(c, diff);
    for (const auto &up : diff.fn.nodes)
      if (kBackward.count(up->op) || kBackwardOnly.count(up->op)) backwardSeen.emplace(up->op, c.name);
  }

  // 3. Every forward op is differentiated through by some case (leaves: read by some case).
  for (K op : kForward) {
    INFO("forward op " << ir::mnemonic(op) << " has no gradient-check case"
                       << (kLeaves.count(op) ? "" : " with a parameter upstream of it"));
    if (kLeaves.count(op))
      CHECK(forwardSeen.count(op) == 1);
    else
      CHECK(forwardWithParamUpstream.count(op) == 1);
  }
  // 4. Every backward op runs in some case.
  std::set<K> backward = kBackward;
  backward.insert(kBackwardOnly.begin(), kBackwardOnly.end());
  for (K op : backward) {
    INFO("backward op " << ir::mnemonic(op) << " appears in no case's differentiated graph");
    CHECK(backwardSeen.count(op) == 1);
  }
  // 5. Every group of cases has a TEST_CASE that runs it.
  std::set<std::string> groups(registeredGroups().begin(), registeredGroups().end());
  for (const Case &c : allCases()) {
    INFO("case group " << c.group << " has no GRADCHECK_GROUP");
    CHECK(groups.count(c.group) == 1);
  }
}

// The check must be able to fail: plant a bug in one backward node of a differentiated graph
// (after the passes, before codegen) and require the gradient comparison to catch it.
TEST_CASE("gradcheck self-test: planted backward bugs are caught", "[autodiff][gradcheck]") {
  auto find = [](const std::string &group, const std::string &name) -> const Case & {
    for (const Case &c : allCases())
      if (c.group == group && c.name == name) return c;
    FAIL("no case " << group << " / " << name);
    throw;
  };
  // Edits the first node of kind `op`; the edit keeps the graph well-formed.
  auto plant = [](K op, std::function<void(ir::Node &)> edit) {
    return [=](ir::Function &fn) {
      for (auto &up : fn.nodes)
        if (up->op == op) return edit(*up);
      FAIL("no " << ir::mnemonic(op) << " node to plant a bug in");
    };
  };
  struct Planted {
    const char *what, *group, *name;
    std::function<void(ir::Function &)> mutate;
  };
  const std::vector<Planted> bugs = {
      {"leaky_relu_bwd with slope 0.3 instead of 0.2", "leaky_relu", "slope 0.2",
       plant(K::LeakyReluBwd, [](ir::Node &n) { n.f = 0.3; })},
      {"sigmoid_bwd computing tanh's derivative", "sigmoid", "dense -> sigmoid",
       plant(K::SigmoidBwd, [](ir::Node &n) { n.op = K::TanhBwd; })},
      {"layernorm_bwd_data with eps 1e-2 instead of 1e-5", "layernorm", "vector [6], eps 1e-5",
       plant(K::LayerNormBwdData, [](ir::Node &n) { n.f = 1e-2; })},
      {"layernorm_bwd_gamma with eps 1e-2 instead of 1e-5", "layernorm", "vector [6], eps 1e-5",
       plant(K::LayerNormBwdGamma, [](ir::Node &n) { n.f = 1e-2; })},
      {"batchnorm_bwd_stats with eps 1e-2 instead of 1e-5", "batchnorm", "conv -> batchnorm over [3,5,4] channels",
       plant(K::BatchNormBwdStats, [](ir::Node &n) { n.f = 1e-2; })},
      {"batchnorm_bwd_param giving dβ's row for dγ", "batchnorm", "conv -> batchnorm over [3,5,4] channels",
       plant(K::BatchNormBwdParam, [](ir::Node &n) { n.ints[0] = ir::Builder::kBatchNormDBetaRow; })},
      {"upsample_bwd routing nearest where the forward is bilinear", "upsample",
       "conv -> upsample bilinear x2 -> conv on a non-square plane",
       plant(K::UpsampleBwd, [](ir::Node &n) { n.ints[1] = int64_t(ir::UpsampleMode::Nearest); })},
      {"dropout_bwd drawing another site's mask", "dropout", "dense -> tanh -> dropout 0.5 -> dense",
       plant(K::DropoutBwd, [](ir::Node &n) { n.ints[0] = 99; })},
      {"mse_bwd computing l1's derivative", "mse", "4 outputs",
       plant(K::MSEBwd, [](ir::Node &n) { n.op = K::L1Bwd; })},
      {"mix_bwd_input routing the next expert's weight", "mix",
       "gated experts: softmax(dense(h)) mixes 3 dense experts (MMoE)",
       plant(K::MixBwdInput, [](ir::Node &n) { n.ints[0] = (n.ints[0] + 1) % 3; })},
      {"softmax_bwd reading dy where it reads y", "softmax", "dense -> softmax [5] -> dense",
       plant(K::SoftmaxBwd, [](ir::Node &n) { std::swap(n.operands[0], n.operands[1]); })},
  };
  for (const Planted &bug : bugs) {
    INFO("planted: " << bug.what);
    Report r = measure(find(bug.group, bug.name), bug.mutate);
    CHECK(r.badForward == 0);  // the forward pass is untouched
    CHECK(r.badGrads > 0);
    if (std::string(bug.group) == "dropout") CHECK(r.badJitFd > 0);
  }
}
