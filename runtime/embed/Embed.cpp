// The run-time support of AOT bundles (mtlc_embed.h): contexts, initialisation, the optimizers,
// safetensors checkpoints and argument checks. Self-contained on purpose: only the standard
// library and two header-only pieces of the runtime (abi.h, Rng.h), so that embedded programs
// link no fmt, JSON or zlib. The rules are the runtime's, restated:
//   init       runtime/Init.cpp      (mt19937_64(seed), parameters in table order)
//   optimizers runtime/Optimizer.cpp (torch 1.13's sgd / adam, float arithmetic, same order)
//   checkpoint runtime/Checkpoint.cpp (parameter names, optim.step / momentum / m / v, metadata)
// tests/aot checks that they agree with `mtlc train` step by step.
#include "mtlc_embed.h"

#include "runtime/Rng.h"
#include "runtime/abi.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <new>
#include <sstream>
#include <string>
#include <vector>

namespace {

using mtlc::rt::Rng;

// ---- the bundle description (written by compiler/aot/Aot.cpp) ---------------------------------

struct ParamDesc {
  std::string name;
  std::vector<int64_t> shape;
  int64_t offset = 0, size = 0, fanIn = 1;
  int init = 0;  // rt::Init: 0 UniformFanIn, 1 Ones, 2 Zeros, 3 Normal, 4 CrossStitch
  bool frozen = false;
};
struct InputDesc {
  std::string name;
  int64_t size = 0, categories = 0;
};
struct TaskDesc {
  std::string name, loss;
  int64_t outWidth = 1, labelWidth = 1;
  float weight = 1;
};
struct Desc {
  std::string model;
  int64_t paramCount = 0, actsFloats = 0, maxBatch = 1;
  uint64_t seed = 0;
  std::string optimizer = "adam";
  double lr = 1e-3, momentum = 0, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weightDecay = 0;
  std::vector<InputDesc> inputs;
  std::vector<TaskDesc> tasks;
  std::vector<ParamDesc> params;
};

bool parseDesc(const char *text, Desc &d, std::string &err) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    std::string key;
    if (!(ls >> key)) continue;
    if (key == "mtlc-bundle") {
      int version = 0;
      ls >> version;
      if (version != 1) return err = "unsupported bundle version", false;
    } else if (key == "model") {
      ls >> d.model;
    } else if (key == "sizes") {
      ls >> d.paramCount >> d.actsFloats >> d.maxBatch;
    } else if (key == "seed") {
      ls >> d.seed;
    } else if (key == "optimizer") {
      ls >> d.optimizer >> d.lr >> d.momentum >> d.beta1 >> d.beta2 >> d.eps >> d.weightDecay;
    } else if (key == "input") {
      InputDesc i;
      ls >> i.name >> i.size >> i.categories;
      d.inputs.push_back(i);
    } else if (key == "task") {
      TaskDesc t;
      ls >> t.name >> t.loss >> t.outWidth >> t.labelWidth >> t.weight;
      d.tasks.push_back(t);
    } else if (key == "param") {
      ParamDesc p;
      int frozen = 0, rank = 0;
      ls >> p.name >> p.offset >> p.size >> p.init >> p.fanIn >> frozen >> rank;
      p.frozen = frozen != 0;
      for (int r = 0; r < rank; ++r) {
        int64_t dim = 0;
        ls >> dim;
        p.shape.push_back(dim);
      }
      d.params.push_back(p);
    }
    if (ls.fail()) return err = "malformed bundle description line: " + line, false;
  }
  if (d.paramCount < 0 || d.actsFloats < 0 || d.maxBatch < 1 || d.tasks.empty())
    return err = "bundle description without sizes or tasks", false;
  for (const ParamDesc &p : d.params)
    if (p.offset < 0 || p.size < 0 || p.offset + p.size > d.paramCount)
      return err = "parameter " + p.name + " lies outside the arena", false;
  if (d.optimizer != "sgd" && d.optimizer != "adam") return err = "unknown optimizer " + d.optimizer, false;
  return true;
}

// ---- aligned buffers ---------------------------------------------------------------------------

