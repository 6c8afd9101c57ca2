// Typed construction of IR nodes: each function applies one op's shape rule and appends the node.
// Shape errors here are compiler bugs (sema has already checked the program), so they throw
// ir::IRError rather than report a user diagnostic.
#pragma once

#include "IR.h"

#include <stdexcept>

namespace mtlc::ir {

struct IRError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class Builder {
 public:
  explicit Builder(Function &fn) : fn_(fn) {}
  Function &function() { return fn_; }

  Node *input(int index, Type t);
  Node *label(int task, Type t);
  Node *param(int index, std::vector<int64_t> shape);
  Node *lossWeight(int task);
  Node *constant(double v);

  Node *matmul(Node *a, Node *b, bool transA, bool transB);
  Node *biasAdd(Node *x, Node *b);
  Node *conv2d(Node *x, Node *w, int64_t stride, int64_t pad);
  Node *convTranspose2d(Node *x, Node *w, int64_t stride, int64_t pad, int64_t outputPad);
  Node *maxPool(Node *x, int64_t k, int64_t stride);
  Node *avgPool(Node *x, int64_t k, int64_t stride);
  Node *reshape(Node *x, Type t);
  Node *unary(OpKind op, Node *x, double f = 0, std::vector<int64_t> ints = {});
  Node *layerNorm(Node *x, Node *gamma, Node *beta, double eps);
  // Training mode: batch statistics, and the state parameters runningMean, runningVar [C] and
  // batches (a scalar) updated in place. Eval mode: the running statistics.
  Node *batchNorm(Node *x, Node *gamma, Node *beta, Node *runningMean, Node *runningVar,
                  Node *batches, double eps);
  Node *batchNormEval(Node *x, Node *gamma, Node *beta, Node *runningMean, Node *runningVar,
                      double eps);
  Node *globalAvgPool(Node *x);
  Node *upsample(Node *x, int64_t scale, UpsampleMode mode);
  Node *add(Node *a, Node *b);
  Node *mul(Node *a, Node *b);
  Node *loss(OpKind op, Node *pred, Node *label);
  Node *softmax(Node *x);
  // w: a batched gate [E], or an unbatched [R, E] matrix whose row `row` weighs the xs.
  Node *mix(Node *w, const std::vector<Node *> &xs, int64_t row = 0);
  Node *embedding(Node *table, Node *indices);
  Node *concat(const std::vector<Node *> &xs);
  Node *slice(Node *x, int64_t offset, int64_t width);
  // An unbatched matrix [R, C] as [C, R].
  Node *transpose(Node *x);

  Node *biasGrad(Node *dy);
  Node *reduceBatch(Node *dy);
  Node *conv2dBwdData(Node *dy, Node *w, Type xType, int64_t stride, int64_t pad);
  Node *conv2dBwdFilter(Node *x, Node *dy, Type wType, int64_t stride, int64_t pad);
  Node *maxPoolBwd(Node *x, Node *dy, int64_t k, int64_t stride);
  Node *avgPoolBwd(Node *dy, Type xType, int64_t k, int64_t stride);
  // Elementwise backward of a unary op: (x or y, dy) -> dx.
  Node *unaryBwd(OpKind op, Node *saved, Node *dy, double f = 0, std::vector<int64_t> ints = {});
  Node *dropoutBwd(Node *dy, double p, int64_t salt);
  Node *layerNormBwdData(Node *x, Node *gamma, Node *dy, double eps);
  Node *layerNormBwdGamma(Node *x, Node *dy, double eps);
  Node *batchNormBwdStats(Node *x, Node *dy, double eps);
  Node *batchNormBwdData(Node *x, Node *gamma, Node *dy, Node *stats, double eps);
  // Row `row` of batchnorm_bwd_stats: kBatchNormDGammaRow or kBatchNormDBetaRow.
  Node *batchNormBwdParam(Node *stats, int64_t row);
  static constexpr int64_t kBatchNormDBetaRow = 2, kBatchNormDGammaRow = 3;
  Node *globalAvgPoolBwd(Node *dy, Type xType);
  Node *upsampleBwd(Node *dy, Type xType, int64_t scale, UpsampleMode mode);
  Node *lossBwd(OpKind op, Node *pred, Node *label, Node *dLoss);
  Node *softmaxBwd(Node *y, Node *dy);
  Node *mixBwdWeights(Node *dy, const std::vector<Node *> &xs, Type wType, int64_t row);
  Node *mixBwdInput(Node *w, Node *dy, int64_t k, int64_t row);
  Node *embeddingBwd(Node *indices, Node *dy, Type tableType);
  Node *sliceBwd(Node *dy, Type xType, int64_t offset);

  // Pooling / convolution output extent along one axis.
  static int64_t outExtent(int64_t in, int64_t k, int64_t stride, int64_t pad);

 private:
  Node *emit(OpKind op, std::vector<Node *> operands, Type t, std::vector<int64_t> ints = {},
             double f = 0);
  Function &fn_;
};

// 2-D view of an operand for MatMul: {rows, cols}; rows == -1 means the batch size n.
std::pair<int64_t, int64_t> matrixView(const Type &t);

}  // namespace mtlc::ir
