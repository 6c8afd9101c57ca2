// cse: two nodes with the same op, operands and attributes become one. Lowering and autodiff emit
// one Param node per read of a parameter and repeat reads of saved values; this merges them.
#include "Passes.h"

#include <map>
#include <tuple>

namespace mtlc::passes {

using ir::Node;
using ir::OpKind;

bool eliminateCommonSubexpressions(ir::Function &f) {
  using Key = std::tuple<OpKind, std::vector<const Node *>, std::vector<int64_t>, double,
                         std::vector<int64_t>, bool>;
  std::map<Key, Node *> seen;
  bool changed = false;
  for (auto &up : f.nodes) {
    Node *n = up.get();
    // Operands were already replaced by their canonical nodes (we walk in topological order).
    Key key{n->op, {n->operands.begin(), n->operands.end()}, n->ints, n->f, n->type.dims,
            n->type.batched};
    auto [it, fresh] = seen.emplace(std::move(key), n);
    if (!fresh) changed |= f.replaceAllUses(n, it->second) > 0;  // a dead duplicate is no change
  }
  return changed;
}

}  // namespace mtlc::passes
