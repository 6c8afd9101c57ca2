// The layer table (names, arguments) and the per-sample shape rules of every layer.
#include "sema/SemaInternal.h"

#include <algorithm>
#include <fmt/format.h>

namespace mtlc::sema {

using detail::ParamDef;

namespace {

struct LayerInfo {
  const char *name;
  LayerKind kind;
  std::vector<ParamDef> params;
  const char *example;
};

ParamDef rangeParam(ParamDef p, double lo, bool loOpen, double hi, bool hiOpen) {
  p.lo = lo;
  p.loOpen = loOpen;
  p.hi = hi;
  p.hiOpen = hiOpen;
  return p;
}

const std::vector<LayerInfo> &layerTable() {
  using namespace detail;
  static const std::vector<LayerInfo> table = {
      {"dense", LayerKind::Dense, {intParam("units", true)}, "dense(64)"},
      {"conv2d", LayerKind::Conv2d,
       {intParam("channels", true), intParam("kernel", true), intParam("stride", false, 1),
        intParam("padding", false, 0, 0)},
       "conv2d(32, kernel=3)"},
      {"maxpool", LayerKind::MaxPool, {intParam("kernel", true), intParam("stride", false, 0)},
       "maxpool(2)"},
      {"avgpool", LayerKind::AvgPool, {intParam("kernel", true), intParam("stride", false, 0)},
       "avgpool(2)"},
      {"flatten", LayerKind::Flatten, {}, "flatten"},
      {"relu", LayerKind::Relu, {}, "relu"},
      {"leaky_relu", LayerKind::LeakyRelu, {realParam("slope", false, 0.01)}, "leaky_relu(slope=0.01)"},
      {"sigmoid", LayerKind::Sigmoid, {}, "sigmoid"},
      {"tanh", LayerKind::Tanh, {}, "tanh"},
      {"gelu", LayerKind::Gelu, {}, "gelu"},
      {"dropout", LayerKind::Dropout, {rangeParam(realParam("p", false, 0.5), 0, false, 1, true)},
       "dropout(0.5)"},
      {"layernorm", LayerKind::LayerNorm,
       {rangeParam(realParam("eps", false, 1e-5), 0, true, std::numeric_limits<double>::infinity(), false)},
       "layernorm"},
      {"embedding", LayerKind::Embedding, {intParam("vocab", true), intParam("dim", true)},
       "embedding(1000, 8)"},
  };
  return table;
}

const LayerInfo *findLayer(const std::string &name) {
  for (const auto &l : layerTable())
    if (name == l.name) return &l;
  return nullptr;
}

// Products with overflow detection; -1 on overflow or beyond kMaxInt.
int64_t mulChecked(int64_t a, int64_t b) {
  int64_t r;
  if (a < 0 || b < 0 || __builtin_mul_overflow(a, b, &r)) return -1;
  return r;
}

}  // namespace

const char *layerName(LayerKind k) {
  switch (k) {
  case LayerKind::Mixture: return "mixture";
  case LayerKind::Ple: return "ple";
  case LayerKind::CrossStitch: return "cross_stitch";
  default: break;
  }
  for (const auto &l : layerTable())
    if (l.kind == k) return l.name;
  return "?";
}

const std::vector<std::string> &knownBlocks() {
  static const std::vector<std::string> names = {"mixture", "ple", "cgc", "cross_stitch"};
  return names;
}

const std::vector<std::string> &knownLayers() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> v;
    for (const auto &l : layerTable()) v.push_back(l.name);
    return v;
  }();
  return names;
}

