#include "runtime/Checkpoint.h"

#include "runtime/Error.h"
#include "runtime/SafeTensors.h"

#include <cstring>

namespace mtlc::rt {

void saveCheckpoint(const std::string& path, const ModelSpec& spec, const float* params, Optimizer* optimizer) {
  std::vector<TensorView> views;
  for (const ParamSpec& p : spec.params) views.push_back({p.name, p.shape, params + p.offset});
  std::map<std::string, std::string> meta{{"format", "mtlc"}, {"model", spec.name}};
  if (optimizer) {
    meta["optimizer"] = optimizer->spec().kind;
    meta["steps"] = std::to_string(optimizer->steps());
    for (const Optimizer::StateTensor& s : optimizer->state()) views.push_back({s.name, {s.size}, s.data});
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

bool loadOptimizerState(const std::string& path, Optimizer& opt) {
  TensorFile f = readSafeTensors(path);
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

}  // namespace mtlc::rt
