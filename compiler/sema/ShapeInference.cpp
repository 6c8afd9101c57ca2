// The layer table (names, arguments) and the per-sample shape rules of every layer.
#include "sema/SemaInternal.h"

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
  for (const auto &l : layerTable())
    if (l.kind == k) return l.name;
  return "?";
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

std::optional<Shape> Analyzer::checkLayers(const std::vector<ast::LayerCall> &calls,
                                           std::optional<Shape> in, Origin origin, Pipeline &out) {
  std::optional<Shape> cur = std::move(in);
  for (const ast::LayerCall &call : calls) {
    Layer layer;
    layer.loc = call.loc;
    layer.index = static_cast<int>(out.layers.size());
    if (call.isMixture) {
      diags_.error(call.nameLoc, "mixture(...) (a mixture of experts) is not supported yet");
      layer.kind = LayerKind::Relu;  // placeholder; the model is not returned
      out.layers.push_back(layer);
      cur.reset();
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
    default: break;
    }
    if (!args.ok) cur.reset();  // the arguments are wrong: the output shape is unknown

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
        if (params < 0 || totalParams_ + params > kMaxInt) {
          if (!paramLimitReported_)
            diags_.error(call.loc, fmt::format("{} makes the model larger than the supported {} "
                                               "parameters",
                                               spelled, kMaxInt));
          paramLimitReported_ = true;
          cur.reset();
        } else {
          totalParams_ += params;
        }
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
