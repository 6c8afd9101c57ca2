// Reverse-mode differentiation over the graph IR.
//
// appendGradients() walks the forward nodes of `fn` backwards from `loss` (a scalar), appends the
// gradient nodes, and binds the gradient of every parameter reached as a Grad output of `fn`.
// Each op's backward rule is one case of a switch (Autodiff.cpp); the backward ops themselves are
// ordinary IR ops, so the fusion and memory passes see forward and backward alike.
#pragma once

#include "ir/IR.h"

#include <unordered_map>
#include <vector>

namespace mtlc::autodiff {

void appendGradients(const ir::Module &m, ir::Function &fn, ir::Node *loss);

// The general form: appends the backward graph of `loss` and returns the gradient node of every
// parameter reached (by parameter index) and of each node in `wrt` that the loss depends on
// (for representation gradients). Binds no outputs.
struct Gradients {
  std::unordered_map<int64_t, ir::Node *> params;
  std::unordered_map<const ir::Node *, ir::Node *> nodes;
};
Gradients differentiate(const ir::Module &m, ir::Function &fn, ir::Node *loss,
                        const std::vector<ir::Node *> &wrt = {});

}  // namespace mtlc::autodiff
