// Layer arguments (from the vocabulary table, spec/Vocabulary.def) and the per-sample shape rules
// of every layer.
#include "sema/SemaInternal.h"

#include <algorithm>
#include <fmt/format.h>

namespace mtlc::sema {

namespace {

// The row of a layer that is not an expert block, or null.
const vocab::Entry *findPlainLayer(const std::string &name) {
  const vocab::Entry *row = vocab::find(vocab::layers(), name.c_str());
  return row && !(row->flags & vocab::kBlock) ? row : nullptr;
}

// Products with overflow detection; -1 on overflow or beyond kMaxInt.
int64_t mulChecked(int64_t a, int64_t b) {
  int64_t r;
  if (a < 0 || b < 0 || __builtin_mul_overflow(a, b, &r)) return -1;
  return r;
}

// batchnorm, global_avgpool, upsample: why input `s` does not fit, or nullopt.
std::optional<std::string> spatialShapeError(const Layer &l, const Shape &s) {
  if (l.kind == LayerKind::BatchNorm && s.size() != 1 && s.size() != 3)
    return fmt::format("batchnorm needs a [channels, height, width] or [features] input, but its input has "
                       "shape {}", shapeStr(s));
  if (l.kind != LayerKind::BatchNorm && s.size() != 3)
    return fmt::format("{} needs a 3-D input [channels, height, width], but its input has shape {}",
                       layerName(l.kind), shapeStr(s));
  return std::nullopt;
}

Shape spatialOut(const Layer &l, const Shape &s) {
  switch (l.kind) {
  case LayerKind::GlobalAvgPool: return {s[0]};
  case LayerKind::Upsample: return {s[0], mulChecked(s[1], l.scale), mulChecked(s[2], l.scale)};
  default: return s;
  }
}

// conv_transpose2d's output extent along one axis, (in − 1)·s − 2·p + k + output_padding; -1 when
// it overflows.
int64_t transposedExtent(const Layer &l, int64_t in) {
  int64_t scaled = mulChecked(in - 1, l.stride);
  if (scaled < 0 || scaled > detail::kMaxInt) return -1;
  return scaled - 2 * l.padding + l.kernel + l.outputPadding;
}

// conv_transpose2d: why input `s` does not fit (or the arguments do not fit each other), or nullopt.
std::optional<std::string> transposedShapeError(const Layer &l, const Shape &s) {
  if (s.size() != 3)
    return fmt::format("conv_transpose2d needs a 3-D input [channels, height, width], but its input has shape {}",
                       shapeStr(s));
  if (l.outputPadding >= l.stride)
    return fmt::format("conv_transpose2d's output_padding {} must be smaller than its stride {}, as in "
                       "nn.ConvTranspose2d", l.outputPadding, l.stride);
  int64_t h = transposedExtent(l, s[1]), w = transposedExtent(l, s[2]);
  if (h < 0 || w < 0 || h > detail::kMaxInt || w > detail::kMaxInt)
    return fmt::format("conv_transpose2d with stride {} makes its input's {}x{} image larger than the supported "
                       "{} per dimension", l.stride, s[1], s[2], detail::kMaxInt);
  if (h < 1 || w < 1)
    return fmt::format("conv_transpose2d gives an empty {}x{} image from its input's {}x{} (input shape {}): "
                       "(H-1)*stride - 2*padding + kernel + output_padding = ({}-1)*{} - 2*{} + {} + {}; "
                       "use less padding",
                       h, w, s[1], s[2], shapeStr(s), s[1], l.stride, l.padding, l.kernel, l.outputPadding);
  return std::nullopt;
}

}  // namespace

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

int64_t layerParams(const Layer &l) {
  const Shape &s = l.in;
  switch (l.kind) {
  case LayerKind::Dense: return s.empty() ? 0 : mulChecked(s[0] + 1, l.units);
  case LayerKind::Conv2d:
    return s.empty() ? 0 : mulChecked(mulChecked(mulChecked(s[0], l.kernel), l.kernel) + (l.bias ? 1 : 0), l.units);
  case LayerKind::ConvTranspose2d: {  // weight [C, units, k, k], bias [units]
    if (s.empty()) return 0;
    int64_t w = mulChecked(mulChecked(mulChecked(s[0], l.units), l.kernel), l.kernel);
    return w < 0 ? -1 : w + (l.bias ? l.units : 0);
  }
  case LayerKind::LayerNorm: return mulChecked(elementCount(s), 2);
  case LayerKind::BatchNorm: return s.empty() ? 0 : mulChecked(s[0], 2);  // running stats: state
  case LayerKind::Residual: {  // the body's layers were counted as they were checked
    if (!l.projection || s.empty() || l.out.empty()) return 0;
    return mulChecked(s[0] + 2, l.out[0]);  // 1x1 conv [out, in] + batchnorm weight and bias
  }
  case LayerKind::Embedding: return mulChecked(l.vocab, l.units);
  default: return 0;  // expert blocks count their copies themselves (Blocks.cpp)
  }
}

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
    case LayerKind::ConvTranspose2d:
      if (std::optional<std::string> e = transposedShapeError(l, cur)) {
        why = *e;
        return false;
      }
      l.out = {l.units, transposedExtent(l, cur[1]), transposedExtent(l, cur[2])};
      break;
    case LayerKind::Flatten: l.out = {elementCount(cur)}; break;
    case LayerKind::BatchNorm:
    case LayerKind::GlobalAvgPool:
    case LayerKind::Upsample:
      if (std::optional<std::string> e = spatialShapeError(l, cur)) {
        why = *e;
        return false;
      }
      l.out = spatialOut(l, cur);
      break;
    case LayerKind::Residual:
    case LayerKind::Embedding:
    case LayerKind::Mixture:
    case LayerKind::Ple:
    case LayerKind::CrossStitch:
    case LayerKind::Mtan:
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
    const vocab::Entry *row = vocab::find(vocab::layers(), call.name.c_str());
    if (row && (row->flags & vocab::kBody)) {  // residual { ... }: a layer with a body
      layer.kind = LayerKind(row->kind);
      cur = checkResidual(call, *row, cur, origin, layer);
      out.layers.push_back(layer);
      continue;
    }
    if (call.hasBody || (row && (row->flags & vocab::kBlock))) {
      if (checkBlockStage(call, row, cur, origin, out, ctx, layer) && &call != &calls.back()) {
        const ast::LayerCall &next = *(&call + 1);
        const char *whose = layer.kind == LayerKind::CrossStitch ? "a cross-stitch block's"
                            : layer.kind == LayerKind::Mtan      ? "an mtan block's"
                                                                 : "a mixture's";
        diags_.error(next.loc, fmt::format("a layer cannot follow {}(...) {{ ... }}: {} output is read "
                                           "through {}({}) in each task's pipeline",
                                           call.name, whose, readWord(blockKind(layer.kind)), out.name));
        cur.reset();
      }
      continue;
    }
    if (!row) {
      reportUnknownLayer(call);
      layer.kind = LayerKind::Relu;  // placeholder; the model is not returned
      out.layers.push_back(layer);
      cur.reset();
      continue;
    }
    layer.kind = LayerKind(row->kind);
    const bool argsOk = bindLayerArgs(call, *row, layer);
    if (!argsOk) cur.reset();  // the arguments are wrong: the output shape is unknown
    if (layer.kind == LayerKind::Embedding && !checkEmbeddingPlace(call, layer, ctx, argsOk)) cur.reset();
    if (cur) cur = inferLayer(call, *cur, layer, origin);
    out.layers.push_back(layer);
  }
  return cur;
}

