// The language's vocabulary (spec/Vocabulary.def) as enums and constant tables. Free of the
// standard library, like spec/Init.h, because the embedded runtime reads loss and optimizer names
// from an AOT bundle's description with it. Names are for the edges (parsing, messages, logs,
// checkpoint metadata, headers); code switches over the enums.
#pragma once

namespace mtlc::vocab {

inline constexpr double kInf = __builtin_huge_val();

// ---- the enums: one value per row, in the table's order ----------------------------------------

enum class LayerKind {
#define MTLC_LAYER(Kind, ...) Kind,
#include "spec/Vocabulary.def"
};
enum class LossKind {
#define MTLC_LOSS(Kind, ...) Kind,
#include "spec/Vocabulary.def"
};
enum class Metric {
#define MTLC_METRIC(Kind, ...) Kind,
#include "spec/Vocabulary.def"
};
enum class OptimizerKind {
#define MTLC_OPTIMIZER(Kind, ...) Kind,
#include "spec/Vocabulary.def"
};
enum class WeightingKind {
#define MTLC_WEIGHTING(Kind, ...) Kind,
#include "spec/Vocabulary.def"
};
enum class ScheduleKind {
#define MTLC_SCHEDULE(Kind, ...) Kind,
#include "spec/Vocabulary.def"
};

// ---- rows ------------------------------------------------------------------------------------------

// A Bool is true or false in programs, 1 or 0 here; an IntList (`{15, 30}`) has no default; a
// Choice is one word of a list, bound as its index.
enum class ArgType { Int, Real, Bool, IntList, Choice };

struct Arg {
  const char *name = nullptr;  // null ends a row's list
  ArgType type = ArgType::Real;
  bool required = false;
  double def = 0;              // the default of an optional argument
  double lo = -kInf;           // the accepted range; an Int's upper bound is the compiler's limit
  bool loOpen = false;
  double hi = kInf;
  bool hiOpen = false;
  const char *shownDefault = nullptr;  // a derived default as documented ("kernel"), else null;
                                       // Choice: the default's name
  const char *choices = nullptr;       // Choice: the accepted names, "a|b|c" (bound as the index)
};

inline constexpr int kMaxArgs = 6;

// Flags of a row (which ones apply depends on its table).
enum Flag : unsigned {
  // layers
  kBlock = 1u << 0,  // an expert block: a body in braces, ends a shared block
  kForm = 1u << 1,   // another spelling of an expert block (cgc)
  kBody = 1u << 9,   // a plain layer with a body in braces (residual)
  // loss families; a metric's `needs` is one of them
  kClassifier = 1u << 2,
  kBinary = 1u << 3,
  kRegression = 1u << 4,
  kClasses = 1u << 10,    // a class index per sample or per pixel (cross_entropy)
  kDirection = 1u << 11,  // a vector per pixel compared by direction (cosine)
  // metrics
  kLowerIsBetter = 1u << 5,
  // weightings
  kUsesTaskWeights = 1u << 6,  // the tasks' `weight` lines scale the losses
  kTaskGradients = 1u << 7,    // needs each task's gradient on what the tasks share
  kAdaptive = 1u << 8,         // more than a fixed weighted sum of the losses
};

struct Entry {
  int kind = -1;               // the enum value (LayerKind, LossKind, ...); -1 ends a table
  const char *name = nullptr;  // as programs spell it
  const char *example = nullptr;
  const char *description = nullptr;
  unsigned flags = 0;
  unsigned needs = 0;          // metrics: the loss family they need
  Arg args[kMaxArgs] = {};
};

enum class AliasOf { Loss, Metric };
struct Alias {
  AliasOf table;
  const char *spelling;  // another framework's name
  const char *name;      // ours
};

// A table's rows, for range-for.
struct Rows {
  const Entry *first;
  constexpr const Entry *begin() const { return first; }
  constexpr const Entry *end() const {
    const Entry *e = first;
    while (e->name) ++e;
    return e;
  }
  constexpr int size() const { return int(end() - first); }
};

namespace table {

inline constexpr bool Required = true, Optional = false;
inline constexpr bool LoOpen = true, LoClosed = false, HiOpen = true, HiClosed = false;
inline constexpr unsigned Plain = 0, Block = kBlock, Body = kBody;
inline constexpr unsigned Classifier = kClassifier, Binary = kBinary, Regression = kRegression, Classes = kClasses,
                          Direction = kDirection;
inline constexpr unsigned Lower = kLowerIsBetter, Higher = 0;
inline constexpr unsigned None = 0, UsesTaskWeights = kUsesTaskWeights, TaskGradients = kTaskGradients,
                          Adaptive = kAdaptive;

#define MTLC_INT(name, required, def, lowest) Arg{name, ArgType::Int, required, double(def), double(lowest), false, kInf, false, nullptr},
#define MTLC_INT_SHOWN(name, shown, lowest) Arg{name, ArgType::Int, false, 0, double(lowest), false, kInf, false, shown},
#define MTLC_REAL(name, required, def, lo, loOpen, hi, hiOpen) Arg{name, ArgType::Real, required, double(def), lo, loOpen, hi, hiOpen, nullptr},
#define MTLC_BOOL(name, def) Arg{name, ArgType::Bool, false, (def) ? 1.0 : 0.0, 0, false, 1, false, nullptr},
#define MTLC_INT_LIST(name, lowest) Arg{name, ArgType::IntList, true, 0, double(lowest), false, kInf, false, nullptr},
#define MTLC_CHOICE(name, def, choices) Arg{name, ArgType::Choice, false, 0, -kInf, false, kInf, false, def, choices},
#define MTLC_NO_ARGS

inline constexpr Entry kLayers[] = {
#define MTLC_LAYER(Kind, name, role, example, description, args) \
  Entry{int(LayerKind::Kind), name, example, description, role, 0, {args}},
#define MTLC_BLOCK_FORM(name, Kind, example, description, args) \
  Entry{int(LayerKind::Kind), name, example, description, kBlock | kForm, 0, {args}},
#include "spec/Vocabulary.def"
    Entry{}};

inline constexpr Entry kLosses[] = {
#define MTLC_LOSS(Kind, name, family, description) Entry{int(LossKind::Kind), name, nullptr, description, family, 0, {}},
#include "spec/Vocabulary.def"
    Entry{}};

inline constexpr Entry kMetrics[] = {
#define MTLC_METRIC(Kind, name, better, needs, description) Entry{int(Metric::Kind), name, nullptr, description, better, needs, {}},
#include "spec/Vocabulary.def"
    Entry{}};

inline constexpr Entry kOptimizers[] = {
#define MTLC_OPTIMIZER(Kind, name, example, description, args) \
  Entry{int(OptimizerKind::Kind), name, example, description, 0, 0, {args}},
#include "spec/Vocabulary.def"
    Entry{}};

inline constexpr Entry kWeightings[] = {
#define MTLC_WEIGHTING(Kind, name, traits, example, description, args) \
  Entry{int(WeightingKind::Kind), name, example, description, traits, 0, {args}},
#include "spec/Vocabulary.def"
    Entry{}};

inline constexpr Entry kSchedules[] = {
#define MTLC_SCHEDULE(Kind, name, example, description, args) \
  Entry{int(ScheduleKind::Kind), name, example, description, 0, 0, {args}},
#include "spec/Vocabulary.def"
    Entry{}};

inline constexpr Alias kAliases[] = {
#define MTLC_ALIAS(table, spelling, name) Alias{AliasOf::table, spelling, name},
#include "spec/Vocabulary.def"
    Alias{AliasOf::Loss, nullptr, nullptr}};

#undef MTLC_INT
#undef MTLC_INT_SHOWN
#undef MTLC_REAL
#undef MTLC_BOOL
#undef MTLC_INT_LIST
#undef MTLC_CHOICE
#undef MTLC_NO_ARGS

}  // namespace table

constexpr Rows layers() { return {table::kLayers}; }
constexpr Rows losses() { return {table::kLosses}; }
constexpr Rows metrics() { return {table::kMetrics}; }
constexpr Rows optimizers() { return {table::kOptimizers}; }
constexpr Rows weightings() { return {table::kWeightings}; }
constexpr Rows schedules() { return {table::kSchedules}; }

constexpr bool sameName(const char *a, const char *b) {
  while (*a && *a == *b) ++a, ++b;
  return *a == *b;
}

// The row named `name` in `rows`, or null.
constexpr const Entry *find(Rows rows, const char *name) {
  for (const Entry &e : rows)
    if (sameName(e.name, name)) return &e;
  return nullptr;
}

// The first row of `kind` (for layers, its own name rather than another form's).
constexpr const Entry &row(Rows rows, int kind) {
  for (const Entry &e : rows)
    if (e.kind == kind) return e;
  return *rows.end();  // the end marker: name null; every enum value has a row
}

constexpr const Entry &row(LayerKind k) { return row(layers(), int(k)); }
constexpr const Entry &row(LossKind k) { return row(losses(), int(k)); }
constexpr const Entry &row(Metric k) { return row(metrics(), int(k)); }
constexpr const Entry &row(OptimizerKind k) { return row(optimizers(), int(k)); }
constexpr const Entry &row(WeightingKind k) { return row(weightings(), int(k)); }
constexpr const Entry &row(ScheduleKind k) { return row(schedules(), int(k)); }

template <class Kind>
constexpr const char *name(Kind k) { return row(k).name; }

// The kind named `name`; false (out unchanged) for a name of no row.
template <class Kind>
constexpr bool parse(Rows rows, const char *name, Kind &out) {
  const Entry *e = find(rows, name);
  if (!e) return false;
  out = Kind(e->kind);
  return true;
}
constexpr bool parse(const char *s, LossKind &out) { return parse(losses(), s, out); }
constexpr bool parse(const char *s, Metric &out) { return parse(metrics(), s, out); }
constexpr bool parse(const char *s, OptimizerKind &out) { return parse(optimizers(), s, out); }
constexpr bool parse(const char *s, WeightingKind &out) { return parse(weightings(), s, out); }
constexpr bool parse(const char *s, ScheduleKind &out) { return parse(schedules(), s, out); }

constexpr bool has(WeightingKind k, Flag f) { return (row(k).flags & f) != 0; }
constexpr bool lowerIsBetter(Metric m) { return (row(m).flags & kLowerIsBetter) != 0; }
// Whether metric `m` means something for a task trained with loss `l`.
constexpr bool metricFits(Metric m, LossKind l) { return (row(m).needs & row(l).flags) != 0; }

// Our name for another framework's spelling, or null.
constexpr const char *aliasOf(AliasOf table, const char *spelling) {
  for (const Alias *a = table::kAliases; a->name; ++a)
    if (a->table == table && sameName(a->spelling, spelling)) return a->name;
  return nullptr;
}

}  // namespace mtlc::vocab