struct Buffer {
  float *p = nullptr;
  int64_t n = 0;
  bool alloc(int64_t count) {
    n = count;
    size_t bytes = (size_t(count > 0 ? count : 0) * sizeof(float) + 63) / 64 * 64;
    if (bytes == 0) bytes = 64;
    p = static_cast<float *>(std::aligned_alloc(64, bytes));
    if (p) std::memset(p, 0, bytes);
    return p != nullptr;
  }
  void zero() {
    if (p && n > 0) std::memset(p, 0, size_t(n) * sizeof(float));
  }
  ~Buffer() { std::free(p); }
};

// ---- safetensors (F32 only), the format of runtime/SafeTensors.h ------------------------------

// A JSON value, enough for safetensors headers.
struct Json {
  enum Kind { Null, Num, Str, Arr, Obj } kind = Null;
  double num = 0;
  std::string str;
  std::vector<Json> arr;
  std::vector<std::pair<std::string, Json>> obj;
  const Json *get(const std::string &k) const {
    for (const auto &kv : obj)
      if (kv.first == k) return &kv.second;
    return nullptr;
  }
};

struct JsonParser {
  const char *s, *e;
  bool ok = true;
  void ws() {
    while (s < e && (*s == ' ' || *s == '\n' || *s == '\t' || *s == '\r')) ++s;
  }
  bool str(std::string &out) {
    if (s >= e || *s != '"') return false;
    ++s;
    while (s < e && *s != '"') {
      if (*s == '\\') {
        if (++s >= e) return false;
        char c = *s;
        if (c == 'u') {  // names are ASCII in practice; keep \uXXXX below 0x80 only
          if (e - s < 5) return false;
          unsigned v = unsigned(std::strtoul(std::string(s + 1, s + 5).c_str(), nullptr, 16));
          out += v < 0x80 ? char(v) : '?';
          s += 5;
          continue;
        }
        out += c == 'n' ? '\n' : c == 't' ? '\t' : c == 'r' ? '\r' : c == 'b' ? '\b' : c == 'f' ? '\f' : c;
        ++s;
      } else {
        out += *s++;
      }
    }
    if (s >= e) return false;
    ++s;
    return true;
  }
  bool value(Json &v, int depth = 0) {
    if (depth > 8) return false;
    ws();
    if (s >= e) return false;
    if (*s == '{') {
      v.kind = Json::Obj;
      ++s;
      ws();
      if (s < e && *s == '}') return ++s, true;
      for (;;) {
        ws();
        std::string k;
        if (!str(k)) return false;
        ws();
        if (s >= e || *s != ':') return false;
        ++s;
        Json child;
        if (!value(child, depth + 1)) return false;
        v.obj.emplace_back(std::move(k), std::move(child));
        ws();
        if (s < e && *s == ',') { ++s; continue; }
        if (s < e && *s == '}') return ++s, true;
        return false;
      }
    }
    if (*s == '[') {
      v.kind = Json::Arr;
      ++s;
      ws();
      if (s < e && *s == ']') return ++s, true;
      for (;;) {
        Json child;
        if (!value(child, depth + 1)) return false;
        v.arr.push_back(std::move(child));
        ws();
        if (s < e && *s == ',') { ++s; continue; }
        if (s < e && *s == ']') return ++s, true;
        return false;
      }
    }
    if (*s == '"') return v.kind = Json::Str, str(v.str);
    if (e - s >= 4 && std::strncmp(s, "null", 4) == 0) return s += 4, true;
    std::string num;
    while (s < e && (std::isdigit((unsigned char)*s) || *s == '-' || *s == '+' || *s == '.' || *s == 'e' || *s == 'E'))
      num += *s++;
    if (num.empty()) return false;
    v.kind = Json::Num;
    v.num = std::strtod(num.c_str(), nullptr);
    return true;
  }
};

struct Tensor {
  std::vector<int64_t> shape;
  std::vector<float> data;
};

