// The run-time support of AOT bundles (mtlc_embed.h): contexts, initialisation, the optimizers,
// safetensors checkpoints and argument checks. Self-contained on purpose: the C library and libm
// only. No libstdc++: no standard containers or strings, no exceptions, no RTTI, no operator new
// (CMakeLists builds it with -fno-exceptions -fno-rtti), so that a C program links
// libmtlc_embed.a with `cc ... -lm` alone. Two header-only pieces of the runtime are shared:
// abi.h and Rng.h (std::mt19937_64 is a header template). The rules are the runtime's, restated:
//   init       runtime/train/Init.cpp      (mt19937_64(seed), parameters in table order)
//   optimizers runtime/train/Optimizer.cpp (torch 1.13's sgd / adam, float arithmetic, same order)
//   checkpoint runtime/io/Checkpoint.cpp (parameter names, optim.step / momentum / m / v, metadata;
//              the state prefixes of isStateTensor)
// tests/aot checks that they agree with `mtlc train` step by step.
#include "mtlc_embed.h"

#include "runtime/core/Rng.h"
#include "spec/abi.h"

#include <cctype>
#include <cmath>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>  // placement new only (inline, no library code)

namespace {

using mtlc::rt::Rng;

constexpr int kMaxRank = 8;           // tensors of higher rank are refused as malformed
constexpr size_t kErrorBytes = 1024;  // the context's last-error message, truncated beyond

// ---- owned memory: malloc-based, since operator new and the containers live in libstdc++ ---------

// A growable array of trivially copyable elements.
template <class T>
struct List {
  T *items = nullptr;
  size_t size = 0, cap = 0;
  List() = default;
  List(const List &) = delete;
  List &operator=(const List &) = delete;
  ~List() { std::free(items); }
  bool push(const T &v) {
    if (size == cap) {
      const size_t grown = cap ? 2 * cap : 8;
      void *p = std::realloc(items, grown * sizeof(T));
      if (!p) return false;
      items = static_cast<T *>(p);
      cap = grown;
    }
    items[size++] = v;
    return true;
  }
  T &operator[](size_t i) { return items[i]; }
  const T &operator[](size_t i) const { return items[i]; }
};

// A growable NUL-terminated string; `oom` records a failed allocation (the text is then cut).
struct Text {
  char *s = nullptr;
  size_t len = 0, cap = 0;
  bool oom = false;
  Text() = default;
  Text(const Text &) = delete;
  Text &operator=(const Text &) = delete;
  ~Text() { std::free(s); }
  void append(const char *p, size_t n) {
    if (len + n + 1 > cap) {
      size_t grown = cap ? cap : 64;
      while (grown < len + n + 1) grown *= 2;
      void *q = std::realloc(s, grown);
      if (!q) {
        oom = true;
        return;
      }
      s = static_cast<char *>(q);
      cap = grown;
    }
    std::memcpy(s + len, p, n);
    len += n;
    s[len] = '\0';
  }
  void add(const char *p) { append(p, std::strlen(p)); }
  void addf(const char *format, ...) __attribute__((format(printf, 2, 3))) {
    char buf[512];
    va_list ap;
    va_start(ap, format);
    const int n = std::vsnprintf(buf, sizeof buf, format, ap);
    va_end(ap);
    if (n > 0) append(buf, size_t(n) < sizeof buf ? size_t(n) : sizeof buf - 1);
  }
  const char *c_str() const { return s ? s : ""; }
  bool equals(const char *other) const { return std::strcmp(c_str(), other) == 0; }
};

char *duplicate(const char *s, size_t n) {
  char *p = static_cast<char *>(std::malloc(n + 1));
  if (p) {
    std::memcpy(p, s, n);
    p[n] = '\0';
  }
  return p;
}

bool startsWith(const char *s, const char *prefix) { return std::strncmp(s, prefix, std::strlen(prefix)) == 0; }

// Tensors of a trainer's checkpoint that hold state rather than parameters (runtime/io/Checkpoint.h
// isStateTensor): optimizer state `optim.`, the loss weighting's `mtl.`, and where a run stood,
// `train.` (the AUC's score buffers of a mid-epoch checkpoint, for instance). The embedded API
// restores optim.* for its own optimizer and has no use for the others.
bool isStateTensor(const char *name) {
  return startsWith(name, "optim.") || startsWith(name, "mtl.") || startsWith(name, "train.");
}

// 64-byte aligned, zeroed float storage.
struct Buffer {
  float *p = nullptr;
  int64_t n = 0;
  Buffer() = default;
  Buffer(const Buffer &) = delete;
  Buffer &operator=(const Buffer &) = delete;
  ~Buffer() { std::free(p); }
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
};

// ---- the bundle description (written by compiler/aot/Aot.cpp) ------------------------------------

enum class Optim { Sgd, Adam };
enum class Loss { CrossEntropy, Bce, Mse, L1 };
enum Init { UniformFanIn = 0, Ones = 1, Zeros = 2, Normal = 3, CrossStitch = 4 };  // rt::Init

// Names point into Desc::text (the description's owned copy, split into tokens in place).
struct ParamDesc {
  const char *name;
  int64_t shape[kMaxRank];
  int rank;
  int64_t offset, size, fanIn;
  int init;
  bool frozen;
};
struct InputDesc {
  const char *name;
  int64_t size, categories;
};
struct TaskDesc {
  const char *name;
  Loss loss;
  int64_t outWidth, labelWidth;
  float weight;
};
struct Span {
  int64_t begin, end;
};
struct Desc {
  char *text = nullptr;
  const char *model = "";
  int64_t paramCount = 0, actsFloats = 0, maxBatch = 0;
  uint64_t seed = 0;
  Optim optimizer = Optim::Adam;
  double lr = 1e-3, momentum = 0, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weightDecay = 0;
  List<InputDesc> inputs;
  List<TaskDesc> tasks;
  List<ParamDesc> params;
  List<Span> trainable;  // the parameters that are not frozen, merged, in offset order
  ~Desc() { std::free(text); }
};

bool toInt(const char *t, int64_t &v) {
  if (!t) return false;
  char *end = nullptr;
  v = std::strtoll(t, &end, 10);
  return end != t && *end == '\0';
}
bool toUnsigned(const char *t, uint64_t &v) {
  if (!t) return false;
  char *end = nullptr;
  v = std::strtoull(t, &end, 10);
  return end != t && *end == '\0';
}
bool toDouble(const char *t, double &v) {
  if (!t) return false;
  char *end = nullptr;
  v = std::strtod(t, &end);
  return end != t && *end == '\0';
}

bool parseLoss(const char *s, Loss &l) {
  if (!s) return false;
  if (!std::strcmp(s, "cross_entropy")) l = Loss::CrossEntropy;
  else if (!std::strcmp(s, "bce")) l = Loss::Bce;
  else if (!std::strcmp(s, "mse")) l = Loss::Mse;
  else if (!std::strcmp(s, "l1")) l = Loss::L1;
  else return false;
  return true;
}

// One line of the description, split at spaces in place. Tokens past the end are NULL.
struct Line {
  enum { kMax = 8 + kMaxRank };
  const char *tok[kMax + 1] = {};
  int count = 0;
  explicit Line(char *s) {
    while (*s) {
      while (*s == ' ') *s++ = '\0';
      if (!*s) break;
      if (count == kMax) {
        count = kMax + 1;  // too many fields
        return;
      }
      tok[count++] = s;
      while (*s && *s != ' ') ++s;
    }
  }
  bool is(const char *key) const { return count > 0 && std::strcmp(tok[0], key) == 0; }
};

bool parseRecord(const Line &l, Desc &d) {
  const char *const *t = l.tok;
  if (l.is("mtlc-bundle")) {
    int64_t version = 0;
    return toInt(t[1], version) && version == 1;
  }
  if (l.is("model")) return t[1] ? (d.model = t[1], true) : false;
  if (l.is("sizes")) return toInt(t[1], d.paramCount) && toInt(t[2], d.actsFloats) && toInt(t[3], d.maxBatch);
  if (l.is("seed")) return toUnsigned(t[1], d.seed);
  if (l.is("optimizer")) {
    if (!t[1] || (std::strcmp(t[1], "sgd") && std::strcmp(t[1], "adam"))) return false;
    d.optimizer = std::strcmp(t[1], "sgd") ? Optim::Adam : Optim::Sgd;
    return toDouble(t[2], d.lr) && toDouble(t[3], d.momentum) && toDouble(t[4], d.beta1) &&
           toDouble(t[5], d.beta2) && toDouble(t[6], d.eps) && toDouble(t[7], d.weightDecay);
  }
  if (l.is("input")) {
    InputDesc in{t[1], 0, 0};
    return in.name && toInt(t[2], in.size) && toInt(t[3], in.categories) && d.inputs.push(in);
  }
  if (l.is("task")) {
    TaskDesc task{t[1], Loss::Mse, 1, 1, 1};
    double weight = 1;
    bool ok = task.name && parseLoss(t[2], task.loss) && toInt(t[3], task.outWidth) &&
              toInt(t[4], task.labelWidth) && toDouble(t[5], weight);
    task.weight = float(weight);
    return ok && d.tasks.push(task);
  }
  if (l.is("param")) {
    ParamDesc p{};
    p.name = t[1];
    int64_t init = 0, frozen = 0, rank = 0;
    if (!p.name || !toInt(t[2], p.offset) || !toInt(t[3], p.size) || !toInt(t[4], init) ||
        !toInt(t[5], p.fanIn) || !toInt(t[6], frozen) || !toInt(t[7], rank) || rank < 0 || rank > kMaxRank)
      return false;
    p.init = int(init);
    p.frozen = frozen != 0;
    p.rank = int(rank);
    for (int r = 0; r < p.rank; ++r)
      if (!toInt(t[8 + r], p.shape[r])) return false;
    return d.params.push(p);
  }
  return true;  // a record of a later version: ignored
}

// Merges the spans of the parameters that are not frozen, in offset order (runtime trainableSpans).
bool buildTrainableSpans(Desc &d) {
  for (size_t i = 0; i < d.params.size; ++i) {
    const ParamDesc &p = d.params[i];
    if (p.frozen || p.size <= 0) continue;
    if (!d.trainable.push({p.offset, p.offset + p.size})) return false;
    for (size_t k = d.trainable.size - 1; k > 0 && d.trainable[k].begin < d.trainable[k - 1].begin; --k) {
      const Span s = d.trainable[k];
      d.trainable[k] = d.trainable[k - 1];
      d.trainable[k - 1] = s;
    }
  }
  size_t merged = 0;
  for (size_t i = 0; i < d.trainable.size; ++i) {
    const Span s = d.trainable[i];
    if (merged > 0 && s.begin <= d.trainable[merged - 1].end) {
      if (s.end > d.trainable[merged - 1].end) d.trainable[merged - 1].end = s.end;
    } else {
      d.trainable[merged++] = s;
    }
  }
  d.trainable.size = merged;
  return true;
}

// MTLC_OK, MTLC_ERR_NOMEM or MTLC_ERR_INTERNAL (a description this library cannot use).
int parseDesc(const char *text, Desc &d) {
  d.text = duplicate(text, std::strlen(text));
  if (!d.text) return MTLC_ERR_NOMEM;
  for (char *line = d.text; line;) {
    char *next = std::strchr(line, '\n');
    if (next) *next++ = '\0';
    Line l(line);
    if (l.count > Line::kMax || (l.count > 0 && !parseRecord(l, d))) return MTLC_ERR_INTERNAL;
    line = next;
  }
  if (d.paramCount < 0 || d.actsFloats < 0 || d.maxBatch < 1 || d.tasks.size == 0) return MTLC_ERR_INTERNAL;
  for (size_t i = 0; i < d.params.size; ++i) {
    const ParamDesc &p = d.params[i];
    if (p.offset < 0 || p.size < 0 || p.offset + p.size > d.paramCount) return MTLC_ERR_INTERNAL;
  }
  return buildTrainableSpans(d) ? MTLC_OK : MTLC_ERR_NOMEM;
}

void shapeText(Text &out, const int64_t *shape, int rank) {
  out.add("[");
  for (int i = 0; i < rank; ++i) out.addf("%s%lld", i ? ", " : "", (long long)shape[i]);
  out.add("]");
}

// ---- safetensors (F32 only), the format of runtime/io/SafeTensors.h -------------------------------

struct TensorEntry {
  char *name;
  int64_t shape[kMaxRank];
  int rank;
  const unsigned char *data;  // into TensorFile::bytes (unaligned: read with memcpy)
  int64_t count;
};

struct TensorFile {
  unsigned char *bytes = nullptr;
  size_t size = 0;
  List<TensorEntry> tensors;
  Text optimizer;  // metadata `optimizer`, when present
  bool hasOptimizer = false;
  TensorFile() = default;
  TensorFile(const TensorFile &) = delete;
  TensorFile &operator=(const TensorFile &) = delete;
  ~TensorFile() {
    for (size_t i = 0; i < tensors.size; ++i) std::free(tensors[i].name);
    std::free(bytes);
  }
  const TensorEntry *find(const char *name) const {
    for (size_t i = 0; i < tensors.size; ++i)
      if (!std::strcmp(tensors[i].name, name)) return &tensors[i];
    return nullptr;
  }
};

// A JSON reader over the header, enough for safetensors: it decodes what the loader needs and
// skips every other value. (No tree of values: issue #31's recursive std::vector member of an
// incomplete type, which clang++ with libstdc++ refused, is gone with it.)
struct JsonCursor {
  const char *s, *e;
  void ws() {
    while (s < e && (*s == ' ' || *s == '\n' || *s == '\t' || *s == '\r')) ++s;
  }
  bool lit(char c) {
    ws();
    if (s < e && *s == c) return ++s, true;
    return false;
  }
  bool string(Text &out) {
    ws();
    if (s >= e || *s != '"') return false;
    ++s;
    while (s < e && *s != '"') {
      if (*s != '\\') {
        out.append(s++, 1);
        continue;
      }
      if (++s >= e) return false;
      char c = *s++;
      if (c == 'u') {  // names are ASCII in practice; keep \uXXXX below 0x80 only
        if (e - s < 4) return false;
        char hex[5] = {s[0], s[1], s[2], s[3], '\0'};
        const unsigned long v = std::strtoul(hex, nullptr, 16);
        c = v < 0x80 ? char(v) : '?';
        s += 4;
      } else {
        c = c == 'n' ? '\n' : c == 't' ? '\t' : c == 'r' ? '\r' : c == 'b' ? '\b' : c == 'f' ? '\f' : c;
      }
      out.append(&c, 1);
    }
    if (s >= e) return false;
    ++s;
    return !out.oom;
  }
  bool number(double &v) {
    ws();
    char buf[64];
    size_t n = 0;
    while (s < e && n + 1 < sizeof buf &&
           (std::isdigit((unsigned char)*s) || *s == '-' || *s == '+' || *s == '.' || *s == 'e' || *s == 'E'))
      buf[n++] = *s++;
    buf[n] = '\0';
    char *end = nullptr;
    v = std::strtod(buf, &end);
    return n > 0 && end == buf + n;
  }
  bool skip(int depth = 0) {
    if (depth > 8) return false;
    ws();
    if (s >= e) return false;
    if (*s == '"') {
      Text ignored;
      return string(ignored);
    }
    if (*s == '{' || *s == '[') {
      const char close = *s == '{' ? '}' : ']';
      const bool object = *s == '{';
      ++s;
      if (lit(close)) return true;
      do {
        if (object) {
          Text key;
          if (!string(key) || !lit(':')) return false;
        }
        if (!skip(depth + 1)) return false;
      } while (lit(','));
      return lit(close);
    }
    for (const char *word : {"null", "true", "false"}) {
      const size_t n = std::strlen(word);
      if (size_t(e - s) >= n && std::strncmp(s, word, n) == 0) return s += n, true;
    }
    double ignored;
    return number(ignored);
  }
  // `[n, n, ...]` of non-negative integers, at most `cap` of them.
  bool integers(int64_t *out, int cap, int &count) {
    count = 0;
    if (!lit('[')) return false;
    if (lit(']')) return true;
    do {
      double v;
      if (count == cap || !number(v) || v < 0 || v != std::floor(v) || v > 9.0e15) return false;
      out[count++] = int64_t(v);
    } while (lit(','));
    return lit(']');
  }
};

// Writes a message into a context's error buffer and returns the status.
struct Failure {
  char *msg;  // kErrorBytes
  int fail(int status, const char *format, ...) __attribute__((format(printf, 3, 4))) {
    va_list ap;
    va_start(ap, format);
    std::vsnprintf(msg, kErrorBytes, format, ap);
    va_end(ap);
    return status;
  }
};

// `{"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}` of tensor `name`.
int readTensorEntry(JsonCursor &c, const char *path, const char *name, uint64_t dataSize,
                    const unsigned char *data, TensorEntry &t, Failure &f) {
  bool haveDtype = false, haveShape = false, haveOffsets = false;
  Text dtype;
  int64_t offsets[2] = {0, 0};
  if (!c.lit('{')) return f.fail(MTLC_ERR_FORMAT, "%s: tensor `%s` has a malformed header entry", path, name);
  if (!c.lit('}')) do {
      Text key;
      if (!c.string(key) || !c.lit(':'))
        return f.fail(MTLC_ERR_FORMAT, "%s: tensor `%s` has a malformed header entry", path, name);
      bool ok = true;
      int count = 0;
      if (key.equals("dtype")) ok = haveDtype = c.string(dtype);
      else if (key.equals("shape")) ok = haveShape = c.integers(t.shape, kMaxRank, t.rank);
      else if (key.equals("data_offsets")) ok = haveOffsets = c.integers(offsets, 2, count) && count == 2;
      else ok = c.skip();
      if (!ok) return f.fail(MTLC_ERR_FORMAT, "%s: tensor `%s` has a malformed `%s`", path, name, key.c_str());
    } while (c.lit(','));
  if (!c.lit('}') || !haveDtype || !haveShape || !haveOffsets)
    return f.fail(MTLC_ERR_FORMAT, "%s: tensor `%s` has a malformed header entry", path, name);
  if (!dtype.equals("F32"))
    return f.fail(MTLC_ERR_FORMAT, "%s: tensor `%s` has dtype %s (only F32 is supported)", path, name, dtype.c_str());
  uint64_t count = 1;
  for (int i = 0; i < t.rank; ++i) count *= uint64_t(t.shape[i]);
  const uint64_t begin = uint64_t(offsets[0]), end = uint64_t(offsets[1]);
  if (begin > end || end > dataSize || end - begin != count * 4)
    return f.fail(MTLC_ERR_FORMAT, "%s: tensor `%s` has data offsets that do not fit its shape or the file", path,
                  name);
  t.data = data + begin;
  t.count = int64_t(count);
  return MTLC_OK;
}

// The `__metadata__` object: string values; only `optimizer` is kept.
bool readMetadata(JsonCursor &c, TensorFile &file) {
  if (!c.lit('{')) return false;
  if (c.lit('}')) return true;
  do {
    Text key;
    if (!c.string(key) || !c.lit(':')) return false;
    if (key.equals("optimizer")) {
      if (!c.string(file.optimizer)) return false;
      file.hasOptimizer = true;
    } else if (!c.skip()) {
      return false;
    }
  } while (c.lit(','));
  return c.lit('}');
}

int readWholeFile(const char *path, TensorFile &file, Failure &f) {
  FILE *in = std::fopen(path, "rb");
  if (!in) return f.fail(MTLC_ERR_IO, "%s: cannot open the file for reading", path);
  size_t cap = 1 << 16;
  file.bytes = static_cast<unsigned char *>(std::malloc(cap));
  size_t got = 0;
  while (file.bytes) {
    if (got == cap) {
      void *grown = std::realloc(file.bytes, cap * 2);
      if (!grown) break;
      file.bytes = static_cast<unsigned char *>(grown);
      cap *= 2;
    }
    const size_t n = std::fread(file.bytes + got, 1, cap - got, in);
    got += n;
    if (n == 0) break;
  }
  const bool readError = std::ferror(in) != 0, oom = !file.bytes || (got == cap && !std::feof(in));
  std::fclose(in);
  file.size = got;
  if (oom) return f.fail(MTLC_ERR_NOMEM, "%s: out of memory reading the file", path);
  if (readError) return f.fail(MTLC_ERR_IO, "%s: read error", path);
  return MTLC_OK;
}

int readSafeTensors(const char *path, TensorFile &file, Failure &f) {
  if (int st = readWholeFile(path, file, f)) return st;
  if (file.size < 8) return f.fail(MTLC_ERR_FORMAT, "%s: not a safetensors file (too short)", path);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | file.bytes[i];
  if (n > file.size - 8) return f.fail(MTLC_ERR_FORMAT, "%s: not a safetensors file (header length)", path);
  JsonCursor c{reinterpret_cast<const char *>(file.bytes) + 8, reinterpret_cast<const char *>(file.bytes) + 8 + n};
  const unsigned char *data = file.bytes + 8 + n;
  const uint64_t dataSize = file.size - 8 - n;
  auto malformed = [&] {
    return f.fail(MTLC_ERR_FORMAT, "%s: the safetensors header is not a valid JSON object", path);
  };
  if (!c.lit('{')) return malformed();
  if (c.lit('}')) return MTLC_OK;
  do {
    Text name;
    if (!c.string(name) || !c.lit(':')) return malformed();
    if (name.equals("__metadata__")) {
      if (!readMetadata(c, file)) return malformed();
      continue;
    }
    TensorEntry t{};
    if (int st = readTensorEntry(c, path, name.c_str(), dataSize, data, t, f)) return st;
    t.name = duplicate(name.c_str(), name.len);
    if (!t.name || !file.tensors.push(t)) {
      std::free(t.name);
      return f.fail(MTLC_ERR_NOMEM, "out of memory");
    }
  } while (c.lit(','));
  return c.lit('}') ? MTLC_OK : malformed();
}

struct View {
  const char *name;
  const int64_t *shape;
  int rank;
  const float *data;
  int64_t count;
};

void jsonString(Text &out, const char *s) {
  out.add("\"");
  for (; *s; ++s) {
    if (*s == '"' || *s == '\\') out.add("\\");
    out.append(s, 1);
  }
  out.add("\"");
}

// Metadata pairs in key order (as std::map wrote them), written atomically: a temporary file, then
// a rename.
int writeSafeTensors(const char *path, const View *views, size_t count, const char *const (*meta)[2],
                     size_t metaCount, Failure &f) {
  Text h;
  h.add("{");
  uint64_t off = 0;
  for (size_t i = 0; i < count; ++i) {
    const View &v = views[i];
    jsonString(h, v.name);
    h.add(":{\"dtype\":\"F32\",\"shape\":[");
    for (int r = 0; r < v.rank; ++r) h.addf("%s%lld", r ? "," : "", (long long)v.shape[r]);
    h.addf("],\"data_offsets\":[%llu,%llu]},", (unsigned long long)off,
           (unsigned long long)(off + uint64_t(v.count) * 4));
    off += uint64_t(v.count) * 4;
  }
  h.add("\"__metadata__\":{");
  for (size_t i = 0; i < metaCount; ++i) {
    if (i) h.add(",");
    jsonString(h, meta[i][0]);
    h.add(":");
    jsonString(h, meta[i][1]);
  }
  h.add("}}");
  while ((8 + h.len) % 8) h.add(" ");
  Text tmp;
  tmp.add(path);
  tmp.add(".tmp");
  if (h.oom || tmp.oom) return f.fail(MTLC_ERR_NOMEM, "out of memory");
  FILE *out = std::fopen(tmp.c_str(), "wb");
  if (!out) return f.fail(MTLC_ERR_IO, "%s: cannot open a temporary file for writing", path);
  unsigned char len[8];
  for (int i = 0; i < 8; ++i) len[i] = (unsigned char)(uint64_t(h.len) >> (8 * i));
  bool ok = std::fwrite(len, 1, 8, out) == 8 && std::fwrite(h.s, 1, h.len, out) == h.len;
  for (size_t i = 0; i < count; ++i)
    ok = ok && (views[i].count == 0 ||
                std::fwrite(views[i].data, 4, size_t(views[i].count), out) == size_t(views[i].count));
  ok = (std::fflush(out) == 0) && ok;
  ok = (std::fclose(out) == 0) && ok;
  if (!ok || std::rename(tmp.c_str(), path) != 0) {
    std::remove(tmp.c_str());
    return f.fail(MTLC_ERR_IO, "%s: write failed", path);
  }
  return MTLC_OK;
}

}  // namespace

