// Batch norm's fused kernels against the unfused path (jit::CompileOptions::fuse false: one kernel
// per node), on a ResNet stage at resnet_fashion's shapes (examples/resnet_fashion.mtl): a stem
// conv2d(16) → batchnorm → relu on [16,28,28], a basic block, a downsampling block to [32,14,14]
// with a 1x1 conv2d + batchnorm projection shortcut, global_avgpool, a dense head and an mse loss.
//   training   the whole train_step, backward by autodiff: every parameter's gradient, the loss
//              and the running statistics after the step;
//   inference  the same stage with batchnorm_eval (the predict / eval_step form): the head.
// The fused kernels run the unfused kernels' float arithmetic per element, moved into the
// producer's store, so the two agree to rounding (FMA contraction): 1e-5 relative plus 1e-6 of
// the result's largest magnitude, absolute (a floor for the values near 0). The groups that make
// the difference are checked by kernel name, so a rule that stops firing fails here too.
#include "Harness.h"

#include "autodiff/Autodiff.h"

#include <algorithm>
#include <cmath>

using namespace mtlc;
using namespace mtlc::test;
using Kind = ir::Output::Kind;

namespace {

constexpr double kEps = 1e-5;

struct Stage {
  std::vector<Node *> trainable;  // conv weights, γ, β, the head's W and b
  std::vector<Node *> running;    // running_mean, running_var (state)
  Node *x = nullptr, *label = nullptr, *head = nullptr, *loss = nullptr;
};

class StageBuilder {
 public:
  StageBuilder(Harness &h, bool training) : h_(h), training_(training) {}

  Node *conv(Node *x, int64_t out, int64_t k, int64_t stride, int64_t pad) {
    Node *w = h_.param({out, x->type.dims[0], k, k});
    s.trainable.push_back(w);
    return h_.b.conv2d(x, w, stride, pad);
  }
  Node *bn(Node *x) {
    const int64_t C = x->type.dims[0];
    Node *gamma = h_.param({C}), *beta = h_.param({C});
    Node *mean = h_.param({C}), *var = h_.param({C}), *count = h_.param({});
    for (size_t i = h_.module.params.size() - 3; i < h_.module.params.size(); ++i) h_.module.params[i].state = true;
    s.trainable.insert(s.trainable.end(), {gamma, beta});
    s.running.insert(s.running.end(), {mean, var});
    return training_ ? h_.b.batchNorm(x, gamma, beta, mean, var, count, kEps)
                     : h_.b.batchNormEval(x, gamma, beta, mean, var, kEps);
  }
  Node *relu(Node *x) { return h_.b.unary(OpKind::Relu, x); }
  // conv → bn → relu → conv → bn, + the shortcut, → relu (resnet_fashion's basic block).
  Node *block(Node *x, int64_t out, int64_t stride) {
    Node *body = bn(conv(relu(bn(conv(x, out, 3, stride, 1))), out, 3, 1, 1));
    Node *shortcut = stride == 1 ? x : bn(conv(x, out, 1, stride, 0));
    return relu(h_.b.add(body, shortcut));
  }

  Stage build() {
    s.x = h_.input({1, 28, 28});
    Node *t = relu(bn(conv(s.x, 16, 3, 1, 1)));
    t = block(block(t, 16, 1), 32, 2);
    Node *pooled = h_.b.globalAvgPool(t);
    Node *w = h_.param({3, 32}), *b = h_.param({3});
    s.trainable.insert(s.trainable.end(), {w, b});
    s.head = h_.b.biasAdd(h_.b.matmul(pooled, w, false, true), b);
    s.label = h_.label({3});
    s.loss = h_.b.loss(OpKind::MSE, s.head, s.label);
    return s;
  }

