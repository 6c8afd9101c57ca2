#include "KernelWork.h"

#include <algorithm>
#include <cmath>

namespace mtlc::codegen {

namespace {

double floats(const ir::Type &t, int64_t maxBatch) {
  return double(t.elements()) * double(t.batched ? std::max<int64_t>(maxBatch, 1) : 1);
}

// The multiply-adds of a contraction; 0 for every other op.
double contraction(const ir::Node &node, int64_t maxBatch) {
  auto f = [&](const ir::Type &t) { return floats(t, maxBatch); };
  auto taps = [](const ir::Type &w) {  // C·KH·KW of a filter [O, C, KH, KW]
    return double(w.dims.at(1) * w.dims.at(2) * w.dims.at(3));
  };
  switch (node.op) {
    case ir::OpKind::MatMul:  // C[M,N] = A[M,K]·B[K,N]: |A|·|B|·|C| = (M·N·K)², whatever the transposes
      return std::sqrt(f(node.operands[0]->type) * f(node.operands[1]->type) * f(node.type));
    case ir::OpKind::Conv2d:           // y = conv(x, w): every output sums C·KH·KW taps
    case ir::OpKind::Conv2dBwdData:    // dx from dy and w: as many multiply-adds as forward
    case ir::OpKind::ConvTranspose2d:  // the same computation, x in dy's place
      return f(node.op == ir::OpKind::Conv2d ? node.type : node.operands[0]->type) * taps(node.operands[1]->type);
    case ir::OpKind::Conv2dBwdFilter:  // dw from x and dy: every dy element meets every tap
      return f(node.operands[1]->type) * taps(node.type);
    default: return 0;
  }
}

// The elements `node` evaluates a transcendental function at: its output's, or for a loss (a
// scalar) its prediction's; 0 for ops without one.
double transcendentalElements(const ir::Node &node, int64_t maxBatch) {
  switch (node.op) {
    case ir::OpKind::Sigmoid: case ir::OpKind::Tanh: case ir::OpKind::Gelu: case ir::OpKind::GeluBwd:
    case ir::OpKind::BCEBwd: case ir::OpKind::CrossEntropyBwd:
      return floats(node.type, maxBatch);
    case ir::OpKind::BCE: case ir::OpKind::CrossEntropy:
      return floats(node.operands.at(0)->type, maxBatch);
    default: return 0;
  }
}

double traffic(const ir::Node &node, int64_t maxBatch) {
  double t = floats(node.type, maxBatch);
  for (const ir::Node *operand : node.operands) t += floats(operand->type, maxBatch);
  return t;
}

}  // namespace

bool explicitVectorKernel(ir::OpKind op) {
  return op == ir::OpKind::MatMul || op == ir::OpKind::MaxPool || op == ir::OpKind::MaxPoolBwd;
}

KernelWork kernelWork(const KernelSpec &spec, int64_t maxBatch) {
  KernelWork w{contraction(*spec.root, maxBatch), traffic(*spec.root, maxBatch),
               transcendentalElements(*spec.root, maxBatch), explicitVectorKernel(spec.root->op)};
  if (spec.group)
    for (const auto *members : {&spec.group->chain, &spec.group->prologue, &spec.group->siblings})
      for (const ir::Node *member : *members) {
        w.floats += traffic(*member, maxBatch);
        w.mathElements += transcendentalElements(*member, maxBatch);
      }
  return w;
}

}  // namespace mtlc::codegen
