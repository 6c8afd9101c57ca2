#include "Lower.h"

#include "autodiff/Autodiff.h"
#include "ir/Builder.h"

#include <fmt/format.h>

#include <map>
#include <optional>

namespace mtlc::lower {

namespace {

using ir::Node;
using ir::OpKind;

ir::OpKind lossOp(rt::LossKind k) {
  switch (k) {
    case rt::LossKind::CrossEntropy: return OpKind::CrossEntropy;
    case rt::LossKind::BCE: return OpKind::BCE;
    case rt::LossKind::MSE: return OpKind::MSE;
    case rt::LossKind::L1: return OpKind::L1;
  }
  return OpKind::MSE;
}

// Lowers the forward pass of the whole model into one function.
class ForwardLowering {
 public:
  ForwardLowering(const sema::Model &model, const ir::Module &module, ir::Function &fn,
                  bool training)
      : model_(model), module_(module), b_(fn), training_(training) {
    for (size_t i = 0; i < module.params.size(); ++i) paramIndex_[module.params[i].name] = (int)i;
  }

  double flops = 0;  // forward FLOPs per sample, counted while lowering

  // Head output of each task.
  std::vector<Node *> heads() {
    std::vector<Node *> out;
    for (const auto &t : model_.tasks) out.push_back(pipeline(t.head));
    return out;
  }

  // Per-task losses and the weighted total (sum_i w_i * L_i, w_i read at run time).
  std::pair<std::vector<Node *>, Node *> losses(const std::vector<Node *> &heads) {
    std::vector<Node *> taskLosses;
    Node *total = nullptr;
    for (size_t t = 0; t < model_.tasks.size(); ++t) {
      const auto &task = model_.tasks[t];
      Node *label = b_.label((int)t, module_.labels[t]);
      Node *loss = b_.loss(lossOp(task.loss), heads[t], label);
      loss->name = task.name + ".loss";
      taskLosses.push_back(loss);
      Node *weighted = b_.mul(b_.lossWeight((int)t), loss);
      total = total ? b_.add(total, weighted) : weighted;
    }
    total->name = "total_loss";
    return {taskLosses, total};
  }

 private:
  Node *source(const sema::Pipeline &p) {
    if (p.sourceIsInput) {
      auto &slot = inputs_[p.sourceIndex];
      if (!slot) slot = b_.input(p.sourceIndex, module_.inputs[p.sourceIndex]);
      return slot;
    }
    auto &slot = shared_[p.sourceIndex];  // a shared block is computed once, however many readers
    if (!slot) slot = pipeline(model_.shared[p.sourceIndex]);
    return slot;
  }

  Node *param(const std::string &name) {
    const auto &info = module_.params[paramIndex_.at(name)];
    return b_.param(paramIndex_.at(name), info.shape);
  }

  Node *pipeline(const sema::Pipeline &p) {
    Node *x = source(p);
    for (const auto &l : p.layers) {
      x = layer(p, l, x);
      x->name = fmt::format("{}.{}", p.name, l.index);
    }
    return x;
  }

