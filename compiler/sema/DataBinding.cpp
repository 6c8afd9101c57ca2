// The data block: sources (`train fashion_mnist("train")`), bindings (`image = pixels`) and the
// widths they give, checked against the inputs and task labels where statically known.
#include "sema/SemaInternal.h"

#include "spec/DataFiles.h"
#include "spec/Error.h"
#include "spec/NpzFiles.h"

#include <algorithm>
#include <filesystem>
#include <fmt/format.h>
#include <set>

namespace mtlc::sema {

namespace {

// Images: `pixels` and `label` (fashion_mnist, idx); Csv: any column; Fields: the named fields of a
// generated source; Npz: the arrays of a NumPy file, read from its headers.
enum class Family { Images, Csv, Fields, Npz };

// A field of a source with a fixed set of fields: its width per sample, or the numeric argument
// that gives it (synthetic_mmoe's `x` has `dim` values).
struct FieldInfo {
  const char *name;
  int64_t width;               // 0: unknown until the data is read (idx pixels)
  const char *widthArg = nullptr;
};

struct SourceInfo {
  const char *name;
  Family family;
  std::vector<detail::ParamDef> params;
  bool paths;          // string arguments are file paths (resolved against the .mtl directory)
  const char *example;
  std::vector<FieldInfo> fields;  // Images / Fields
};

constexpr int64_t kFashionPixels = 28 * 28;

const std::vector<SourceInfo> &sourceTable() {
  using namespace detail;
  static const std::vector<SourceInfo> table = [] {
    ParamDef correlation = realParam("correlation", false, 0.5);
    correlation.lo = -1;
    correlation.hi = 1;
    std::vector<SourceInfo> t = {
        {"fashion_mnist", Family::Images, {stringParam("split", true, {"train", "test"})}, false,
         "fashion_mnist(\"train\")", {{"pixels", kFashionPixels}, {"label", 1}}},
        {"idx", Family::Images, {stringParam("images", true), stringParam("labels", true)}, true,
         "idx(\"images.idx\", \"labels.idx\")", {{"pixels", 0}, {"label", 1}}},
        {"csv", Family::Csv, {stringParam("path", true)}, true, "csv(\"data.csv\")", {}},
        {"npz", Family::Npz, {stringParam("path", true)}, true, "npz(\"data.npz\")", {}},
        {"npy", Family::Npz, {stringParam("path", true)}, true, "npy(\"data.npy\")", {}},
        // Synthetic.cpp: the MMoE paper's regression pair; two Fashion-MNIST items on one image.
        {"synthetic_mmoe", Family::Fields,
         {correlation, intParam("samples", false, 12000), intParam("dim", false, 100, 2),
          intParam("seed", false, 0, 0)},
         false, "synthetic_mmoe(correlation=0.5)", {{"x", 0, "dim"}, {"y1", 1}, {"y2", 1}}},
        {"multi_fashion", Family::Fields, {stringParam("split", true, {"train", "test"})}, false,
         "multi_fashion(\"train\")", {{"pixels", kFashionPixels}, {"left", 1}, {"right", 1}}},
        {"multi_fashion_dense", Family::Fields, {stringParam("split", true, {"train", "test"})}, false,
         "multi_fashion_dense(\"train\")",
         {{"pixels", kFashionPixels}, {"left", 1}, {"right", 1}, {"segment", kFashionPixels},
          {"left_pixels", kFashionPixels}, {"right_pixels", kFashionPixels}}},
    };
    return t;
  }();
  return table;
}

const SourceInfo *findSource(const std::string &name) {
  for (const auto &s : sourceTable())
    if (name == s.name) return &s;
  return nullptr;
}

}  // namespace

const std::vector<std::string> &knownSources() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> v;
    for (const auto &s : sourceTable()) v.push_back(s.name);
    return v;
  }();
  return names;
}

