// The size of one training step: batch x (the per-sample values of every input and every layer's
// output) must stay under limits::kMaxStepValues, so that a program whose shapes and parameters
// are each fine but whose activations would need hundreds of GiB (a 10^9-wide input, a huge batch)
// is rejected here, at the layer that crosses the limit, instead of failing to allocate in the
// trainer. Expert blocks count every expert's copy of their layers.
#include "sema/SemaInternal.h"

#include <fmt/format.h>

namespace mtlc::sema::detail {

namespace {

// Per-sample values a layer keeps for the backward pass (doubles: no overflow while summing).
double layerValues(const Layer &l);

double layersValues(const std::vector<Layer> &layers) {
  double n = 0;
  for (const Layer &l : layers) n += layerValues(l);
  return n;
}

double layerValues(const Layer &l) {
  const double out = static_cast<double>(elementCount(l.out));
  const double readers = static_cast<double>(l.readers.size());
  switch (l.kind) {
  case LayerKind::Mixture: {  // every expert, then each reader's gate and mix
    double gate = static_cast<double>(l.experts);
    if (l.dselect) {  // z, S(z), 1 − S(z) per bit, the selectors' products (about 2E each), w
      double bits = 0;
      while ((int64_t(1) << static_cast<int>(bits)) < l.experts) ++bits;
      gate += static_cast<double>(l.select) * (3 * bits + 2 * static_cast<double>(l.experts) + 1);
    }
    return static_cast<double>(l.experts) * layersValues(l.expert) + readers * (gate + out);
  }
  case LayerKind::Ple: {  // every level: the shared experts and each reader's own
    const double experts = static_cast<double>(l.sharedExperts) +
                           static_cast<double>(l.specificExperts) * readers;
    return static_cast<double>(l.levels) * (experts * layersValues(l.expert) + (readers + 1) * out);
  }
  case LayerKind::CrossStitch: {  // one column per reader
    double column = 0;
    for (const auto &stage : l.stages) column += layersValues(stage);
    return readers * column;
  }
  case LayerKind::Mtan: {  // the stages once; per reader and stage about 10 values per element of
                          // the stage's output (attention, concat, mask), 4 of the next's (down)
    double stages = 0, task = 0;
    for (size_t s = 0; s < l.stages.size(); ++s) {
      stages += layersValues(l.stages[s]);
      task += 10 * static_cast<double>(elementCount(l.stages[s].back().out));
      if (s + 1 < l.stages.size()) task += 4 * static_cast<double>(elementCount(l.stages[s + 1].back().out));
    }
    return stages + readers * task;
  }
  case LayerKind::Residual:  // the body, the projection's two outputs, the sum
    return layersValues(l.body) + (l.projection ? 3 : 1) * out;
  default: return out;
  }
}

}  // namespace

void Analyzer::checkStepSize() {
  if (diags_.hasErrors()) return;  // shapes may be incomplete; the errors come first
  const double batch = static_cast<double>(model_.train.batch);
  const double cap = static_cast<double>(limits::kMaxStepValues);
  double perSample = 0;
  auto add = [&](double values, SourceRange at, const std::string &what) {
    perSample += values;
    if (batch * perSample <= cap) return true;
    diags_.error(at, fmt::format("{} takes one training step's activations to {:.0f} values (batch "
                                 "{} x {:.0f} per sample), more than the supported {} (2^31, 8 GiB)",
                                 what, batch * perSample, model_.train.batch, perSample,
                                 limits::kMaxStepValues));
    const ast::Setting *set = nullptr;
    if (!prog_.trains.empty())
      for (const ast::Setting &s : prog_.trains[0].settings)
        if (s.name == "batch") set = &s;
    if (set)
      diags_.note(set->valueLoc, fmt::format("the batch, {}, is set here", model_.train.batch));
    else
      diags_.note(SourceRange{}, fmt::format("the batch is the default, {}; a smaller one goes in "
                                             "train {{ batch N }}",
                                             model_.train.batch));
    return false;
  };
  for (const Input &in : model_.inputs)
    if (!add(static_cast<double>(elementCount(in.shape)), in.loc, fmt::format("input '{}'", in.name)))
      return;
  auto pipeline = [&](const Pipeline &p) {
    for (const Layer &l : p.layers)
      if (!add(layerValues(l), l.loc, fmt::format("{} (in '{}')", layerName(l.kind), p.name)))
        return false;
    return true;
  };
  for (const Pipeline &p : model_.shared)
    if (!pipeline(p)) return;
  for (const Task &t : model_.tasks)
    if (!pipeline(t.head)) return;
}

}  // namespace mtlc::sema::detail