struct mtlc_embed_ctx {
  const mtlc_embed_bundle *bundle = nullptr;
  Desc d;
  Buffer params, grads, acts, optA, optB;  // optA/optB: sgd momentum, or adam m / v
  float **trainOutputs = nullptr;           // T heads train_step writes (the API does not return them)
  float **taskOutputs = nullptr;            // T pointers, scratch of predict_task
  float *losses = nullptr;                  // T + 1
  float *weights = nullptr;                 // T loss weights
  int64_t optSteps = 0;   // optimizer steps (adam's t; optim.step in checkpoints)
  int64_t runSteps = 0;   // train steps since create / init / load (dropout stream index)
  uint64_t seed = 0;
  char error[kErrorBytes] = {};

  mtlc_embed_ctx() = default;
  mtlc_embed_ctx(const mtlc_embed_ctx &) = delete;
  mtlc_embed_ctx &operator=(const mtlc_embed_ctx &) = delete;
  ~mtlc_embed_ctx() {
    for (size_t t = 0; trainOutputs && t < d.tasks.size; ++t) std::free(trainOutputs[t]);
    std::free(trainOutputs);
    std::free(taskOutputs);
    std::free(losses);
    std::free(weights);
  }
  Failure failure() { return Failure{error}; }
  int fail(int status, const char *format, ...) __attribute__((format(printf, 3, 4))) {
    va_list ap;
    va_start(ap, format);
    std::vsnprintf(error, sizeof error, format, ap);
    va_end(ap);
    return status;
  }
};