// An expert block stage of a pipeline (or a body given to something else); true when it was
// checked, false when it was misplaced or is no block (reported).
bool Analyzer::checkBlockStage(const ast::LayerCall &call, const vocab::Entry *row, std::optional<Shape> &cur,
                               const Origin &origin, Pipeline &out, const LayerContext &ctx, Layer &layer) {
  const bool isBlock = row && (row->flags & vocab::kBlock);
  const std::string blocks = joinWords(knownBlocks(), "and");
  layer.kind = isBlock ? LayerKind(row->kind) : LayerKind::Ple;
  std::string error;
  SourceRange at = call.nameLoc;
  if (!isBlock) {
    layer.kind = LayerKind::Relu;  // placeholder; the model is not returned
    if (findPlainLayer(call.name)) {
      at = call.bodyLoc;
      error = fmt::format("{} takes no body in braces; only the expert blocks {} have one", call.name, blocks);
    } else {
      std::string hint = didYouMean(call.name, knownBlocks());
      if (hint.empty()) hint = "; the expert blocks are " + blocks;
      error = fmt::format("unknown expert block '{}'{}", call.name, hint);
    }
  } else if (ctx.inBody) {
    error = fmt::format("expert blocks do not nest: {} cannot be a layer in the body of another "
                        "block",
                        call.name);
  } else if (!call.hasBody) {
    at = call.loc;
    error = fmt::format("{} needs its {} in braces, e.g. {}", call.name,
                        layer.hasStages() ? "stages" : "expert's layers", row->example);
  } else if (!ctx.isShared) {
    error = fmt::format("{} can only end a shared block (shared NAME = SOURCE -> {}(...) {{ ... }}), "
                        "which tasks then read with {}(NAME)",
                        call.name, call.name, readWord(blockKind(layer.kind)));
  }
  if (!error.empty()) {
    diags_.error(at, error);
    out.layers.push_back(layer);
    cur.reset();
    return false;
  }
  cur = checkBlock(call, cur, origin, layer);
  out.layers.push_back(layer);
  return true;
}

