#include "Summary.h"

#include <fmt/format.h>
#include <fmt/ostream.h>

#include "jit/Compile.h"
#include "passes/MemoryPlan.h"

#include <algorithm>
#include <map>

namespace mtlc::driver {

namespace {

std::string human(double v) {
  const char *units[] = {"", "K", "M", "G", "T"};
  int u = 0;
  while (v >= 1000 && u < 4) v /= 1000, ++u;
  return u == 0 ? fmt::format("{:.0f}", v) : fmt::format("{:.2f}{}", v, units[u]);
}

}  // namespace

int64_t learnableParameters(const rt::ModelSpec &spec) {
  int64_t n = 0;
  for (const rt::ParamSpec &p : spec.params)
    if (p.learnable()) n += p.size;
  return n;
}

void printSummary(const CheckedProgram &checked, const CompiledProgram &compiled, std::ostream &os) {
  const rt::ModelSpec &spec = compiled.spec;
  fmt::print(os, "model {}: {} input{}, {} task{}\n", spec.name, spec.inputs.size(),
             spec.inputs.size() == 1 ? "" : "s", spec.tasks.size(), spec.tasks.size() == 1 ? "" : "s");

  // Parameters per block (shared blocks first, then task heads: the order of the table).
  struct BlockRow {
    std::string block;
    int64_t count = 0;
    bool frozen = false;
  };
  std::vector<BlockRow> blocks;
  for (const auto &p : spec.params) {
    if (blocks.empty() || blocks.back().block != p.block) blocks.push_back({p.block, 0, p.frozen});
    if (!p.state) blocks.back().count += p.size;  // batchnorm's running statistics are buffers
  }
  fmt::print(os, "\n  {:<20} {:>12}\n", "block", "parameters");
  for (const BlockRow &b : blocks)
    fmt::print(os, "  {:<20} {:>12}{}\n", b.block, b.count, b.frozen ? "  frozen (not learnt)" : "");
  fmt::print(os, "  {:<20} {:>12}\n\n", "learnable total", learnableParameters(spec));

  fmt::print(os, "  forward FLOPs per sample  {}\n", human(spec.flopsPerSample));
  const int64_t naive = compiled.code->actsFloatsWithoutReuse;  // one slot per value, the largest entry point
  fmt::print(os, "  activation arena          {:.2f} MiB planned, {:.2f} MiB without reuse (batch up to {})\n",
             spec.actsFloats * 4.0 / (1 << 20), naive * 4.0 / (1 << 20), spec.maxBatch);
  const auto &t = checked.times;
  const jit::CompiledModule &code = *compiled.code;
  fmt::print(os, "  compile time              {:.1f} ms (parse {:.1f}, check {:.1f}, lower {:.1f}, "
                 "codegen+JIT {:.1f}: emit {:.1f}, optimise {:.1f}, machine code {:.1f})\n",
             t.totalMs(), t.parseMs, t.semaMs, t.lowerMs, t.codegenMs, code.emitMs, code.optimizeMs,
             code.machineCodeMs);
}

}  // namespace mtlc::driver