namespace {

void initParams(mtlc_embed_ctx *c, uint64_t seed) {
  Rng rng(seed);
  float *arena = c->params.p;
  for (size_t i = 0; i < c->d.params.size; ++i) {
    const ParamDesc &p = c->d.params[i];
    float *w = arena + p.offset;
    switch (p.init) {
      case UniformFanIn: {
        const double bound = 1.0 / std::sqrt(double(p.fanIn > 0 ? p.fanIn : 1));
        for (int64_t k = 0; k < p.size; ++k) w[k] = float(-bound + 2.0 * bound * mtlc::rt::uniform01(rng));
        break;
      }
      case Ones:
        for (int64_t k = 0; k < p.size; ++k) w[k] = 1.0f;
        break;
      case Zeros:
        for (int64_t k = 0; k < p.size; ++k) w[k] = 0.0f;
        break;
      case Normal:
        for (int64_t k = 0; k < p.size; ++k) w[k] = float(mtlc::rt::standardNormal(rng));
        break;
      case CrossStitch: {
        const int64_t T = p.rank == 0 ? 1 : p.shape[0];
        const float off = T > 1 ? 0.1f / float(T - 1) : 0.0f;
        for (int64_t r = 0; r < T; ++r)
          for (int64_t col = 0; col < T && r * T + col < p.size; ++col)
            w[r * T + col] = r == col ? (T > 1 ? 0.9f : 1.0f) : off;
        break;
      }
    }
  }
}

void sgdSpan(const Desc &d, int64_t t, float *p, const float *grad, float *buf, int64_t count) {
  const float lr = float(d.lr), mu = float(d.momentum), wd = float(d.weightDecay);
  for (int64_t i = 0; i < count; ++i) {
    float g = grad[i];
    if (wd != 0) g = g + wd * p[i];
    if (mu != 0) {
      buf[i] = t == 1 ? g : mu * buf[i] + g;
      g = buf[i];
    }
    p[i] = p[i] - lr * g;
  }
}

void adamSpan(const Desc &d, int64_t t, float *p, const float *grad, float *m, float *v, int64_t count) {
  const double bias1 = 1.0 - std::pow(d.beta1, double(t));
  const double bias2 = 1.0 - std::pow(d.beta2, double(t));
  const float stepSize = float(d.lr / bias1);
  const float bias2Sqrt = float(std::sqrt(bias2));
  const float beta1 = float(d.beta1), beta2 = float(d.beta2), eps = float(d.eps), wd = float(d.weightDecay);
  const float oneMinusBeta1 = float(1.0 - d.beta1), oneMinusBeta2 = float(1.0 - d.beta2);
  for (int64_t i = 0; i < count; ++i) {
    float g = grad[i];
    if (wd != 0) g = g + wd * p[i];
    m[i] = m[i] * beta1 + oneMinusBeta1 * g;
    v[i] = v[i] * beta2 + oneMinusBeta2 * g * g;
    const float denom = std::sqrt(v[i]) / bias2Sqrt + eps;
    p[i] = p[i] - stepSize * (m[i] / denom);
  }
}

// The optimizer step over every parameter that is not frozen (runtime/train/Optimizer.cpp's loops);
// frozen parameters keep their values and state.
void optimizerStep(mtlc_embed_ctx *c) {
  const Desc &d = c->d;
  const int64_t t = ++c->optSteps;
  for (size_t s = 0; s < d.trainable.size; ++s) {
    const int64_t b = d.trainable[s].begin, n = d.trainable[s].end - b;
    if (d.optimizer == Optim::Sgd)
      sgdSpan(d, t, c->params.p + b, c->grads.p + b, c->optA.p ? c->optA.p + b : nullptr, n);
    else
      adamSpan(d, t, c->params.p + b, c->grads.p + b, c->optA.p + b, c->optB.p + b, n);
  }
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
    return c->fail(MTLC_ERR_BATCH, "n = %lld is not in [1, %lld]", (long long)n, (long long)d.maxBatch);
  if (!inputs || !counts) return c->fail(MTLC_ERR_NULL, "inputs or their counts are NULL");
  for (size_t i = 0; i < d.inputs.size; ++i) {
    const InputDesc &in = d.inputs[i];
    if (!inputs[i]) return c->fail(MTLC_ERR_NULL, "input `%s` is NULL", in.name);
    if (counts[i] != size_t(n * in.size))
      return c->fail(MTLC_ERR_SIZE, "input `%s` has %zu floats, expected n * %lld = %lld", in.name, counts[i],
                     (long long)in.size, (long long)(n * in.size));
    if (in.categories > 0)
      for (int64_t k = 0; k < n * in.size; ++k) {
        const float v = inputs[i][k];
        if (!(v >= 0 && v < float(in.categories) && v == std::floor(v)))
          return c->fail(MTLC_ERR_VALUE, "input `%s` element %lld is %g, not an index in [0, %lld)", in.name,
                         (long long)k, double(v), (long long)in.categories);
      }
  }
  return MTLC_OK;
}

int checkLabels(mtlc_embed_ctx *c, int64_t n, const float *const *labels, const size_t *counts) {
  const Desc &d = c->d;
  if (!labels || !counts) return c->fail(MTLC_ERR_NULL, "labels or their counts are NULL");
  for (size_t t = 0; t < d.tasks.size; ++t) {
    const TaskDesc &td = d.tasks[t];
    if (!labels[t]) return c->fail(MTLC_ERR_NULL, "labels of task `%s` are NULL", td.name);
    if (counts[t] != size_t(n * td.labelWidth))
      return c->fail(MTLC_ERR_SIZE, "labels of task `%s` have %zu floats, expected n * %lld = %lld", td.name,
                     counts[t], (long long)td.labelWidth, (long long)(n * td.labelWidth));
    for (int64_t k = 0; k < n * td.labelWidth; ++k) {
      const float v = labels[t][k];
      if (std::isnan(v)) continue;  // an absent label: masked out of the loss
      bool okValue = std::isfinite(v);
      const char *expected = ", not finite";
      if (td.loss == Loss::CrossEntropy) {
        okValue = v >= 0 && v < float(td.outWidth) && v == std::floor(v);
        expected = ", not a class index of the head";
      } else if (td.loss == Loss::Bce) {
        okValue = v >= 0 && v <= 1;
        expected = ", not in [0, 1]";
      }
      if (!okValue)
        return c->fail(MTLC_ERR_VALUE, "label %lld of task `%s` is %g%s", (long long)k, td.name, double(v), expected);
    }
  }
  return MTLC_OK;
}

// Allocates the arenas and per-task buffers of a context whose description is parsed.
bool allocateArenas(mtlc_embed_ctx *c) {
  const Desc &d = c->d;
  const size_t T = d.tasks.size;
  bool ok = c->params.alloc(d.paramCount) && c->grads.alloc(d.paramCount) && c->acts.alloc(d.actsFloats);
  if (d.optimizer == Optim::Adam) ok = ok && c->optA.alloc(d.paramCount) && c->optB.alloc(d.paramCount);
  if (d.optimizer == Optim::Sgd && d.momentum != 0) ok = ok && c->optA.alloc(d.paramCount);
  c->trainOutputs = static_cast<float **>(std::calloc(T, sizeof(float *)));
  c->taskOutputs = static_cast<float **>(std::calloc(T, sizeof(float *)));
  c->losses = static_cast<float *>(std::calloc(T + 1, sizeof(float)));
  c->weights = static_cast<float *>(std::calloc(T, sizeof(float)));
  ok = ok && c->trainOutputs && c->taskOutputs && c->losses && c->weights;
  for (size_t t = 0; ok && t < T; ++t) {
    const size_t bytes = (size_t(d.maxBatch * d.tasks[t].outWidth) * sizeof(float) + 63) / 64 * 64;
    c->trainOutputs[t] = static_cast<float *>(std::aligned_alloc(64, bytes ? bytes : 64));
    c->weights[t] = d.tasks[t].weight;
    ok = c->trainOutputs[t] != nullptr;
  }
  return ok;
}

void destroyContext(mtlc_embed_ctx *c) {
  if (!c) return;
  c->~mtlc_embed_ctx();
  std::free(c);
}

// Every parameter with its exact shape; any other tensor must be state (isStateTensor).
int checkParamsOf(mtlc_embed_ctx *c, const TensorFile &file, const char *path) {
  const Desc &d = c->d;
  for (size_t i = 0; i < d.params.size; ++i) {
    const ParamDesc &pd = d.params[i];
    const TensorEntry *t = file.find(pd.name);
    bool sameShape = t && t->rank == pd.rank;
    for (int r = 0; sameShape && r < pd.rank; ++r) sameShape = t->shape[r] == pd.shape[r];
    if (sameShape) continue;
    Text expected, got;
    shapeText(expected, pd.shape, pd.rank);
    if (!t) return c->fail(MTLC_ERR_FORMAT, "%s: parameter `%s` %s is missing", path, pd.name, expected.c_str());
    shapeText(got, t->shape, t->rank);
    return c->fail(MTLC_ERR_FORMAT, "%s: parameter `%s` has shape %s, the model expects %s", path, pd.name,
                   got.c_str(), expected.c_str());
  }
  for (size_t i = 0; i < file.tensors.size; ++i) {
    const char *name = file.tensors[i].name;
    if (isStateTensor(name)) continue;
    bool known = false;
    for (size_t k = 0; k < d.params.size && !known; ++k) known = !std::strcmp(d.params[k].name, name);
    if (!known)
      return c->fail(MTLC_ERR_FORMAT, "%s: tensor `%s` is not a parameter of model `%s`", path, name, d.model);
  }
  return MTLC_OK;
}

}  // namespace

