// Expert blocks (mixture, ple / cgc, cross_stitch, mtan), the sources that read them (gate, column),
// concat sources, and the checks that need every task first (readers, parameter totals).
// docs/mtl-architectures.md describes what these forms mean.
#include "sema/SemaInternal.h"

#include <algorithm>
#include <fmt/format.h>

namespace mtlc::sema::detail {

BlockKind blockKind(LayerKind k) {
  switch (k) {
  case LayerKind::Mixture: return BlockKind::Mixture;
  case LayerKind::Ple: return BlockKind::Ple;
  case LayerKind::CrossStitch: return BlockKind::CrossStitch;
  case LayerKind::Mtan: return BlockKind::Mtan;
  default: return BlockKind::None;
  }
}

const char *blockWord(BlockKind k) {
  switch (k) {
  case BlockKind::Mixture: return vocab::name(LayerKind::Mixture);
  case BlockKind::Ple: return vocab::name(LayerKind::Ple);
  case BlockKind::CrossStitch: return vocab::name(LayerKind::CrossStitch);
  case BlockKind::Mtan: return vocab::name(LayerKind::Mtan);
  case BlockKind::Unknown:
  case BlockKind::None: break;
  }
  return "plain";
}

const char *readWord(BlockKind k) {
  return k == BlockKind::CrossStitch || k == BlockKind::Mtan ? "column" : "gate";
}

namespace {

// Learnable parameters of one copy of `layers` (what checkLayers counted for it).
int64_t paramCount(const std::vector<Layer> &layers) {
  int64_t n = 0;
  for (const Layer &l : layers) {
    const int64_t p = layerParams(l);
    if (p < 0) return -1;
    n += p;
    if (n > kMaxInt) return -1;
  }
  return n;
}

// One reading task's parameters of an mtan block (lower::mtan builds them): per stage s with C
// channels, the attention module's two 1x1 convolutions (C or 2C -> C -> C, no bias) and two
// batchnorms; between stages s and s+1, a 3x3 convolution (C -> C', no bias) and a batchnorm.
double mtanTaskParams(const Layer &b) {
  double n = 0;
  for (size_t s = 0; s < b.stages.size(); ++s) {
    const double c = static_cast<double>(b.stages[s].back().out[0]);
    n += (s == 0 ? c : 2 * c) * c + c * c + 4 * c;
    if (s + 1 < b.stages.size()) {
      const double next = static_cast<double>(b.stages[s + 1].back().out[0]);
      n += 9 * c * next + 2 * next;
    }
  }
  return n;
}

// "a mixture", "an mtan": the block's word with its article.
std::string aBlock(BlockKind k) { return std::string(k == BlockKind::Mtan ? "an " : "a ") + blockWord(k); }

// "an input", "a shared block", "a task"
std::string aKind(NameKind k) {
  return std::string(k == NameKind::Input ? "an " : "a ") + nameKindWord(k);
}

}  // namespace

bool Analyzer::addParams(int64_t n, SourceRange at, const std::string &what) {
  if (n < 0 || n > limits::kMaxParams - totalParams_) {
    if (!paramLimitReported_ && n < 0)
      diags_.error(at, fmt::format("{} has more than {} parameters; a model has at most {} (2^28)",
                                   what, kMaxInt, limits::kMaxParams));
    else if (!paramLimitReported_)
      diags_.error(at, fmt::format("{} brings the model to {} parameters, more than the supported "
                                   "{} (2^28)",
                                   what, totalParams_ + n, limits::kMaxParams));
    paramLimitReported_ = true;
    return false;
  }
  totalParams_ += n;
  return true;
}

// ---- The block stage ------------------------------------------------------------------------------

namespace {

// mixture's gate arguments: gate=dselect reads select and gamma (DSelect-k); the softmax gate
// takes neither. DSelect-k's selectors address the experts by their binary codes, so the expert
// count must be a power of two (the paper's extra treatment of the unused codes is not built).
bool bindMixtureGate(const BoundArgs &args, Layer &layer, Diagnostics &diags) {
  layer.dselect = args.num("gate") == 1;  // the choice "softmax|dselect"
  layer.select = static_cast<int64_t>(args.num("select"));
  layer.gamma = args.num("gamma");
  bool ok = true;
  if (!layer.dselect) {
    for (const char *name : {"select", "gamma"})
      if (args.at(name).given) {
        diags.error(args.at(name).loc, fmt::format("'{}' applies only with gate=dselect (DSelect-k); the "
                                                   "softmax gate mixes every expert",
                                                   name));
        ok = false;
      }
    return ok;
  }
  if (layer.experts < 2 || (layer.experts & (layer.experts - 1)) != 0) {
    diags.error(args.at("experts").loc,
                fmt::format("gate=dselect needs experts to be a power of two, 2 or more (its selectors "
                            "pick an expert by its binary code), got {}",
                            layer.experts));
    ok = false;
  } else if (layer.select > layer.experts) {
    diags.error(args.at("select").loc,
                fmt::format("'select' of mixture must be at most experts ({}): each of the select "
                            "selectors picks one expert; got {}",
                            layer.experts, layer.select));
    ok = false;
  }
  return ok;
}

}  // namespace

std::optional<Shape> Analyzer::checkBlock(const ast::Call &call, std::optional<Shape> in,
                                          const Origin &origin, Layer &layer) {
  const vocab::Entry &row = *vocab::find(vocab::layers(), call.name.c_str());  // checkLayers found it
  BoundArgs args = bindArgs(call, call.name, paramsOf(row), row.example, diags_);
  switch (layer.kind) {
  case LayerKind::Mixture:
    layer.experts = static_cast<int64_t>(args.num("experts"));
    if (args.ok && !bindMixtureGate(args, layer, diags_)) args.ok = false;
    break;
  case LayerKind::Ple:
    // cgc, ple's other form, is one level.
    layer.levels = (row.flags & vocab::kForm) ? 1 : static_cast<int64_t>(args.num("levels"));
    layer.sharedExperts = static_cast<int64_t>(args.num("shared"));
    layer.specificExperts = static_cast<int64_t>(args.num("specific"));
    break;
  default: break;
  }
  const bool staged = layer.hasStages();
  bool ok = args.ok;

  // The body: one expert pipeline, or (cross_stitch, mtan) at least two stages.
  if (!staged && call.body.size() > 1) {
    diags_.error(call.body[1].front().loc,
                 fmt::format("';' separates the stages of cross_stitch; the expert of {} is one "
                             "pipeline (join its layers with '->')",
                             call.name));
    ok = false;
  }
  if (layer.kind == LayerKind::CrossStitch && call.body.size() < 2) {
    diags_.error(call.bodyLoc, "cross_stitch needs at least two stages separated by ';' (its units "
                               "mix the columns between stages), e.g. cross_stitch { dense(32) -> "
                               "relu ; dense(16) -> relu }");
    ok = false;
  }
  if (layer.kind == LayerKind::Mtan && call.body.size() < 2) {
    diags_.error(call.bodyLoc, "mtan needs at least two stages separated by ';' (each task's attention "
                               "module of a stage reads the task's features of the stage before), e.g. "
                               "mtan { conv2d(16, kernel=3, padding=1) -> relu ; maxpool(2) -> "
                               "conv2d(32, kernel=3, padding=1) -> relu }");
    ok = false;
  }
  // The gates are dense softmax layers over the block's input.
  if (!staged && in && in->size() != 1) {
    diags_.error(call.nameLoc, fmt::format("the gates of {} read its input, which must be 1-D "
                                           "[features], but it has shape {}; add 'flatten' before {}",
                                           call.name, shapeStr(*in), call.name));
    if (origin.loc.begin.line > 0) diags_.note(origin.loc, origin.what);
    ok = false;
  }

  LayerContext body;
  body.inBody = true;
  std::optional<Shape> out;
  if (!staged) {
    Pipeline expert;
    out = checkLayers(call.body.front(), in, origin, expert, body);
    layer.expert = std::move(expert.layers);
  } else {
    out = in;
    Origin o = origin;
    for (size_t s = 0; s < call.body.size(); ++s) {
      Pipeline stage;
      out = checkLayers(call.body[s], out, o, stage, body);
      layer.stages.push_back(std::move(stage.layers));
      if (out)
        o = {call.body[s].back().loc, fmt::format("stage {} of {} produces {}", s + 1, call.name, shapeStr(*out))};
    }
  }
  if (!out || !in) return std::nullopt;
  layer.in = *in;
  layer.out = *out;
  if (layer.kind == LayerKind::Mtan && ok && !checkMtanStages(call, layer)) ok = false;

  // PLE: level l + 1 reads level l's output, through its gates (1-D) and its experts.
  if (layer.kind == LayerKind::Ple && layer.levels > 1 && ok) {
    std::string spelled = fmt::format("ple(levels={})", layer.levels);
    if (out->size() != 1) {
      diags_.error(call.nameLoc, fmt::format("{} feeds each level's output to the next level's gates, "
                                             "which need a 1-D input, but the expert produces {}; end "
                                             "the expert with 'flatten' or 'dense(n)'",
                                             spelled, shapeStr(*out)));
      ok = false;
    } else {
      layer.laterExpert = layer.expert;
      std::string why;
      if (!reinferShapes(layer.laterExpert, *out, why)) {
        diags_.error(call.nameLoc, fmt::format("{} feeds each level's output {} to the next level's "
                                               "experts, but the expert cannot take it: {}",
                                               spelled, shapeStr(*out), why));
        ok = false;
      } else if (layer.laterExpert.back().out != *out) {
        diags_.error(call.nameLoc, fmt::format("{} feeds each level's output to the next level's "
                                               "experts, so the expert must map {} to {} again, but "
                                               "it gives {}",
                                               spelled, shapeStr(*out), shapeStr(*out),
                                               shapeStr(layer.laterExpert.back().out)));
        ok = false;
      }
    }
  }
  if (!ok) return std::nullopt;
  return out;
}

// MTAN's attention modules are 1x1 convolutions over a stage's [C, H, W] output, and a task's
// features reach the next stage through a 3x3 convolution and, where the next stage halves the
// size, a 2x2 max-pool (Liu et al. 2019): so every stage gives [C, H, W], of the previous stage's
// height and width or half of them (maxpool(2)'s floor).
bool Analyzer::checkMtanStages(const ast::Call &call, const Layer &layer) {
  for (size_t s = 0; s < layer.stages.size(); ++s) {
    const Shape &p = layer.stages[s].back().out;
    const SourceRange at = call.body[s].back().loc;
    if (p.size() != 3) {
      diags_.error(at, fmt::format("stage {} of mtan produces {}, but every stage must produce [channels, "
                                   "height, width]: each task's attention mask is a 1x1 convolution over it",
                                   s + 1, shapeStr(p)));
      return false;
    }
    if (s == 0) continue;
    const Shape &q = layer.stages[s - 1].back().out;
    const bool same = p[1] == q[1] && p[2] == q[2], half = p[1] == q[1] / 2 && p[2] == q[2] / 2;
    if (!same && !half) {
      diags_.error(at, fmt::format("stage {} of mtan produces {}x{} from stage {}'s {}x{}; a stage keeps the "
                                   "height and width of the one before or halves them ({}x{}), as each "
                                   "task's features follow the stages through a 2x2 max-pool or none",
                                   s + 1, p[1], p[2], s, q[1], q[2], q[1] / 2, q[2] / 2));
      diags_.note(call.body[s - 1].back().loc, fmt::format("stage {} of mtan produces {}", s, shapeStr(q)));
      return false;
    }
  }
  return true;
}

// ---- Reading blocks -------------------------------------------------------------------------------

bool Analyzer::rejectBlockRead(const std::string &name, SourceRange at, size_t index, bool isShared) {
  BlockKind k = sharedBlock_[index];
  if (k == BlockKind::None) return false;
  if (k == BlockKind::Unknown) return true;  // already reported
  const std::string word = aBlock(k);
  const char *fn = readWord(k);
  if (isShared)
    diags_.error(at, fmt::format("'{}' is {} block, whose output is per task: only tasks read it, "
                                 "each with {}({}) -> ...",
                                 name, word, fn, name));
  else
    diags_.error(at, fmt::format("'{}' is {} block; a task reads it through its own {}: {}({}) -> ...",
                                 name, word, fn, fn, name));
  diags_.note(sharedBlockCall_[index]->nameLoc, fmt::format("'{}' ends with {} here", name,
                                                            sharedBlockCall_[index]->name));
  return true;
}

std::optional<Shape> Analyzer::resolveBlockSource(const ast::Pipeline &ap, bool isShared,
                                                  size_t sharedIndex, int taskIndex, Pipeline &out,
                                                  Origin &origin, bool &ok) {
  ok = false;
  out.sourceIsInput = false;
  if (ap.sourceKind == ast::Pipeline::SourceKind::Gate || ap.source == "column")
    return resolveBlockRead(ap, isShared, taskIndex, out, origin, ok);
  if (ap.source == "concat") return resolveConcat(ap, isShared, sharedIndex, out, origin, ok);
  std::string hint = didYouMean(ap.source, {"gate", "column", "concat"});
  if (hint.empty())
    hint = "; a pipeline starts from an input, a shared block, gate(NAME), column(NAME) or "
           "concat(a, b, ...)";
  diags_.error(ap.sourceNameLoc, fmt::format("unknown source '{}(...)'{}", ap.source, hint));
  return std::nullopt;
}

// gate(NAME), column(NAME): a task reading its representation of an expert block.
std::optional<Shape> Analyzer::resolveBlockRead(const ast::Pipeline &ap, bool isShared, int taskIndex,
                                                Pipeline &out, Origin &origin, bool &ok) {
  const bool isGate = ap.sourceKind == ast::Pipeline::SourceKind::Gate;
  const char *fn = isGate ? "gate" : "column";
  if (!isGate && ap.sourceArgs.size() != 1) {
    diags_.error(ap.sourceLoc, "column(...) takes one name: the cross_stitch or mtan block whose "
                               "column this task reads");
    return std::nullopt;
  }
  const std::string &name = isGate ? ap.source : ap.sourceArgs[0].name;
  SourceRange nameLoc = isGate ? ap.sourceNameLoc : ap.sourceArgs[0].loc;
  out.source = name;
  const char *wanted = isGate ? "a mixture, ple or cgc block" : "a cross_stitch or mtan block";
  if (isShared) {
    diags_.error(ap.sourceLoc, fmt::format("{}({}) is a task's own {}; only a task's pipeline can "
                                           "start with it, not a shared block's",
                                           fn, name, fn));
    return std::nullopt;
  }
  auto it = names_.find(name);
  if (it == names_.end()) {
    std::vector<std::string> candidates;
    for (const auto &[n, info] : names_)
      if (info.kind == NameKind::Shared && sharedBlock_[info.index] != BlockKind::None) candidates.push_back(n);
    std::string hint = didYouMean(name, candidates);
    if (hint.empty()) hint = fmt::format("; {}(NAME) reads {}", fn, wanted);
    diags_.error(nameLoc, fmt::format("unknown name '{}'{}", name, hint));
    return std::nullopt;
  }
  const NameInfo &info = it->second;
  BlockKind have = info.kind == NameKind::Shared ? sharedBlock_[info.index] : BlockKind::None;
  if (have == BlockKind::Unknown) return std::nullopt;  // already reported
  bool match = isGate ? (have == BlockKind::Mixture || have == BlockKind::Ple)
                      : have == BlockKind::CrossStitch || have == BlockKind::Mtan;
  if (!match) {
    if (have != BlockKind::None)
      diags_.error(ap.sourceLoc, fmt::format("'{}' is {} block; a task reads it with {}({})", name,
                                             aBlock(have), readWord(have), name));
    else
      diags_.error(ap.sourceLoc, fmt::format("{}({}) reads {}, but '{}' is {} without experts",
                                             fn, name, wanted, name, aKind(info.kind)));
    diags_.note(info.loc, fmt::format("'{}' is defined here", name));
    return std::nullopt;
  }
  out.sourceKind = isGate ? SourceKind::Gate : SourceKind::Column;
  out.sourceIndex = static_cast<int>(info.index);
  ok = true;
  if (info.index < model_.shared.size() && !model_.shared[info.index].layers.empty() &&
      model_.shared[info.index].layers.back().isExpertBlock())
    model_.shared[info.index].layers.back().readers.push_back(taskIndex);
  if (!sharedOut_[info.index]) return std::nullopt;
  origin = {ap.sourceLoc, fmt::format("{}({}) gives {}", fn, name, shapeStr(*sharedOut_[info.index]))};
  return sharedOut_[info.index];
}

namespace {

// Why a concat part of shape `s` cannot join the first part's `first`, or nullopt: 1-D parts join
// along the features, [C, H, W] parts along the channels when H and W agree.
std::optional<std::string> concatPartError(const Shape &first, const std::string &firstName, const Shape &s) {
  if (first.size() == 1 && s.size() != 1)
    return fmt::format("concat joins 1-D parts (as '{}' is) along the features; flatten it first (in a shared "
                       "block)", firstName);
  if (first.size() == 3 && s.size() != 3)
    return fmt::format("concat joins [channels, height, width] parts (as '{}' is, {}) along the channels",
                       firstName, shapeStr(first));
  if (first.size() == 3 && (s[1] != first[1] || s[2] != first[2]))
    return fmt::format("concat joins [channels, height, width] parts along the channels, so their height and "
                       "width must agree: '{}' is {}x{}, this one {}x{} (upsample, conv_transpose2d or pool one side first)",
                       firstName, first[1], first[2], s[1], s[2]);
  if (first.size() != 1 && first.size() != 3)
    return fmt::format("concat joins 1-D parts (features) or [channels, height, width] parts (channels); "
                       "flatten it first (in a shared block)");
  return std::nullopt;
}

}  // namespace

// concat(a, b, ...): inputs and plain shared blocks joined along the feature axis (each 1-D) or
// along the channels (each [C, H, W] with the first part's H and W: a U-Net's skip connection).
std::optional<Shape> Analyzer::resolveConcat(const ast::Pipeline &ap, bool isShared, size_t sharedIndex,
                                             Pipeline &out, Origin &origin, bool &ok) {
  out.source = "concat";
  out.sourceKind = SourceKind::Concat;
  out.sourceIndex = 0;
  if (ap.sourceArgs.size() < 2) {
    diags_.error(ap.sourceLoc, fmt::format("concat(...) joins at least two inputs or shared blocks; "
                                           "start from '{}' directly",
                                           ap.sourceArgs.front().name));
    return std::nullopt;
  }
  bool partsOk = true, known = true;
  int64_t width = 0;
  std::optional<Shape> first;  // the first part's shape: 1-D or [C, H, W] decides the axis
  std::string firstName;
  Origin firstOrigin;
  for (const ast::NameRef &part : ap.sourceArgs) {
    auto it = names_.find(part.name);
    if (it == names_.end()) {
      std::vector<std::string> candidates;
      for (const auto &[n, info] : names_)
        if (info.kind == NameKind::Input ||
            (info.kind == NameKind::Shared && (!isShared || info.index < sharedIndex)))
          candidates.push_back(n);
      diags_.error(part.loc, fmt::format("unknown name '{}'{}", part.name, didYouMean(part.name, candidates)));
      partsOk = false;
      continue;
    }
    const NameInfo &info = it->second;
    SourcePart sp;
    sp.name = part.name;
    sp.index = static_cast<int>(info.index);
    std::optional<Shape> shape;
    SourceRange declLoc;
    if (info.kind == NameKind::Task) {
      diags_.error(part.loc, fmt::format("'{}' is a task; concat joins inputs and shared blocks", part.name));
      diags_.note(info.loc, fmt::format("task '{}' is defined here", part.name));
      partsOk = false;
      continue;
    }
    if (info.kind == NameKind::Input) {
      sp.kind = SourceKind::Input;
      if (inputOk_[info.index]) shape = model_.inputs[info.index].shape;
      declLoc = inputDecls_[info.index]->shapeLoc;
    } else {
      sp.kind = SourceKind::Shared;
      if (isShared && info.index >= sharedIndex) {
        diags_.error(part.loc, info.index == sharedIndex
                                   ? fmt::format("shared block '{}' cannot read itself", part.name)
                                   : fmt::format("shared block '{}' is defined later; a shared block "
                                                 "can only read inputs and shared blocks defined "
                                                 "before it",
                                                 part.name));
        partsOk = false;
        continue;
      }
      if (rejectBlockRead(part.name, part.loc, info.index, isShared)) {
        partsOk = false;
        continue;
      }
      shape = sharedOut_[info.index];
      declLoc = sharedOrigin_[info.index].loc;
    }
    out.concat.push_back(sp);
    if (!shape) {
      known = false;
      continue;
    }
    Origin partOrigin{declLoc, info.kind == NameKind::Input ? fmt::format("input '{}' is declared here", part.name)
                                                              : sharedOrigin_[info.index].what};
    if (!first) {
      first = shape;
      firstName = part.name;
      firstOrigin = partOrigin;
    }
    if (std::optional<std::string> why = concatPartError(*first, firstName, *shape)) {
      diags_.error(part.loc, fmt::format("{} '{}' has shape {}, but {}", nameKindWord(info.kind), part.name,
                                         shapeStr(*shape), *why));
      diags_.note(partOrigin.loc, partOrigin.what);
      if (firstName != part.name && first->size() == 3) diags_.note(firstOrigin.loc, firstOrigin.what);
      if (firstName == part.name) first.reset();  // neither 1-D nor [C, H, W]: the next part decides
      partsOk = false;
      continue;
    }
    width += (*shape)[0];
  }
  ok = partsOk;
  if (!partsOk || !known) return std::nullopt;
  Shape joined = *first;
  joined[0] = width;
  if (width > kMaxInt || elementCount(joined) < 0 || elementCount(joined) > kMaxInt) {
    diags_.error(ap.sourceLoc, fmt::format("concat gives {} values per sample, more than the "
                                           "supported {}",
                                           joined.size() == 1 ? std::to_string(width) : shapeStr(joined), kMaxInt));
    ok = false;
    return std::nullopt;
  }
  origin = {ap.sourceLoc, fmt::format("{} gives {}", ast::sourceStr(ap), shapeStr(joined))};
  return joined;
}

// ---- After the tasks --------------------------------------------------------------------------------

void Analyzer::finishBlocks() {
  for (size_t i = 0; i < sharedDecls_.size() && i < model_.shared.size(); ++i) {
    BlockKind kind = sharedBlock_[i];
    if (kind == BlockKind::None || kind == BlockKind::Unknown) continue;
    const Pipeline &p = model_.shared[i];
    if (p.layers.empty() || !p.layers.back().isExpertBlock()) continue;  // erroneous
    const Layer &b = p.layers.back();
    const std::string &name = sharedDecls_[i]->name;
    const size_t readers = b.readers.size();
    if (readers == 0) {
      diags_.error(sharedDecls_[i]->nameLoc,
                   fmt::format("{} block '{}' is not read by any task; a task reads it with {}({}) -> ...",
                               blockWord(kind), name, readWord(kind), name));
      continue;
    }
    if (kind == BlockKind::CrossStitch && readers == 1) {
      const std::string &task = model_.tasks[static_cast<size_t>(b.readers[0])].name;
      diags_.error(sharedDecls_[i]->nameLoc,
                   fmt::format("cross_stitch block '{}' has one column per reading task and needs at "
                               "least two, but only task '{}' reads column({})",
                               name, task, name));
      diags_.note(taskDecls_[static_cast<size_t>(b.readers[0])]->pipelines.front().sourceLoc,
                  fmt::format("task '{}' reads it here", task));
      continue;
    }
    if (!sharedOut_[i] || b.in.empty()) continue;
    // The copies beyond the one checkLayers counted, and the gates / units.
    const double T = static_cast<double>(readers);
    double extra = 0;
    auto pc = [](const std::vector<Layer> &l) {
      int64_t n = paramCount(l);
      return n < 0 ? 1e18 : static_cast<double>(n);
    };
    auto gate = [](int64_t in, double n) { return static_cast<double>(in + 1) * n; };
    if (b.kind == LayerKind::Mixture) {
      // DSelect-k: per reader, z [select·log2(experts)] and w [select], both dense over the input.
      double bits = 0;
      while ((int64_t(1) << static_cast<int>(bits)) < b.experts) ++bits;
      const double gateRows = b.dselect ? static_cast<double>(b.select) * (bits + 1) : static_cast<double>(b.experts);
      extra = static_cast<double>(b.experts - 1) * pc(b.expert) + T * gate(b.in[0], gateRows);
    } else if (b.kind == LayerKind::Ple) {
      const double n = static_cast<double>(b.sharedExperts) + static_cast<double>(b.specificExperts) * T;
      const double mixed = static_cast<double>(b.sharedExperts + b.specificExperts);
      extra = (n - 1) * pc(b.expert) + T * gate(b.in[0], mixed);
      if (b.levels > 1) {
        const double later = static_cast<double>(b.levels - 1);
        const int64_t d = b.out.empty() ? 0 : b.out[0];
        extra += gate(b.in[0], n);  // level 1's shared gate
        extra += later * (n * pc(b.laterExpert) + T * gate(d, mixed));
        extra += (later - 1) * gate(d, n);  // the shared gates of levels 2 .. L-1
      }
    } else if (b.kind == LayerKind::Mtan) {
      extra = T * mtanTaskParams(b);
    } else {
      double column = 0;
      for (const auto &stage : b.stages) column += pc(stage);
      extra = (T - 1) * column + static_cast<double>(b.stages.size() - 1) * T * T;
    }
    addParams(extra > static_cast<double>(kMaxInt) ? -1 : static_cast<int64_t>(extra),
              sharedBlockCall_[i]->nameLoc,
              fmt::format("{} block '{}'", blockWord(kind), name));
  }
}

}  // namespace mtlc::sema::detail
