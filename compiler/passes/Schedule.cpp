#include "Schedule.h"

#include <algorithm>
#include <cstdio>
#include <stdexcept>

namespace mtlc::passes {

bool hasKernel(ir::OpKind op) {
  switch (op) {
    case ir::OpKind::Input:
    case ir::OpKind::Label:
    case ir::OpKind::Param:
    case ir::OpKind::LossWeight:
    case ir::OpKind::Reshape: return false;
    default: return true;
  }
}

namespace {

using ir::OpKind;

std::string kernelKey(const ScheduledFunction &sf, const ScheduledKernel &k) {
  std::string key = nodeSignature(*k.root);
  if (const FusionGroup *g = sf.group(k)) {
    for (const ir::Node *member : g->chain)
      key += " | " + nodeSignature(*member) + " data" + std::to_string(dataOperand(*member, sf.fusion));
    if (!g->prologue.empty()) key += " prologue" + std::to_string(g->prologueOperand);
    for (const ir::Node *member : g->prologue)
      key += " < " + nodeSignature(*member) + " data" + std::to_string(dataOperand(*member, sf.fusion));
    for (const ir::Node *sibling : g->siblings) key += " & " + nodeSignature(*sibling);
  }
  return key + " scratch=" + std::to_string(k.scratchFloats);
}

ScheduledFunction scheduleFunction(const ir::Module &m, const ir::Function &f, bool fuse,
                                   const KernelHooks &hooks) {
  ScheduledFunction sf;
  sf.function = &f;
  if (fuse) sf.fusion = planFusion(f);
  sf.memory = planMemory(m, f, fuse ? &sf.fusion : nullptr, hooks.scratchFloats);
  for (const auto &node : f.nodes) {
    if (!hasKernel(node->op) || sf.fusion.runsInGroup(node.get())) continue;
    ScheduledKernel k;
    auto it = sf.fusion.groupOf.find(node.get());
    k.group = it == sf.fusion.groupOf.end() ? -1 : it->second;
    k.root = k.group < 0 ? node.get() : sf.fusion.groups[k.group].root;
    k.scratchOffset = sf.memory.scratch.at(k.root->id);
    k.scratchFloats = sf.memory.scratchFloats.at(k.root->id);
    k.key = kernelKey(sf, k);
    sf.kernels.push_back(std::move(k));
  }
  return sf;
}

}  // namespace

std::string nodeSignature(const ir::Node &node) {
  // The binding stops compiling when Node gains a field, so a new one cannot be left out.
  const auto &[id, op, operands, type, ints, f, name] = node;
  (void)id, (void)name;
  std::string sig = std::string(ir::mnemonic(op)) + " " + type.str();
  for (const ir::Node *operand : operands) sig += " " + operand->type.str();
  for (int64_t v : ints) sig += " i" + std::to_string(v);
  char fs[32];
  std::snprintf(fs, sizeof fs, " f%a", f);  // exact: hex float
  return sig + fs;
}

const ScheduledFunction &ScheduledModule::of(const ir::Function &f) const {
  for (const ScheduledFunction &sf : functions)
    if (sf.function == &f) return sf;
  throw std::logic_error("schedule: function '" + f.name + "' was not scheduled");
}

std::string ScheduledModule::contextKey() const {
  return "maxBatch=" + std::to_string(maxBatch) + " fused=" + std::to_string(fused);
}

ScheduledModule scheduleModule(const ir::Module &m, bool fuse, const KernelHooks &hooks) {
  if (!hooks.scratchFloats) throw std::logic_error("scheduleModule: no scratch hook");
  ScheduledModule s;
  s.module = &m;
  s.fused = fuse;
  s.maxBatch = m.maxBatch;
  for (const auto &f : m.functions) {
    s.functions.push_back(scheduleFunction(m, *f, fuse, hooks));
    s.actsFloats = std::max(s.actsFloats, s.functions.back().memory.actsFloats);
    s.actsFloatsWithoutReuse = std::max(s.actsFloatsWithoutReuse, s.functions.back().memory.actsFloatsWithoutReuse);
  }
  return s;
}

}  // namespace mtlc::passes
