#include "Siblings.h"

#include <map>
#include <set>

namespace mtlc::ir {

namespace {

// The weight parameter of x·Wᵀ with W a whole trainable 2-D parameter, or -1.
int productWeight(const Module &m, const Node &n) {
  if (n.op != OpKind::MatMul || n.ints.size() < 2 || n.ints[0] != 0 || n.ints[1] != 1) return -1;
  const Node *a = n.operands[0], *w = n.operands[1];
  if (!a->type.batched || w->op != OpKind::Param || w->type.batched || w->type.dims.size() != 2) return -1;
  const int64_t p = w->ints.at(0);
  if (p < 0 || p >= (int64_t)m.params.size() || m.params[p].state || w->type.dims != m.params[p].shape) return -1;
  return (int)p;
}

}  // namespace

std::vector<SiblingProducts> findSiblingProducts(const Module &m, const Function &f) {
  std::map<const Node *, size_t> groupOf;  // A -> its group
  std::vector<SiblingProducts> groups;
  std::set<int> taken;
  for (const auto &up : f.nodes) {
    const int p = productWeight(m, *up);
    if (p < 0 || taken.count(p)) continue;
    Node *a = up->operands[0];
    auto [it, fresh] = groupOf.try_emplace(a, groups.size());
    if (fresh) groups.push_back({a, {}, {}});
    groups[it->second].products.push_back(up.get());
    groups[it->second].params.push_back(p);
    taken.insert(p);
  }
  std::vector<SiblingProducts> siblings;
  for (SiblingProducts &g : groups)
    if (g.products.size() >= 2) siblings.push_back(std::move(g));
  return siblings;
}

}  // namespace mtlc::ir