void Analyzer::reportUnknownLayer(const ast::LayerCall &call) {
  std::string hint;
  if (call.name == "linear" || call.name == "fc") hint = "; did you mean 'dense'?";
  else if (call.name == "softmax" || call.name == "log_softmax")
    hint = "; softmax is part of the cross_entropy loss: end the head with dense(classes)";
  else hint = didYouMean(call.name, knownLayers());
  if (hint.empty()) hint = "; the layers are " + joinWords(knownLayers(), "and");
  diags_.error(call.nameLoc, fmt::format("unknown layer '{}'{}", call.name, hint));
}

bool Analyzer::bindLayerArgs(const ast::LayerCall &call, const vocab::Entry &row, Layer &layer) {
  BoundArgs args = bindArgs(call, row.name, paramsOf(row), row.example, diags_);
  auto count = [&](const char *name) { return static_cast<int64_t>(args.num(name)); };
  switch (layer.kind) {
  case LayerKind::Dense: layer.units = count("units"); break;
  case LayerKind::Conv2d:
  case LayerKind::ConvTranspose2d:
    layer.units = count("channels");
    layer.kernel = count("kernel");
    layer.stride = count("stride");
    layer.padding = count("padding");
    layer.bias = count("bias") == 1;  // the choice "false|true": index 1 is true
    if (layer.kind == LayerKind::ConvTranspose2d) layer.outputPadding = count("output_padding");
    break;
  case LayerKind::MaxPool:
  case LayerKind::AvgPool:
    layer.kernel = count("kernel");
    layer.stride = args.at("stride").given ? count("stride") : layer.kernel;
    layer.padding = 0;
    break;
  case LayerKind::LeakyRelu: layer.value = args.num("slope"); break;
  case LayerKind::Dropout: layer.value = args.num("p"); break;
  case LayerKind::LayerNorm:
  case LayerKind::BatchNorm: layer.value = args.num("eps"); break;
  case LayerKind::Upsample:
    layer.scale = count("scale");
    layer.mode = count("mode");
    break;
  case LayerKind::Embedding:
    layer.vocab = count("vocab");
    layer.units = count("dim");
    break;
  default: break;
  }
  return args.ok;
}