extern "C" {

mtlc_embed_ctx *mtlc_embed_create(const mtlc_embed_bundle *bundle, int *status) {
  int dummy;
  int &st = status ? *status : dummy;
  if (!bundle || !bundle->desc || !bundle->train_step || !bundle->predict) return st = MTLC_ERR_NULL, nullptr;
  void *memory = std::calloc(1, sizeof(mtlc_embed_ctx));
  if (!memory) return st = MTLC_ERR_NOMEM, nullptr;
  auto *c = new (memory) mtlc_embed_ctx;
  c->bundle = bundle;
  if (int parsed = parseDesc(bundle->desc, c->d)) {
    destroyContext(c);
    return st = parsed, nullptr;
  }
  if (!allocateArenas(c)) {
    destroyContext(c);
    return st = MTLC_ERR_NOMEM, nullptr;
  }
  c->seed = c->d.seed;
  if (bundle->weights) std::memcpy(c->params.p, bundle->weights, size_t(c->d.paramCount) * sizeof(float));
  else initParams(c, c->d.seed);
  st = MTLC_OK;
  return c;
}

void mtlc_embed_destroy(mtlc_embed_ctx *ctx) { destroyContext(ctx); }

int mtlc_embed_init(mtlc_embed_ctx *c, uint64_t seed) {
  if (!c) return MTLC_ERR_NULL;
  c->seed = seed;
  initParams(c, seed);
  resetOptimizer(c);
  c->error[0] = '\0';
  return MTLC_OK;
}

int mtlc_embed_save(mtlc_embed_ctx *c, const char *path) {
  if (!c) return MTLC_ERR_NULL;
  if (!path) return c->fail(MTLC_ERR_NULL, "path is NULL");
  const Desc &d = c->d;
  List<View> views;
  bool ok = true;
  for (size_t i = 0; i < d.params.size; ++i) {
    const ParamDesc &p = d.params[i];
    ok = ok && views.push({p.name, p.shape, p.rank, c->params.p + p.offset, p.size});
  }
  const float stepValue = float(c->optSteps);
  const int64_t one = 1, arena = d.paramCount;
  ok = ok && views.push({"optim.step", &one, 1, &stepValue, 1});
  if (d.optimizer == Optim::Sgd && d.momentum != 0)
    ok = ok && views.push({"optim.momentum", &arena, 1, c->optA.p, d.paramCount});
  if (d.optimizer == Optim::Adam)
    ok = ok && views.push({"optim.m", &arena, 1, c->optA.p, d.paramCount}) &&
         views.push({"optim.v", &arena, 1, c->optB.p, d.paramCount});
  if (!ok) return c->fail(MTLC_ERR_NOMEM, "out of memory");
  char steps[32];
  std::snprintf(steps, sizeof steps, "%lld", (long long)c->optSteps);
  const char *const meta[][2] = {{"format", "mtlc"},
                                 {"model", d.model},
                                 {"optimizer", d.optimizer == Optim::Sgd ? "sgd" : "adam"},
                                 {"steps", steps}};
  Failure f = c->failure();
  return writeSafeTensors(path, views.items, views.size, meta, 4, f);
}

int mtlc_embed_load(mtlc_embed_ctx *c, const char *path) {
  if (!c) return MTLC_ERR_NULL;
  if (!path) return c->fail(MTLC_ERR_NULL, "path is NULL");
  const Desc &d = c->d;
  TensorFile file;
  Failure f = c->failure();
  if (int st = readSafeTensors(path, file, f)) return st;
  if (int st = checkParamsOf(c, file, path)) return st;
  // Optimizer state, when the file has all of it for this optimizer (runtime loadOptimizerState).
  struct State {
    const char *name;
    Buffer *into;
  } state[2] = {{"optim.m", &c->optA}, {"optim.v", &c->optB}};
  size_t stateCount = d.optimizer == Optim::Adam ? 2 : 0;
  if (d.optimizer == Optim::Sgd && d.momentum != 0) {
    state[0] = {"optim.momentum", &c->optA};
    stateCount = 1;
  }
  const TensorEntry *stepT = file.find("optim.step");
  bool withState = stepT != nullptr;
  if (file.hasOptimizer && !file.optimizer.equals(d.optimizer == Optim::Sgd ? "sgd" : "adam")) withState = false;
  for (size_t s = 0; s < stateCount; ++s) withState = withState && file.find(state[s].name);
  for (size_t s = 0; withState && s < stateCount; ++s)
    if (file.find(state[s].name)->count != d.paramCount)
      return c->fail(MTLC_ERR_FORMAT, "%s: optimizer state `%s` has the wrong size", path, state[s].name);
  float step = 0;
  if (withState && stepT->count > 0) std::memcpy(&step, stepT->data, sizeof step);
  // The count becomes an int64: NaN, a negative or a fraction is no step count, and converting
  // one beyond int64's range is undefined behaviour.
  if (withState && !(step >= 0 && step < 0x1p62f && step == std::floor(step)))
    return c->fail(MTLC_ERR_FORMAT, "%s: `optim.step` is %g, not a step count", path, double(step));
  for (size_t i = 0; i < d.params.size; ++i) {
    const ParamDesc &pd = d.params[i];
    std::memcpy(c->params.p + pd.offset, file.find(pd.name)->data, size_t(pd.size) * sizeof(float));
  }
  resetOptimizer(c);
  if (withState) {
    for (size_t s = 0; s < stateCount; ++s)
      std::memcpy(state[s].into->p, file.find(state[s].name)->data, size_t(d.paramCount) * sizeof(float));
    c->optSteps = int64_t(step);
  }
  c->error[0] = '\0';
  return MTLC_OK;
}

int mtlc_embed_train_step(mtlc_embed_ctx *c, int64_t n, const float *const *inputs, const size_t *input_counts,
                          const float *const *labels, const size_t *label_counts, float *task_losses,
                          float *total_loss) {
  if (!c) return MTLC_ERR_NULL;
  if (int st = checkInputs(c, n, inputs, input_counts)) return st;
  if (int st = checkLabels(c, n, labels, label_counts)) return st;
  const Desc &d = c->d;
  const int64_t step = c->runSteps + 1;
  mtlc_args args{};
  args.params = c->params.p;
  args.grads = c->grads.p;
  args.acts = c->acts.p;
  args.inputs = inputs;
  args.labels = labels;
  args.loss_weights = c->weights;
  args.losses = c->losses;
  args.outputs = c->trainOutputs;
  args.n = n;
  args.seed = mtlc::rt::mix64(mtlc::rt::mix64(c->seed) ^ uint64_t(step));
  c->bundle->train_step(&args);
  const size_t T = d.tasks.size;
  for (size_t t = 0; t <= T; ++t)
    if (!std::isfinite(c->losses[t])) {
      if (t < T)
        return c->fail(MTLC_ERR_NONFINITE, "the loss of task `%s` is not finite; the parameters were not updated",
                       d.tasks[t].name);
      return c->fail(MTLC_ERR_NONFINITE, "the total loss is not finite; the parameters were not updated");
    }
  optimizerStep(c);
  c->runSteps = step;
  if (task_losses) std::memcpy(task_losses, c->losses, T * sizeof(float));
  if (total_loss) *total_loss = c->losses[T];
  return MTLC_OK;
}

int mtlc_embed_predict(mtlc_embed_ctx *c, int64_t n, const float *const *inputs, const size_t *input_counts,
                       float *const *outputs, const size_t *output_counts) {
  if (!c) return MTLC_ERR_NULL;
  if (int st = checkInputs(c, n, inputs, input_counts)) return st;
  const Desc &d = c->d;
  if (!outputs || !output_counts) return c->fail(MTLC_ERR_NULL, "outputs or their counts are NULL");
  for (size_t t = 0; t < d.tasks.size; ++t) {
    if (!outputs[t]) return c->fail(MTLC_ERR_NULL, "the output of task `%s` is NULL", d.tasks[t].name);
    if (output_counts[t] != size_t(n * d.tasks[t].outWidth))
      return c->fail(MTLC_ERR_SIZE, "the output of task `%s` has room for %zu floats, expected n * %lld",
                     d.tasks[t].name, output_counts[t], (long long)d.tasks[t].outWidth);
  }
  mtlc_args args{};
  args.params = c->params.p;
  args.acts = c->acts.p;
  args.inputs = inputs;
  args.loss_weights = c->weights;
  args.losses = c->losses;
  args.outputs = outputs;
  args.n = n;
  c->bundle->predict(&args);
  return MTLC_OK;
}

int mtlc_embed_predict_task(mtlc_embed_ctx *c, int task, int64_t n, const float *const *inputs,
                            const size_t *input_counts, float *output, size_t output_count) {
  if (!c) return MTLC_ERR_NULL;
  const Desc &d = c->d;
  if (task < 0 || size_t(task) >= d.tasks.size) return c->fail(MTLC_ERR_TASK, "no task %d", task);
  if (int st = checkInputs(c, n, inputs, input_counts)) return st;
  if (!output) return c->fail(MTLC_ERR_NULL, "the output buffer is NULL");
  const TaskDesc &td = d.tasks[size_t(task)];
  if (output_count != size_t(n * td.outWidth))
    return c->fail(MTLC_ERR_SIZE, "the output of task `%s` has room for %zu floats, expected n * %lld", td.name,
                   output_count, (long long)td.outWidth);
  for (size_t t = 0; t < d.tasks.size; ++t) c->taskOutputs[t] = nullptr;
  c->taskOutputs[task] = output;
  mtlc_args args{};
  args.params = c->params.p;
  args.acts = c->acts.p;
  args.inputs = inputs;
  args.loss_weights = c->weights;
  args.losses = c->losses;
  args.outputs = c->taskOutputs;
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

const char *mtlc_embed_last_error(const mtlc_embed_ctx *c) { return c ? c->error : ""; }
float *mtlc_embed_params(mtlc_embed_ctx *c) { return c ? c->params.p : nullptr; }
int64_t mtlc_embed_param_count(const mtlc_embed_ctx *c) { return c ? c->d.paramCount : 0; }
int64_t mtlc_embed_steps(const mtlc_embed_ctx *c) { return c ? c->optSteps : 0; }

}  // extern "C"
