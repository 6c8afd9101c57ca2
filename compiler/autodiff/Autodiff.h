// Reverse-mode differentiation over the graph IR.
//
// appendGradients() walks the forward nodes of `fn` backwards from `loss` (a scalar), appends the
// gradient nodes, and binds the gradient of every parameter reached as a Grad output of `fn`.
// Each op's backward rule is one case of a switch (Autodiff.cpp); the backward ops themselves are
// ordinary IR ops, so the fusion and memory passes see forward and backward alike.
#pragma once

#include "ir/IR.h"

namespace mtlc::autodiff {

void appendGradients(const ir::Module &m, ir::Function &fn, ir::Node *loss);

}  // namespace mtlc::autodiff