bool Analyzer::checkEmbeddingPlace(const ast::LayerCall &call, const Layer &layer, const LayerContext &ctx,
                                   bool argsOk) {
  if (ctx.inputIndex == -2 && layer.index == 0) return false;  // the source is wrong (reported)
  if (ctx.inBody || layer.index != 0 || ctx.inputIndex < 0) {
    diags_.error(call.loc, "embedding reads integer category indices, so it must be the first "
                           "layer of a pipeline that starts from an input (e.g. shared emb = "
                           "category -> embedding(1000, 8))");
    return false;
  }
  if (!argsOk) return true;
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
  return true;
}

// The layer's output shape for input `s` (nullopt, reported, when it cannot take it), checked
// against the value and parameter limits; `origin` becomes the layer when it succeeds.
std::optional<Shape> Analyzer::inferLayer(const ast::LayerCall &call, const Shape &s, Layer &layer,
                                          Origin &origin) {
  const std::string spelled = ast::str(call);
  auto shapeError = [&](const std::string &msg) -> std::optional<Shape> {
    diags_.error(call.loc, msg);
    if (origin.loc.begin.line > 0) diags_.note(origin.loc, origin.what);
    return std::nullopt;
  };
  layer.in = s;
  const char *name = layerName(layer.kind);
  switch (layer.kind) {
  case LayerKind::Dense:
    if (s.size() != 1)
      return shapeError(fmt::format("dense needs a 1-D input [features], but its input has shape {}{}",
                                    shapeStr(s), s.size() > 1 ? "; add 'flatten' before it" : ""));
    layer.out = {layer.units};
    break;
  case LayerKind::Conv2d:
  case LayerKind::MaxPool:
  case LayerKind::AvgPool: {
    if (s.size() != 3)
      return shapeError(fmt::format("{} needs a 3-D input [channels, height, width], but its input "
                                    "has shape {}",
                                    name, shapeStr(s)));
    int64_t k = layer.kernel, st = layer.stride, p = layer.padding;
    int64_t h = s[1] + 2 * p, w = s[2] + 2 * p;
    if (h < k || w < k) {
      std::string pad = p > 0 ? fmt::format(" with padding {}", p) : "";
      return shapeError(fmt::format("{} {} {} is larger than its input's {}x{} image{} (input shape {})", name,
                                    layer.kind == LayerKind::Conv2d ? "kernel" : "window", k, s[1], s[2], pad,
                                    shapeStr(s)));
    }
    int64_t c = layer.kind == LayerKind::Conv2d ? layer.units : s[0];
    layer.out = {c, (h - k) / st + 1, (w - k) / st + 1};
    break;
  }
  case LayerKind::ConvTranspose2d:
    if (std::optional<std::string> e = transposedShapeError(layer, s)) return shapeError(*e);
    layer.out = {layer.units, transposedExtent(layer, s[1]), transposedExtent(layer, s[2])};
    break;
  case LayerKind::Flatten: layer.out = {elementCount(s)}; break;
  case LayerKind::BatchNorm:
  case LayerKind::GlobalAvgPool:
  case LayerKind::Upsample:
    if (std::optional<std::string> e = spatialShapeError(layer, s)) return shapeError(*e);
    layer.out = spatialOut(layer, s);
    break;
  case LayerKind::Embedding:
    if (s.size() != 1)
      return shapeError(fmt::format("embedding needs a 1-D input [k] of category indices, but its input "
                                    "has shape {}",
                                    shapeStr(s)));
    layer.out = {mulChecked(s[0], layer.units)};
    break;
  default:  // elementwise, dropout, layernorm: same shape
    layer.out = s;
    break;
  }
  int64_t n = elementCount(layer.out);
  if (n < 0 || n > kMaxInt)
    return shapeError(fmt::format("{} produces {} values per sample, more than the supported {}", spelled,
                                  shapeStr(layer.out), kMaxInt));
  // Parameter count, against the model-wide limit.
  if (!addParams(layerParams(layer), call.loc, spelled)) return std::nullopt;
  origin = {call.loc, fmt::format("{} produces {}", spelled, shapeStr(layer.out))};
  return layer.out;
}

