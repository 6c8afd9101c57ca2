// The run-time support of AOT bundles (mtlc_embed.h): contexts, the bundle description, argument
// checks, and checkpoints in the trainer's layout. The C library and libm only. No libstdc++: no
// standard containers or strings, no exceptions, no RTTI, no operator new (CMakeLists builds it
// with -fno-exceptions -fno-rtti), so that a C program links libmtlc_embed.a with `cc ... -lm`
// alone. The rules it shares with `mtlc train` are not restated here but called, from the
// runtime's core (runtime/core/, built into this library in the same style):
//   init        core/Init        (mt19937_64(seed), parameters in table order)
//   optimizers  core/Update      (torch 1.13's sgd / adam) over core/Spans' trainable spans
//   checkpoints core/SafeTensors (the reader and writer; the state prefixes of isStateTensor);
//               the tensor names and metadata are those of runtime/io/Checkpoint.cpp
// tests/aot checks that they agree with `mtlc train` step by step.
#include "mtlc_embed.h"

#include "runtime/core/Init.h"
#include "runtime/core/Rng.h"
#include "runtime/core/SafeTensors.h"
#include "runtime/core/Spans.h"
#include "runtime/core/Text.h"
#include "runtime/core/Update.h"
#include "spec/Init.h"
#include "spec/Vocabulary.h"
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

using mtlc::core::duplicate;
using mtlc::core::List;
using mtlc::core::Text;
using mtlc::rt::Rng;

constexpr int kMaxRank = mtlc::core::kMaxTensorRank;
constexpr size_t kErrorBytes = 1024;  // the context's last-error message, truncated beyond

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

// The vocabulary's enums: the description names losses and optimizers as spec/Vocabulary.def does.
using Loss = mtlc::vocab::LossKind;

// Names point into Desc::text (the description's owned copy, split into tokens in place).
struct ParamDesc {
  const char *name;
  int64_t shape[kMaxRank];
  int rank;
  int64_t offset, size, fanIn;
  double bound;  // Init::Uniform's, the field after the shape
  mtlc::rt::Init init;
  bool frozen;   // not learnt: `freeze BLOCK`, or state (batchnorm's running statistics)
  bool integer;  // saved as I64 (num_batches_tracked)
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
using mtlc::core::Span;
struct Desc {
  char *text = nullptr;
  const char *model = "";
  int64_t paramCount = 0, actsFloats = 0, maxBatch = 0;
  uint64_t seed = 0;
  mtlc::core::UpdateRule optimizer;  // the optimizer's kind and settings
  List<InputDesc> inputs;
  List<TaskDesc> tasks;
  List<ParamDesc> params;
  Span *trainable = nullptr;  // core::trainableSpans of the parameters
  size_t trainableCount = 0;
  mtlc::core::ParamExtent *extents = nullptr;  // the parameters', in table order
  ~Desc() {
    std::free(text);
    std::free(trainable);
    std::free(extents);
  }
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

bool parseLoss(const char *s, Loss &l) { return s && mtlc::vocab::parse(s, l); }

// One line of the description, split at spaces in place. Tokens past the end are NULL.
struct Line {
  enum { kMax = 9 + kMaxRank };
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
    mtlc::core::UpdateRule &o = d.optimizer;
    double nesterov = 0;
    if (!t[1] || !mtlc::vocab::parse(t[1], o.kind)) return false;
    const bool ok = toDouble(t[2], o.lr) && toDouble(t[3], o.momentum) && toDouble(t[4], o.beta1) &&
                    toDouble(t[5], o.beta2) && toDouble(t[6], o.eps) && toDouble(t[7], o.weightDecay) &&
                    toDouble(t[8], o.alpha) && toDouble(t[9], nesterov) && (nesterov == 0 || nesterov == 1);
    o.nesterov = nesterov != 0;
    return ok;
  }
  if (l.is("input")) {
    InputDesc in{t[1], 0, 0};
    return in.name && toInt(t[2], in.size) && toInt(t[3], in.categories) && d.inputs.push(in);
  }
  if (l.is("task")) {
    TaskDesc task{t[1], Loss::MSE, 1, 1, 1};
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
    if (init < int64_t(mtlc::rt::Init::UniformFanIn) || init > int64_t(mtlc::rt::Init::Uniform)) return false;
    p.init = mtlc::rt::Init(init);
    p.frozen = (frozen & 1) != 0;  // the flags field: 1 not learnt, 2 integer
    p.integer = (frozen & 2) != 0;
    p.rank = int(rank);
    for (int r = 0; r < p.rank; ++r)
      if (!toInt(t[8 + r], p.shape[r])) return false;
    if (p.init == mtlc::rt::Init::Uniform && !toDouble(t[8 + p.rank], p.bound)) return false;
    return d.params.push(p);
  }
  return true;  // a record of a later version: ignored
}

// The optimizer's spans (core::trainableSpans, as the trainer's).
bool buildTrainableSpans(Desc &d) {
  const size_t n = d.params.size;
  d.extents = static_cast<mtlc::core::ParamExtent *>(std::malloc((n ? n : 1) * sizeof(mtlc::core::ParamExtent)));
  d.trainable = static_cast<Span *>(std::malloc((n ? n : 1) * sizeof(Span)));
  if (!d.extents || !d.trainable) return false;
  for (size_t i = 0; i < n; ++i) d.extents[i] = {d.params[i].offset, d.params[i].size, d.params[i].frozen};
  d.trainableCount = mtlc::core::trainableSpans(d.extents, n, d.paramCount, d.trainable);
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
    const int64_t rows = p.rank == 0 ? 1 : p.shape[0];
    if (p.init == mtlc::rt::Init::CrossStitch && rows * rows != p.size) return MTLC_ERR_INTERNAL;
  }
  return buildTrainableSpans(d) ? MTLC_OK : MTLC_ERR_NOMEM;
}

