#include "Autodiff.h"

#include "ir/Builder.h"

#include <unordered_map>
#include <unordered_set>

namespace mtlc::autodiff {

namespace {

using ir::Node;
using ir::OpKind;

class ReverseMode {
 public:
  ReverseMode(ir::Function &fn) : fn_(fn), b_(fn) {}

  void run(ir::Node *loss, const std::vector<ir::Node *> &wrt) {
    // Only nodes that depend on a parameter (or on a node we differentiate with respect to) need
    // an adjoint.
    std::unordered_set<Node *> roots(wrt.begin(), wrt.end());
    size_t forwardCount = fn_.nodes.size();
    for (size_t i = 0; i < forwardCount; ++i) {
      Node *n = fn_.nodes[i].get();
      bool needs = n->op == OpKind::Param || roots.count(n);
      for (Node *o : n->operands) needs = needs || needsGrad_.count(o);
      if (needs) needsGrad_.insert(n);
    }
    accumulate(loss, b_.constant(1.0));
    // Visit forward nodes in reverse topological order; appended nodes are not revisited.
    for (size_t i = forwardCount; i-- > 0;) {
      Node *n = fn_.nodes[i].get();
      auto it = adjoint_.find(n);
      if (it == adjoint_.end() || n->op == OpKind::Param) continue;
      backward(n, it->second);
    }
  }

  const std::unordered_map<Node *, Node *> &adjoints() const { return adjoint_; }

 private:
  // adjoint(x) += g, with g reshaped to x's type where only the view differs.
  void accumulate(Node *x, Node *g) {
    if (!needsGrad_.count(x)) return;
    if (g->type != x->type) g = b_.reshape(g, x->type);
    auto [it, fresh] = adjoint_.try_emplace(x, g);
    if (!fresh) it->second = b_.add(it->second, g);
  }

