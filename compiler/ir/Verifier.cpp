#include "Verifier.h"

#include <fmt/format.h>

#include <set>
#include <unordered_set>

namespace mtlc::ir {

namespace {

struct Checker {
  const Module &m;
  const Function &f;
  std::vector<std::string> problems;

  void fail(const Node *n, const std::string &what) {
    problems.push_back(n ? fmt::format("@{}: %{} ({}): {}", f.name, n->id, mnemonic(n->op), what)
                         : fmt::format("@{}: {}", f.name, what));
  }

  bool scalar(const Type &t) { return !t.batched && t.dims.empty(); }

  void leaf(const Node &n) {
    auto idx = n.ints.empty() ? -1 : n.ints[0];
    switch (n.op) {
      case OpKind::Input:
        if (idx < 0 || idx >= (int64_t)m.inputs.size()) fail(&n, "input index out of range");
        else if (n.type != m.inputs[idx]) fail(&n, "type differs from the module's input");
        break;
      case OpKind::Label:
        if (idx < 0 || idx >= (int64_t)m.labels.size()) fail(&n, "task index out of range");
        else if (n.type != m.labels[idx]) fail(&n, "type differs from the module's label");
        break;
      case OpKind::Param:
        if (idx < 0 || idx >= (int64_t)m.params.size()) fail(&n, "parameter index out of range");
        else if (n.type.batched || (n.type.dims != m.params[idx].shape && paramSpan(m, (int)idx, n.type.dims).empty()))
          fail(&n, "type differs from the parameter table (and is no span of adjacent parameters)");
        break;
      case OpKind::LossWeight:
        if (idx < 0 || idx >= (int64_t)m.labels.size()) fail(&n, "task index out of range");
        [[fallthrough]];
      case OpKind::Const:
        if (!scalar(n.type)) fail(&n, "must be a scalar");
        break;
      default: break;
    }
  }

  void run() {
    std::unordered_set<const Node *> defined;
    std::set<int> ids;
    for (const auto &up : f.nodes) {
      const Node &n = *up;
      if (!ids.insert(n.id).second) fail(&n, "duplicate id");
      if (arity(n.op) >= 0 && (int)n.operands.size() != arity(n.op))
        fail(&n, fmt::format("has {} operands, expects {}", n.operands.size(), arity(n.op)));
      for (const Node *o : n.operands)
        if (!defined.count(o)) fail(&n, "operand used before its definition (or from another function)");
      if (fusionClass(n.op) == FusionClass::Leaf) leaf(n);
      for (size_t i = 0; i < n.operands.size(); ++i) {
        const Node *o = n.operands[i];
        bool isState = o->op == OpKind::Param && o->ints.at(0) >= 0 && o->ints[0] < (int64_t)m.params.size() &&
                       m.params[o->ints[0]].state;
        if (updatesOperand(n.op, i) && !isState)
          fail(&n, fmt::format("operand {} is updated in place and must be a state parameter", i));
      }
      if (n.op == OpKind::Upsample || n.op == OpKind::UpsampleBwd) {
        if (n.ints.size() != 2 || n.ints[0] < 1 || n.ints[1] < 0 || n.ints[1] > int64_t(UpsampleMode::Bilinear))
          fail(&n, "needs a scale >= 1 and a mode");
      }
      if (fusionClass(n.op) == FusionClass::Elemwise && !n.operands.empty() &&
          n.op != OpKind::CrossEntropyBwd && n.op != OpKind::BCEBwd && n.op != OpKind::MSEBwd &&
          n.op != OpKind::L1Bwd && n.op != OpKind::CosineBwd && n.operands.back()->type != n.type)
        fail(&n, "elementwise result type differs from its operands'");
      for (int64_t d : n.type.dims)
        if (d < 1) fail(&n, "non-positive extent in " + n.type.str());
      defined.insert(&n);
    }
    std::set<std::pair<int, int>> seen;
    for (const auto &o : f.outputs) {
      if (!defined.count(o.value)) { fail(nullptr, "output refers to a node outside the function"); continue; }
      if (!seen.insert({(int)o.kind * 1000003 + o.task, o.index}).second)
        fail(o.value, "output bound twice");
      switch (o.kind) {
        case Output::Kind::TaskLoss:
        case Output::Kind::TotalLoss:
          if (!scalar(o.value->type)) fail(o.value, "loss output must be a scalar");
          if (o.kind == Output::Kind::TaskLoss && (o.index < 0 || o.index >= (int)m.labels.size()))
            fail(o.value, "loss output task index out of range");
          break;
        case Output::Kind::RepGrad:
          if (o.index < 0 || o.index >= (int)m.labels.size()) fail(o.value, "rep grad of unknown task");
          else if (!o.value->type.batched) fail(o.value, "a representation gradient is batched");
          break;
        case Output::Kind::TaskGrad:
          if (o.task < 0 || o.task >= (int)m.labels.size()) fail(o.value, "task grad of unknown task");
          [[fallthrough]];
        case Output::Kind::Grad:
          if (o.index < 0 || o.index >= (int)m.params.size()) fail(o.value, "grad of unknown parameter");
          else if (o.value->type.batched || (o.value->type.dims != m.params[o.index].shape &&
                                             paramSpan(m, o.index, o.value->type.dims).empty()))
            fail(o.value, "gradient type differs from its parameter (and is no span of adjacent parameters)");
          else if (m.params[o.index].state)
            fail(o.value, "gradient of a state parameter");
          break;
        case Output::Kind::Head:
          if (o.index < 0 || o.index >= (int)m.heads.size()) fail(o.value, "head of unknown task");
          else if (o.value->type != m.heads[o.index]) fail(o.value, "head type differs from the module's");
          break;
      }
    }
  }
};

}  // namespace

std::vector<std::string> verify(const Module &m, const Function &f) {
  Checker c{m, f, {}};
  c.run();
  return c.problems;
}

std::vector<std::string> verify(const Module &m) {
  std::vector<std::string> all;
  for (const auto &f : m.functions) {
    auto p = verify(m, *f);
    all.insert(all.end(), p.begin(), p.end());
  }
  return all;
}

}  // namespace mtlc::ir
