// Sibling products: matmuls that read one batched activation A through different weight
// parameters, x·Wᵢᵀ (the heads on a trunk, the experts and gates of a mixture). Run as one product
// over [W₀; W₁; ...] they read and pack A once and fill whole register tiles where each alone is
// thin. Lowering lays such weights out back to back in the arena (lower/Lower.cpp), and the pass
// `siblings` (passes/SiblingProducts.cpp) rewrites every run of them it finds adjacent there.
#pragma once

#include "IR.h"

#include <vector>

namespace mtlc::ir {

struct SiblingProducts {
  Node *input = nullptr;        // A: batched
  std::vector<Node *> products; // matmul(A, Param Wᵢ) transB, in program order
  std::vector<int> params;      // Wᵢ's indices, in the same order
};

// Every group of two or more sibling products in f: weights 2-D, trainable and distinct, each
// weight in one group at most (its first).
std::vector<SiblingProducts> findSiblingProducts(const Module &m, const Function &f);

}  // namespace mtlc::ir
