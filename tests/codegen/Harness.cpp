#include "Harness.h"

#include "ir/Verifier.h"

#include <cmath>
#include <limits>
#include <sstream>

namespace mtlc::test {

Harness::Harness(int64_t maxBatch, std::string fnName)
    : fn([&]() -> ir::Function & {
        module.name = "test";
        module.maxBatch = maxBatch;
        module.functions.push_back(std::make_unique<ir::Function>());
        module.functions.back()->name = fnName;
        return *module.functions.back();
      }()),
      b(fn),
      fnName_(fnName) {}

Node *Harness::input(std::vector<int64_t> dims) {
  module.inputs.push_back(batched(dims));
  return b.input((int)module.inputs.size() - 1, batched(std::move(dims)));
}

Node *Harness::label(std::vector<int64_t> dims) {
  module.labels.push_back(batched(dims));
  return b.label((int)module.labels.size() - 1, batched(std::move(dims)));
}

Node *Harness::param(std::vector<int64_t> shape) {
  ir::ParamInfo info{"p" + std::to_string(module.params.size()), shape, paramFloats_};
  // Offsets 16-float aligned with a gap, like the lowering's table, so overruns show up.
  paramFloats_ += (info.elements() + 16 + 15) / 16 * 16;
  module.params.push_back(info);
  return b.param((int)module.params.size() - 1, std::move(shape));
}

void Harness::bind(Node *value, ir::Output::Kind kind, int index) {
  if (kind == ir::Output::Kind::Head) {
    if ((int)module.heads.size() <= index) module.heads.resize(index + 1);
    module.heads[index] = value->type;
  }
  fn.outputs.push_back({kind, index, value});
}

void Harness::prepare() {
  if (prepared_) return;
  prepared_ = true;
  auto problems = ir::verify(module);
  INFO((problems.empty() ? std::string() : problems[0]));
  REQUIRE(problems.empty());  // the test built a well-formed graph
  // One slot per value, so that a kernel writing past sample n shows up in the checks below
  // instead of landing in another value's reused slot (reuse has its own tests).
  module.reuseActs = false;
  compiled_ = jit::compile(module, options);
  // The plan the generated code uses: the same schedule (interior members of a fusion group have
  // no storage and cannot be read back).
  const passes::ScheduledModule schedule = codegen::scheduleModule(module, compiled_.options);
  fusion_ = schedule.of(fn).fusion;
  plan_ = schedule.of(fn).memory;
  int64_t B = module.maxBatch;
  params_.assign(paramFloats_ + 16, 0);
  grads_.assign(paramFloats_ + 16, 0);
  acts_.assign(compiled_.actsFloats + 16, 0);
  for (const Type &t : module.inputs) inputs_.emplace_back(B * t.elements(), 0.f);
  for (const Type &t : module.labels) labels_.emplace_back(B * t.elements(), 0.f);
  for (const Type &t : module.heads) outputs_.emplace_back(B * t.elements(), 0.f);
  size_t tasks = std::max(module.labels.size(), module.heads.size());
  lossWeights_.assign(tasks + 1, 1.f);
  losses_.assign(tasks + 1, 0.f);
}

float *Harness::where(const passes::Storage &s) {
  using Base = passes::Storage::Base;
  switch (s.base) {
    case Base::Acts: return acts_.data() + s.offset;
    case Base::Params: return params_.data() + s.offset;
    case Base::Grads: return grads_.data() + s.offset;
    case Base::Input: return inputs_.at(s.index).data() + s.offset;
    case Base::Label: return labels_.at(s.index).data() + s.offset;
    case Base::LossWeights: return lossWeights_.data() + s.offset;
    case Base::Losses: return losses_.data() + s.offset;
    case Base::Output: return outputs_.at(s.index).data() + s.offset;
    case Base::None: break;
  }
  FAIL("node has no storage (an interior member of a fusion group? set options.fuse = false)");
  return nullptr;
}

float *Harness::data(const Node *node) {
  prepare();
  return where(plan_.storage.at(node->id));
}

void Harness::fillUniform(const Node *leaf, double lo, double hi) {
  std::uniform_real_distribution<float> dist((float)lo, (float)hi);
  int64_t count = leaf->type.elements() * (leaf->type.batched ? module.maxBatch : 1);
  float *p = data(leaf);
  for (int64_t i = 0; i < count; ++i) p[i] = dist(rng_);
}

void Harness::fillClasses(const Node *label, int classes) {
  std::uniform_int_distribution<int> dist(0, classes - 1);
  float *p = data(label);
  for (int64_t i = 0; i < module.maxBatch; ++i) p[i] = (float)dist(rng_);
}

void Harness::run(int64_t n, uint64_t seed) { runFunction(fnName_, n, seed); }

void Harness::runFunction(const std::string &name, int64_t n, uint64_t seed) {
  prepare();
  n_ = n;
  if (poison) {
    const float nan = std::numeric_limits<float>::quiet_NaN();
    std::fill(acts_.begin(), acts_.end(), nan);
    std::fill(grads_.begin(), grads_.end(), nan);
    std::fill(losses_.begin(), losses_.end(), nan);
    for (auto &o : outputs_) std::fill(o.begin(), o.end(), nan);
  }

  std::vector<const float *> inputPtrs, labelPtrs;
  std::vector<float *> outputPtrs;
  for (auto &v : inputs_) inputPtrs.push_back(v.data());
  for (auto &v : labels_) labelPtrs.push_back(v.data());
  for (auto &v : outputs_) outputPtrs.push_back(v.data());
  mtlc_args args{params_.data(),      grads_.data(),     acts_.data(),      inputPtrs.data(),
                 labelPtrs.data(),    lossWeights_.data(), losses_.data(),  outputPtrs.data(),
                 n,                   seed,                nullptr,             nullptr,         0,
                 gradsReady,          gradsReadyCtx};
  if (threads > 1) {
    if (!pool_ || pool_->threads() != threads) pool_ = std::make_unique<rt::ThreadPool>(threads);
    pool_->attach(args);
  }
  compiled_.entry(name)(&args);

  // Kernels must not touch samples past n: those rows of every batched acts slot stay poisoned.
  if (poison && name == fnName_)
    for (const auto &node : fn.nodes) {
      const passes::Storage &s = plan_.storage.at(node->id);
      if (s.base != passes::Storage::Base::Acts || !node->type.batched) continue;
      int64_t e = node->type.elements();
      for (int64_t i = n * e; i < module.maxBatch * e; ++i)
        if (!std::isnan(acts_[s.offset + i])) {
          FAIL_CHECK("node %" << node->id << " (" << ir::mnemonic(node->op) << ") wrote past sample n");
          break;
        }
    }
}

std::vector<double> Harness::read(const Node *node) {
  const float *p = data(node);
  int64_t count = node->type.elements() * (node->type.batched ? n_ : 1);
  return std::vector<double>(p, p + count);
}

std::vector<double> values(Harness &h, const Node *leaf) {
  const float *p = h.data(leaf);
  int64_t count = leaf->type.elements() * (leaf->type.batched ? h.module.maxBatch : 1);
  return std::vector<double>(p, p + count);
}

void requireClose(const std::vector<double> &got, const std::vector<double> &want, double rtol,
                  double atol, const std::string &what) {
  INFO(what);
  REQUIRE(got.size() == want.size());
  std::ostringstream bad;
  int mismatches = 0;
  double worst = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    double err = std::abs(got[i] - want[i]);
    bool ok = err <= atol + rtol * std::abs(want[i]);  // false for NaN
    if (!ok && mismatches++ < 5)
      bad << "  [" << i << "] got " << got[i] << " want " << want[i] << "\n";
    if (std::isfinite(err)) worst = std::max(worst, err);
  }
  INFO("mismatches: " << mismatches << " of " << got.size() << ", worst abs error " << worst
                      << "\n" << bad.str());
  CHECK(mismatches == 0);
}

}  // namespace mtlc::test
