// The graph IR: a function is a list of nodes in topological order; each node is one operation and
// its single SSA result. Shapes are static except the batch dimension, which is a run-time value
// (`n` in mtlc_args) bounded by the module's maxBatch.
//
// A "batched" type [d0, d1, ...] stands for the tensor [n, d0, d1, ...]; an unbatched type is the
// whole tensor (parameters, their gradients, scalars). MatMul views its operands as 2-D matrices:
// a batched operand is [n, perSample], an unbatched one [dims[0], product of the rest].
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace mtlc::ir {

enum class OpKind {
#define MTLC_OP(Name, mnem, arity, cls) Name,
#include "Ops.def"
};

enum class FusionClass { Leaf, Elemwise, Broadcast, Injective, Reduction, OutFusable, Opaque };

const char *mnemonic(OpKind k);
int arity(OpKind k);  // -1: variadic
FusionClass fusionClass(OpKind k);
// Whether op's kernel writes operand i in place (batchnorm's running statistics): such an operand
// is a state parameter, and the kernel's pointer to it is not read-only.
bool updatesOperand(OpKind k, size_t i);

// Upsample's interpolation (ints[1]), as nn.Upsample's `mode` (bilinear: align_corners=False).
enum class UpsampleMode : int64_t { Nearest = 0, Bilinear = 1 };

struct Type {
  std::vector<int64_t> dims;  // per-sample dims if batched, else the whole shape ([] = scalar)
  bool batched = false;

  int64_t elements() const;   // per sample if batched, else total
  bool operator==(const Type &o) const { return dims == o.dims && batched == o.batched; }
  bool operator!=(const Type &o) const { return !(*this == o); }
  std::string str() const;    // "[n,32,26,26]" or "[64,5408]" or "[]"
};

struct Node {
  int id = 0;
  OpKind op = OpKind::Const;
  std::vector<Node *> operands;
  Type type;
  std::vector<int64_t> ints;  // integer attributes (see Ops.def for each op's meaning)
  double f = 0;               // float attribute
  std::string name;           // optional, for printing ("trunk.0", "category.loss")
};

// Where a function's results go.
struct Output {
  enum class Kind {
    TaskLoss,   // losses[index]
    TotalLoss,  // losses[T]
    Grad,       // grads[params[index].offset ...]
    Head,       // outputs[index]
    TaskGrad,   // grads[task * Module::paramFloats + params[index].offset ...]
    RepGrad,    // outputs[T + index]: task index's gradient w.r.t. the shared representation
  };
  Kind kind;
  int index;    // task (TaskLoss, Head, RepGrad) or parameter (Grad, TaskGrad); unused for TotalLoss
  Node *value;
  int task = 0; // TaskGrad: whose loss
};

struct Function {
  std::string name;  // entry point symbol: "train_step", "eval_step", "predict"
  std::vector<std::unique_ptr<Node>> nodes;
  std::vector<Output> outputs;
  int nextId = 0;

  Node *add(OpKind op, std::vector<Node *> operands, Type type, std::vector<int64_t> ints = {},
            double f = 0, std::string name = {});
  // Every operand and output that reads `from` reads `to` instead (same type required).
  int replaceAllUses(Node *from, Node *to);  // returns how many uses it replaced
  // Drops the nodes `dead` says to drop (indexed by position in `nodes`); the caller guarantees
  // nothing live reads them.
  void erase(const std::vector<bool> &dead);
  // How many operand slots and outputs read each node, indexed by node position.
  std::vector<int> useCounts() const;
};

// The parameter table the graph's Param nodes index into.
struct ParamInfo {
  std::string name;
  std::vector<int64_t> shape;
  int64_t offset = 0;  // element offset in the params/grads arenas
  // Non-trainable state in the params arena (batchnorm's running statistics): written by the
  // kernels that update it, never differentiated, left alone by the optimizer.
  bool state = false;
  int64_t elements() const;
};

struct Module {
  std::string name;
  std::vector<ParamInfo> params;
  std::vector<Type> inputs;       // per input, batched
  std::vector<Type> labels;       // per task, batched
  std::vector<Type> heads;        // per task head output, batched
  int64_t maxBatch = 1;
  int64_t paramFloats = 0;        // size of the params arena (stride of TaskGrad outputs)
  // Memory planning reuses activation slots after their last use; tests that check a kernel's
  // writes stay inside its own slot turn reuse off.
  bool reuseActs = true;
  std::vector<std::unique_ptr<Function>> functions;

  Function *function(const std::string &name) const;
};

// A parameter span: the trainable parameters that lie back to back in the arena from
// params[first].offset, each with the trailing dims of `dims`, their rows adding up to dims[0]
// (the weights of sibling products, passes/SiblingProducts.cpp). A Param node of that type reads
// them as one tensor, a Grad output of that type writes all their gradients. Returns their indices
// in arena order ({first} for the parameter's own shape), or nothing when the arena there is not
// such a run.
std::vector<int> paramSpan(const Module &m, int first, const std::vector<int64_t> &dims);

}  // namespace mtlc::ir