namespace detail {

namespace {

struct CheckedSource {
  const SourceInfo *info = nullptr;  // null if erroneous
  rt::SourceSpec spec;
  std::vector<std::pair<std::string, int64_t>> fields;  // Images / Fields: name, width (0: unknown)
  SourceRange loc;
  // Csv: the header's column names, when the file could be read; the file as the user wrote it.
  std::optional<std::vector<std::string>> columns;
  std::string shownAs;
  // Npz: the arrays with a sample dimension, when the file's headers could be read.
  std::optional<std::vector<rt::NpyArrayInfo>> arrays;
};

// The fields of `info`'s table entry, their widths from the source's numeric arguments.
void setFields(CheckedSource &cs, const SourceInfo &info) {
  cs.info = &info;
  cs.fields.clear();
  for (const FieldInfo &f : info.fields)
    cs.fields.push_back({f.name, f.widthArg ? static_cast<int64_t>(cs.spec.options[f.widthArg]) : f.width});
}

// A data file that cannot be read, reported at `at`; a relative path that does not exist gets a
// reminder of what it is relative to.
void reportUnreadable(const rt::Error &e, const std::string &path, const std::string &shownAs, SourceRange at,
                      const std::string &relativeTo, Diagnostics &diags) {
  std::error_code ec;
  const bool relative = !relativeTo.empty() && std::filesystem::path(shownAs).is_relative() &&
                        !std::filesystem::exists(path, ec);
  diags.error(at, fmt::format("{}{}", e.what(),
                              relative ? " (a path in a .mtl file is relative to the file's folder)" : ""));
}

// Reads the header of csv source `cs` (file `path`, shown as `shownAs`); an unreadable file or a
// malformed header is reported at `at` (false), and its columns stay unknown. `relativeTo`: the
// folder a relative path was resolved against ("" for a command-line path).
bool readColumns(CheckedSource &cs, const std::string &path, const std::string &shownAs, SourceRange at,
                 const std::string &relativeTo, Diagnostics &diags) {
  cs.shownAs = shownAs;
  try {
    cs.columns = rt::readCsvHeader(path, shownAs);
    return true;
  } catch (const rt::Error &e) {
    reportUnreadable(e, path, shownAs, at, relativeTo, diags);
    return false;
  }
}

// Reads the array headers of npz/npy source `cs` as readColumns reads a csv header: nothing but
// the headers, the sample counts checked; an error is reported at `at` (false).
bool readArrays(CheckedSource &cs, const std::string &path, const std::string &shownAs, SourceRange at,
                const std::string &relativeTo, Diagnostics &diags) {
  cs.shownAs = shownAs;
  try {
    std::vector<rt::NpyArrayInfo> all = cs.spec.kind == "npy" ? rt::readNpyHeader(path, shownAs)
                                                              : rt::readNpzHeaders(path, shownAs);
    rt::npzSampleCount(all, shownAs);
    cs.arrays.emplace();
    for (rt::NpyArrayInfo &a : all)
      if (!a.shape.empty()) cs.arrays->push_back(std::move(a));
    return true;
  } catch (const rt::Error &e) {
    reportUnreadable(e, path, shownAs, at, relativeTo, diags);
    return false;
  }
}

// `--data ROLE=PATH` replaces the role's source: its fields and columns are the ones to check.
// Its errors are reported at the source it replaces (at `blockLoc` when the program has none).
void applyOverrides(const DataOverrides &overrides, SourceRange blockLoc, std::map<std::string, CheckedSource> &sources,
                    std::map<std::string, SourceRange> &seenRole, Diagnostics &diags) {
  for (const auto &[role, path] : overrides) {
    if (role != "train" && role != "test") continue;  // the command line rejects other roles
    CheckedSource &cs = sources[role];
    const bool inProgram = seenRole.count(role) > 0;
    if (!inProgram) {
      seenRole[role] = blockLoc;
      cs.loc = blockLoc;
    }
    cs.info = nullptr;
    cs.columns.reset();
    cs.arrays.reset();
    const SourceRange at = cs.loc;
    const std::string given = fmt::format("--data {}={}", role, path);
    try {
      cs.spec = rt::sourceFromPath(path, role);
    } catch (const rt::Error &e) {
      diags.error(at, e.what());
      if (inProgram) diags.note(at, fmt::format("{} replaces this source", given));
      continue;
    }
    const SourceInfo *info = findSource(cs.spec.kind);
    if (!info) throw std::logic_error("--data gave an unknown source kind " + cs.spec.kind);
    setFields(cs, *info);
    const bool read = info->family == Family::Csv ? readColumns(cs, path, path, at, "", diags)
                      : info->family == Family::Npz ? readArrays(cs, path, path, at, "", diags)
                                                    : true;
    if (!read) {
      if (inProgram) diags.note(at, fmt::format("{} replaces this source", given));
      cs.info = nullptr;  // nothing to compare the other source's fields with
    }
  }
}

// "a, b, c" or, for a wide table, its first eight and a count: "a, b, c, d, e, f, g, h and 92 more".
std::string columnList(const std::vector<std::string> &columns) {
  constexpr size_t kShown = 8;
  std::string out;
  for (size_t i = 0; i < columns.size() && i < kShown; ++i) out += (i ? ", " : "") + columns[i];
  if (columns.size() > kShown) out += fmt::format(" and {} more", columns.size() - kShown);
  return out;
}

// Whether every column `f` selects is in the header of `src`; reports those that are not.
bool checkColumns(const ast::FieldRef &f, const CheckedSource &src, Diagnostics &diags) {
  if (!src.columns) return true;  // the file could not be read (reported)
  const std::vector<std::string> &columns = *src.columns;
  auto missing = [&](const std::string &name, SourceRange at) {
    if (std::find(columns.begin(), columns.end(), name) != columns.end()) return false;
    std::string hint = didYouMean(name, columns);
    if (hint.empty()) hint = "; its columns are " + columnList(columns);
    diags.error(at, fmt::format("{} has no column '{}'{}", src.shownAs, name, hint));
    return true;
  };
  if (!f.hasParens) return !missing(f.name, f.nameLoc);
  bool ok = true;
  for (const ast::ColumnSel &c : f.columns) {
    if (c.isName) {
      ok &= !missing(c.name, c.loc);
    } else if (c.last >= static_cast<int64_t>(columns.size())) {
      diags.error(c.loc, fmt::format("columns({}..{}) reads up to position {}, but {} has {} column{} "
                                     "(positions 0..{})",
                                     c.first, c.last, c.last, src.shownAs, columns.size(),
                                     columns.size() == 1 ? "" : "s", columns.size() - 1));
      ok = false;
    }
  }
  return ok;
}

// The array `f` names in npz source `src`, or null after reporting that it has none.
const rt::NpyArrayInfo *findArray(const ast::FieldRef &f, const CheckedSource &src, Diagnostics &diags) {
  std::vector<std::string> names;
  for (const rt::NpyArrayInfo &a : *src.arrays) {
    if (a.name == f.name) return &a;
    names.push_back(a.name);
  }
  std::string hint = didYouMean(f.name, names);
  if (hint.empty()) {
    std::vector<std::string> shown;
    for (const rt::NpyArrayInfo &a : *src.arrays) shown.push_back(a.name + " " + rt::shapeText(a.shape));
    hint = "; its arrays are " + columnList(shown);
  }
  diags.error(f.nameLoc, fmt::format("{} has no array '{}'{}", src.shownAs, f.name, hint));
  return nullptr;
}

// "pixels and label", "x, y1 and y2"
std::string fieldList(const std::vector<std::pair<std::string, int64_t>> &fields) {
  std::string out;
  for (size_t i = 0; i < fields.size(); ++i)
    out += (i ? (i + 1 == fields.size() ? " and " : ", ") : "") + fields[i].first;
  return out;
}

rt::BindExpr::Op convertOp(ast::BindExpr::Op op) {
  using A = ast::BindExpr::Op;
  using R = rt::BindExpr::Op;
  switch (op) {
  case A::Field: return R::Field;
  case A::Div: return R::Div;
  case A::Mul: return R::Mul;
  case A::Add: return R::Add;
  case A::Sub: return R::Sub;
  case A::In: return R::In;
  case A::Eq: return R::Eq;
  case A::Ne: return R::Ne;
  case A::Gt: return R::Gt;
  case A::Ge: return R::Ge;
  case A::Lt: return R::Lt;
  case A::Le: return R::Le;
  }
  return R::Field;
}

std::string plural(int64_t n, const char *word) {
  return fmt::format("{} {}{}", n, word, n == 1 ? "" : "s");
}

// ---- The sources

// Whether `src` names a data role not given before; reports an unknown or repeated one.
bool checkRole(const ast::DataSource &src, const std::map<std::string, SourceRange> &seenRole,
               Diagnostics &diags) {
  if (src.role != "train" && src.role != "test" && src.role != "val") {
    std::string hint = didYouMean(src.role, {"train", "test", "val"});
    if (hint.empty()) hint = "; a data block has 'train SOURCE' and optionally 'test SOURCE' and 'val SOURCE'";
    diags.error(src.roleLoc, fmt::format("unknown data role '{}'{}", src.role, hint));
    return false;
  }
  if (auto it = seenRole.find(src.role); it != seenRole.end()) {
    diags.error(src.roleLoc, fmt::format("the {} source is given twice", src.role));
    diags.note(it->second, "first given here");
    return false;
  }
  return true;
}

// The spec of source `info` from its bound arguments `args`: file paths resolved against `dir`
// (the .mtl file's folder). False after reporting an empty path.
bool sourceSpec(const SourceInfo &info, const BoundArgs &args, const std::filesystem::path &dir,
                rt::SourceSpec &spec, Diagnostics &diags) {
  bool ok = true;
  spec.kind = info.name;
  for (const auto &p : info.params) {
    const ArgValue &v = args.at(p.name);
    if (p.type != ParamDef::Type::String) {
      spec.options[p.name] = v.number;
      continue;
    }
    std::string arg = v.text;
    if (info.paths && !arg.empty() && std::filesystem::path(arg).is_relative() && !dir.empty())
      arg = (dir / arg).lexically_normal().string();
    if (info.paths && arg.empty()) {
      diags.error(v.loc, "a file path must not be empty");
      ok = false;
    }
    spec.args.push_back(arg);
  }
  return ok;
}

// One source call (`csv("data.csv")`): its name, its arguments and, unless `--data` replaces it
// (`overridden`), the header of its file. `info` stays null when any of them is erroneous.
CheckedSource checkSourceCall(const ast::Call &c, const std::filesystem::path &dir, bool overridden,
                              Diagnostics &diags) {
  CheckedSource cs;
  cs.loc = c.loc;
  const SourceInfo *info = findSource(c.name);
  if (!info) {
    std::string hint = didYouMean(c.name, knownSources());
    if (hint.empty()) hint = "; the sources are " + joinWords(knownSources(), "and");
    diags.error(c.nameLoc, fmt::format("unknown data source '{}'{}", c.name, hint));
    return cs;
  }
  BoundArgs a = bindArgs(c, fmt::format("data source '{}'", c.name), info->params, info->example, diags);
  if (!a.ok || !sourceSpec(*info, a, dir, cs.spec, diags)) return cs;
  setFields(cs, *info);
  if (overridden) return cs;
  if (info->family == Family::Csv)
    readColumns(cs, cs.spec.args[0], a.at("path").text, a.at("path").loc, dir.string(), diags);
  if (info->family == Family::Npz)
    readArrays(cs, cs.spec.args[0], a.at("path").text, a.at("path").loc, dir.string(), diags);
  return cs;
}

// The test source gives the fields of the train source, each as wide where both widths are known.
void compareTrainTest(const CheckedSource &train, const CheckedSource &test, Diagnostics &diags,
                      const char *role = "test") {
  std::vector<std::string> trainNames, testNames;
  for (const auto &f : train.fields) trainNames.push_back(f.first);
  for (const auto &f : test.fields) testNames.push_back(f.first);
  if (train.info->family != test.info->family || trainNames != testNames) {
    diags.error(test.loc, fmt::format("the {} source {} does not have the same fields as the "
                                      "train source {}",
                                      role, test.info->name, train.info->name));
    diags.note(train.loc, "the train source is here");
    return;
  }
  for (size_t i = 0; i < train.fields.size(); ++i) {
    int64_t a = train.fields[i].second, b = test.fields[i].second;
    if (a > 0 && b > 0 && a != b) {
      diags.error(test.loc, fmt::format("the {} source gives field '{}' {} values per "
                                        "sample, the train source {}",
                                        role, train.fields[i].first, b, a));
      diags.note(train.loc, "the train source is here");
    }
  }
}

}  // namespace

// The data block's sources by role ("train" / "test"), as checked (and replaced by `--data`).
struct DataSources {
  std::map<std::string, CheckedSource> byRole;