// Returns MTLC_OK or an error with a message in err.
int readSafeTensors(const std::string &path, std::map<std::string, Tensor> &tensors,
                    std::map<std::string, std::string> &meta, std::string &err) {
  FILE *f = std::fopen(path.c_str(), "rb");
  if (!f) return err = path + ": cannot open the file for reading", MTLC_ERR_IO;
  std::vector<unsigned char> bytes;
  unsigned char buf[1 << 16];
  size_t got;
  while ((got = std::fread(buf, 1, sizeof buf, f)) > 0) bytes.insert(bytes.end(), buf, buf + got);
  bool readErr = std::ferror(f);
  std::fclose(f);
  if (readErr) return err = path + ": read error", MTLC_ERR_IO;
  if (bytes.size() < 8) return err = path + ": not a safetensors file (too short)", MTLC_ERR_FORMAT;
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | bytes[size_t(i)];
  if (n > bytes.size() - 8) return err = path + ": not a safetensors file (header length)", MTLC_ERR_FORMAT;
  JsonParser p{reinterpret_cast<const char *>(bytes.data()) + 8, reinterpret_cast<const char *>(bytes.data()) + 8 + n};
  Json header;
  if (!p.value(header) || header.kind != Json::Obj)
    return err = path + ": the safetensors header is not a valid JSON object", MTLC_ERR_FORMAT;
  const uint64_t dataSize = bytes.size() - 8 - n;
  const unsigned char *data = bytes.data() + 8 + n;
  for (const auto &[name, entry] : header.obj) {
    if (name == "__metadata__") {
      for (const auto &[k, v] : entry.obj)
        if (v.kind == Json::Str) meta[k] = v.str;
      continue;
    }
    const Json *dtype = entry.get("dtype"), *shape = entry.get("shape"), *offs = entry.get("data_offsets");
    if (!dtype || !shape || !offs || shape->kind != Json::Arr || offs->kind != Json::Arr || offs->arr.size() != 2)
      return err = path + ": tensor `" + name + "` has a malformed header entry", MTLC_ERR_FORMAT;
    if (dtype->str != "F32")
      return err = path + ": tensor `" + name + "` has dtype " + dtype->str + " (only F32 is supported)", MTLC_ERR_FORMAT;
    Tensor t;
    uint64_t count = 1;
    for (const Json &d : shape->arr) {
      if (d.kind != Json::Num || d.num < 0) return err = path + ": tensor `" + name + "` has a bad shape", MTLC_ERR_FORMAT;
      t.shape.push_back(int64_t(d.num));
      count *= uint64_t(d.num);
    }
    const uint64_t begin = uint64_t(offs->arr[0].num), end = uint64_t(offs->arr[1].num);
    if (begin > end || end > dataSize || end - begin != count * 4)
      return err = path + ": tensor `" + name + "` has data offsets that do not fit its shape or the file", MTLC_ERR_FORMAT;
    t.data.resize(count);
    if (count) std::memcpy(t.data.data(), data + begin, count * 4);  // little-endian host
    tensors[name] = std::move(t);
  }
  return MTLC_OK;
}

struct View {
  std::string name;
  std::vector<int64_t> shape;
  const float *data;
  int64_t count;
};

std::string jsonString(const std::string &s) {
  std::string o = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') o += '\\';
    o += c;
  }
  return o + "\"";
}

int writeSafeTensors(const std::string &path, const std::vector<View> &views,
                     const std::map<std::string, std::string> &meta, std::string &err) {
  std::string h = "{";
  uint64_t off = 0;
  for (const View &v : views) {
    h += jsonString(v.name) + ":{\"dtype\":\"F32\",\"shape\":[";
    for (size_t i = 0; i < v.shape.size(); ++i) h += (i ? "," : "") + std::to_string(v.shape[i]);
    h += "],\"data_offsets\":[" + std::to_string(off) + "," + std::to_string(off + uint64_t(v.count) * 4) + "]},";
    off += uint64_t(v.count) * 4;
  }
  h += "\"__metadata__\":{";
  bool first = true;
  for (const auto &[k, v] : meta) {
    h += (first ? "" : ",") + jsonString(k) + ":" + jsonString(v);
    first = false;
  }
  h += "}}";
  while ((8 + h.size()) % 8) h += ' ';
  const std::string tmp = path + ".tmp";
  FILE *f = std::fopen(tmp.c_str(), "wb");
  if (!f) return err = path + ": cannot open a temporary file for writing", MTLC_ERR_IO;
  unsigned char len[8];
  uint64_t n = h.size();
  for (int i = 0; i < 8; ++i) len[i] = (unsigned char)(n >> (8 * i));
  bool ok = std::fwrite(len, 1, 8, f) == 8 && std::fwrite(h.data(), 1, h.size(), f) == h.size();
  for (const View &v : views)
    ok = ok && (v.count == 0 || std::fwrite(v.data, 4, size_t(v.count), f) == size_t(v.count));
  ok = (std::fflush(f) == 0) && ok;
  ok = (std::fclose(f) == 0) && ok;
  if (!ok || std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    return err = path + ": write failed", MTLC_ERR_IO;
  }
  return MTLC_OK;
}

