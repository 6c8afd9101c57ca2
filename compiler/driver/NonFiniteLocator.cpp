#include "NonFiniteLocator.h"

#include "jit/Compile.h"

#include <fmt/format.h>

#include <cmath>
#include <memory>
#include <vector>

namespace mtlc::driver {

namespace {

// The first non-finite value the probe's hook saw. The probe runs one entry point on the calling
// thread (the hook is called between kernels, never from inside a parallel loop), and one probe at
// a time runs (the trainer stops at the first failure), so a plain global is enough.
struct FirstNonFinite {
  int node = -1;
  int64_t index = 0;
  float value = 0;
};
FirstNonFinite gFirst;

extern "C" void probeNode(int32_t node, const float *values, int64_t count) {
  if (gFirst.node >= 0) return;
  for (int64_t i = 0; i < count; ++i)
    if (!std::isfinite(values[i])) {
      gFirst = {node, i, values[i]};
      return;
    }
}

std::string valueName(float v) { return std::isnan(v) ? "NaN" : v > 0 ? "+Inf" : "-Inf"; }

// "%17 exp `trunk.3` [n,64]"
std::string describe(const ir::Node &n) {
  std::string s = fmt::format("%{} {}", n.id, ir::mnemonic(n.op));
  if (!n.name.empty()) s += fmt::format(" `{}`", n.name);
  return s + " " + n.type.str();
}

struct Probe {
  const ir::Module &module;
  std::unique_ptr<jit::CompiledModule> code;  // compiled on the first call
  std::vector<float> acts;

  std::string locate(const char *entry, const mtlc_args &args) {
    const ir::Function *f = nullptr;
    for (const auto &fn : module.functions)
      if (fn->name == entry) f = fn.get();
    if (!f) return "";
    if (!code) {
      jit::CompileOptions o;
      o.optimize = false;
      o.fuse = false;
      o.codegen.nodeHook = reinterpret_cast<uint64_t>(&probeNode);
      code = std::make_unique<jit::CompiledModule>(jit::compile(module, o));
      acts.assign(size_t(code->actsFloats), 0.0f);
    }
    mtlc_args a = args;
    a.acts = acts.data();
    gFirst = {};
    code->entry(entry)(&a);
    if (gFirst.node < 0) return "";
    const ir::Node *node = nullptr;
    for (const auto &n : f->nodes)
      if (n->id == gFirst.node) node = n.get();
    if (!node) return "";
    std::string where;
    if (node->type.batched && node->type.elements() > 0)
      where = fmt::format("sample {} of the batch, element {}", gFirst.index / node->type.elements(),
                          gFirst.index % node->type.elements());
    else
      where = fmt::format("element {}", gFirst.index);
    std::vector<std::string> operands;
    for (const ir::Node *o : node->operands) operands.push_back(describe(*o));
    return fmt::format("; the first non-finite value of {} is {} in {} at {}{}", entry, valueName(gFirst.value),
                       describe(*node), where,
                       operands.empty() ? std::string()
                                        : fmt::format(", whose operands ({}) were finite", fmt::join(operands, ", ")));
  }
};

}  // namespace

std::function<std::string(const char *, const mtlc_args &)> makeNonFiniteLocator(const ir::Module &m) {
  auto probe = std::make_shared<Probe>(Probe{m, nullptr, {}});
  return [probe](const char *entry, const mtlc_args &args) {
    try {
      return probe->locate(entry, args);
    } catch (const std::exception &e) {  // a diagnostic aid must not hide the error it explains
      return fmt::format(" (the non-finite value could not be located: {})", e.what());
    }
  };
}

}  // namespace mtlc::driver