  Node *layer(const sema::Pipeline &p, const sema::Layer &l, Node *x) {
    std::string prefix = fmt::format("{}.{}.", p.name, l.index);
    switch (l.kind) {
      case sema::LayerKind::Dense: {
        flops += 2.0 * l.in[0] * l.units;
        Node *y = b_.matmul(x, param(prefix + "weight"), false, true);
        return b_.biasAdd(y, param(prefix + "bias"));
      }
      case sema::LayerKind::Conv2d: {
        Node *y = b_.conv2d(x, param(prefix + "weight"), l.stride, l.padding);
        const auto &o = y->type.dims;
        flops += 2.0 * o[0] * o[1] * o[2] * l.in[0] * l.kernel * l.kernel;
        return b_.biasAdd(y, param(prefix + "bias"));
      }
      case sema::LayerKind::MaxPool: return b_.maxPool(x, l.kernel, l.stride);
      case sema::LayerKind::AvgPool: return b_.avgPool(x, l.kernel, l.stride);
      case sema::LayerKind::Flatten: return b_.reshape(x, ir::Type{l.out, true});
      case sema::LayerKind::Relu: return b_.unary(OpKind::Relu, x);
      case sema::LayerKind::LeakyRelu: return b_.unary(OpKind::LeakyRelu, x, l.value);
      case sema::LayerKind::Sigmoid: return b_.unary(OpKind::Sigmoid, x);
      case sema::LayerKind::Tanh: return b_.unary(OpKind::Tanh, x);
      case sema::LayerKind::Gelu: return b_.unary(OpKind::Gelu, x);
      case sema::LayerKind::Dropout:
        // Identity outside training; each dropout site draws its own mask stream (salt).
        if (!training_ || l.value <= 0) return x;
        return b_.unary(OpKind::Dropout, x, l.value, {nextSalt_++});
      case sema::LayerKind::LayerNorm:
        return b_.layerNorm(x, param(prefix + "weight"), param(prefix + "bias"),
                            l.value > 0 ? l.value : 1e-5);
    }
    throw ir::IRError("lower: unknown layer kind");
  }

  const sema::Model &model_;
  const ir::Module &module_;
  ir::Builder b_;
  bool training_;
  std::map<std::string, int> paramIndex_;
  std::map<int, Node *> inputs_, shared_;
  int64_t nextSalt_ = 1;
};

void addOutputs(ir::Function &fn, const std::vector<Node *> &heads,
                const std::vector<Node *> *losses, Node *total) {
  for (size_t t = 0; t < heads.size(); ++t)
    fn.outputs.push_back({ir::Output::Kind::Head, (int)t, heads[t]});
  if (!losses) return;
  for (size_t t = 0; t < losses->size(); ++t)
    fn.outputs.push_back({ir::Output::Kind::TaskLoss, (int)t, (*losses)[t]});
  fn.outputs.push_back({ir::Output::Kind::TotalLoss, 0, total});
}

}  // namespace

LoweredModel lowerModel(const sema::Model &model, int64_t maxBatch) {
  LoweredModel out;
  ir::Module &m = out.module;
  m.name = model.name;
  m.maxBatch = maxBatch;
  out.params = buildParamTable(model);
  for (const auto &p : out.params) m.params.push_back({p.name, p.shape, p.offset});
  for (const auto &in : model.inputs) m.inputs.push_back(ir::Type{in.shape, true});
  for (const auto &t : model.tasks) {
    m.labels.push_back(ir::Type{{t.labelWidth}, true});
    m.heads.push_back(ir::Type{t.head.outShape, true});
  }

  auto makeFunction = [&](const char *name) {
    m.functions.push_back(std::make_unique<ir::Function>());
    m.functions.back()->name = name;
    return m.functions.back().get();
  };

  {  // train_step: forward with dropout, losses, then reverse mode for every parameter.
    ir::Function *fn = makeFunction("train_step");
    ForwardLowering fwd(model, m, *fn, /*training=*/true);
    auto heads = fwd.heads();
    auto [losses, total] = fwd.losses(heads);
    addOutputs(*fn, heads, &losses, total);
    autodiff::appendGradients(m, *fn, total);
  }
  {
    ir::Function *fn = makeFunction("eval_step");
    ForwardLowering fwd(model, m, *fn, /*training=*/false);
    auto heads = fwd.heads();
    auto [losses, total] = fwd.losses(heads);
    addOutputs(*fn, heads, &losses, total);
    out.flopsPerSample = fwd.flops;
  }
  {
    ir::Function *fn = makeFunction("predict");
    ForwardLowering fwd(model, m, *fn, /*training=*/false);
    addOutputs(*fn, fwd.heads(), nullptr, nullptr);
  }
  return out;
}

}  // namespace mtlc::lower