using mtlc::core::TensorEntry;
using mtlc::core::TensorTable;

// A core failure as the API's status.
int statusOf(mtlc::core::Status st) {
  switch (st) {
    case mtlc::core::Status::Ok: return MTLC_OK;
    case mtlc::core::Status::Io: return MTLC_ERR_IO;
    case mtlc::core::Status::Format: return MTLC_ERR_FORMAT;
    case mtlc::core::Status::NoMem: return MTLC_ERR_NOMEM;
  }
  return MTLC_ERR_INTERNAL;
}

// A checkpoint read whole: its bytes (the table's tensors point into them) and their table.
struct TensorFile {
  unsigned char *bytes = nullptr;
  size_t size = 0;
  TensorTable table;
  TensorFile() = default;
  TensorFile(const TensorFile &) = delete;
  TensorFile &operator=(const TensorFile &) = delete;
  ~TensorFile() { std::free(bytes); }
  const TensorEntry *find(const char *name) const { return table.find(name); }
};

int readWholeFile(const char *path, TensorFile &file, mtlc::core::Failure &f) {
  FILE *in = std::fopen(path, "rb");
  if (!in) return statusOf(f.fail(mtlc::core::Status::Io, "%s: cannot open the file for reading", path));
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
  if (oom) return statusOf(f.fail(mtlc::core::Status::NoMem, "%s: out of memory reading the file", path));
  if (readError) return statusOf(f.fail(mtlc::core::Status::Io, "%s: read error", path));
  return MTLC_OK;
}

int readSafeTensors(const char *path, TensorFile &file, mtlc::core::Failure &f) {
  if (int st = readWholeFile(path, file, f)) return st;
  return statusOf(mtlc::core::parseSafeTensors(file.bytes, file.size, path, file.table, f));
}

}  // namespace

struct mtlc_embed_ctx {
  const mtlc_embed_bundle *bundle = nullptr;
  Desc d;
  Buffer params, grads, acts, optA, optB;  // optA/optB: core::stateLayout's state arrays
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
  mtlc::core::Failure failure() { return mtlc::core::Failure{error, sizeof error}; }
  int fail(int status, const char *format, ...) __attribute__((format(printf, 3, 4))) {
    va_list ap;
    va_start(ap, format);
    std::vsnprintf(error, sizeof error, format, ap);
    va_end(ap);
    return status;
  }
};

