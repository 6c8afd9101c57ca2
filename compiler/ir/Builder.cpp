#include "Builder.h"

#include <fmt/format.h>

namespace mtlc::ir {

namespace {
void require(bool ok, const char *op, const std::string &what) {
  if (!ok) throw IRError(fmt::format("ir::Builder::{}: {}", op, what));
}
Type batched(std::vector<int64_t> dims) { return Type{std::move(dims), true}; }
Type scalar() { return Type{{}, false}; }
}  // namespace

std::pair<int64_t, int64_t> matrixView(const Type &t) {
  if (t.batched) return {-1, t.elements()};
  if (t.dims.empty()) return {1, 1};
  int64_t rest = 1;
  for (size_t i = 1; i < t.dims.size(); ++i) rest *= t.dims[i];
  return {t.dims[0], rest};
}

int64_t Builder::outExtent(int64_t in, int64_t k, int64_t stride, int64_t pad) {
  return (in + 2 * pad - k) / stride + 1;
}

Node *Builder::emit(OpKind op, std::vector<Node *> operands, Type t, std::vector<int64_t> ints,
                    double f) {
  return fn_.add(op, std::move(operands), std::move(t), std::move(ints), f);
}

Node *Builder::input(int index, Type t) {
  require(t.batched, "input", "inputs are batched");
  return emit(OpKind::Input, {}, std::move(t), {index});
}
Node *Builder::label(int task, Type t) {
  require(t.batched, "label", "labels are batched");
  return emit(OpKind::Label, {}, std::move(t), {task});
}
Node *Builder::param(int index, std::vector<int64_t> shape) {
  return emit(OpKind::Param, {}, Type{std::move(shape), false}, {index});
}
Node *Builder::lossWeight(int task) { return emit(OpKind::LossWeight, {}, scalar(), {task}); }
Node *Builder::constant(double v) { return emit(OpKind::Const, {}, scalar(), {}, v); }

Node *Builder::matmul(Node *a, Node *b, bool transA, bool transB) {
  auto [ar, ac] = matrixView(a->type);
  auto [br, bc] = matrixView(b->type);
  int64_t m = transA ? ac : ar, k = transA ? ar : ac;
  int64_t k2 = transB ? bc : br, n = transB ? br : bc;
  require(k == k2, "matmul", fmt::format("inner extents differ: {} vs {} ({} x {})", k, k2,
                                         a->type.str(), b->type.str()));
  require(n != -1, "matmul", "the batch may not be the result's column extent");
  // A batched row extent gives a batched result; contracting over the batch gives an unbatched one.
  Type t = m == -1 ? batched({n}) : Type{{m, n}, false};
  return emit(OpKind::MatMul, {a, b}, t, {transA, transB});
}

Node *Builder::biasAdd(Node *x, Node *b) {
  require(x->type.batched && !x->type.dims.empty(), "biasAdd", "x must be batched");
  require(b->type.dims == std::vector<int64_t>{x->type.dims[0]}, "biasAdd",
          fmt::format("bias {} does not match channels of {}", b->type.str(), x->type.str()));
  return emit(OpKind::BiasAdd, {x, b}, x->type);
}

Node *Builder::conv2d(Node *x, Node *w, int64_t stride, int64_t pad) {
  const auto &xd = x->type.dims, &wd = w->type.dims;
  require(x->type.batched && xd.size() == 3 && wd.size() == 4 && wd[1] == xd[0], "conv2d",
          fmt::format("bad operands {} * {}", x->type.str(), w->type.str()));
  int64_t oh = outExtent(xd[1], wd[2], stride, pad), ow = outExtent(xd[2], wd[3], stride, pad);
  require(oh >= 1 && ow >= 1, "conv2d", "empty output");
  return emit(OpKind::Conv2d, {x, w}, batched({wd[0], oh, ow}), {stride, pad});
}

Node *Builder::convTranspose2d(Node *x, Node *w, int64_t stride, int64_t pad, int64_t outputPad) {
  const auto &xd = x->type.dims, &wd = w->type.dims;
  require(x->type.batched && xd.size() == 3 && wd.size() == 4 && wd[0] == xd[0], "conv_transpose2d",
          fmt::format("bad operands {} * {}", x->type.str(), w->type.str()));
  // As PyTorch: output_padding < stride, so conv2d of the output with the same geometry lands on H.
  require(stride >= 1 && pad >= 0 && outputPad >= 0 && outputPad < stride, "conv_transpose2d",
          "output_padding must be smaller than the stride");
  int64_t oh = (xd[1] - 1) * stride - 2 * pad + wd[2] + outputPad;
  int64_t ow = (xd[2] - 1) * stride - 2 * pad + wd[3] + outputPad;
  require(oh >= 1 && ow >= 1, "conv_transpose2d", "empty output");
  return emit(OpKind::ConvTranspose2d, {x, w}, batched({wd[1], oh, ow}), {stride, pad, outputPad});
}

static Type poolType(Node *x, int64_t k, int64_t stride) {
  const auto &d = x->type.dims;
  require(x->type.batched && d.size() == 3, "pool", "x must be batched [C,H,W]");
  int64_t oh = Builder::outExtent(d[1], k, stride, 0), ow = Builder::outExtent(d[2], k, stride, 0);
  require(oh >= 1 && ow >= 1, "pool", "empty output");
  return batched({d[0], oh, ow});
}

Node *Builder::maxPool(Node *x, int64_t k, int64_t stride) {
  return emit(OpKind::MaxPool, {x}, poolType(x, k, stride), {k, stride});
}
Node *Builder::avgPool(Node *x, int64_t k, int64_t stride) {
  return emit(OpKind::AvgPool, {x}, poolType(x, k, stride), {k, stride});
}

Node *Builder::reshape(Node *x, Type t) {
  require(t.batched == x->type.batched && t.elements() == x->type.elements(), "reshape",
          fmt::format("{} -> {} changes the element count", x->type.str(), t.str()));
  return emit(OpKind::Reshape, {x}, std::move(t));
}

Node *Builder::unary(OpKind op, Node *x, double f, std::vector<int64_t> ints) {
  require(fusionClass(op) == FusionClass::Elemwise && arity(op) == 1, "unary", mnemonic(op));
  return emit(op, {x}, x->type, std::move(ints), f);
}

Node *Builder::layerNorm(Node *x, Node *gamma, Node *beta, double eps) {
  require(x->type.batched && gamma->type.dims == x->type.dims && beta->type.dims == x->type.dims,
          "layerNorm", "gamma and beta must have the per-sample shape");
  return emit(OpKind::LayerNorm, {x, gamma, beta}, x->type, {}, eps);
}

namespace {
// x batched with a channel dimension first; v an unbatched [C] vector of its channels.
bool perChannel(const Node *x, const Node *v) {
  return !v->type.batched && v->type.dims == std::vector<int64_t>{x->type.dims[0]};
}
void requireBatchNormOperands(const char *op, Node *x, std::initializer_list<Node *> channelVectors) {
  require(x->type.batched && (x->type.dims.size() == 1 || x->type.dims.size() == 3), op,
          "x must be batched [F] or [C,H,W], not " + x->type.str());
  for (Node *v : channelVectors)
    require(perChannel(x, v), op, fmt::format("{} does not match the channels of {}", v->type.str(), x->type.str()));
}
}  // namespace

Node *Builder::batchNorm(Node *x, Node *gamma, Node *beta, Node *runningMean, Node *runningVar,
                         Node *batches, double eps) {
  requireBatchNormOperands("batchNorm", x, {gamma, beta, runningMean, runningVar});
  require(batches->type == scalar(), "batchNorm", "num_batches_tracked must be a scalar");
  return emit(OpKind::BatchNorm, {x, gamma, beta, runningMean, runningVar, batches}, x->type, {}, eps);
}

Node *Builder::batchNormEval(Node *x, Node *gamma, Node *beta, Node *runningMean, Node *runningVar,
                             double eps) {
  requireBatchNormOperands("batchNormEval", x, {gamma, beta, runningMean, runningVar});
  return emit(OpKind::BatchNormEval, {x, gamma, beta, runningMean, runningVar}, x->type, {}, eps);
}

Node *Builder::globalAvgPool(Node *x) {
  require(x->type.batched && x->type.dims.size() == 3, "globalAvgPool", "x must be batched [C,H,W]");
  return emit(OpKind::GlobalAvgPool, {x}, batched({x->type.dims[0]}));
}

Node *Builder::upsample(Node *x, int64_t scale, UpsampleMode mode) {
  const auto &d = x->type.dims;
  require(x->type.batched && d.size() == 3, "upsample", "x must be batched [C,H,W]");
  require(scale >= 1, "upsample", "the scale must be at least 1");
  return emit(OpKind::Upsample, {x}, batched({d[0], d[1] * scale, d[2] * scale}),
              {scale, static_cast<int64_t>(mode)});
}

Node *Builder::add(Node *a, Node *b) {
  require(a->type == b->type, "add", a->type.str() + " + " + b->type.str());
  return emit(OpKind::Add, {a, b}, a->type);
}
Node *Builder::mul(Node *a, Node *b) {
  require(a->type == b->type, "mul", a->type.str() + " * " + b->type.str());
  return emit(OpKind::Mul, {a, b}, a->type);
}

Node *Builder::loss(OpKind op, Node *pred, Node *label) {
  require(pred->type.batched && label->type.batched, "loss", "operands must be batched");
  if (op == OpKind::CrossEntropy) {
    // one class index per sample ([C] logits) or per pixel ([C, H, W] logits, label [H·W])
    const auto &d = pred->type.dims;
    const int64_t positions = d.size() == 3 ? d[1] * d[2] : 1;
    require(label->type.elements() == positions, "loss", "cross_entropy takes one class index per sample or pixel");
  } else
    require(label->type.elements() == pred->type.elements(), "loss", "label width mismatch");
  return emit(op, {pred, label}, scalar());
}

Node *Builder::softmax(Node *x) {
  require(x->type.batched && x->type.dims.size() == 1, "softmax", "x must be batched [k]");
  return emit(OpKind::Softmax, {x}, x->type);
}

Node *Builder::mix(Node *w, const std::vector<Node *> &xs, int64_t row) {
  require(!xs.empty(), "mix", "no inputs");
  int64_t e = (int64_t)xs.size();
  bool gate = w->type.batched && w->type.dims == std::vector<int64_t>{e};
  bool matrix = !w->type.batched && w->type.dims.size() == 2 && w->type.dims[1] == e &&
                row >= 0 && row < w->type.dims[0];
  require(gate || matrix, "mix", fmt::format("weights {} do not fit {} inputs", w->type.str(), e));
  for (Node *x : xs) require(x->type == xs[0]->type && x->type.batched, "mix", "inputs differ");
  std::vector<Node *> ops{w};
  ops.insert(ops.end(), xs.begin(), xs.end());
  return emit(OpKind::Mix, ops, xs[0]->type, {gate ? 0 : row});
}

Node *Builder::embedding(Node *table, Node *indices) {
  require(!table->type.batched && table->type.dims.size() == 2, "embedding", "table must be [V,D]");
  require(indices->type.batched && indices->type.dims.size() == 1, "embedding", "indices must be [k]");
  return emit(OpKind::Embedding, {table, indices},
              batched({indices->type.dims[0] * table->type.dims[1]}));
}

Node *Builder::concat(const std::vector<Node *> &xs) {
  int64_t width = 0;
  for (Node *x : xs) {
    require(x->type.batched && x->type.dims.size() == 1, "concat", "parts must be batched [d]");
    width += x->type.dims[0];
  }
  return emit(OpKind::Concat, xs, batched({width}));
}

Node *Builder::slice(Node *x, int64_t offset, int64_t width) {
  require(x->type.batched && x->type.dims.size() == 1 && offset >= 0 &&
              offset + width <= x->type.dims[0],
          "slice", "out of range");
  return emit(OpKind::Slice, {x}, batched({width}), {offset, width});
}

Node *Builder::transpose(Node *x) {
  require(!x->type.batched && x->type.dims.size() == 2, "transpose", "x must be an unbatched matrix");
  return emit(OpKind::Transpose, {x}, Type{{x->type.dims[1], x->type.dims[0]}, false});
}

Node *Builder::sliceBwd(Node *dy, Type xType, int64_t offset) {
  const int64_t width = dy->type.elements();
  require(dy->type.batched && xType.batched && xType.dims.size() == 1 && offset >= 0 &&
              offset + width <= xType.dims[0],
          "sliceBwd", "out of range");
  return emit(OpKind::SliceBwd, {dy}, std::move(xType), {offset, width});
}

Node *Builder::softmaxBwd(Node *y, Node *dy) {
  require(y->type == dy->type, "softmaxBwd", "types differ");
  return emit(OpKind::SoftmaxBwd, {y, dy}, y->type);
}

Node *Builder::mixBwdWeights(Node *dy, const std::vector<Node *> &xs, Type wType, int64_t row) {
  std::vector<Node *> ops{dy};
  ops.insert(ops.end(), xs.begin(), xs.end());
  return emit(OpKind::MixBwdWeights, ops, std::move(wType), {row});
}

Node *Builder::mixBwdInput(Node *w, Node *dy, int64_t k, int64_t row) {
  return emit(OpKind::MixBwdInput, {w, dy}, dy->type, {k, row});
}

Node *Builder::embeddingBwd(Node *indices, Node *dy, Type tableType) {
  return emit(OpKind::EmbeddingBwd, {indices, dy}, std::move(tableType));
}

Node *Builder::biasGrad(Node *dy) {
  require(dy->type.batched && !dy->type.dims.empty(), "biasGrad", "dy must be batched");
  return emit(OpKind::BiasGrad, {dy}, Type{{dy->type.dims[0]}, false});
}
Node *Builder::reduceBatch(Node *dy) {
  require(dy->type.batched, "reduceBatch", "dy must be batched");
  return emit(OpKind::ReduceBatch, {dy}, Type{dy->type.dims, false});
}
Node *Builder::conv2dBwdData(Node *dy, Node *w, Type xType, int64_t stride, int64_t pad) {
  return emit(OpKind::Conv2dBwdData, {dy, w}, std::move(xType), {stride, pad});
}
Node *Builder::conv2dBwdFilter(Node *x, Node *dy, Type wType, int64_t stride, int64_t pad) {
  return emit(OpKind::Conv2dBwdFilter, {x, dy}, std::move(wType), {stride, pad});
}
Node *Builder::maxPoolBwd(Node *x, Node *dy, int64_t k, int64_t stride) {
  return emit(OpKind::MaxPoolBwd, {x, dy}, x->type, {k, stride});
}
Node *Builder::avgPoolBwd(Node *dy, Type xType, int64_t k, int64_t stride) {
  return emit(OpKind::AvgPoolBwd, {dy}, std::move(xType), {k, stride});
}
Node *Builder::unaryBwd(OpKind op, Node *saved, Node *dy, double f, std::vector<int64_t> ints) {
  require(saved->type == dy->type, "unaryBwd", mnemonic(op));
  return emit(op, {saved, dy}, dy->type, std::move(ints), f);
}
Node *Builder::dropoutBwd(Node *dy, double p, int64_t salt) {
  return emit(OpKind::DropoutBwd, {dy}, dy->type, {salt}, p);
}
Node *Builder::layerNormBwdData(Node *x, Node *gamma, Node *dy, double eps) {
  return emit(OpKind::LayerNormBwdData, {x, gamma, dy}, x->type, {}, eps);
}
Node *Builder::layerNormBwdGamma(Node *x, Node *dy, double eps) {
  return emit(OpKind::LayerNormBwdGamma, {x, dy}, Type{x->type.dims, false}, {}, eps);
}
Node *Builder::batchNormBwdStats(Node *x, Node *dy, double eps) {
  requireBatchNormOperands("batchNormBwdStats", x, {});
  require(dy->type == x->type, "batchNormBwdStats", "dy differs from x");
  return emit(OpKind::BatchNormBwdStats, {x, dy}, Type{{4, x->type.dims[0]}, false}, {}, eps);
}
Node *Builder::batchNormBwdData(Node *x, Node *gamma, Node *dy, Node *stats, double eps) {
  requireBatchNormOperands("batchNormBwdData", x, {gamma});
  require(dy->type == x->type, "batchNormBwdData", "dy differs from x");
  require(stats->type == Type{{4, x->type.dims[0]}, false}, "batchNormBwdData",
          stats->type.str() + " is not the [4, C] statistics of " + x->type.str());
  return emit(OpKind::BatchNormBwdData, {x, gamma, dy, stats}, x->type, {}, eps);
}
Node *Builder::batchNormBwdParam(Node *stats, int64_t row) {
  require(!stats->type.batched && stats->type.dims.size() == 2 && stats->type.dims[0] == 4 &&
              (row == kBatchNormDBetaRow || row == kBatchNormDGammaRow),
          "batchNormBwdParam", "not a row of dγ or dβ in batchnorm statistics " + stats->type.str());
  return emit(OpKind::BatchNormBwdParam, {stats}, Type{{stats->type.dims[1]}, false}, {row});
}
Node *Builder::globalAvgPoolBwd(Node *dy, Type xType) {
  require(xType.batched && xType.dims.size() == 3 && dy->type == batched({xType.dims[0]}),
          "globalAvgPoolBwd", dy->type.str() + " does not pool " + xType.str());
  return emit(OpKind::GlobalAvgPoolBwd, {dy}, std::move(xType));
}
Node *Builder::upsampleBwd(Node *dy, Type xType, int64_t scale, UpsampleMode mode) {
  const auto &d = xType.dims;
  require(xType.batched && d.size() == 3 && dy->type == batched({d[0], d[1] * scale, d[2] * scale}),
          "upsampleBwd", dy->type.str() + " is not an upsampled " + xType.str());
  return emit(OpKind::UpsampleBwd, {dy}, std::move(xType), {scale, static_cast<int64_t>(mode)});
}
Node *Builder::lossBwd(OpKind op, Node *pred, Node *label, Node *dLoss) {
  require(dLoss->type.dims.empty() && !dLoss->type.batched, "lossBwd", "dL must be a scalar");
  return emit(op, {pred, label, dLoss}, pred->type);
}

}  // namespace mtlc::ir
