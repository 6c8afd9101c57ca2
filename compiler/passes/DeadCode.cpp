// dce: nodes that no output of the function depends on are dropped (what folding and CSE leave
// behind, and forward values the entry point does not return).
#include "Passes.h"

#include <unordered_map>

namespace mtlc::passes {

using ir::Node;

bool eliminateDeadCode(ir::Function &f) {
  std::unordered_map<const Node *, size_t> position;
  for (size_t i = 0; i < f.nodes.size(); ++i) position[f.nodes[i].get()] = i;
  std::vector<bool> live(f.nodes.size(), false);
  for (const auto &o : f.outputs) live[position.at(o.value)] = true;
  for (size_t i = f.nodes.size(); i-- > 0;)
    if (live[i])
      for (const Node *o : f.nodes[i]->operands) live[position.at(o)] = true;
  std::vector<bool> dead(live.size());
  bool changed = false;
  for (size_t i = 0; i < live.size(); ++i) changed |= (dead[i] = !live[i]);
  if (changed) f.erase(dead);
  return changed;
}

}  // namespace mtlc::passes