 private:
  Harness &h_;
  bool training_;
  Stage s;
};

// The values a run yields, one list each, and the fused kernels' names in its LLVM IR.
struct Outcome {
  std::vector<std::vector<double>> values;
  std::vector<std::string> names;
  std::string ir;
};

Outcome runStage(bool training, bool fuse, int64_t n) {
  Harness h(8, training ? "train_step" : "predict");
  h.options.fuse = fuse;
  h.options.keepIR = true;
  Stage s = StageBuilder(h, training).build();
  if (training) {
    h.bind(s.loss, Kind::TaskLoss, 0);
    autodiff::appendGradients(h.module, h.fn, s.loss);
  } else {
    h.bind(s.head, Kind::Head, 0);
  }
  h.prepare();
  // The same values for both runs: the harness's generator starts from the same seed.
  h.fillUniform(s.x, -1, 1);
  h.fillUniform(s.label, -1, 1);
  for (const auto &up : h.fn.nodes)
    if (up->op == OpKind::Param) h.fillUniform(up.get(), -0.5, 0.5);
  for (size_t i = 0; i < s.running.size(); i += 2) {  // a mean around 0, a variance in [0.5, 1.5)
    h.fillUniform(s.running[i], -0.2, 0.2);
    h.fillUniform(s.running[i + 1], 0.5, 1.5);
  }
  for (Node *p : s.trainable)
    if (p->type.dims.size() == 1 && p != s.trainable.back()) h.fillUniform(p, 0.5, 1.5);  // γ, β
  h.run(n);
  Outcome o;
  o.ir = h.compiled().llvmIR;
  if (training) {
    o.values.push_back({h.losses()[0]});
    o.names.push_back("loss");
    for (size_t i = 0; i < s.trainable.size(); ++i) {
      const auto &info = h.module.params[s.trainable[i]->ints[0]];
      o.values.emplace_back(h.grads().begin() + info.offset, h.grads().begin() + info.offset + info.elements());
      o.names.push_back("gradient of parameter " + std::to_string(i));
    }
    for (size_t i = 0; i < s.running.size(); ++i) {
      o.values.push_back(values(h, s.running[i]));
      o.names.push_back("running statistic " + std::to_string(i));
    }
  } else {
    o.values.push_back(h.read(s.head));
    o.names.push_back("prediction");
  }
  return o;
}

void requireSame(const Outcome &fused, const Outcome &plain) {
  REQUIRE(fused.values.size() == plain.values.size());
  for (size_t i = 0; i < fused.values.size(); ++i) {
    double scale = 0;
    for (double v : plain.values[i]) scale = std::max(scale, std::abs(v));
    requireClose(fused.values[i], plain.values[i], 1e-5, 1e-6 * scale, fused.names[i] + ": fused vs unfused");
  }
}

// A kernel's LLVM name is k<number>.<members joined by +>, quoted when it holds a '+'.
bool hasKernel(const Outcome &o, const std::string &name) {
  return o.ir.find("." + name + "\"(") != std::string::npos || o.ir.find("." + name + "(") != std::string::npos;
}

}  // namespace

TEST_CASE("batchnorm fusion: a resnet_fashion stage's train_step, fused vs unfused", "[codegen][fusion][batchnorm]") {
  Outcome fused = runStage(true, true, 6), plain = runStage(true, false, 6);
  // Forward: the statistics pass, then one normalise pass with the relu (and the residual add).
  CHECK(hasKernel(fused, "batchnorm+relu"));
  CHECK(hasKernel(fused, "batchnorm+add+relu"));
  // Backward: the relu masks in the producing kernel's store; batchnorm's reduction and
  // elementwise passes are kernels of their own.
  CHECK(hasKernel(fused, "global_avgpool_bwd+relu_bwd"));
  CHECK(hasKernel(fused, "conv2d_bwd_data+relu_bwd"));
  CHECK(hasKernel(fused, "batchnorm_bwd_stats"));
  CHECK_FALSE(hasKernel(plain, "batchnorm+relu"));
  requireSame(fused, plain);
}

TEST_CASE("batchnorm fusion: inference folds conv2d → batchnorm_eval → relu into the conv", "[codegen][fusion][batchnorm]") {
  for (int64_t n : {int64_t(1), int64_t(5)}) {
    INFO("n " << n);
    Outcome fused = runStage(false, true, n), plain = runStage(false, false, n);
    CHECK(hasKernel(fused, "conv2d+batchnorm_eval+relu"));      // stem, each block's first conv
    CHECK(hasKernel(fused, "conv2d+batchnorm_eval+add+relu"));  // a block's second conv + identity
    CHECK(hasKernel(fused, "conv2d+batchnorm_eval"));           // the projection shortcut
    CHECK_FALSE(hasKernel(plain, "conv2d+batchnorm_eval+relu"));
    requireSame(fused, plain);
  }
}

TEST_CASE("batchnorm fusion: batchnorm_eval after a dense layer and as a root", "[codegen][fusion][batchnorm]") {
  // [F] features: the matmul's epilogue reads γ, β and the statistics per lane (a channel per
  // column); on its own, batchnorm_eval's kernel applies the chain after it.
  for (bool afterDense : {true, false}) {
    INFO((afterDense ? "matmul → batchnorm_eval → relu" : "batchnorm_eval → tanh"));
    Outcome o[2];
    for (bool fuse : {false, true}) {
      Harness h(8, "predict");
      h.options.fuse = fuse;
      h.options.keepIR = true;
      Node *x = h.input({afterDense ? int64_t(7) : int64_t(19)});
      if (afterDense) x = h.b.matmul(x, h.param({19, 7}), false, true);
      Node *gamma = h.param({19}), *beta = h.param({19}), *mean = h.param({19}), *var = h.param({19});
      Node *y = h.b.unary(afterDense ? OpKind::Relu : OpKind::Tanh, h.b.batchNormEval(x, gamma, beta, mean, var, kEps));
      h.bind(y, Kind::Head, 0);
      h.prepare();
      for (const auto &up : h.fn.nodes)
        if (up->op == OpKind::Param || up->op == OpKind::Input) h.fillUniform(up.get(), -1, 1);
      h.fillUniform(var, 0.5, 1.5);
      h.run(5);
      o[fuse] = Outcome{{h.read(y)}, {"prediction"}, h.compiled().llvmIR};
    }
    CHECK(hasKernel(o[1], afterDense ? "matmul+batchnorm_eval+relu" : "batchnorm_eval+tanh"));
    requireSame(o[1], o[0]);
  }
}
