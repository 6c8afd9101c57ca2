// The pass list and its settings (Passes.h).
#include "Passes.h"

#include "ir/Builder.h"
#include "ir/Verifier.h"

#include <algorithm>

namespace mtlc::passes {

const std::vector<GraphPass> &graphPasses() {
  static const std::vector<GraphPass> list = {
      {"fold-constants", [](const ir::Module &, ir::Function &f) { return foldConstants(f); }},
      {"cse", [](const ir::Module &, ir::Function &f) { return eliminateCommonSubexpressions(f); }},
      {"siblings", fuseSiblingProducts},
      {"dce", [](const ir::Module &, ir::Function &f) { return eliminateDeadCode(f); }},
  };
  return list;
}

std::vector<std::string> passNames() {
  std::vector<std::string> names;
  for (const GraphPass &p : graphPasses()) names.push_back(p.name);
  names.push_back(kFusionPass);
  return names;
}

bool PassSettings::runs(const std::string &name) const {
  return optimize && std::find(disabled.begin(), disabled.end(), name) == disabled.end();
}

std::string checkPassNames(const std::vector<std::string> &names) {
  const std::vector<std::string> known = passNames();
  for (const std::string &n : names) {
    if (std::find(known.begin(), known.end(), n) != known.end()) continue;
    std::string list;
    for (const std::string &k : known) list += (list.empty() ? "" : ", ") + k;
    return "unknown pass '" + n + "' (known: " + list + ")";
  }
  return "";
}

void runGraphPasses(ir::Module &m, const PassSettings &settings, bool verifyEach) {
  for (auto &fn : m.functions) {
    for (const GraphPass &pass : graphPasses()) {
      if (!settings.runs(pass.name)) continue;
      pass.run(m, *fn);
      if (!verifyEach) continue;
      auto problems = ir::verify(m, *fn);
      if (!problems.empty())
        throw ir::IRError(std::string("IR verification failed after pass '") + pass.name +
                          "': " + problems[0]);
    }
  }
}

void runGraphPasses(ir::Module &m, bool verifyEach) { runGraphPasses(m, PassSettings{}, verifyEach); }

}  // namespace mtlc::passes
