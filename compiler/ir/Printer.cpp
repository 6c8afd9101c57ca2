#include "Printer.h"

#include <fmt/format.h>
#include <fmt/ostream.h>

namespace mtlc::ir {

namespace {

std::string attrs(const Module &m, const Node &n) {
  switch (n.op) {
    case OpKind::Input: return fmt::format(" {}", n.ints[0]);
    case OpKind::Label:
    case OpKind::LossWeight: return fmt::format(" task {}", n.ints[0]);
    case OpKind::Param: {
      if (n.ints[0] >= (int64_t)m.params.size()) return fmt::format(" \"#{}\"", n.ints[0]);
      const std::vector<int> span = paramSpan(m, (int)n.ints[0], n.type.dims);
      if (span.size() < 2) return fmt::format(" \"{}\"", m.params[n.ints[0]].name);
      return fmt::format(" \"{}\" .. \"{}\"", m.params[span.front()].name, m.params[span.back()].name);
    }
    case OpKind::Const: return fmt::format(" {}", n.f);
    case OpKind::MatMul:
      return std::string(n.ints[0] ? " transA" : "") + (n.ints[1] ? " transB" : "");
    case OpKind::Conv2d:
    case OpKind::Conv2dBwdData:
    case OpKind::Conv2dBwdFilter:
      return fmt::format(" {{stride={}, pad={}}}", n.ints[0], n.ints[1]);
    case OpKind::ConvTranspose2d:
      return fmt::format(" {{stride={}, pad={}, output_pad={}}}", n.ints[0], n.ints[1], n.ints[2]);
    case OpKind::MaxPool:
    case OpKind::AvgPool:
    case OpKind::MaxPoolBwd:
    case OpKind::AvgPoolBwd:
      return fmt::format(" {{k={}, stride={}}}", n.ints[0], n.ints[1]);
    case OpKind::LeakyRelu:
    case OpKind::LeakyReluBwd: return fmt::format(" {{slope={}}}", n.f);
    case OpKind::Dropout:
    case OpKind::DropoutBwd: return fmt::format(" {{p={}, salt={}}}", n.f, n.ints[0]);
    case OpKind::LayerNorm:
    case OpKind::LayerNormBwdData:
    case OpKind::LayerNormBwdGamma:
    case OpKind::BatchNorm:
    case OpKind::BatchNormEval:
    case OpKind::BatchNormBwdStats:
    case OpKind::BatchNormBwdData: return fmt::format(" {{eps={}}}", n.f);
    case OpKind::BatchNormBwdParam: return fmt::format(" {{row={}}}", n.ints[0]);
    case OpKind::Upsample:
    case OpKind::UpsampleBwd:
      return fmt::format(" {{scale={}, mode={}}}", n.ints[0],
                         n.ints[1] == int64_t(UpsampleMode::Bilinear) ? "bilinear" : "nearest");
    case OpKind::Mix:
    case OpKind::MixBwdWeights: return n.ints[0] ? fmt::format(" {{row={}}}", n.ints[0]) : "";
    case OpKind::MixBwdInput: return fmt::format(" {{k={}, row={}}}", n.ints[0], n.ints[1]);
    case OpKind::SmoothStep:
    case OpKind::SmoothStepBwd: return fmt::format(" {{gamma={}}}", n.f);
    case OpKind::Slice:
    case OpKind::SliceBwd: return fmt::format(" {{offset={}, width={}}}", n.ints[0], n.ints[1]);
    default: return "";
  }
}

std::string outputName(const Module &m, const Output &o) {
  switch (o.kind) {
    case Output::Kind::TaskLoss: return fmt::format("loss(task {})", o.index);
    case Output::Kind::TotalLoss: return "total_loss";
    case Output::Kind::Head: return fmt::format("head(task {})", o.index);
    case Output::Kind::RepGrad: return fmt::format("rep_grad(task {})", o.index);
    case Output::Kind::TaskGrad:
      return fmt::format("task_grad(task {}, {})", o.task,
                         o.index < (int)m.params.size() ? m.params[o.index].name : std::to_string(o.index));
    case Output::Kind::Grad: {
      if (o.index >= (int)m.params.size()) return fmt::format("grad({})", o.index);
      const std::vector<int> span = paramSpan(m, o.index, o.value->type.dims);
      if (span.size() < 2) return fmt::format("grad({})", m.params[o.index].name);
      return fmt::format("grad({} .. {})", m.params[span.front()].name, m.params[span.back()].name);
    }
  }
  return "?";
}

}  // namespace

void print(const Module &m, const Function &f, std::ostream &os, const NodeNote &note) {
  fmt::print(os, "func @{}(n <= {}) {{\n", f.name, m.maxBatch);
  for (const auto &node : f.nodes) {
    std::string ops;
    for (size_t i = 0; i < node->operands.size(); ++i)
      ops += fmt::format("{}%{}", i ? ", " : " ", node->operands[i]->id);
    fmt::print(os, "  %{} = {}{}{} : {}", node->id, mnemonic(node->op), ops, attrs(m, *node),
               node->type.str());
    if (!node->name.empty()) fmt::print(os, "  # {}", node->name);
    if (note) {
      std::string extra = note(f, *node);
      if (!extra.empty()) fmt::print(os, "  ; {}", extra);
    }
    os << '\n';
  }
  for (const auto &o : f.outputs) fmt::print(os, "  return {} = %{}\n", outputName(m, o), o.value->id);
  os << "}\n";
}

void print(const Module &m, std::ostream &os, const NodeNote &note) {
  fmt::print(os, "module @{}  # {} parameters, max batch {}\n", m.name, m.params.size(), m.maxBatch);
  for (size_t i = 0; i < m.params.size(); ++i) {
    fmt::print(os, "param {} \"{}\" : [{}] at {}\n", i, m.params[i].name,
               fmt::join(m.params[i].shape, ","), m.params[i].offset);
  }
  for (const auto &f : m.functions) {
    os << '\n';
    print(m, *f, os, note);
  }
}

}  // namespace mtlc::ir