std::string shapeStr(const std::vector<int64_t> &s) {
  std::string o = "[";
  for (size_t i = 0; i < s.size(); ++i) o += (i ? ", " : "") + std::to_string(s[i]);
  return o + "]";
}

}  // namespace

struct mtlc_embed_ctx {
  const mtlc_embed_bundle *bundle = nullptr;
  Desc d;
  Buffer params, grads, acts, optA, optB;  // optA/optB: sgd momentum, or adam m / v
  std::vector<Buffer> trainOutputs;         // train_step writes the heads here
  std::vector<float *> trainOutputPtrs;
  std::vector<float> losses, weights;
  int64_t optSteps = 0;   // optimizer steps (adam's t; optim.step in checkpoints)
  int64_t runSteps = 0;   // train steps since create / init / load (dropout stream index)
  uint64_t seed = 0;
  std::string error;

  int fail(int status, std::string msg) {
    error = std::move(msg);
    return status;
  }
};

namespace {

void initParams(mtlc_embed_ctx *c, uint64_t seed) {
  Rng rng(seed);
  float *arena = c->params.p;
  for (const ParamDesc &p : c->d.params) {
    float *w = arena + p.offset;
    switch (p.init) {
      case 0: {
        const double bound = 1.0 / std::sqrt(double(p.fanIn > 0 ? p.fanIn : 1));
        for (int64_t i = 0; i < p.size; ++i) w[i] = float(-bound + 2.0 * bound * mtlc::rt::uniform01(rng));
        break;
      }
      case 1:
        for (int64_t i = 0; i < p.size; ++i) w[i] = 1.0f;
        break;
      case 2:
        for (int64_t i = 0; i < p.size; ++i) w[i] = 0.0f;
        break;
      case 3:
        for (int64_t i = 0; i < p.size; ++i) w[i] = float(mtlc::rt::standardNormal(rng));
        break;
      case 4: {
        const int64_t T = p.shape.empty() ? 1 : p.shape[0];
        const float off = T > 1 ? 0.1f / float(T - 1) : 0.0f;
        for (int64_t r = 0; r < T; ++r)
          for (int64_t col = 0; col < T && r * T + col < p.size; ++col)
            w[r * T + col] = r == col ? (T > 1 ? 0.9f : 1.0f) : off;
        break;
      }
    }
  }
}

// The optimizer step over every parameter that is not frozen (runtime/Optimizer.cpp's loops).
void optimizerStep(mtlc_embed_ctx *c) {
  const Desc &d = c->d;
  ++c->optSteps;
  const int64_t t = c->optSteps;
  float *P = c->params.p;
  const float *G = c->grads.p;
  auto span = [&](int64_t begin, int64_t count) {
    float *p = P + begin;
    const float *grad = G + begin;
    if (d.optimizer == "sgd") {
      const float lr = float(d.lr), mu = float(d.momentum), wd = float(d.weightDecay);
      float *buf = c->optA.p ? c->optA.p + begin : nullptr;
      for (int64_t i = 0; i < count; ++i) {
        float g = grad[i];
        if (wd != 0) g = g + wd * p[i];
        if (mu != 0) {
          buf[i] = t == 1 ? g : mu * buf[i] + g;
          g = buf[i];
        }
        p[i] = p[i] - lr * g;
      }
    } else {
      const double bias1 = 1.0 - std::pow(d.beta1, double(t));
      const double bias2 = 1.0 - std::pow(d.beta2, double(t));
      const float stepSize = float(d.lr / bias1);
      const float bias2Sqrt = float(std::sqrt(bias2));
      const float beta1 = float(d.beta1), beta2 = float(d.beta2), eps = float(d.eps), wd = float(d.weightDecay);
      const float oneMinusBeta1 = float(1.0 - d.beta1), oneMinusBeta2 = float(1.0 - d.beta2);
      float *m = c->optA.p + begin, *v = c->optB.p + begin;
      for (int64_t i = 0; i < count; ++i) {
        float g = grad[i];
        if (wd != 0) g = g + wd * p[i];
        m[i] = m[i] * beta1 + oneMinusBeta1 * g;
        v[i] = v[i] * beta2 + oneMinusBeta2 * g * g;
        const float denom = std::sqrt(v[i]) / bias2Sqrt + eps;
        p[i] = p[i] - stepSize * (m[i] / denom);
      }
    }
  };
  bool anyFrozen = false;
  for (const ParamDesc &p : d.params) anyFrozen = anyFrozen || p.frozen;
  if (!anyFrozen) {
    span(0, d.paramCount);
    return;
  }
  // Frozen parameters keep their values and state (runtime trainableSpans); spans in offset order.
  std::vector<std::pair<int64_t, int64_t>> spans;
  for (const ParamDesc &p : d.params)
    if (!p.frozen && p.size > 0) spans.push_back({p.offset, p.offset + p.size});
  std::sort(spans.begin(), spans.end());
  std::vector<std::pair<int64_t, int64_t>> merged;
  for (auto s : spans) {
    if (!merged.empty() && s.first <= merged.back().second) merged.back().second = std::max(merged.back().second, s.second);
    else merged.push_back(s);
  }
  for (auto [b, e] : merged) span(b, e - b);
}

void resetOptimizer(mtlc_embed_ctx *c) {
  c->optA.zero();
  c->optB.zero();
  c->optSteps = 0;
  c->runSteps = 0;
}

// Checks n and every input buffer; values of embedding inputs must be integer indices in range.
int checkInputs(mtlc_embed_ctx *c, int64_t n, const float *const *inputs, const size_t *counts) {
  const Desc &d = c->d;
  if (n < 1 || n > d.maxBatch)
    return c->fail(MTLC_ERR_BATCH, "n = " + std::to_string(n) + " is not in [1, " + std::to_string(d.maxBatch) + "]");
  if (!inputs || !counts) return c->fail(MTLC_ERR_NULL, "inputs or their counts are NULL");
  for (size_t i = 0; i < d.inputs.size(); ++i) {
    const InputDesc &in = d.inputs[i];
    if (!inputs[i]) return c->fail(MTLC_ERR_NULL, "input `" + in.name + "` is NULL");
    if (counts[i] != size_t(n * in.size))
      return c->fail(MTLC_ERR_SIZE, "input `" + in.name + "` has " + std::to_string(counts[i]) + " floats, expected n * " +
                                        std::to_string(in.size) + " = " + std::to_string(n * in.size));
    if (in.categories > 0)
      for (int64_t k = 0; k < n * in.size; ++k) {
        float v = inputs[i][k];
        if (!(v >= 0 && v < float(in.categories) && v == std::floor(v)))
          return c->fail(MTLC_ERR_VALUE, "input `" + in.name + "` element " + std::to_string(k) + " is " +
                                             std::to_string(v) + ", not an index in [0, " + std::to_string(in.categories) + ")");
      }
  }
  return MTLC_OK;
}

}  // namespace