  const CheckedSource *role(const std::string &name) const {
    auto it = byRole.find(name);
    return it == byRole.end() ? nullptr : &it->second;
  }
  const CheckedSource *train() const { return role("train"); }
  const CheckedSource *test() const { return role("test"); }
  const CheckedSource *val() const { return role("val"); }
  // The source whose fields the bindings read: the train source (or the test source alone); null
  // when that source is erroneous.
  const CheckedSource *fieldSource() const {
    const CheckedSource *tr = train(), *te = test();
    return tr && tr->info ? tr : !tr && te && te->info ? te : nullptr;
  }
};

// What the bindings bind, in model order, and what the check of every target being bound skips.
struct BoundTargets {
  std::vector<std::optional<rt::Binding>> inputs, labels;  // per model input / task
  std::map<std::string, SourceRange> at;                   // each bound target's name in its binding
  std::set<std::string> misspelt;  // names suggested for a misspelt target: not also "missing"
};

// The values per sample a binding's target takes (when its declaration is valid), in words for
// the error when a binding gives another width, and the declaration the note points at.
struct TargetWidth {
  std::optional<int64_t> expected;
  std::string need;  // "input 'x' takes 784 values per sample (f32[28, 28])"
  SourceRange declLoc;
  Shape shape;       // a per-pixel task's label shape, which an npz array must have (leading 1s
                     // aside); empty: any shape of `expected` values
};

namespace {

// ---- A binding's expression

// A binding's expression as checked: what the runtime evaluates, the values per sample it gives
// when known, and (npz) the array each source read has under the field's name.
struct CheckedExpr {
  rt::BindExpr expr;
  std::optional<int64_t> width;
  bool ok = true;  // nothing reported: the width can be compared with the target's
  std::vector<std::pair<const CheckedSource *, rt::NpyArrayInfo>> arrays;
};

// An npz field is an array's name, looked up in each npz source read (train, then test: one error
// per binding); its width is the first array's values per sample.
void checkArrayRef(const ast::FieldRef &f, const CheckedSource &fieldSource, const DataSources &sources,
                   CheckedExpr &out, Diagnostics &diags) {
  if (f.hasParens) {
    diags.error(f.loc, fmt::format("{}(...) is not an array of {}; a field of {}(...) is an array's name",
                                   f.name, fieldSource.shownAs, fieldSource.info->name));
    out.ok = false;
    return;
  }
  out.expr.ref.field = f.name;
  for (const CheckedSource *src : {sources.train(), sources.test(), sources.val()})
    if (out.ok && src && src->info && src->info->family == Family::Npz && src->arrays) {
      const rt::NpyArrayInfo *a = findArray(f, *src, diags);
      if (a) out.arrays.push_back({src, *a});
      out.ok = a != nullptr;
    }
  if (!out.arrays.empty()) {
    const std::vector<int64_t> &shape = out.arrays.front().second.shape;
    out.width = elementCount(Shape(shape.begin() + 1, shape.end()));
  }
}

// A field of a source with a fixed set of fields (fashion_mnist's `pixels`, synthetic_mmoe's `x`).
void checkNamedField(const ast::FieldRef &f, const CheckedSource &fieldSource, CheckedExpr &out,
                     Diagnostics &diags) {
  const auto &known = fieldSource.fields;
  const char *sourceName = fieldSource.info->name;
  std::vector<std::string> names;
  for (const auto &kf : known) names.push_back(kf.first);
  auto found = std::find(names.begin(), names.end(), f.name);
  if (f.hasParens) {
    diags.error(f.loc, fmt::format("{}(...) is not a field of {}; its fields are {}{}", f.name, sourceName,
                                   fieldList(known),
                                   f.name == "columns" ? " (columns(...) selects csv columns)" : ""));
    out.ok = false;
  } else if (found == names.end()) {
    std::string hint = didYouMean(f.name, names);
    if (hint.empty()) hint = "; its fields are " + fieldList(known);
    diags.error(f.nameLoc, fmt::format("{} has no field '{}'{}", sourceName, f.name, hint));
    out.ok = false;
  } else {
    out.expr.ref.field = f.name;
    int64_t w = known[static_cast<size_t>(found - names.begin())].second;
    if (w > 0) out.width = w;
    // idx pixels: the image size is known when the file is read (the runtime checks it)
  }
}

// columns(3..10): one range of positions, first <= last, both within kMaxInt.
void checkColumnRange(const ast::ColumnSel &c, CheckedExpr &out, Diagnostics &diags) {
  if (c.overflow || c.first > kMaxInt || c.last > kMaxInt) {
    diags.error(c.loc, fmt::format("column position is too large (at most {})", kMaxInt));
    out.ok = false;
  } else if (c.last < c.first) {
    diags.error(c.loc, fmt::format("empty column range {}..{}: the first position must not "
                                   "exceed the last",
                                   c.first, c.last));
    out.ok = false;
  } else {
    out.expr.ref.colFirst = c.first;
    out.expr.ref.colLast = c.last;
    out.width = c.last - c.first + 1;
  }
}

// A csv field as written: a column name, columns("a", "b") or columns(3..10). Whether the columns
// are in the files' headers is checkColumns's question.
void checkColumnRef(const ast::FieldRef &f, CheckedExpr &out, Diagnostics &diags) {
  if (!f.hasParens) {
    out.expr.ref.field = f.name;  // a column name (the runtime checks the header)
    out.width = 1;
  } else if (f.name != "columns") {
    std::string hint = didYouMean(f.name, {"columns"});
    diags.error(f.nameLoc, fmt::format("unknown field selector '{}(...)'{}; a csv field is a "
                                       "column name, columns(\"a\", \"b\") or columns(3..10)",
                                       f.name, hint));
    out.ok = false;
  } else if (std::all_of(f.columns.begin(), f.columns.end(), [](const ast::ColumnSel &c) { return c.isName; })) {
    for (const auto &c : f.columns) out.expr.ref.columns.push_back(c.name);
    out.width = static_cast<int64_t>(f.columns.size());
  } else if (f.columns.size() != 1) {
    diags.error(f.loc, "columns(...) takes column names (columns(\"a\", \"b\")) or one range "
                       "of positions (columns(3..10)), not a mix or a list of positions");
    out.ok = false;
  } else {
    checkColumnRange(f.columns[0], out, diags);
  }
}

// The field a binding reads, checked against the source whose fields the bindings read.
CheckedExpr checkFieldRef(const ast::FieldRef &f, const DataSources &sources, Diagnostics &diags) {
  CheckedExpr out;
  const CheckedSource *fieldSource = sources.fieldSource();
  if (!fieldSource) {
    out.ok = false;  // no usable source: the field cannot be checked (already reported)
    return out;
  }
  switch (fieldSource->info->family) {
  case Family::Npz: checkArrayRef(f, *fieldSource, sources, out, diags); break;
  case Family::Images:
  case Family::Fields: checkNamedField(f, *fieldSource, out, diags); break;
  case Family::Csv:
    checkColumnRef(f, out, diags);
    // The columns are in the header of every csv source the binding reads (train, then test: one
    // error per binding).
    for (const CheckedSource *src : {sources.train(), sources.test(), sources.val()})
      if (out.ok && src && src->info && src->info->family == Family::Csv) out.ok = checkColumns(f, *src, diags);
    break;
  }
  return out;
}

// The transform after the field: `in {...}`'s numbers, or the operand of / * + - and comparisons.
void checkTransform(const ast::BindExpr &e, CheckedExpr &out, Diagnostics &diags) {
  out.expr.op = convertOp(e.op);
  if (e.op == ast::BindExpr::Op::In) {
    for (const ast::Value &v : e.set) {
      if (!std::isfinite(v.number)) {
        diags.error(v.loc, fmt::format("the number {} is out of range", v.text));
        out.ok = false;
      }
      out.expr.set.push_back(v.number);
    }
  } else if (e.op != ast::BindExpr::Op::Field) {
    const ast::Value &v = e.operand;
    if (!std::isfinite(v.number)) {
      diags.error(v.loc, fmt::format("the number {} is out of range", v.text));
      out.ok = false;
    } else if (e.op == ast::BindExpr::Op::Div && v.number == 0) {
      diags.error(v.loc, "division by zero");
      out.ok = false;
    }
    out.expr.value = v.number;
  }
}

// ---- A binding's width

// A per-pixel task's label shape: [H, W] for cross_entropy, else the head's [C, H, W].
Shape denseLabelShape(const Task &t) {
  const Shape &o = t.head.outShape;
  return t.loss == rt::LossKind::CrossEntropy ? Shape{o[1], o[2]} : o;
}

// `s` less its leading 1s.
Shape squeezeLeading(const Shape &s) {
  size_t k = 0;
  while (k + 1 < s.size() && s[k] == 1) ++k;
  return Shape(s.begin() + long(k), s.end());
}

// What task `t`'s labels are, per sample, as the width error says it.
std::string labelNeed(const Task &t) {
  if (t.head.outShape.size() == 3)
    return fmt::format("task '{}' ({} on a {} head) takes a label {} per sample{}", t.name, vocab::name(t.loss),
                       shapeStr(t.head.outShape), shapeStr(denseLabelShape(t)),
                       t.loss == rt::LossKind::CrossEntropy ? ", a class index per pixel" : "");
  switch (t.loss) {
  case rt::LossKind::CrossEntropy:
    return fmt::format("task '{}' (cross_entropy) takes 1 label value per sample, the class index", t.name);
  case rt::LossKind::BCE:
    return fmt::format("task '{}' (bce) takes 1 label value per sample, 0 or 1", t.name);
  default:
    return fmt::format("task '{}' ({}) takes {} per sample, its head's width", t.name, vocab::name(t.loss),
                       plural(t.labelWidth, "label value"));
  }
}

// The width an error-free expression gives is the width its target takes; for npz, each source's
// array is checked (the first that differs reported, its shape shown).
void checkWidth(const ast::Binding &b, const CheckedExpr &expr, const TargetWidth &target, Diagnostics &diags) {
  if (!expr.ok || !target.expected) return;
  const int64_t expected = *target.expected;
  if (!expr.arrays.empty()) {
    for (const auto &[src, a] : expr.arrays) {
      const Shape perSample(a.shape.begin() + 1, a.shape.end());
      if (elementCount(perSample) == expected &&
          (target.shape.empty() || squeezeLeading(perSample) == squeezeLeading(target.shape)))
        continue;
      diags.error(b.expr.loc, fmt::format("{}, but array '{}' of {} is {} per sample ({})", target.need, a.name,
                                          src->shownAs, rt::shapeText(perSample),
                                          plural(elementCount(perSample), "value")));
      diags.note(target.declLoc, fmt::format("'{}' is declared here", b.target));
      return;
    }
  } else if (expr.width && *expr.width != expected) {
    diags.error(b.expr.loc, fmt::format("{}, but '{}' gives {}", target.need, ast::str(b.expr), *expr.width));
    diags.note(target.declLoc, fmt::format("'{}' is declared here", b.target));
  }
}

}  // namespace

void Analyzer::checkData() {
  if (prog_.datas.empty()) return;  // a model without data can still be compiled
  for (size_t i = 1; i < prog_.datas.size(); ++i) {
    diags_.error(prog_.datas[i].keywordLoc, "a program has one data block; this is the second");
    diags_.note(prog_.datas[0].keywordLoc, "the first data block is here");
  }
  const ast::DataBlock &block = prog_.datas[0];
  const DataSources sources = checkDataSources(block);
  BoundTargets bound;
  bound.inputs.resize(model_.inputs.size());
  bound.labels.resize(model_.tasks.size());
  for (const ast::Binding &b : block.bindings) checkBinding(b, sources, bound);
  checkEveryTargetBound(block, bound);
}

DataSources Analyzer::checkDataSources(const ast::DataBlock &block) {
  const std::filesystem::path dir = std::filesystem::path(model_.file).parent_path();
  DataSources sources;
  std::map<std::string, SourceRange> seenRole;
  for (const ast::DataSource &src : block.sources) {
    if (!checkRole(src, seenRole, diags_)) continue;
    seenRole[src.role] = src.roleLoc;
    sources.byRole[src.role] = checkSourceCall(src.call, dir, dataOverrides_.count(src.role) > 0, diags_);
  }
  applyOverrides(dataOverrides_, block.keywordLoc, sources.byRole, seenRole, diags_);
  if (!seenRole.count("train"))
    diags_.error(block.keywordLoc, "the data block has no 'train' source; add e.g. "
                                   "'train csv(\"data.csv\")' or 'train fashion_mnist(\"train\")'");
  const CheckedSource *train = sources.train(), *test = sources.test();
  if (train && train->info) model_.data.train = train->spec;
  if (test && test->info) model_.data.test = test->spec;
  if (train && train->info && test && test->info) compareTrainTest(*train, *test, diags_);
  if (const CheckedSource *val = sources.val(); val && val->info) {
    model_.data.val = val->spec;
    if (train && train->info) compareTrainTest(*train, *val, diags_, "val");
  }
  if (seenRole.count("val") && model_.train.validation > 0) {
    diags_.error(seenRole["val"], "a val source and `validation` in the train block both give a validation set; "
                                  "keep one of them");
    for (const ast::Setting &st : prog_.trains.empty() ? std::vector<ast::Setting>{} : prog_.trains[0].settings)
      if (st.name == "validation") diags_.note(st.nameLoc, "validation is set here");
  }
  return sources;
}

void Analyzer::checkBinding(const ast::Binding &b, const DataSources &sources, BoundTargets &bound) {
  const NameInfo *target = checkBindingTarget(b, bound);
  CheckedExpr expr = checkFieldRef(b.expr.field, sources, diags_);
  checkTransform(b.expr, expr, diags_);
  if (!target) return;
  const TargetWidth width = targetWidth(*target);
  checkWidth(b, expr, width, diags_);
  rt::Binding rb;
  rb.target = b.target;
  rb.expr = expr.expr;
  rb.width = width.expected ? *width.expected : (expr.width ? *expr.width : 1);
  (target->kind == NameKind::Input ? bound.inputs : bound.labels)[target->index] = rb;
}

const NameInfo *Analyzer::checkBindingTarget(const ast::Binding &b, BoundTargets &bound) {
  auto it = names_.find(b.target);
  if (it == names_.end()) {
    std::vector<std::string> candidates;
    for (const auto &[name, info] : names_)
      if (info.kind != NameKind::Shared) candidates.push_back(name);
    diags_.error(b.targetLoc, fmt::format("'{}' is not an input or a task{}", b.target,
                                          didYouMean(b.target, candidates)));
    bound.misspelt.insert(closestMatch(b.target, candidates));
    return nullptr;
  }
  if (it->second.kind == NameKind::Shared) {
    diags_.error(b.targetLoc, fmt::format("'{}' is a shared block; data binds inputs and task "
                                          "labels",
                                          b.target));
    diags_.note(it->second.loc, fmt::format("'{}' is defined here", b.target));
    return nullptr;
  }
  if (auto prev = bound.at.find(b.target); prev != bound.at.end()) {
    diags_.error(b.targetLoc, fmt::format("'{}' is bound twice", b.target));
    diags_.note(prev->second, "first bound here");
    return nullptr;
  }
  bound.at[b.target] = b.targetLoc;
  return &it->second;
}

TargetWidth Analyzer::targetWidth(const NameInfo &target) const {
  TargetWidth out;
  if (target.kind == NameKind::Input) {
    if (inputOk_[target.index]) {
      const Input &in = model_.inputs[target.index];
      out.expected = elementCount(in.shape);
      out.need = fmt::format("input '{}' takes {} per sample (f32{})", in.name, plural(*out.expected, "value"),
                             shapeStr(in.shape));
      out.declLoc = inputDecls_[target.index]->shapeLoc;
    }
  } else if (taskHeadOk_[target.index]) {
    const Task &t = model_.tasks[target.index];
    out.expected = t.labelWidth;
    out.need = labelNeed(t);
    if (t.head.outShape.size() == 3) out.shape = denseLabelShape(t);
    out.declLoc = taskDecls_[target.index]->nameLoc;
  }
  return out;
}

void Analyzer::checkEveryTargetBound(const ast::DataBlock &block, const BoundTargets &bound) {
  for (size_t i = 0; i < model_.inputs.size(); ++i) {
    if (bound.inputs[i]) {
      model_.data.inputs.push_back(*bound.inputs[i]);
      continue;
    }
    const std::string &name = model_.inputs[i].name;
    if (bound.misspelt.count(name)) continue;
    diags_.error(block.keywordLoc, fmt::format("no data binding for input '{}'; add '{} = FIELD' "
                                               "to the data block",
                                               name, name));
    diags_.note(inputDecls_[i]->nameLoc, fmt::format("input '{}' is declared here", name));
  }
  for (size_t i = 0; i < model_.tasks.size(); ++i) {
    if (bound.labels[i]) {
      model_.data.labels.push_back(*bound.labels[i]);
      continue;
    }
    const std::string &name = model_.tasks[i].name;
    if (bound.misspelt.count(name)) continue;
    diags_.error(block.keywordLoc, fmt::format("no data binding for the label of task '{}'; add "
                                               "'{} = FIELD' to the data block",
                                               name, name));
    diags_.note(taskDecls_[i]->nameLoc, fmt::format("task '{}' is declared here", name));
  }
}

}  // namespace detail
}  // namespace mtlc::sema
