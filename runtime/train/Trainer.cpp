#include "runtime/train/Trainer.h"

#include "spec/Error.h"
#include "runtime/train/BatchKernels.h"
#include "runtime/train/TrainingRun.h"

#include <algorithm>

namespace mtlc::rt {

std::vector<float> lossWeights(const ModelSpec& spec) {
  const float T = float(spec.tasks.size());
  std::vector<float> weights;
  for (const TaskSpec& t : spec.tasks) {
    switch (spec.train.weighting) {
      case WeightingKind::Fixed:
      case WeightingKind::PCGrad: weights.push_back(float(t.weight)); break;
      case WeightingKind::Uniform:
      case WeightingKind::Mgda: weights.push_back(1.0f / T); break;
      case WeightingKind::Uncertainty: weights.push_back(0.5f); break;  // ½·exp(−0)
      case WeightingKind::Dwa:
      case WeightingKind::GradNorm: weights.push_back(1.0f); break;
      case WeightingKind::Rlw:  // weights drawn or computed from the step's losses: 1/T before
      case WeightingKind::Gls:
      case WeightingKind::Stch:
      case WeightingKind::Famo: weights.push_back(1.0f / T); break;
      case WeightingKind::Imtl:
      case WeightingKind::CAGrad:
      case WeightingKind::MoCo: weights.push_back(1.0f / T); break;
      case WeightingKind::GradVac:
      case WeightingKind::GradDrop:
      case WeightingKind::DbMtl: weights.push_back(1.0f); break;
      case WeightingKind::UPGrad:
      case WeightingKind::AlignedMtl:
      case WeightingKind::NashMtl:
      case WeightingKind::FairGrad: weights.push_back(1.0f / T); break;
      case WeightingKind::ExcessMtl: weights.push_back(1.0f); break;
    }
  }
  return weights;
}

Dataset loadSplit(const ModelSpec& spec, const std::string& split,
                  const std::map<std::string, std::string>& overrides, bool progress) {
  for (const auto& [key, path] : overrides)
    if (key != "train" && key != "test") throwError("--data {}={}: expected train=PATH or test=PATH", key, path);
  SourceSpec source = split == "train" ? spec.data.train : split == "val" ? spec.data.val : spec.data.test;
  if (auto it = overrides.find(split); it != overrides.end()) source = sourceFromPath(it->second, split);
  Dataset d = loadDataset(source, spec.data.inputs, spec.data.labels, split, progress);
  // Arrange the buffers in model order (inputs, then tasks), matching bindings by name.
  auto arrange = [&](std::vector<Field>& fields, const std::vector<std::string>& names, const char* what) {
    std::vector<Field> ordered;
    for (const std::string& name : names) {
      auto it = std::find_if(fields.begin(), fields.end(), [&](const Field& f) { return f.name == name; });
      if (it == fields.end()) throwError("{}: no data binding for {} `{}`", d.origin, what, name);
      ordered.push_back(std::move(*it));
    }
    fields = std::move(ordered);
  };
  std::vector<std::string> inputNames, taskNames;
  for (const InputSpec& in : spec.inputs) inputNames.push_back(in.name);
  for (const TaskSpec& t : spec.tasks) taskNames.push_back(t.name);
  arrange(d.inputs, inputNames, "input");
  arrange(d.labels, taskNames, "task");
  for (size_t i = 0; i < spec.inputs.size(); ++i)
    if (d.inputs[i].width != spec.inputs[i].size)
      throwError("{}: input `{}` takes {} values per sample, its binding gives {}", d.origin, spec.inputs[i].name,
                 spec.inputs[i].size, d.inputs[i].width);
  validateInputs(spec.inputs, d);
  markUnlabelled(spec.tasks, d);  // npz: a class index -1 is missing
  validateLabels(spec.tasks, d);
  return d;
}

std::vector<TaskResult> evaluate(const ModelSpec& spec, const float* params, const Dataset& data,
                                 ThreadPool* pool) {
  Workspace ws(spec);
  return evaluateWith(spec, params, data, ws, pool);
}

TrainReport train(const ModelSpec& spec, const TrainOptions& options, std::ostream& out) {
  TrainingRun run(spec, options, out);
  return run.run();
}

}  // namespace mtlc::rt
