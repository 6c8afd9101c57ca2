#include "IR.h"

#include <fmt/format.h>

#include <algorithm>
#include <unordered_map>

namespace mtlc::ir {

namespace {
struct OpInfo {
  const char *mnemonic;
  int arity;
  FusionClass cls;
};
constexpr OpInfo kOps[] = {
#define MTLC_OP(Name, mnem, ar, cl) {mnem, ar, FusionClass::cl},
#include "Ops.def"
};
}  // namespace

const char *mnemonic(OpKind k) { return kOps[static_cast<int>(k)].mnemonic; }
int arity(OpKind k) { return kOps[static_cast<int>(k)].arity; }
FusionClass fusionClass(OpKind k) { return kOps[static_cast<int>(k)].cls; }
bool updatesOperand(OpKind k, size_t i) { return k == OpKind::BatchNorm && i >= 3 && i <= 5; }

int64_t Type::elements() const {
  int64_t e = 1;
  for (int64_t d : dims) e *= d;
  return e;
}

std::string Type::str() const {
  std::string s = "[";
  if (batched) s += dims.empty() ? "n" : "n,";
  s += fmt::format("{}", fmt::join(dims, ","));
  return s + "]";
}

int64_t ParamInfo::elements() const {
  int64_t e = 1;
  for (int64_t d : shape) e *= d;
  return e;
}

Node *Function::add(OpKind op, std::vector<Node *> operands, Type type, std::vector<int64_t> ints,
                    double f, std::string name) {
  auto node = std::make_unique<Node>();
  node->id = nextId++;
  node->op = op;
  node->operands = std::move(operands);
  node->type = std::move(type);
  node->ints = std::move(ints);
  node->f = f;
  node->name = std::move(name);
  nodes.push_back(std::move(node));
  return nodes.back().get();
}

int Function::replaceAllUses(Node *from, Node *to) {
  int replaced = 0;
  for (auto &n : nodes)
    for (Node *&o : n->operands)
      if (o == from) o = to, ++replaced;
  for (Output &o : outputs)
    if (o.value == from) o.value = to, ++replaced;
  return replaced;
}

void Function::erase(const std::vector<bool> &dead) {
  size_t keep = 0;
  for (size_t i = 0; i < nodes.size(); ++i)
    if (!dead[i]) nodes[keep++] = std::move(nodes[i]);
  nodes.resize(keep);
}

std::vector<int> Function::useCounts() const {
  std::unordered_map<const Node *, int> position;
  for (size_t i = 0; i < nodes.size(); ++i) position[nodes[i].get()] = (int)i;
  std::vector<int> uses(nodes.size(), 0);
  for (const auto &n : nodes)
    for (const Node *o : n->operands) ++uses[position.at(o)];
  for (const Output &o : outputs) ++uses[position.at(o.value)];
  return uses;
}

Function *Module::function(const std::string &fname) const {
  for (auto &f : functions)
    if (f->name == fname) return f.get();
  return nullptr;
}

std::vector<int> paramSpan(const Module &m, int first, const std::vector<int64_t> &dims) {
  if (first < 0 || first >= (int)m.params.size() || dims.empty()) return {};
  auto sameTrailing = [&](const ParamInfo &p) {
    return p.shape.size() == dims.size() && !p.state && std::equal(dims.begin() + 1, dims.end(), p.shape.begin() + 1);
  };
  std::unordered_map<int64_t, int> at;  // offset -> the non-empty parameter starting there
  for (size_t i = 0; i < m.params.size(); ++i)
    if (m.params[i].elements() > 0) at.emplace(m.params[i].offset, (int)i);
  std::vector<int> run;
  int64_t offset = m.params[first].offset, rows = 0;
  while (rows < dims[0]) {
    auto it = at.find(offset);
    if (it == at.end() || !sameTrailing(m.params[it->second])) return {};
    const ParamInfo &p = m.params[it->second];
    run.push_back(it->second);
    rows += p.shape[0];
    offset += p.elements();
  }
  if (rows != dims[0] || run.front() != first) return {};
  return run;
}

}  // namespace mtlc::ir