namespace {

// Every parameter from one mt19937_64(seed) stream, in table order (core::initTensor); parseDesc
// checked the cross-stitch shapes.
void initParams(mtlc_embed_ctx *c, uint64_t seed) {
  Rng rng(seed);
  for (size_t i = 0; i < c->d.params.size; ++i) {
    const ParamDesc &p = c->d.params[i];
    mtlc::core::initTensor(p.init, c->params.p + p.offset, p.size, p.fanIn, p.rank == 0 ? 1 : p.shape[0], rng,
                           p.bound);
  }
}

// The optimizer step over every parameter that is not frozen (core::update, as the trainer's
// Optimizer); frozen parameters keep their values and state.
void optimizerStep(mtlc_embed_ctx *c) {
  const Desc &d = c->d;
  const int64_t t = ++c->optSteps;
  for (size_t s = 0; s < d.trainableCount; ++s) {
    const int64_t b = d.trainable[s].begin, n = d.trainable[s].end - b;
    mtlc::core::update(d.optimizer, c->params.p + b, c->grads.p + b, c->optA.p ? c->optA.p + b : nullptr,
                       c->optB.p ? c->optB.p + b : nullptr, n, t);
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
        okValue = v >= 0 && v < float(td.outWidth / td.labelWidth) && v == std::floor(v);  // per sample or pixel
        expected = ", not a class index of the head";
      } else if (td.loss == Loss::BCE) {
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
  const int stateArrays = mtlc::core::stateLayout(d.optimizer).count;
  if (stateArrays >= 1) ok = ok && c->optA.alloc(d.paramCount);
  if (stateArrays >= 2) ok = ok && c->optB.alloc(d.paramCount);
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
    mtlc::core::appendShape(expected, pd.shape, pd.rank);
    if (!t) return c->fail(MTLC_ERR_FORMAT, "%s: parameter `%s` %s is missing", path, pd.name, expected.c_str());
    mtlc::core::appendShape(got, t->shape, t->rank);
    return c->fail(MTLC_ERR_FORMAT, "%s: parameter `%s` has shape %s, the model expects %s", path, pd.name,
                   got.c_str(), expected.c_str());
  }
  for (size_t i = 0; i < file.table.tensors.size; ++i) {
    const char *name = file.table.tensors[i].name;
    if (mtlc::core::isStateTensor(name)) continue;
    bool known = false;
    for (size_t k = 0; k < d.params.size && !known; ++k) known = !std::strcmp(d.params[k].name, name);
    if (!known)
      return c->fail(MTLC_ERR_FORMAT, "%s: tensor `%s` is not a parameter of model `%s`", path, name, d.model);
  }
  return MTLC_OK;
}

// A forward pass (predict or one task's) over checked inputs into `outputs`.
void runPredict(mtlc_embed_ctx *c, mtlc_embed_entry fn, int64_t n, const float *const *inputs, float *const *outputs) {
  mtlc_args args{};
  args.params = c->params.p;
  args.acts = c->acts.p;
  args.inputs = inputs;
  args.loss_weights = c->weights;
  args.losses = c->losses;
  args.outputs = outputs;
  args.n = n;
  fn(&args);
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
  List<mtlc::core::TensorView> views;
  bool ok = true;
  for (size_t i = 0; i < d.params.size; ++i) {
    const ParamDesc &p = d.params[i];
    ok = ok && views.push({p.name, p.shape, p.rank, c->params.p + p.offset, p.integer});
  }
  const float stepValue = float(c->optSteps);
  const int64_t one = 1, arena = d.paramCount;
  ok = ok && views.push({"optim.step", &one, 1, &stepValue});
  // The state arrays in the table's order (core::arenaToTableOrder), as the trainer saves them.
  const mtlc::core::StateLayout layout = mtlc::core::stateLayout(d.optimizer);
  const float *arrays[2] = {c->optA.p, c->optB.p};
  Buffer tableOrder[2];
  for (int s = 0; s < layout.count; ++s) {
    ok = ok && tableOrder[s].alloc(d.paramCount) &&
         mtlc::core::arenaToTableOrder(d.extents, d.params.size, d.paramCount, arrays[s], tableOrder[s].p);
    ok = ok && views.push({layout.names[s], &arena, 1, tableOrder[s].p});
  }
  if (!ok) return c->fail(MTLC_ERR_NOMEM, "out of memory");
  char steps[32];
  std::snprintf(steps, sizeof steps, "%lld", (long long)c->optSteps);
  const mtlc::core::MetadataPair meta[] = {{"format", "mtlc"},
                                          {"model", d.model},
                                          {"optimizer", mtlc::vocab::name(d.optimizer.kind)},
                                          {"steps", steps}};
  mtlc::core::Failure f = c->failure();
  return statusOf(mtlc::core::writeSafeTensors(path, views.items, views.size, meta, 4, f));
}

int mtlc_embed_load(mtlc_embed_ctx *c, const char *path) {
  if (!c) return MTLC_ERR_NULL;
  if (!path) return c->fail(MTLC_ERR_NULL, "path is NULL");
  const Desc &d = c->d;
  TensorFile file;
  mtlc::core::Failure f = c->failure();
  if (int st = readSafeTensors(path, file, f)) return st;
  if (int st = checkParamsOf(c, file, path)) return st;
  // Optimizer state, when the file has all of it for this optimizer (runtime loadOptimizerState).
  struct State {
    const char *name;
    Buffer *into;
  };
  const mtlc::core::StateLayout layout = mtlc::core::stateLayout(d.optimizer);
  const State state[2] = {{layout.names[0], &c->optA}, {layout.names[1], &c->optB}};
  const size_t stateCount = size_t(layout.count);
  const TensorEntry *stepT = file.find("optim.step");
  bool withState = stepT != nullptr;
  const char *optimizer = file.table.metadataValue("optimizer");
  if (optimizer && std::strcmp(optimizer, mtlc::vocab::name(d.optimizer.kind))) withState = false;
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
    mtlc::core::readFloats(*file.find(pd.name), c->params.p + pd.offset);
  }
  resetOptimizer(c);
  if (withState) {
    for (size_t s = 0; s < stateCount; ++s)
      if (!mtlc::core::tableToArenaOrder(d.extents, d.params.size, d.paramCount, file.find(state[s].name)->data,
                                         state[s].into->p))
        return c->fail(MTLC_ERR_INTERNAL, "the bundle's parameter table does not fit its arena");
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
  runPredict(c, c->bundle->predict, n, inputs, outputs);
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
  runPredict(c, c->bundle->task_predict[task], n, inputs, c->taskOutputs);
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

int mtlc_embed_set_lr(mtlc_embed_ctx *c, double lr) {
  if (!c) return MTLC_ERR_NULL;
  if (!(lr > 0) || lr > 1e300) return c->fail(MTLC_ERR_VALUE, "set_lr: the learning rate must be a finite number > 0");
  c->d.optimizer.lr = lr;
  return MTLC_OK;
}

double mtlc_embed_lr(const mtlc_embed_ctx *c) { return c ? c->d.optimizer.lr : 0; }

}  // extern "C"