extern "C" {

mtlc_embed_ctx *mtlc_embed_create(const mtlc_embed_bundle *bundle, int *status) {
  int dummy;
  int &st = status ? *status : dummy;
  if (!bundle || !bundle->desc || !bundle->train_step || !bundle->predict) return st = MTLC_ERR_NULL, nullptr;
  auto *c = new (std::nothrow) mtlc_embed_ctx;
  if (!c) return st = MTLC_ERR_NOMEM, nullptr;
  try {
    c->bundle = bundle;
    std::string err;
    if (!parseDesc(bundle->desc, c->d, err)) {
      delete c;
      return st = MTLC_ERR_INTERNAL, nullptr;
    }
    const Desc &d = c->d;
    bool ok = c->params.alloc(d.paramCount) && c->grads.alloc(d.paramCount) && c->acts.alloc(d.actsFloats);
    if (d.optimizer == "adam") ok = ok && c->optA.alloc(d.paramCount) && c->optB.alloc(d.paramCount);
    if (d.optimizer == "sgd" && d.momentum != 0) ok = ok && c->optA.alloc(d.paramCount);
    c->trainOutputs.resize(d.tasks.size());
    for (size_t t = 0; t < d.tasks.size(); ++t) {
      ok = ok && c->trainOutputs[t].alloc(d.maxBatch * d.tasks[t].outWidth);
      c->trainOutputPtrs.push_back(c->trainOutputs[t].p);
      c->weights.push_back(d.tasks[t].weight);
    }
    c->losses.assign(d.tasks.size() + 1, 0.0f);
    if (!ok) {
      delete c;
      return st = MTLC_ERR_NOMEM, nullptr;
    }
    c->seed = d.seed;
    if (bundle->weights) std::memcpy(c->params.p, bundle->weights, size_t(d.paramCount) * sizeof(float));
    else initParams(c, d.seed);
  } catch (const std::bad_alloc &) {
    delete c;
    return st = MTLC_ERR_NOMEM, nullptr;
  }
  st = MTLC_OK;
  return c;
}

void mtlc_embed_destroy(mtlc_embed_ctx *ctx) { delete ctx; }

int mtlc_embed_init(mtlc_embed_ctx *c, uint64_t seed) {
  if (!c) return MTLC_ERR_NULL;
  c->seed = seed;
  initParams(c, seed);
  resetOptimizer(c);
  c->error.clear();
  return MTLC_OK;
}

int mtlc_embed_save(mtlc_embed_ctx *c, const char *path) {
  if (!c) return MTLC_ERR_NULL;
  if (!path) return c->fail(MTLC_ERR_NULL, "path is NULL");
  try {
    const Desc &d = c->d;
    std::vector<View> views;
    for (const ParamDesc &p : d.params) views.push_back({p.name, p.shape, c->params.p + p.offset, p.size});
    float stepValue = float(c->optSteps);
    views.push_back({"optim.step", {1}, &stepValue, 1});
    if (d.optimizer == "sgd" && d.momentum != 0) views.push_back({"optim.momentum", {d.paramCount}, c->optA.p, d.paramCount});
    if (d.optimizer == "adam") {
      views.push_back({"optim.m", {d.paramCount}, c->optA.p, d.paramCount});
      views.push_back({"optim.v", {d.paramCount}, c->optB.p, d.paramCount});
    }
    std::map<std::string, std::string> meta{{"format", "mtlc"}, {"model", d.model}, {"optimizer", d.optimizer},
                                            {"steps", std::to_string(c->optSteps)}};
    std::string err;
    int st = writeSafeTensors(path, views, meta, err);
    return st == MTLC_OK ? st : c->fail(st, err);
  } catch (const std::bad_alloc &) {
    return c->fail(MTLC_ERR_NOMEM, "out of memory");
  }
}

int mtlc_embed_load(mtlc_embed_ctx *c, const char *path) {
  if (!c) return MTLC_ERR_NULL;
  if (!path) return c->fail(MTLC_ERR_NULL, "path is NULL");
  try {
    const Desc &d = c->d;
    std::map<std::string, Tensor> tensors;
    std::map<std::string, std::string> meta;
    std::string err, p = path;
    int st = readSafeTensors(p, tensors, meta, err);
    if (st != MTLC_OK) return c->fail(st, err);
    for (const ParamDesc &pd : d.params) {
      auto it = tensors.find(pd.name);
      if (it == tensors.end())
        return c->fail(MTLC_ERR_FORMAT, p + ": parameter `" + pd.name + "` " + shapeStr(pd.shape) + " is missing");
      if (it->second.shape != pd.shape)
        return c->fail(MTLC_ERR_FORMAT, p + ": parameter `" + pd.name + "` has shape " + shapeStr(it->second.shape) +
                                            ", the model expects " + shapeStr(pd.shape));
    }
    for (const auto &[name, t] : tensors) {
      if (name.rfind("optim.", 0) == 0 || name.rfind("mtl.", 0) == 0) continue;
      bool known = false;
      for (const ParamDesc &pd : d.params) known = known || pd.name == name;
      if (!known) return c->fail(MTLC_ERR_FORMAT, p + ": tensor `" + name + "` is not a parameter of model `" + d.model + "`");
    }
    // Optimizer state, when the file has all of it for this optimizer (runtime loadOptimizerState).
    std::vector<std::pair<std::string, Buffer *>> state;
    if (d.optimizer == "sgd" && d.momentum != 0) state.push_back({"optim.momentum", &c->optA});
    if (d.optimizer == "adam") state = {{"optim.m", &c->optA}, {"optim.v", &c->optB}};
    bool withState = tensors.count("optim.step") > 0;
    auto kind = meta.find("optimizer");
    if (kind != meta.end() && kind->second != d.optimizer) withState = false;
    for (const auto &s : state) withState = withState && tensors.count(s.first) > 0;
    if (withState)
      for (const auto &s : state)
        if (int64_t(tensors[s.first].data.size()) != d.paramCount)
          return c->fail(MTLC_ERR_FORMAT, p + ": optimizer state `" + s.first + "` has the wrong size");
    for (const ParamDesc &pd : d.params)
      std::memcpy(c->params.p + pd.offset, tensors[pd.name].data.data(), size_t(pd.size) * sizeof(float));
    resetOptimizer(c);
    if (withState) {
      for (const auto &s : state) std::memcpy(s.second->p, tensors[s.first].data.data(), size_t(d.paramCount) * sizeof(float));
      const auto &stepT = tensors["optim.step"].data;
      c->optSteps = stepT.empty() ? 0 : int64_t(stepT[0]);
    }
    c->error.clear();
    return MTLC_OK;
  } catch (const std::bad_alloc &) {
    return c->fail(MTLC_ERR_NOMEM, "out of memory");
  }
}

int mtlc_embed_train_step(mtlc_embed_ctx *c, int64_t n, const float *const *inputs, const size_t *input_counts,
                          const float *const *labels, const size_t *label_counts, float *task_losses,
                          float *total_loss) {
  if (!c) return MTLC_ERR_NULL;
  if (int st = checkInputs(c, n, inputs, input_counts)) return st;
  const Desc &d = c->d;
  if (!labels || !label_counts) return c->fail(MTLC_ERR_NULL, "labels or their counts are NULL");
  for (size_t t = 0; t < d.tasks.size(); ++t) {
    const TaskDesc &td = d.tasks[t];
    if (!labels[t]) return c->fail(MTLC_ERR_NULL, "labels of task `" + td.name + "` are NULL");
    if (label_counts[t] != size_t(n * td.labelWidth))
      return c->fail(MTLC_ERR_SIZE, "labels of task `" + td.name + "` have " + std::to_string(label_counts[t]) +
                                        " floats, expected n * " + std::to_string(td.labelWidth) + " = " +
                                        std::to_string(n * td.labelWidth));
    for (int64_t k = 0; k < n * td.labelWidth; ++k) {
      const float v = labels[t][k];
      if (std::isnan(v)) continue;  // an absent label: masked out of the loss
      bool okValue = std::isfinite(v);
      if (td.loss == "cross_entropy") okValue = v >= 0 && v < float(td.outWidth) && v == std::floor(v);
      if (td.loss == "bce") okValue = v >= 0 && v <= 1;
      if (!okValue)
        return c->fail(MTLC_ERR_VALUE, "label " + std::to_string(k) + " of task `" + td.name + "` is " + std::to_string(v) +
                                           (td.loss == "cross_entropy" ? ", not a class index in [0, " + std::to_string(td.outWidth) + ")"
                                            : td.loss == "bce"         ? ", not in [0, 1]"
                                                                       : ", not finite"));
    }
  }
  const int64_t step = c->runSteps + 1;
  mtlc_args args{};
  args.params = c->params.p;
  args.grads = c->grads.p;
  args.acts = c->acts.p;
  args.inputs = inputs;
  args.labels = labels;
  args.loss_weights = c->weights.data();
  args.losses = c->losses.data();
  args.outputs = c->trainOutputPtrs.data();
  args.n = n;
  args.seed = mtlc::rt::mix64(mtlc::rt::mix64(c->seed) ^ uint64_t(step));
  c->bundle->train_step(&args);
  const size_t T = d.tasks.size();
  for (size_t t = 0; t <= T; ++t)
    if (!std::isfinite(c->losses[t]))
      return c->fail(MTLC_ERR_NONFINITE, (t < T ? "the loss of task `" + d.tasks[t].name + "`" : std::string("the total loss")) +
                                             " is not finite; the parameters were not updated");
  optimizerStep(c);
  c->runSteps = step;
  if (task_losses) std::memcpy(task_losses, c->losses.data(), T * sizeof(float));
  if (total_loss) *total_loss = c->losses[T];
  return MTLC_OK;
}

int mtlc_embed_predict(mtlc_embed_ctx *c, int64_t n, const float *const *inputs, const size_t *input_counts,
                       float *const *outputs, const size_t *output_counts) {
  if (!c) return MTLC_ERR_NULL;
  if (int st = checkInputs(c, n, inputs, input_counts)) return st;
  const Desc &d = c->d;
  if (!outputs || !output_counts) return c->fail(MTLC_ERR_NULL, "outputs or their counts are NULL");
  for (size_t t = 0; t < d.tasks.size(); ++t) {
    if (!outputs[t]) return c->fail(MTLC_ERR_NULL, "the output of task `" + d.tasks[t].name + "` is NULL");
    if (output_counts[t] != size_t(n * d.tasks[t].outWidth))
      return c->fail(MTLC_ERR_SIZE, "the output of task `" + d.tasks[t].name + "` has room for " +
                                        std::to_string(output_counts[t]) + " floats, expected n * " +
                                        std::to_string(d.tasks[t].outWidth));
  }
  mtlc_args args{};
  args.params = c->params.p;
  args.acts = c->acts.p;
  args.inputs = inputs;
  args.loss_weights = c->weights.data();
  args.losses = c->losses.data();
  args.outputs = outputs;
  args.n = n;
  c->bundle->predict(&args);
  return MTLC_OK;
}

int mtlc_embed_predict_task(mtlc_embed_ctx *c, int task, int64_t n, const float *const *inputs,
                            const size_t *input_counts, float *output, size_t output_count) {
  if (!c) return MTLC_ERR_NULL;
  const Desc &d = c->d;
  if (task < 0 || size_t(task) >= d.tasks.size()) return c->fail(MTLC_ERR_TASK, "no task " + std::to_string(task));
  if (int st = checkInputs(c, n, inputs, input_counts)) return st;
  if (!output) return c->fail(MTLC_ERR_NULL, "the output buffer is NULL");
  if (output_count != size_t(n * d.tasks[size_t(task)].outWidth))
    return c->fail(MTLC_ERR_SIZE, "the output of task `" + d.tasks[size_t(task)].name + "` has room for " +
                                      std::to_string(output_count) + " floats, expected n * " +
                                      std::to_string(d.tasks[size_t(task)].outWidth));
  std::vector<float *> outs(d.tasks.size(), nullptr);
  outs[size_t(task)] = output;
  mtlc_args args{};
  args.params = c->params.p;
  args.acts = c->acts.p;
  args.inputs = inputs;
  args.loss_weights = c->weights.data();
  args.losses = c->losses.data();
  args.outputs = outs.data();
  args.n = n;
  c->bundle->task_predict[task](&args);
  return MTLC_OK;
}

const char *mtlc_embed_strerror(int status) {
  switch (status) {
    case MTLC_OK: return "success";
    case MTLC_ERR_NULL: return "a required pointer argument is NULL";
    case MTLC_ERR_BATCH: return "the batch size n is not in [1, max batch]";
    case MTLC_ERR_SIZE: return "a buffer's element count does not match n times its per-sample size";
    case MTLC_ERR_VALUE: return "a class label or embedding index is out of range";
    case MTLC_ERR_IO: return "a file cannot be read or written";
    case MTLC_ERR_FORMAT: return "the file is not a safetensors checkpoint of this model";
    case MTLC_ERR_NOMEM: return "out of memory";
    case MTLC_ERR_NONFINITE: return "a loss became NaN or infinite";
    case MTLC_ERR_TASK: return "no such task";
    case MTLC_ERR_INTERNAL: return "the compiled bundle is inconsistent (a bug in mtlc)";
    default: return "unknown status";
  }
}

const char *mtlc_embed_last_error(const mtlc_embed_ctx *c) { return c ? c->error.c_str() : ""; }
float *mtlc_embed_params(mtlc_embed_ctx *c) { return c ? c->params.p : nullptr; }
int64_t mtlc_embed_param_count(const mtlc_embed_ctx *c) { return c ? c->d.paramCount : 0; }
int64_t mtlc_embed_steps(const mtlc_embed_ctx *c) { return c ? c->optSteps : 0; }

}  // extern "C"
