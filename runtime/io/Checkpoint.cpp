#include "runtime/io/Checkpoint.h"

#include "runtime/core/SafeTensors.h"
#include "runtime/core/Spans.h"

#include "spec/Error.h"
#include "runtime/train/Weighting.h"

#include <cmath>
#include <cstdlib>
#include <cstring>

namespace mtlc::rt {

static std::string taskList(const ModelSpec& spec) {
  std::string s;
  for (const TaskSpec& t : spec.tasks) s += (s.empty() ? "" : ",") + t.name;
  return s;
}

static std::string accKey(const TaskSpec& t) { return "train.acc." + t.name; }

void saveCheckpoint(const std::string& path, const ModelSpec& spec, const float* params, Optimizer* optimizer,
                    Weighting* weighting, const TrainPosition* pos) {
  std::vector<TensorView> views;
  for (const ParamSpec& p : spec.params) views.push_back({p.name, p.shape, params + p.offset, p.integer});
  std::map<std::string, std::string> meta{{"format", "mtlc"}, {"model", spec.name}, {"tasks", taskList(spec)}};
  std::vector<std::vector<float>> tableOrder;  // arena-sized state, in the file's order
  if (optimizer) {
    meta["optimizer"] = vocab::name(optimizer->spec().kind);
    meta["steps"] = std::to_string(optimizer->steps());
    const std::vector<core::ParamExtent> extents = paramExtents(spec);
    for (const Optimizer::StateTensor& s : optimizer->state()) {
      if (s.size != spec.paramCount) {
        views.push_back({s.name, {s.size}, s.data});
        continue;
      }
      std::vector<float>& t = tableOrder.emplace_back(size_t(s.size));
      if (!core::arenaToTableOrder(extents.data(), extents.size(), spec.paramCount, s.data, t.data()))
        throwError("internal: the parameter table does not fit its {}-float arena", spec.paramCount);
      views.push_back({s.name, {s.size}, t.data()});
    }
  }
  if (weighting) {
    meta["weighting"] = vocab::name(spec.train.weighting);
    for (const WeightingState& s : weighting->state()) views.push_back({s.name, s.shape, s.data});
  }
  if (pos) {
    meta["train.seed"] = std::to_string(pos->seed);
    meta["train.position"] = fmt::format("{} {} {}", pos->step, pos->epoch, pos->batch);
    meta["train.data"] = fmt::format("{} {}", pos->batchSize, pos->rows);
    meta["train.epoch_loss"] = fmt::format("{} {}", pos->lossSum, pos->samples);
    if (pos->validated) meta["train.best"] = fmt::format("{} {} {}", pos->bestEpoch, pos->bestValue, pos->badEpochs);
    if (pos->tasks.size() != spec.tasks.size())
      throwError("internal: {} task metric states for {} tasks", pos->tasks.size(), spec.tasks.size());
    for (size_t t = 0; t < spec.tasks.size(); ++t) {
      const MetricAccumulator::State& a = pos->tasks[t];
      meta[accKey(spec.tasks[t])] = fmt::format("{}", fmt::join(a.scalars, " "));
      if (a.scores.empty()) continue;
      views.push_back({accKey(spec.tasks[t]) + ".scores", {int64_t(a.scores.size())}, a.scores.data()});
      views.push_back({accKey(spec.tasks[t]) + ".positive", {int64_t(a.positive.size())}, a.positive.data()});
    }
  }
  writeSafeTensors(path, views, meta);
}

// A number a count or step comes from (the optimizer's step tensor, the position's metadata): it
// is converted to int64, so NaN, a negative or a fraction is none, and one beyond int64's range
// would be undefined behaviour.
static bool isCount(double v) { return v >= 0 && v < 0x1p62 && v == std::floor(v); }
static bool isStepCount(float v) { return isCount(double(v)); }

bool isStateTensor(const std::string& name) { return core::isStateTensor(name.c_str()); }

// "3 0.5 7" -> {3, 0.5, 7}; an Error naming the file and key unless it is exactly `count` numbers.
// The numbers of metadata `key`: `count` of them, or `alternative` where that is not 0.
static std::vector<double> numbers(const TensorFile& f, const std::string& path, const std::string& key,
                                   size_t count, size_t alternative = 0) {
  auto it = f.metadata.find(key);
  if (it == f.metadata.end()) throwError("{}: training position incomplete: no `{}` in the metadata", path, key);
  std::vector<double> out;
  const char* p = it->second.c_str();
  for (;;) {
    while (*p == ' ') ++p;
    if (!*p) break;
    char* end = nullptr;
    double v = std::strtod(p, &end);
    if (end == p) throwError("{}: metadata `{}` = \"{}\" is not a list of numbers", path, key, it->second);
    out.push_back(v);
    p = end;
  }
  if (out.size() != count && (alternative == 0 || out.size() != alternative))
    throwError("{}: metadata `{}` has {} numbers, expected {}", path, key, out.size(), count);
  return out;
}

std::optional<TrainPosition> loadTrainPosition(const TensorFile& f, const std::string& path, const ModelSpec& spec) {
  auto seed = f.metadata.find("train.seed");
  if (seed == f.metadata.end()) return std::nullopt;
  TrainPosition pos;
  char* end = nullptr;
  pos.seed = std::strtoull(seed->second.c_str(), &end, 10);
  if (seed->second.empty() || *end) throwError("{}: metadata `train.seed` = \"{}\" is not a seed", path, seed->second);
  std::vector<double> at = numbers(f, path, "train.position", 3);
  std::vector<double> data = numbers(f, path, "train.data", 2);
  std::vector<double> loss = numbers(f, path, "train.epoch_loss", 2);
  for (double v : {at[0], at[1], at[2], data[0], data[1], loss[1]})
    if (!isCount(v)) throwError("{}: the training position holds {} where a count belongs", path, v);
  pos.step = int64_t(at[0]);
  pos.epoch = int64_t(at[1]);
  pos.batch = int64_t(at[2]);
  pos.batchSize = int64_t(data[0]);
  pos.rows = int64_t(data[1]);
  pos.lossSum = loss[0];
  pos.samples = int64_t(loss[1]);
  if (f.metadata.count("train.best")) {
    std::vector<double> best = numbers(f, path, "train.best", 3);
    if (!isCount(best[0]) || !isCount(best[2]))
      throwError("{}: metadata `train.best` holds {} where a count belongs", path, isCount(best[0]) ? best[2] : best[0]);
    pos.validated = true;
    pos.bestEpoch = int64_t(best[0]);
    pos.bestValue = best[1];
    pos.badEpochs = int64_t(best[2]);
  }
  if (pos.step < 0 || pos.epoch < 0 || pos.batch < 0 || pos.batchSize <= 0 || pos.samples < 0)
    throwError("{}: the training position (step {}, epoch {}, batch {}) is not valid", path, pos.step, pos.epoch,
               pos.batch);
  for (const TaskSpec& t : spec.tasks) {
    MetricAccumulator::State a;
    a.scalars = numbers(f, path, accKey(t), MetricAccumulator::stateScalars(t), MetricAccumulator::kLegacyScalars);
    for (size_t i = 0; i < a.scalars.size(); ++i)  // the counters among MetricAccumulator::State's scalars
      if (MetricAccumulator::isCounter(i) && !isCount(a.scalars[i]))
        throwError("{}: metadata `{}` holds {} where a count belongs", path, accKey(t), a.scalars[i]);
    const Tensor* scores = f.find(accKey(t) + ".scores");
    const Tensor* positive = f.find(accKey(t) + ".positive");
    if (bool(scores) != bool(positive))
      throwError("{}: `{}.scores` and `{}.positive` must both be present or both absent", path, accKey(t), accKey(t));
    if (scores) {
      for (float v : positive->data)
        if (v != 0 && v != 1) throwError("{}: `{}.positive` holds {}, not a 0/1 label", path, accKey(t), v);
      a.scores = scores->data;
      a.positive = positive->data;
    }
    pos.tasks.push_back(std::move(a));
  }
  return pos;
}

void loadParams(const std::string& path, const ModelSpec& spec, float* params) {
  loadParams(readSafeTensors(path), path, spec, params);
}

void loadParams(const TensorFile& f, const std::string& path, const ModelSpec& spec, float* params) {
  for (const ParamSpec& p : spec.params) {
    const Tensor* t = f.find(p.name);
    if (!t) throwError("{}: parameter `{}` {} is missing from the checkpoint", path, p.name, shapeString(p.shape));
    if (t->shape != p.shape)
      throwError("{}: parameter `{}` has shape {} in the checkpoint, the model expects {}", path, p.name,
                 shapeString(t->shape), shapeString(p.shape));
  }
  for (const Tensor& t : f.tensors) {
    if (isStateTensor(t.name)) continue;
    bool known = false;
    for (const ParamSpec& p : spec.params) known = known || p.name == t.name;
    if (!known)
      throwError("{}: tensor `{}` {} is not a parameter of model `{}`", path, t.name, shapeString(t.shape), spec.name);
  }
  for (const ParamSpec& p : spec.params) {
    const Tensor* t = f.find(p.name);
    std::memcpy(params + p.offset, t->data.data(), size_t(p.size) * sizeof(float));
  }
}

InitReport loadMatchingParams(const TensorFile& f, const std::string& path, const ModelSpec& spec, float* params) {
  InitReport r;
  std::vector<std::string> mismatches;
  for (const ParamSpec& p : spec.params) {
    const Tensor* t = f.find(p.name);
    if (t && t->shape == p.shape && int64_t(t->data.size()) == p.size) {
      r.loaded.push_back(fmt::format("{} {}", p.name, shapeString(p.shape)));
      continue;
    }
    r.freshNames.push_back(p.name);
    if (!t) {
      r.fresh.push_back(fmt::format("{} {} (not in the checkpoint)", p.name, shapeString(p.shape)));
    } else {
      r.fresh.push_back(fmt::format("{} (checkpoint {}, model {})", p.name, shapeString(t->shape), shapeString(p.shape)));
      mismatches.push_back(r.fresh.back());
    }
  }
  for (const Tensor& t : f.tensors) {
    if (isStateTensor(t.name)) continue;
    bool taken = false;
    for (const ParamSpec& p : spec.params) taken = taken || (p.name == t.name && p.shape == t.shape);
    if (!taken) r.unused.push_back(fmt::format("{} {}", t.name, shapeString(t.shape)));
  }
  if (r.loaded.empty() && !spec.params.empty()) {
    std::string why = mismatches.empty() ? std::string()
                                         : fmt::format(" (shapes differ: {})", fmt::join(mismatches, "; "));
    throwError("{}: no tensor in the checkpoint matches a parameter of model `{}` by name and shape{}", path,
               spec.name, why);
  }
  for (const ParamSpec& p : spec.params) {
    const Tensor* t = f.find(p.name);
    if (t && t->shape == p.shape && int64_t(t->data.size()) == p.size)
      std::memcpy(params + p.offset, t->data.data(), size_t(p.size) * sizeof(float));
  }
  return r;
}

bool loadOptimizerState(const std::string& path, const ModelSpec& spec, Optimizer& opt) {
  return loadOptimizerState(readSafeTensors(path), path, spec, opt);
}

bool loadOptimizerState(const TensorFile& f, const std::string& path, const ModelSpec& spec, Optimizer& opt) {
  auto it = f.metadata.find("optimizer");
  if (it != f.metadata.end() && it->second != vocab::name(opt.spec().kind)) return false;
  std::vector<Optimizer::StateTensor> state = opt.state();
  for (const auto& s : state)
    if (!f.find(s.name)) return false;
  for (const auto& s : state) {
    const Tensor* t = f.find(s.name);
    if (int64_t(t->data.size()) != s.size)
      throwError("{}: optimizer state `{}` has {} elements, the model needs {}", path, s.name, t->data.size(), s.size);
  }
  const float step = f.find("optim.step")->data[0];
  if (!isStepCount(step)) throwError("{}: `optim.step` is {}, not a step count", path, step);
  const std::vector<core::ParamExtent> extents = paramExtents(spec);
  for (const auto& s : state) {
    const Tensor* t = f.find(s.name);
    if (s.size != spec.paramCount) std::memcpy(s.data, t->data.data(), size_t(s.size) * sizeof(float));
    else if (!core::tableToArenaOrder(extents.data(), extents.size(), spec.paramCount, t->data.data(), s.data))
      throwError("internal: the parameter table does not fit its {}-float arena", spec.paramCount);
  }
  opt.setSteps(int64_t(step));
  return true;
}

bool loadWeightingState(const TensorFile& f, const ModelSpec& spec, Weighting& w) {
  std::vector<WeightingState> state = w.state();
  if (state.empty()) return true;
  auto meta = [&](const char* key) {
    auto it = f.metadata.find(key);
    return it == f.metadata.end() ? std::string() : it->second;
  };
  if (meta("weighting") != vocab::name(spec.train.weighting) || meta("tasks") != taskList(spec)) return false;
  for (const WeightingState& s : state) {
    const Tensor* t = f.find(s.name);
    if (!t || t->shape != s.shape || int64_t(t->data.size()) != s.size()) return false;
    // The weighting's own optimizer takes `mtl.optim.step` as its step count (Weighting.cpp).
    if (s.name == "mtl.optim.step" && !isStepCount(t->data[0])) return false;
  }
  for (const WeightingState& s : state)
    std::memcpy(s.data, f.find(s.name)->data.data(), size_t(s.size()) * sizeof(float));
  w.stateLoaded();
  return true;
}

}  // namespace mtlc::rt