  void backward(Node *n, Node *g) {
    auto &ops = n->operands;
    switch (n->op) {
      case OpKind::Add:
        accumulate(ops[0], g);
        accumulate(ops[1], g);
        break;
      case OpKind::Mul:
        if (needsGrad_.count(ops[0])) accumulate(ops[0], b_.mul(g, ops[1]));
        if (needsGrad_.count(ops[1])) accumulate(ops[1], b_.mul(g, ops[0]));
        break;
      case OpKind::CrossEntropy:
      case OpKind::BCE:
      case OpKind::MSE:
      case OpKind::L1:
      case OpKind::Cosine:
        accumulate(ops[0], b_.lossBwd(lossBwdOp(n->op), ops[0], ops[1], g));
        break;
      case OpKind::MatMul: {
        // C = op(A)·op(B). dA = dC·op(B)ᵀ (or its transpose when A is used transposed), and
        // dB = op(A)ᵀ·dC likewise; the transposes are flags, never materialised.
        bool tA = n->ints[0], tB = n->ints[1];
        Node *a = ops[0], *bm = ops[1];
        if (needsGrad_.count(a))
          accumulate(a, tA ? b_.matmul(bm, g, tB, true) : b_.matmul(g, bm, false, !tB));
        if (needsGrad_.count(bm))
          accumulate(bm, tB ? b_.matmul(g, a, true, tA) : b_.matmul(a, g, !tA, false));
        break;
      }
      case OpKind::BiasAdd:
        accumulate(ops[0], g);
        if (needsGrad_.count(ops[1])) accumulate(ops[1], b_.biasGrad(g));
        break;
      case OpKind::Conv2d: {
        int64_t stride = n->ints[0], pad = n->ints[1];
        if (needsGrad_.count(ops[0]))
          accumulate(ops[0], b_.conv2dBwdData(g, ops[1], ops[0]->type, stride, pad));
        if (needsGrad_.count(ops[1]))
          accumulate(ops[1], b_.conv2dBwdFilter(ops[0], g, ops[1]->type, stride, pad));
        break;
      }
      case OpKind::ConvTranspose2d: {
        // y = conv2d_bwd_data(x, w): dx is conv2d(dy, w) with the same geometry (output_padding
        // only adds rows that conv2d's floor drops again), dw the filter gradient with the roles
        // of input and output gradient swapped.
        int64_t stride = n->ints[0], pad = n->ints[1];
        if (needsGrad_.count(ops[0])) accumulate(ops[0], b_.conv2d(g, ops[1], stride, pad));
        if (needsGrad_.count(ops[1]))
          accumulate(ops[1], b_.conv2dBwdFilter(g, ops[0], ops[1]->type, stride, pad));
        break;
      }
      case OpKind::MaxPool:
        accumulate(ops[0], b_.maxPoolBwd(ops[0], g, n->ints[0], n->ints[1]));
        break;
      case OpKind::AvgPool:
        accumulate(ops[0], b_.avgPoolBwd(g, ops[0]->type, n->ints[0], n->ints[1]));
        break;
      case OpKind::Reshape: accumulate(ops[0], b_.reshape(g, ops[0]->type)); break;
      // relu's mask reads its output (y > 0 exactly when x > 0), so the pre-activation need not
      // outlive the forward pass and bias + relu fuse into the producing matmul's epilogue.
      case OpKind::Relu: accumulate(ops[0], b_.unaryBwd(OpKind::ReluBwd, n, g)); break;
      case OpKind::LeakyRelu:  // likewise for a non-negative slope; a negative one flips signs
        accumulate(ops[0], b_.unaryBwd(OpKind::LeakyReluBwd, n->f >= 0 ? n : ops[0], g, n->f));
        break;
      // sigmoid and tanh differentiate through their output y: σ' = y(1-y), tanh' = 1-y².
      case OpKind::Sigmoid: accumulate(ops[0], b_.unaryBwd(OpKind::SigmoidBwd, n, g)); break;
      case OpKind::Tanh: accumulate(ops[0], b_.unaryBwd(OpKind::TanhBwd, n, g)); break;
      case OpKind::Gelu: accumulate(ops[0], b_.unaryBwd(OpKind::GeluBwd, ops[0], g)); break;
      case OpKind::SmoothStep:
        accumulate(ops[0], b_.unaryBwd(OpKind::SmoothStepBwd, ops[0], g, n->f));
        break;
      case OpKind::Dropout: accumulate(ops[0], b_.dropoutBwd(g, n->f, n->ints[0])); break;
      case OpKind::LayerNorm: {
        Node *x = ops[0], *gamma = ops[1], *beta = ops[2];
        if (needsGrad_.count(x)) accumulate(x, b_.layerNormBwdData(x, gamma, g, n->f));
        if (needsGrad_.count(gamma)) accumulate(gamma, b_.layerNormBwdGamma(x, g, n->f));
        if (needsGrad_.count(beta)) accumulate(beta, b_.reduceBatch(g));
        break;
      }
      case OpKind::BatchNorm: batchNormBackward(n, g); break;
      case OpKind::GlobalAvgPool: accumulate(ops[0], b_.globalAvgPoolBwd(g, ops[0]->type)); break;
      case OpKind::Upsample:
        accumulate(ops[0], b_.upsampleBwd(g, ops[0]->type, n->ints[0], ir::UpsampleMode(n->ints[1])));
        break;
      case OpKind::Softmax: accumulate(ops[0], b_.softmaxBwd(n, g)); break;
      case OpKind::Mix: {
        // out = Σ_k w_k·x_k: dw_k = <dy, x_k>, dx_k = w_k·dy.
        std::vector<Node *> xs(ops.begin() + 1, ops.end());
        int64_t row = n->ints[0];
        if (needsGrad_.count(ops[0])) accumulate(ops[0], b_.mixBwdWeights(g, xs, ops[0]->type, row));
        for (size_t k = 0; k < xs.size(); ++k)
          if (needsGrad_.count(xs[k])) accumulate(xs[k], b_.mixBwdInput(ops[0], g, (int64_t)k, row));
        break;
      }
      case OpKind::Embedding:
        if (needsGrad_.count(ops[0])) accumulate(ops[0], b_.embeddingBwd(ops[1], g, ops[0]->type));
        break;
      case OpKind::Concat: {
        int64_t offset = 0;
        for (Node *x : ops) {
          int64_t width = x->type.dims[0];
          if (needsGrad_.count(x)) accumulate(x, b_.slice(g, offset, width));
          offset += width;
        }
        break;
      }
      case OpKind::Slice: accumulate(ops[0], b_.sliceBwd(g, ops[0]->type, n->ints[0])); break;
      case OpKind::Transpose: accumulate(ops[0], b_.transpose(g)); break;
      default:
        throw ir::IRError(std::string("autodiff: no gradient rule for ") + ir::mnemonic(n->op));
    }
  }

