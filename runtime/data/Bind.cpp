// Data bindings: `image = pixels`, `footwear = label in {5, 7, 9}`, `x = columns(3..10) / 255`.
// Each binding selects one field (or csv columns) of the source table and applies at most one
// elementwise transform. Comparisons and `in` give 1 or 0; a NaN (missing) value stays NaN.
#include "runtime/data/Dataset.h"
#include "spec/Error.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>

namespace mtlc::rt {
namespace {

// Element i of a field's floats: a memory-mapped field's floats may be misaligned (FloatStore).
float at(const FloatStore& data, size_t i) { return data.at(i); }

// The fields a FieldRef reads, side by side: out[r] = concat(parts[0][r], parts[1][r], ...).
struct Selection {
  std::vector<const Field*> parts;
  int64_t width = 0;
  std::string what;  // "source field `x`", "source columns 3..10"
};

Selection select(const Table& t, const FieldRef& ref, const std::string& target) {
  Selection s;
  auto needCsv = [&](const char* form) {
    if (!t.columnar)
      throwError("{}: binding `{}` uses {}, which needs a csv source (fields here: {})", t.origin, target,
                 form, t.fieldNames());
  };
  if (!ref.field.empty()) {
    const Field* f = t.find(ref.field);
    if (!f)
      throwError("{}: binding `{}` reads field `{}`, which the source does not have (fields: {})", t.origin,
                 target, ref.field, t.fieldNames());
    s.parts = {f};
    s.what = fmt::format("source field `{}`", ref.field);
  } else if (!ref.columns.empty()) {
    needCsv("columns(\"...\")");
    for (const std::string& name : ref.columns) {
      const Field* f = t.find(name);
      if (!f)
        throwError("{}: binding `{}` reads column `{}`, which the file does not have (columns: {})", t.origin,
                   target, name, t.fieldNames());
      s.parts.push_back(f);
    }
    s.what = fmt::format("source columns({})", fmt::join(ref.columns, ", "));
  } else if (ref.colFirst >= 0 || ref.colLast >= 0) {
    needCsv("columns(a..b)");
    int64_t n = int64_t(t.fields.size());
    if (ref.colFirst < 0 || ref.colLast < ref.colFirst || ref.colLast >= n)
      throwError("{}: binding `{}` reads columns({}..{}), but the file has columns 0..{}", t.origin, target,
                 ref.colFirst, ref.colLast, n - 1);
    for (int64_t c = ref.colFirst; c <= ref.colLast; ++c) s.parts.push_back(&t.fields[c]);
    s.what = fmt::format("source columns {}..{}", ref.colFirst, ref.colLast);
  } else {
    throwError("{}: binding `{}` names no field", t.origin, target);
  }
  for (const Field* f : s.parts) s.width += f->width;
  return s;
}

float apply(const BindExpr& e, float x) {
  using Op = BindExpr::Op;
  if (std::isnan(x)) return x;  // missing stays missing
  const double v = e.value;
  switch (e.op) {
    case Op::Field: return x;
    case Op::Div: return float(x / v);
    case Op::Mul: return float(x * v);
    case Op::Add: return float(x + v);
    case Op::Sub: return float(x - v);
    case Op::In:
      for (double m : e.set)
        if (double(x) == m) return 1.0f;
      return 0.0f;
    case Op::Eq: return double(x) == v ? 1.0f : 0.0f;
    case Op::Ne: return double(x) != v ? 1.0f : 0.0f;
    case Op::Gt: return double(x) > v ? 1.0f : 0.0f;
    case Op::Ge: return double(x) >= v ? 1.0f : 0.0f;
    case Op::Lt: return double(x) < v ? 1.0f : 0.0f;
    case Op::Le: return double(x) <= v ? 1.0f : 0.0f;
  }
  return x;
}

// `steal`: the binding is a plain field that no other binding reads, so its data is moved out of
// the table rather than copied (pixels are 188 MB for 60000 images).
Field evaluate(Table& t, const Binding& b, bool steal) {
  Selection s = select(t, b.expr.ref, b.target);
  if (s.width != b.width)
    throwError("{}: binding `{}` expects {} value{} per sample, {} has {}", t.origin, b.target, b.width,
               b.width == 1 ? "" : "s", s.what, s.width);
  if (b.expr.op == BindExpr::Op::Div && b.expr.value == 0)
    throwError("{}: binding `{}` divides by zero", t.origin, b.target);
  Field out;
  out.name = b.target;
  out.width = s.width;
  if (steal) {
    for (Field& f : t.fields)
      if (f.name == b.expr.ref.field) {
        out.data = std::move(f.data);
        return out;
      }
  }
  out.data.resize(size_t(t.rows) * s.width);
  // `label in {5, 7, 9}` reads class indices: where −1 marks an unlabelled one (npz), it is missing.
  const bool classSet = t.minusOneUnlabelled && b.expr.op == BindExpr::Op::In;
  int64_t offset = 0;
  for (const Field* part : s.parts) {
    const int64_t w = part->width;
    for (int64_t r = 0; r < t.rows; ++r) {
      float* dst = &out.data[size_t(r) * s.width + offset];
      for (int64_t j = 0; j < w; ++j) {
        float x = at(part->data, size_t(r * w + j));
        if (classSet && x == -1.0f) x = std::nanf("");  // an unlabelled class index stays unlabelled
        dst[j] = apply(b.expr, x);
      }
    }
    offset += w;
  }
  return out;
}

}  // namespace

Dataset bindTable(Table t, const std::vector<Binding>& inputs, const std::vector<Binding>& labels) {
  if (t.rows == 0) throwError("{}: the source has no samples", t.origin);
  // How often each field is read: a plain read counts 1, a transform or column list 2 (they copy).
  std::map<std::string, int> uses;
  for (const auto* list : {&inputs, &labels})
    for (const Binding& b : *list) {
      const FieldRef& r = b.expr.ref;
      if (!r.field.empty()) uses[r.field] += (b.expr.op == BindExpr::Op::Field) ? 1 : 2;
      for (const std::string& c : r.columns) uses[c] += 2;
    }
  Dataset d;
  d.origin = t.origin;
  d.rows = t.rows;
  d.rowLine = t.rowLine;
  d.minusOneUnlabelled = t.minusOneUnlabelled;
  // A field is stolen only when this binding is its sole reader; still, evaluate every copying
  // binding first, then the stealing ones, so no binding ever sees an emptied field.
  std::vector<Field> in(inputs.size()), lab(labels.size());
  for (int pass = 0; pass < 2; ++pass) {
    auto run = [&](const std::vector<Binding>& bs, std::vector<Field>& outs) {
      for (size_t i = 0; i < bs.size(); ++i) {
        const bool steal = bs[i].expr.op == BindExpr::Op::Field && !bs[i].expr.ref.field.empty() &&
                           uses[bs[i].expr.ref.field] == 1;
        if (steal == (pass == 1)) outs[i] = evaluate(t, bs[i], steal);
      }
    };
    run(inputs, in);
    run(labels, lab);
  }
  // Labels are small and read in place by the checks and the metrics: always the dataset's own.
  for (Field& f : lab) f.data.own();
  d.inputs = std::move(in);
  d.labels = std::move(lab);
  return d;
}

Dataset loadDataset(const SourceSpec& source, const std::vector<Binding>& inputs,
                    const std::vector<Binding>& labels, const std::string& split, bool progress) {
  std::vector<std::string> wanted;  // the fields the bindings read (a source may skip the others)
  for (const auto* list : {&inputs, &labels})
    for (const Binding& b : *list)
      if (!b.expr.ref.field.empty() && std::find(wanted.begin(), wanted.end(), b.expr.ref.field) == wanted.end())
        wanted.push_back(b.expr.ref.field);
  return bindTable(loadSource(source, split, wanted, progress), inputs, labels);
}

void markUnlabelled(const std::vector<TaskSpec>& tasks, Dataset& d) {
  if (!d.minusOneUnlabelled) return;
  for (const TaskSpec& task : tasks) {
    if (task.loss != LossKind::CrossEntropy) continue;
    for (Field& l : d.labels)
      if (l.name == task.name)
        for (float& y : l.data)
          if (y == -1.0f) y = std::nanf("");
  }
}

void validateLabels(const std::vector<TaskSpec>& tasks, const Dataset& d) {
  for (const TaskSpec& task : tasks) {
    const Field* f = nullptr;
    for (const Field& l : d.labels)
      if (l.name == task.name) f = &l;
    if (!f) throwError("{}: no label binding for task `{}`", d.origin, task.name);
    if (f->width != task.labelWidth)
      throwError("{}: task `{}` expects {} label value(s) per sample, its binding gives {}", d.origin,
                 task.name, task.labelWidth, f->width);
    for (int64_t r = 0; r < d.rows; ++r)
      for (int64_t j = 0; j < f->width; ++j) {
        float y = f->data[size_t(r) * f->width + j];
        if (std::isnan(y)) continue;  // absent: the loss kernels and metrics skip it
        switch (task.loss) {
          case LossKind::CrossEntropy:
            if (y != std::floor(y) || y < 0 || y >= float(task.outWidth / task.pixels))
              throwError("{}: task `{}` label {} is not a class index in [0, {})", d.rowPos(r), task.name, y,
                         task.outWidth / task.pixels);
            break;
          case LossKind::BCE:
            if (!(y >= 0 && y <= 1))
              throwError("{}: task `{}` label {} is outside [0, 1] (bce needs 0/1 labels)", d.rowPos(r),
                         task.name, y);
            break;
          case LossKind::MSE:
          case LossKind::L1:
          case LossKind::Cosine:
            if (!std::isfinite(y)) throwError("{}: task `{}` label {} is not finite", d.rowPos(r), task.name, y);
            break;
        }
      }
  }
}

void validateInputs(const std::vector<InputSpec>& inputs, const Dataset& d) {
  for (const InputSpec& in : inputs) {
    if (in.categories <= 0) continue;
    const Field* f = nullptr;
    for (const Field& x : d.inputs)
      if (x.name == in.name) f = &x;
    if (!f) throwError("{}: no data binding for input `{}`", d.origin, in.name);
    for (int64_t r = 0; r < d.rows; ++r)
      for (int64_t j = 0; j < f->width; ++j) {
        const float v = at(f->data, size_t(r) * f->width + j);
        if (!(v >= 0 && v < float(in.categories) && v == std::floor(v)))
          throwError("{}: input `{}` value {} is not a category index in [0, {})", d.rowPos(r), in.name, v,
                     in.categories);
      }
  }
}

}  // namespace mtlc::rt
