#include "Lower.h"

#include <fmt/format.h>

#include <functional>

namespace mtlc::lower {

namespace {

constexpr int64_t kAlign = 16;  // floats: each tensor starts on a 64-byte boundary

int64_t product(const std::vector<int64_t> &s) {
  int64_t p = 1;
  for (int64_t d : s) p *= d;
  return p;
}

void addLayerParams(const sema::Pipeline &p, const sema::Layer &l, std::vector<rt::ParamSpec> &out) {
  auto add = [&](const char *what, std::vector<int64_t> shape, rt::Init init, int64_t fanIn) {
    rt::ParamSpec ps;
    ps.name = fmt::format("{}.{}.{}", p.name, l.index, what);
    ps.shape = std::move(shape);
    ps.size = product(ps.shape);
    ps.init = init;
    ps.fanIn = fanIn;
    ps.block = p.name;
    out.push_back(std::move(ps));
  };
  switch (l.kind) {
    case sema::LayerKind::Dense:
      add("weight", {l.units, l.in[0]}, rt::Init::UniformFanIn, l.in[0]);
      add("bias", {l.units}, rt::Init::UniformFanIn, l.in[0]);
      break;
    case sema::LayerKind::Conv2d: {
      int64_t fanIn = l.in[0] * l.kernel * l.kernel;
      add("weight", {l.units, l.in[0], l.kernel, l.kernel}, rt::Init::UniformFanIn, fanIn);
      add("bias", {l.units}, rt::Init::UniformFanIn, fanIn);
      break;
    }
    case sema::LayerKind::LayerNorm:
      add("weight", l.in, rt::Init::Ones, 1);
      add("bias", l.in, rt::Init::Zeros, 1);
      break;
    default: break;
  }
}

}  // namespace

std::vector<rt::ParamSpec> buildParamTable(const sema::Model &model) {
  // Which shared blocks are read, directly or through other blocks, by some task.
  std::vector<bool> used(model.shared.size(), false);
  std::function<void(const sema::Pipeline &)> mark = [&](const sema::Pipeline &p) {
    if (p.sourceIsInput || used[p.sourceIndex]) return;
    used[p.sourceIndex] = true;
    mark(model.shared[p.sourceIndex]);
  };
  for (const auto &t : model.tasks) mark(t.head);

  std::vector<rt::ParamSpec> params;
  for (size_t i = 0; i < model.shared.size(); ++i)
    if (used[i])
      for (const auto &l : model.shared[i].layers) addLayerParams(model.shared[i], l, params);
  for (const auto &t : model.tasks)
    for (const auto &l : t.head.layers) addLayerParams(t.head, l, params);

  int64_t offset = 0;
  for (auto &p : params) {
    p.offset = offset;
    offset += (p.size + kAlign - 1) / kAlign * kAlign;
  }
  return params;
}

}  // namespace mtlc::lower
