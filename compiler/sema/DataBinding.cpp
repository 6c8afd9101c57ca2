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
    std::error_code ec;
    const bool relative = !relativeTo.empty() && std::filesystem::path(shownAs).is_relative() &&
                          !std::filesystem::exists(path, ec);
    diags.error(at, fmt::format("{}{}", e.what(),
                                relative ? " (a path in a .mtl file is relative to the file's folder)" : ""));
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
    std::error_code ec;
    const bool relative = !relativeTo.empty() && std::filesystem::path(shownAs).is_relative() &&
                          !std::filesystem::exists(path, ec);
    diags.error(at, fmt::format("{}{}", e.what(),
                                relative ? " (a path in a .mtl file is relative to the file's folder)" : ""));
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

}  // namespace

void Analyzer::checkData() {
  if (prog_.datas.empty()) return;  // a model without data can still be compiled
  for (size_t i = 1; i < prog_.datas.size(); ++i) {
    diags_.error(prog_.datas[i].keywordLoc, "a program has one data block; this is the second");
    diags_.note(prog_.datas[0].keywordLoc, "the first data block is here");
  }
  const ast::DataBlock &block = prog_.datas[0];
  namespace fs = std::filesystem;
  fs::path dir = fs::path(model_.file).parent_path();

  // ---- Sources
  std::map<std::string, CheckedSource> sources;  // "train" / "test"
  std::map<std::string, SourceRange> seenRole;
  for (const ast::DataSource &src : block.sources) {
    if (src.role != "train" && src.role != "test") {
      std::string hint = didYouMean(src.role, {"train", "test"});
      if (hint.empty()) hint = "; a data block has 'train SOURCE' and optionally 'test SOURCE'";
      diags_.error(src.roleLoc, fmt::format("unknown data role '{}'{}", src.role, hint));
      continue;
    }
    if (auto it = seenRole.find(src.role); it != seenRole.end()) {
      diags_.error(src.roleLoc, fmt::format("the {} source is given twice", src.role));
      diags_.note(it->second, "first given here");
      continue;
    }
    seenRole[src.role] = src.roleLoc;
    CheckedSource cs;
    cs.loc = src.call.loc;
    const ast::Call &c = src.call;
    const SourceInfo *info = findSource(c.name);
    if (!info) {
      std::string hint = didYouMean(c.name, knownSources());
      if (hint.empty()) hint = "; the sources are fashion_mnist, idx, csv, npz, npy, synthetic_mmoe and multi_fashion";
      diags_.error(c.nameLoc, fmt::format("unknown data source '{}'{}", c.name, hint));
    } else {
      BoundArgs a = bindArgs(c, fmt::format("data source '{}'", c.name), info->params, info->example,
                             diags_);
      if (a.ok) {
        cs.info = info;
        cs.spec.kind = info->name;
        for (const auto &p : info->params) {
          const ArgValue &v = a.at(p.name);
          if (p.type == ParamDef::Type::String) {
            std::string arg = v.text;
            if (info->paths && !arg.empty() && fs::path(arg).is_relative() && !dir.empty())
              arg = (dir / arg).lexically_normal().string();
            if (info->paths && arg.empty()) {
              diags_.error(v.loc, "a file path must not be empty");
              cs.info = nullptr;
            }
            cs.spec.args.push_back(arg);
          } else {
            cs.spec.options[p.name] = v.number;
          }
        }
        if (cs.info) setFields(cs, *info);
        if (cs.info && info->family == Family::Csv && !dataOverrides_.count(src.role))
          readColumns(cs, cs.spec.args[0], a.at("path").text, a.at("path").loc, dir.string(), diags_);
        if (cs.info && info->family == Family::Npz && !dataOverrides_.count(src.role))
          readArrays(cs, cs.spec.args[0], a.at("path").text, a.at("path").loc, dir.string(), diags_);
      }
    }
    sources[src.role] = cs;
  }
  applyOverrides(dataOverrides_, block.keywordLoc, sources, seenRole, diags_);
  if (!seenRole.count("train"))
    diags_.error(block.keywordLoc, "the data block has no 'train' source; add e.g. "
                                   "'train csv(\"data.csv\")' or 'train fashion_mnist(\"train\")'");
  const CheckedSource *train = sources.count("train") ? &sources["train"] : nullptr;
  const CheckedSource *test = sources.count("test") ? &sources["test"] : nullptr;
  if (train && train->info) model_.data.train = train->spec;
  if (test && test->info) model_.data.test = test->spec;
  if (train && train->info && test && test->info) {
    std::vector<std::string> trainNames, testNames;
    for (const auto &f : train->fields) trainNames.push_back(f.first);
    for (const auto &f : test->fields) testNames.push_back(f.first);
    if (train->info->family != test->info->family || trainNames != testNames) {
      diags_.error(test->loc, fmt::format("the test source {} does not have the same fields as the "
                                          "train source {}",
                                          test->info->name, train->info->name));
      diags_.note(train->loc, "the train source is here");
    } else {
      for (size_t i = 0; i < train->fields.size(); ++i) {
        int64_t a = train->fields[i].second, b = test->fields[i].second;
        if (a > 0 && b > 0 && a != b) {
          diags_.error(test->loc, fmt::format("the test source gives field '{}' {} values per "
                                              "sample, the train source {}",
                                              train->fields[i].first, b, a));
          diags_.note(train->loc, "the train source is here");
        }
      }
    }
  }
  // The fields the bindings read come from the train source (or the test source alone).
  const CheckedSource *fieldSource = train && train->info ? train
                                     : !train && test && test->info ? test
                                                                    : nullptr;
  const SourceInfo *fields = fieldSource ? fieldSource->info : nullptr;

  // ---- Bindings
  std::vector<std::optional<rt::Binding>> inputBinds(model_.inputs.size()), labelBinds(model_.tasks.size());
  std::map<std::string, SourceRange> bound;
  std::set<std::string> misspelt;  // names suggested for a misspelt target: not also "missing"
  for (const ast::Binding &b : block.bindings) {
    auto it = names_.find(b.target);
    bool targetOk = true;
    if (it == names_.end()) {
      std::vector<std::string> candidates;
      for (const auto &[name, info] : names_)
        if (info.kind != NameKind::Shared) candidates.push_back(name);
      diags_.error(b.targetLoc, fmt::format("'{}' is not an input or a task{}", b.target,
                                            didYouMean(b.target, candidates)));
      misspelt.insert(closestMatch(b.target, candidates));
      targetOk = false;
    } else if (it->second.kind == NameKind::Shared) {
      diags_.error(b.targetLoc, fmt::format("'{}' is a shared block; data binds inputs and task "
                                            "labels",
                                            b.target));
      diags_.note(it->second.loc, fmt::format("'{}' is defined here", b.target));
      targetOk = false;
    } else if (auto prev = bound.find(b.target); prev != bound.end()) {
      diags_.error(b.targetLoc, fmt::format("'{}' is bound twice", b.target));
      diags_.note(prev->second, "first bound here");
      targetOk = false;
    }
    if (targetOk) bound[b.target] = b.targetLoc;

    // The expression.
    const ast::BindExpr &e = b.expr;
    const ast::FieldRef &f = e.field;
    rt::BindExpr re;
    re.op = convertOp(e.op);
    std::optional<int64_t> width;  // values per sample the expression gives, when known
    bool exprOk = true;
    std::vector<std::pair<const CheckedSource *, rt::NpyArrayInfo>> arrays;  // npz: per source read
    if (fields && fields->family == Family::Npz) {
      if (f.hasParens) {
        diags_.error(f.loc, fmt::format("{}(...) is not an array of {}; a field of {}(...) is an array's name",
                                        f.name, fieldSource->shownAs, fields->name));
        exprOk = false;
      } else {
        re.ref.field = f.name;
        for (const CheckedSource *src : {train, test})
          if (exprOk && src && src->info && src->info->family == Family::Npz && src->arrays) {
            const rt::NpyArrayInfo *a = findArray(f, *src, diags_);
            if (a) arrays.push_back({src, *a});
            exprOk = a != nullptr;
          }
        if (!arrays.empty()) {
          const std::vector<int64_t> &shape = arrays.front().second.shape;
          width = elementCount(Shape(shape.begin() + 1, shape.end()));
        }
      }
    } else if (fields && fields->family != Family::Csv) {
      const auto &known = fieldSource->fields;
      std::vector<std::string> names;
      for (const auto &kf : known) names.push_back(kf.first);
      auto found = std::find(names.begin(), names.end(), f.name);
      if (f.hasParens) {
        diags_.error(f.loc, fmt::format("{}(...) is not a field of {}; its fields are {}{}",
                                        f.name, fields->name, fieldList(known),
                                        f.name == "columns" ? " (columns(...) selects csv columns)" : ""));
        exprOk = false;
      } else if (found == names.end()) {
        std::string hint = didYouMean(f.name, names);
        if (hint.empty()) hint = "; its fields are " + fieldList(known);
        diags_.error(f.nameLoc, fmt::format("{} has no field '{}'{}", fields->name, f.name, hint));
        exprOk = false;
      } else {
        re.ref.field = f.name;
        int64_t w = known[static_cast<size_t>(found - names.begin())].second;
        if (w > 0) width = w;
        // idx pixels: the image size is known when the file is read (the runtime checks it)
      }
    } else if (fields && fields->family == Family::Csv) {
      if (!f.hasParens) {
        re.ref.field = f.name;  // a column name (the runtime checks the header)
        width = 1;
      } else if (f.name != "columns") {
        std::string hint = didYouMean(f.name, {"columns"});
        diags_.error(f.nameLoc, fmt::format("unknown field selector '{}(...)'{}; a csv field is a "
                                            "column name, columns(\"a\", \"b\") or columns(3..10)",
                                            f.name, hint));
        exprOk = false;
      } else {
        bool allNames = std::all_of(f.columns.begin(), f.columns.end(), [](const ast::ColumnSel &c) { return c.isName; });
        if (allNames) {
          for (const auto &c : f.columns) re.ref.columns.push_back(c.name);
          width = static_cast<int64_t>(f.columns.size());
        } else if (f.columns.size() != 1) {
          diags_.error(f.loc, "columns(...) takes column names (columns(\"a\", \"b\")) or one range "
                              "of positions (columns(3..10)), not a mix or a list of positions");
          exprOk = false;
        } else {
          const ast::ColumnSel &c = f.columns[0];
          if (c.overflow || c.first > kMaxInt || c.last > kMaxInt) {
            diags_.error(c.loc, fmt::format("column position is too large (at most {})", kMaxInt));
            exprOk = false;
          } else if (c.last < c.first) {
            diags_.error(c.loc, fmt::format("empty column range {}..{}: the first position must not "
                                            "exceed the last",
                                            c.first, c.last));
            exprOk = false;
          } else {
            re.ref.colFirst = c.first;
            re.ref.colLast = c.last;
            width = c.last - c.first + 1;
          }
        }
      }
    } else {
      exprOk = false;  // no usable source: the field cannot be checked (already reported)
    }
    // Csv: the columns are in the header of every csv source the binding reads (train, then test:
    // one error per binding).
    if (exprOk && fields && fields->family == Family::Csv)
      for (const CheckedSource *src : {train, test})
        if (exprOk && src && src->info && src->info->family == Family::Csv) exprOk = checkColumns(f, *src, diags_);
    // The transform.
    if (e.op == ast::BindExpr::Op::In) {
      for (const ast::Value &v : e.set) {
        if (!std::isfinite(v.number)) {
          diags_.error(v.loc, fmt::format("the number {} is out of range", v.text));
          exprOk = false;
        }
        re.set.push_back(v.number);
      }
    } else if (e.op != ast::BindExpr::Op::Field) {
      const ast::Value &v = e.operand;
      if (!std::isfinite(v.number)) {
        diags_.error(v.loc, fmt::format("the number {} is out of range", v.text));
        exprOk = false;
      } else if (e.op == ast::BindExpr::Op::Div && v.number == 0) {
        diags_.error(v.loc, "division by zero");
        exprOk = false;
      }
      re.value = v.number;
    }
    if (!targetOk) continue;

    // The width the target expects.
    const NameInfo &info = it->second;
    std::optional<int64_t> expected;
    std::string need;
    SourceRange declLoc;
    if (info.kind == NameKind::Input) {
      if (inputOk_[info.index]) {
        const Input &in = model_.inputs[info.index];
        expected = elementCount(in.shape);
        need = fmt::format("input '{}' takes {} per sample (f32{})", in.name,
                           plural(*expected, "value"), shapeStr(in.shape));
        declLoc = inputDecls_[info.index]->shapeLoc;
      }
    } else if (taskHeadOk_[info.index]) {
      const Task &t = model_.tasks[info.index];
      expected = t.labelWidth;
      switch (t.loss) {
      case rt::LossKind::CrossEntropy:
        need = fmt::format("task '{}' (cross_entropy) takes 1 label value per sample, the class index", t.name);
        break;
      case rt::LossKind::BCE:
        need = fmt::format("task '{}' (bce) takes 1 label value per sample, 0 or 1", t.name);
        break;
      default:
        need = fmt::format("task '{}' ({}) takes {} per sample, its head's width", t.name,
                           vocab::name(t.loss), plural(t.labelWidth, "label value"));
        break;
      }
      declLoc = taskDecls_[info.index]->nameLoc;
    }
    if (exprOk && expected && !arrays.empty()) {  // npz: each source's array, its shape shown
      for (const auto &[src, a] : arrays) {
        const Shape perSample(a.shape.begin() + 1, a.shape.end());
        if (elementCount(perSample) == *expected) continue;
        diags_.error(e.loc, fmt::format("{}, but array '{}' of {} is {} per sample ({})", need, a.name, src->shownAs,
                                        rt::shapeText(perSample), plural(elementCount(perSample), "value")));
        diags_.note(declLoc, fmt::format("'{}' is declared here", b.target));
        break;
      }
    } else if (exprOk && width && expected && *width != *expected) {
      diags_.error(e.loc, fmt::format("{}, but '{}' gives {}", need, ast::str(e), *width));
      diags_.note(declLoc, fmt::format("'{}' is declared here", b.target));
    }
    rt::Binding rb;
    rb.target = b.target;
    rb.expr = re;
    rb.width = expected ? *expected : (width ? *width : 1);
    (info.kind == NameKind::Input ? inputBinds : labelBinds)[info.index] = rb;
  }

  // ---- Every input and every task label is bound.
  for (size_t i = 0; i < model_.inputs.size(); ++i) {
    if (inputBinds[i]) {
      model_.data.inputs.push_back(*inputBinds[i]);
      continue;
    }
    const std::string &name = model_.inputs[i].name;
    if (misspelt.count(name)) continue;
    diags_.error(block.keywordLoc, fmt::format("no data binding for input '{}'; add '{} = FIELD' "
                                               "to the data block",
                                               name, name));
    diags_.note(inputDecls_[i]->nameLoc, fmt::format("input '{}' is declared here", name));
  }
  for (size_t i = 0; i < model_.tasks.size(); ++i) {
    if (labelBinds[i]) {
      model_.data.labels.push_back(*labelBinds[i]);
      continue;
    }
    const std::string &name = model_.tasks[i].name;
    if (misspelt.count(name)) continue;
    diags_.error(block.keywordLoc, fmt::format("no data binding for the label of task '{}'; add "
                                               "'{} = FIELD' to the data block",
                                               name, name));
    diags_.note(taskDecls_[i]->nameLoc, fmt::format("task '{}' is declared here", name));
  }
}

}  // namespace detail
}  // namespace mtlc::sema