  // The batch statistics depend on x: one reduction over the batch (batchnorm_bwd_stats) gives dγ
  // and dβ and what dx's one elementwise pass needs. The running statistics (operands 3-5) are
  // state: no gradient.
  void batchNormBackward(Node *n, Node *g) {
    Node *x = n->operands[0], *gamma = n->operands[1], *beta = n->operands[2];
    if (!needsGrad_.count(x) && !needsGrad_.count(gamma) && !needsGrad_.count(beta)) return;
    Node *stats = b_.batchNormBwdStats(x, g, n->f);
    if (needsGrad_.count(x)) accumulate(x, b_.batchNormBwdData(x, gamma, g, stats, n->f));
    if (needsGrad_.count(gamma)) accumulate(gamma, b_.batchNormBwdParam(stats, ir::Builder::kBatchNormDGammaRow));
    if (needsGrad_.count(beta)) accumulate(beta, b_.batchNormBwdParam(stats, ir::Builder::kBatchNormDBetaRow));
  }

  static OpKind lossBwdOp(OpKind k) {
    switch (k) {
      case OpKind::CrossEntropy: return OpKind::CrossEntropyBwd;
      case OpKind::BCE: return OpKind::BCEBwd;
      case OpKind::MSE: return OpKind::MSEBwd;
      case OpKind::Cosine: return OpKind::CosineBwd;
      default: return OpKind::L1Bwd;
    }
  }

  ir::Function &fn_;
  ir::Builder b_;
  std::unordered_set<Node *> needsGrad_;
  std::unordered_map<Node *, Node *> adjoint_;
};

}  // namespace

Gradients differentiate(const ir::Module &m, ir::Function &fn, ir::Node *loss,
                        const std::vector<ir::Node *> &wrt) {
  ReverseMode rm(fn);
  rm.run(loss, wrt);
  Gradients out;
  for (Node *n : wrt) {
    auto it = rm.adjoints().find(n);
    if (it != rm.adjoints().end()) out.nodes[n] = it->second;
  }
  // A parameter read in several places has one Param node per read (CSE merges them later); sum
  // their adjoints per parameter index.
  ir::Builder b(fn);
  std::vector<Node *> paramReads;  // collected first: adding nodes below grows fn.nodes
  for (const auto &up : fn.nodes)
    if (up->op == OpKind::Param) paramReads.push_back(up.get());
  for (Node *n : paramReads) {
    auto it = rm.adjoints().find(n);
    if (it == rm.adjoints().end()) continue;
    auto [slot, fresh] = out.params.try_emplace(n->ints[0], it->second);
    if (!fresh) slot->second = b.add(slot->second, it->second);
  }
  (void)m;
  return out;
}

void appendGradients(const ir::Module &m, ir::Function &fn, ir::Node *loss) {
  Gradients g = differentiate(m, fn, loss);
  for (size_t i = 0; i < m.params.size(); ++i) {
    auto it = g.params.find((int64_t)i);
    if (it == g.params.end()) continue;
    if (it->second->name.empty()) it->second->name = "d(" + m.params[i].name + ")";
    fn.outputs.push_back({ir::Output::Kind::Grad, (int)i, it->second});
  }
}

}  // namespace mtlc::autodiff