// residual { LAYERS }: the body's layers (checked as a pipeline of their own, from `in`), then the
// shortcut that adds x to their output.
std::optional<Shape> Analyzer::checkResidual(const ast::LayerCall &call, const vocab::Entry &row,
                                             std::optional<Shape> in, Origin &origin, Layer &layer) {
  bool ok = bindLayerArgs(call, row, layer);
  if (!call.hasBody) {
    diags_.error(call.loc, fmt::format("residual needs its body's layers in braces, e.g. {}", row.example));
    return std::nullopt;
  }
  if (call.body.size() > 1) {
    diags_.error(call.body[1].front().loc, "';' separates the stages of cross_stitch; the body of residual is "
                                           "one pipeline (join its layers with '->')");
    ok = false;
  }
  LayerContext body;
  body.inBody = true;  // expert blocks and embeddings do not go in a body
  Pipeline p;
  std::optional<Shape> out = checkLayers(call.body.front(), in, origin, p, body);
  layer.body = std::move(p.layers);
  if (!ok || !out || !in) return std::nullopt;
  layer.in = *in;
  layer.out = *out;
  if (*in != *out && !checkShortcut(call, *in, *out, origin, layer)) return std::nullopt;
  origin = {call.loc, fmt::format("residual {{ ... }} produces {}", shapeStr(*out))};
  return out;
}

// The projection shortcut when the body changes the shape: a 1x1 conv2d with the body's total
// stride must land on the body's output size, so both sides can be added.
bool Analyzer::checkShortcut(const ast::LayerCall &call, const Shape &in, const Shape &out, const Origin &origin,
                             Layer &layer) {
  auto fail = [&](const std::string &msg) {
    diags_.error(call.nameLoc, msg);
    if (origin.loc.begin.line > 0) diags_.note(origin.loc, origin.what);
    return false;
  };
  if (in.size() != 3 || out.size() != 3)
    return fail(fmt::format("residual adds its input {} to its body's output {}; when they differ the shortcut "
                            "is a 1x1 conv2d, which needs [channels, height, width] on both sides",
                            shapeStr(in), shapeStr(out)));
  int64_t stride = 1;
  for (const Layer &l : layer.body)
    if (l.kind == LayerKind::Conv2d || l.kind == LayerKind::MaxPool || l.kind == LayerKind::AvgPool)
      stride = std::min<int64_t>(stride * l.stride, kMaxInt);  // each factor <= kMaxInt: no overflow
  const Shape shortcut = {out[0], (in[1] - 1) / stride + 1, (in[2] - 1) / stride + 1};
  if (shortcut != out && (out[1] > in[1] || out[2] > in[2]))
    return fail(fmt::format("residual's body maps {} to the larger {}, but its shortcut, a strided 1x1 conv2d, "
                            "cannot enlarge the image; put upsample or conv_transpose2d outside the residual block",
                            shapeStr(in), shapeStr(out)));
  if (shortcut != out)
    return fail(fmt::format("residual's body maps {} to {}, but its shortcut, a 1x1 conv2d with the body's total "
                            "stride {}, gives {}; the height and width must agree (pad the body's convolutions, "
                            "e.g. conv2d({}, kernel=3, padding=1))",
                            shapeStr(in), shapeStr(out), stride, shapeStr(shortcut), out[0]));
  layer.projection = true;
  layer.stride = stride;
  return addParams(layerParams(layer), call.loc, "residual's shortcut");
}

}  // namespace detail
}  // namespace mtlc::sema