std::string shapeStr(const Shape &s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

int64_t elementCount(const Shape &s) {
  int64_t n = 1;
  for (int64_t d : s) {
    n = mulChecked(n, d);
    if (n < 0) return -1;
  }
  return n;
}

namespace detail {

bool reinferShapes(std::vector<Layer> &layers, const Shape &in, std::string &why) {
  Shape cur = in;
  for (Layer &l : layers) {
    l.in = cur;
    const char *name = layerName(l.kind);
    switch (l.kind) {
    case LayerKind::Dense:
      if (cur.size() != 1) {
        why = fmt::format("dense needs a 1-D input, not {}", shapeStr(cur));
        return false;
      }
      l.out = {l.units};
      break;
    case LayerKind::Conv2d:
    case LayerKind::MaxPool:
    case LayerKind::AvgPool: {
      if (cur.size() != 3) {
        why = fmt::format("{} needs a 3-D input, not {}", name, shapeStr(cur));
        return false;
      }
      int64_t h = cur[1] + 2 * l.padding, w = cur[2] + 2 * l.padding;
      if (h < l.kernel || w < l.kernel) {
        why = fmt::format("{} {} is larger than the input {}", name, l.kernel, shapeStr(cur));
        return false;
      }
      int64_t c = l.kind == LayerKind::Conv2d ? l.units : cur[0];
      l.out = {c, (h - l.kernel) / l.stride + 1, (w - l.kernel) / l.stride + 1};
      break;
    }
    case LayerKind::Flatten: l.out = {elementCount(cur)}; break;
    case LayerKind::Embedding:
    case LayerKind::Mixture:
    case LayerKind::Ple:
    case LayerKind::CrossStitch:
      why = fmt::format("{} cannot be re-applied", name);
      return false;
    default: l.out = cur; break;  // elementwise, dropout, layernorm
    }
    cur = l.out;
  }
  return true;
}

std::optional<Shape> Analyzer::checkLayers(const std::vector<ast::LayerCall> &calls,
                                           std::optional<Shape> in, Origin origin, Pipeline &out,
                                           const LayerContext &ctx) {
  std::optional<Shape> cur = std::move(in);
  for (const ast::LayerCall &call : calls) {
    Layer layer;
    layer.loc = call.loc;
    layer.index = static_cast<int>(out.layers.size());
    const bool isBlock = std::find(knownBlocks().begin(), knownBlocks().end(), call.name) !=
                         knownBlocks().end();
    if (call.hasBody || isBlock) {
      layer.kind = call.name == "mixture"        ? LayerKind::Mixture
                   : call.name == "cross_stitch" ? LayerKind::CrossStitch
                                                 : LayerKind::Ple;
      std::string error;
      SourceRange at = call.nameLoc;
      if (!isBlock) {
        layer.kind = LayerKind::Relu;  // placeholder; the model is not returned
        if (findLayer(call.name)) {
          at = call.bodyLoc;
          error = fmt::format("{} takes no body in braces; only the expert blocks mixture, ple, cgc "
                              "and cross_stitch have one",
                              call.name);
        } else {
          std::string hint = didYouMean(call.name, knownBlocks());
          if (hint.empty()) hint = "; the expert blocks are mixture, ple, cgc and cross_stitch";
          error = fmt::format("unknown expert block '{}'{}", call.name, hint);
        }
      } else if (ctx.inBody) {
        error = fmt::format("expert blocks do not nest: {} cannot be a layer in the body of another "
                            "block",
                            call.name);
      } else if (!call.hasBody) {
        at = call.loc;
        static const std::map<std::string, std::string> examples = {
            {"ple", "ple(levels=2, shared=2, specific=2) { dense(16) -> relu }"},
            {"cgc", "cgc(shared=2, specific=2) { dense(16) -> relu }"},
            {"cross_stitch", "cross_stitch { dense(32) -> relu ; dense(16) -> relu }"},
            {"mixture", "mixture(experts=8) { dense(16) -> relu }"}};
        error = fmt::format("{} needs its {} in braces, e.g. {}", call.name,
                            call.name == "cross_stitch" ? "stages" : "expert's layers",
                            examples.at(call.name));
      } else if (!ctx.isShared) {
        error = fmt::format("{} can only end a shared block (shared NAME = SOURCE -> {}(...) {{ ... }}), "
                            "which tasks then read with {}(NAME)",
                            call.name, call.name, call.name == "cross_stitch" ? "column" : "gate");
      }
      if (!error.empty()) {
        diags_.error(at, error);
        out.layers.push_back(layer);
        cur.reset();
        continue;
      }
      cur = checkBlock(call, cur, origin, layer);
      out.layers.push_back(layer);
      if (&call != &calls.back()) {
        const ast::LayerCall &next = *(&call + 1);
        bool stitch = layer.kind == LayerKind::CrossStitch;
        diags_.error(next.loc, fmt::format("a layer cannot follow {}(...) {{ ... }}: {} output is read "
                                           "through {}({}) in each task's pipeline",
                                           call.name, stitch ? "a cross-stitch block's" : "a mixture's",
                                           stitch ? "column" : "gate", out.name));
        cur.reset();
      }
      continue;
    }
    const LayerInfo *info = findLayer(call.name);
    if (!info) {
      std::string hint;
      if (call.name == "linear" || call.name == "fc") hint = "; did you mean 'dense'?";
      else if (call.name == "softmax" || call.name == "log_softmax")
        hint = "; softmax is part of the cross_entropy loss: end the head with dense(classes)";
      else hint = didYouMean(call.name, knownLayers());
      if (hint.empty()) {
        hint = "; the layers are ";
        for (size_t i = 0; i < knownLayers().size(); ++i)
          hint += (i ? (i + 1 == knownLayers().size() ? " and " : ", ") : "") + knownLayers()[i];
      }
      diags_.error(call.nameLoc, fmt::format("unknown layer '{}'{}", call.name, hint));
      layer.kind = LayerKind::Relu;  // placeholder; the model is not returned
      out.layers.push_back(layer);
      cur.reset();
      continue;
    }
    layer.kind = info->kind;
    BoundArgs args = bindArgs(call, info->name, info->params, info->example, diags_);
    switch (info->kind) {
    case LayerKind::Dense: layer.units = static_cast<int64_t>(args.num("units")); break;
    case LayerKind::Conv2d:
      layer.units = static_cast<int64_t>(args.num("channels"));
      layer.kernel = static_cast<int64_t>(args.num("kernel"));
      layer.stride = static_cast<int64_t>(args.num("stride"));
      layer.padding = static_cast<int64_t>(args.num("padding"));
      break;
    case LayerKind::MaxPool:
    case LayerKind::AvgPool:
      layer.kernel = static_cast<int64_t>(args.num("kernel"));
      layer.stride = args.at("stride").given ? static_cast<int64_t>(args.num("stride")) : layer.kernel;
      layer.padding = 0;
      break;
    case LayerKind::LeakyRelu: layer.value = args.num("slope"); break;
    case LayerKind::Dropout: layer.value = args.num("p"); break;
    case LayerKind::LayerNorm: layer.value = args.num("eps"); break;
    case LayerKind::Embedding:
      layer.vocab = static_cast<int64_t>(args.num("vocab"));
      layer.units = static_cast<int64_t>(args.num("dim"));
      break;
    default: break;
    }
    if (!args.ok) cur.reset();  // the arguments are wrong: the output shape is unknown
    if (info->kind == LayerKind::Embedding && ctx.inputIndex == -2 && layer.index == 0) {
      cur.reset();  // the source is wrong (reported): nothing to check
    } else if (info->kind == LayerKind::Embedding) {
      if (ctx.inBody || layer.index != 0 || ctx.inputIndex < 0) {
        diags_.error(call.loc, "embedding reads integer category indices, so it must be the first "
                               "layer of a pipeline that starts from an input (e.g. shared emb = "
                               "category -> embedding(1000, 8))");
        cur.reset();
      } else if (args.ok) {
        Input &input = model_.inputs[static_cast<size_t>(ctx.inputIndex)];
        SourceRange &first = categoriesLoc_[static_cast<size_t>(ctx.inputIndex)];
        if (input.categories == 0) {
          input.categories = layer.vocab;
          first = call.loc;
        } else if (input.categories != layer.vocab) {
          diags_.error(call.loc, fmt::format("input '{}' feeds embeddings with different vocabularies: "
                                             "{} here, {} before; its values are indices into one "
                                             "vocabulary",
                                             input.name, layer.vocab, input.categories));
          diags_.note(first, fmt::format("'{}' feeds embedding({}, ...) here", input.name, input.categories));
        }
      }
    }

    std::string spelled = ast::str(call);
    auto shapeError = [&](const std::string &msg) {
      diags_.error(call.loc, msg);
      if (origin.loc.begin.line > 0) diags_.note(origin.loc, origin.what);
      cur.reset();
    };
    if (cur) {
      Shape s = *cur;
      layer.in = s;
      switch (info->kind) {
      case LayerKind::Dense:
        if (s.size() != 1) {
          shapeError(fmt::format("dense needs a 1-D input [features], but its input has shape {}{}",
                                 shapeStr(s), s.size() > 1 ? "; add 'flatten' before it" : ""));
          break;
        }
        layer.out = {layer.units};
        break;
      case LayerKind::Conv2d:
      case LayerKind::MaxPool:
      case LayerKind::AvgPool: {
        const char *name = info->name;
        if (s.size() != 3) {
          shapeError(fmt::format("{} needs a 3-D input [channels, height, width], but its input "
                                 "has shape {}",
                                 name, shapeStr(s)));
          break;
        }
        int64_t k = layer.kernel, st = layer.stride, p = layer.padding;
        int64_t h = s[1] + 2 * p, w = s[2] + 2 * p;
        if (h < k || w < k) {
          std::string pad = p > 0 ? fmt::format(" with padding {}", p) : "";
          shapeError(fmt::format("{} {} {} is larger than its input's {}x{} image{} (input shape {})",
                                 name, info->kind == LayerKind::Conv2d ? "kernel" : "window", k,
                                 s[1], s[2], pad, shapeStr(s)));
          break;
        }
        int64_t c = info->kind == LayerKind::Conv2d ? layer.units : s[0];
        layer.out = {c, (h - k) / st + 1, (w - k) / st + 1};
        break;
      }
      case LayerKind::Flatten: {
        int64_t n = elementCount(s);
        layer.out = {n};
        break;
      }
      case LayerKind::Embedding:
        if (s.size() != 1) {
          shapeError(fmt::format("embedding needs a 1-D input [k] of category indices, but its input "
                                 "has shape {}",
                                 shapeStr(s)));
          break;
        }
        layer.out = {mulChecked(s[0], layer.units)};
        break;
      default:  // elementwise, dropout, layernorm: same shape
        layer.out = s;
        break;
      }
      if (cur) {
        int64_t n = elementCount(layer.out);
        if (n < 0 || n > kMaxInt) {
          shapeError(fmt::format("{} produces {} values per sample, more than the supported {}",
                                 spelled, shapeStr(layer.out), kMaxInt));
        }
      }
      if (cur) {
        // Parameter count, against the model-wide limit.
        int64_t params = 0;
        if (info->kind == LayerKind::Dense)
          params = mulChecked(s[0] + 1, layer.units);
        else if (info->kind == LayerKind::Conv2d)
          params = mulChecked(mulChecked(mulChecked(s[0], layer.kernel), layer.kernel) + 1, layer.units);
        else if (info->kind == LayerKind::LayerNorm)
          params = mulChecked(elementCount(s), 2);
        else if (info->kind == LayerKind::Embedding)
          params = mulChecked(layer.vocab, layer.units);
        if (!addParams(params, call.loc, spelled)) cur.reset();
      }
      if (cur) {
        cur = layer.out;
        origin = {call.loc, fmt::format("{} produces {}", spelled, shapeStr(layer.out))};
      }
    }
    out.layers.push_back(layer);
  }
  return cur;
}

}  // namespace detail
}  // namespace mtlc::sema
