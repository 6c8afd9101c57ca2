#include "runtime/Checkpoint.h"

#include "runtime/Error.h"
#include "runtime/Weighting.h"

#include <cstring>

namespace mtlc::rt {

static std::string taskList(const ModelSpec& spec) {
  std::string s;
  for (const TaskSpec& t : spec.tasks) s += (s.empty() ? "" : ",") + t.name;
  return s;
}

static std::string weightingName(const ModelSpec& spec) {
  return spec.train.weighting.empty() ? "fixed" : spec.train.weighting;
}

void saveCheckpoint(const std::string& path, const ModelSpec& spec, const float* params, Optimizer* optimizer,
                    Weighting* weighting) {
  std::vector<TensorView> views;
  for (const ParamSpec& p : spec.params) views.push_back({p.name, p.shape, params + p.offset});
  std::map<std::string, std::string> meta{{"format", "mtlc"}, {"model", spec.name}, {"tasks", taskList(spec)}};
  if (optimizer) {
    meta["optimizer"] = optimizer->spec().kind;
    meta["steps"] = std::to_string(optimizer->steps());
    for (const Optimizer::StateTensor& s : optimizer->state()) views.push_back({s.name, {s.size}, s.data});
  }
  if (weighting) {
    meta["weighting"] = weightingName(spec);
    for (const WeightingState& s : weighting->state()) views.push_back({s.name, s.shape, s.data});
  }
  writeSafeTensors(path, views, meta);
}

static bool startsWith(const std::string& s, const char* prefix) { return s.rfind(prefix, 0) == 0; }

void loadParams(const std::string& path, const ModelSpec& spec, float* params) {
  TensorFile f = readSafeTensors(path);
  for (const ParamSpec& p : spec.params) {
    const Tensor* t = f.find(p.name);
    if (!t) throwError("{}: parameter `{}` {} is missing from the checkpoint", path, p.name, shapeString(p.shape));
    if (t->shape != p.shape)
      throwError("{}: parameter `{}` has shape {} in the checkpoint, the model expects {}", path, p.name,
                 shapeString(t->shape), shapeString(p.shape));
  }
  for (const Tensor& t : f.tensors) {
    if (startsWith(t.name, "optim.") || startsWith(t.name, "mtl.")) continue;
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
    if (startsWith(t.name, "optim.") || startsWith(t.name, "mtl.")) continue;
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

bool loadOptimizerState(const std::string& path, Optimizer& opt) {
  return loadOptimizerState(readSafeTensors(path), path, opt);
}

bool loadOptimizerState(const TensorFile& f, const std::string& path, Optimizer& opt) {
  auto it = f.metadata.find("optimizer");
  if (it != f.metadata.end() && it->second != opt.spec().kind) return false;
  std::vector<Optimizer::StateTensor> state = opt.state();
  for (const auto& s : state)
    if (!f.find(s.name)) return false;
  for (const auto& s : state) {
    const Tensor* t = f.find(s.name);
    if (int64_t(t->data.size()) != s.size)
      throwError("{}: optimizer state `{}` has {} elements, the model needs {}", path, s.name, t->data.size(), s.size);
  }
  for (const auto& s : state) {
    const Tensor* t = f.find(s.name);
    std::memcpy(s.data, t->data.data(), size_t(s.size) * sizeof(float));
  }
  opt.setSteps(int64_t(f.find("optim.step")->data[0]));
  return true;
}

bool loadWeightingState(const TensorFile& f, const ModelSpec& spec, Weighting& w) {
  std::vector<WeightingState> state = w.state();
  if (state.empty()) return true;
  auto meta = [&](const char* key) {
    auto it = f.metadata.find(key);
    return it == f.metadata.end() ? std::string() : it->second;
  };
  if (meta("weighting") != weightingName(spec) || meta("tasks") != taskList(spec)) return false;
  for (const WeightingState& s : state) {
    const Tensor* t = f.find(s.name);
    if (!t || t->shape != s.shape || int64_t(t->data.size()) != s.size()) return false;
  }
  for (const WeightingState& s : state)
    std::memcpy(s.data, f.find(s.name)->data.data(), size_t(s.size()) * sizeof(float));
  w.stateLoaded();
  return true;
}

}  // namespace mtlc::rt
