// A double-precision reference interpreter of the forward ops of the graph IR, written from the
// op definitions (PyTorch's semantics), not from codegen: the oracle the gradient checks
// differentiate numerically. It shares nothing with the compiler but the IR data structures and
// ir::matrixView (the documented 2-D view MatMul reads its operands through).
//
// Layouts: a batched value holds n rows of `elements()` values, an unbatched one its elements,
// both row-major like the JIT's buffers.
//
// Besides values, an evaluation reports how close it came to a point where the function is not
// differentiable (relu / leaky_relu inputs at 0, a maxpool window whose two largest values tie,
// an l1 residual at 0): the gradient checks draw their data so that this margin is comfortably
// larger than both the finite-difference step and float rounding.
#pragma once

#include "ir/IR.h"

#include <cstdint>
#include <limits>
#include <map>
#include <string>
#include <vector>

namespace mtlc::test::ref {

// The values one call binds to the leaves, in double.
struct Env {
  int64_t n = 1;
  std::vector<std::vector<double>> inputs;   // per input: n · elements
  std::vector<std::vector<double>> labels;   // per task: n · width (class indices as numbers)
  std::vector<std::vector<double>> params;   // per parameter: its elements
  std::vector<double> lossWeights;           // per task
  // Dropout is identity-with-mask: per dropout site (its salt), n · elements keep flags (0 or 1).
  // y = x · keep / (1 − p). The masks come from the caller (see GradCheck.cpp).
  std::map<int64_t, std::vector<double>> dropoutKeep;
};

// The smallest distance to a non-differentiable point met during an evaluation, and where.
struct Kink {
  double margin = std::numeric_limits<double>::infinity();
  std::string where;
  void note(double distance, const ir::Node &n, const char *what);
};

struct Values {
  std::vector<std::vector<double>> byId;  // per node id; empty for nodes not evaluated
  Kink kink;
  const std::vector<double> &of(const ir::Node *n) const { return byId.at(n->id); }
};

// Evaluates the nodes the targets depend on (every node when `targets` is empty). Throws
// std::logic_error for an op that is not a forward op (the backward ops have no reference here).
Values evaluate(const ir::Function &f, const Env &env, const std::vector<const ir::Node *> &targets = {});

// The node bound to the function's output of that kind and index; throws if none.
const ir::Node *output(const ir::Function &f, ir::Output::Kind kind, int index = 0);

// The value of the function's TotalLoss output.
double totalLoss(const ir::Function &f, const Env &env);

}  // namespace mtlc::test::ref
