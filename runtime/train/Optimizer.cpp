#include "runtime/train/Optimizer.h"

#include "runtime/core/Spans.h"
#include "runtime/core/Update.h"

#include "spec/Error.h"
#include "runtime/parallel/ThreadPool.h"

#include <algorithm>
#include <cmath>

namespace mtlc::rt {

core::UpdateRule updateRule(const OptimizerSpec& s) {
  core::UpdateRule r;
  r.kind = s.kind;
  r.lr = s.lr;
  r.momentum = s.momentum;
  r.beta1 = s.beta1;
  r.beta2 = s.beta2;
  r.eps = s.eps;
  r.weightDecay = s.weightDecay;
  r.alpha = s.alpha;
  r.nesterov = s.nesterov != 0;
  return r;
}

Optimizer::Optimizer(const OptimizerSpec& spec, int64_t paramCount)
    : spec_(spec), count_(paramCount), rule_(updateRule(spec)), layout_(core::stateLayout(rule_)),
      spans_{{0, paramCount}}, scales_{1.0} {
  if (layout_.count >= 1) a_.resize(paramCount);
  if (layout_.count >= 2) b_.resize(paramCount);
}

namespace {

// Blocks of 16K floats (64 KiB per array) split across threads from 64K elements on: below that
// the fork and join cost more than the loop.
constexpr int64_t kBlock = 1 << 14, kParallelFrom = 1 << 16;

}  // namespace

void Optimizer::setActiveSpans(std::vector<std::pair<int64_t, int64_t>> spans, std::vector<double> scales) {
  if (scales.empty()) scales.assign(spans.size(), 1.0);
  if (scales.size() != spans.size()) throwError("internal: {} learning-rate scales for {} spans", scales.size(), spans.size());
  spans_ = std::move(spans);
  scales_ = std::move(scales);
}

void Optimizer::step(float* params, const float* grads, ThreadPool* pool) {
  ++steps_;
  stepTensor_ = float(steps_);
  struct Job {
    Optimizer* self;
    core::UpdateRule rule;  // the span's: lr·scale
    float* params;
    const float* grads;
    int64_t begin, end;
  };
  auto update = [](void* ctx, int64_t b0, int64_t b1) {
    const Job& j = *static_cast<const Job*>(ctx);
    Optimizer& o = *j.self;
    const int64_t begin = j.begin + b0 * kBlock, n = std::min(j.end, j.begin + b1 * kBlock) - begin;
    float* a = o.a_.data() ? o.a_.data() + begin : nullptr;
    float* b = o.b_.data() ? o.b_.data() + begin : nullptr;
    core::update(j.rule, j.params + begin, j.grads + begin, a, b, n, o.steps_);
  };
  for (size_t i = 0; i < spans_.size(); ++i) {
    const auto [begin, end] = spans_[i];
    Job job{this, rule_, params, grads, begin, end};
    if (scales_[i] != 1.0) job.rule.lr = rule_.lr * scales_[i];
    const int64_t blocks = (end - begin + kBlock - 1) / kBlock;
    if (pool && end - begin >= kParallelFrom) pool->parallelFor(blocks, update, &job);
    else update(&job, 0, blocks);
  }
}

std::vector<core::ParamExtent> paramExtents(const ModelSpec& spec) {
  std::vector<core::ParamExtent> extents;
  extents.reserve(spec.params.size());
  for (const ParamSpec& p : spec.params) extents.push_back({p.offset, p.size, !p.learnable()});
  return extents;
}

std::vector<std::pair<int64_t, int64_t>> trainableSpans(const ModelSpec& spec) {
  const std::vector<core::ParamExtent> extents = paramExtents(spec);
  std::vector<core::Span> spans(std::max<size_t>(extents.size(), 1));
  spans.resize(core::trainableSpans(extents.data(), extents.size(), spec.paramCount, spans.data()));
  std::vector<std::pair<int64_t, int64_t>> pairs;
  for (const core::Span& span : spans) pairs.push_back({span.begin, span.end});
  return pairs;
}

ParamGroups trainableGroups(const ModelSpec& spec) {
  ParamGroups g;
  const std::vector<std::pair<int64_t, int64_t>> spans = trainableSpans(spec);
  if (spec.train.lrScale.empty()) {
    g.spans = spans;
    g.scales.assign(spans.size(), 1.0);
    return g;
  }
  auto scaleOf = [&](const ParamSpec& p) {
    for (const auto& [block, scale] : spec.train.lrScale)
      if (p.block == block) return scale;
    return 1.0;
  };
  std::vector<const ParamSpec*> learnable;
  for (const ParamSpec& p : spec.params)
    if (p.learnable()) learnable.push_back(&p);
  std::sort(learnable.begin(), learnable.end(), [](const ParamSpec* a, const ParamSpec* b) { return a->offset < b->offset; });
  for (auto [begin, end] : spans) {  // cut each span where the scale changes
    int64_t from = begin;
    double scale = std::nan("");
    for (const ParamSpec* p : learnable) {
      if (p->offset < begin || p->offset >= end) continue;
      const double s = scaleOf(*p);
      if (s == scale) continue;
      if (!std::isnan(scale) && p->offset > from) {
        g.spans.push_back({from, p->offset});
        g.scales.push_back(scale);
        from = p->offset;
      }
      scale = s;
    }
    g.spans.push_back({from, end});
    g.scales.push_back(std::isnan(scale) ? 1.0 : scale);
  }
  return g;
}

std::vector<Optimizer::StateTensor> Optimizer::state() {
  std::vector<StateTensor> s{{"optim.step", &stepTensor_, 1}};
  float* arrays[2] = {a_.data(), b_.data()};
  for (int i = 0; i < layout_.count; ++i) s.push_back({layout_.names[i], arrays[i], count_});
  return s;
}

double clipGradNorm(float* grads, const std::vector<std::pair<int64_t, int64_t>>& spans, double maxNorm) {
  double sq = 0;
  for (auto [begin, end] : spans)
    for (int64_t i = begin; i < end; ++i) sq += double(grads[i]) * double(grads[i]);
  const double norm = std::sqrt(sq);
  if (!std::isfinite(norm)) return norm;
  const double coef = maxNorm / (norm + 1e-6);
  if (coef < 1)
    for (auto [begin, end] : spans)
      for (int64_t i = begin; i < end; ++i) grads[i] = float(double(grads[i]) * coef);
  return norm;
}

}  // namespace mtlc::rt
