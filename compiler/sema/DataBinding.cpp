// The data block: sources (`train fashion_mnist("train")`), bindings (`image = pixels`) and the
// widths they give, checked against the inputs and task labels where statically known.
#include "sema/SemaInternal.h"

#include <algorithm>
#include <filesystem>
#include <fmt/format.h>

namespace mtlc::sema {

namespace {

enum class Family { Images, Csv };

struct SourceInfo {
  const char *name;
  bool supported;
  Family family;
  std::vector<detail::ParamDef> params;
  bool paths;          // string arguments are file paths (resolved against the .mtl directory)
  const char *example;
};

const std::vector<SourceInfo> &sourceTable() {
  using namespace detail;
  static const std::vector<SourceInfo> table = {
      {"fashion_mnist", true, Family::Images, {stringParam("split", true, {"train", "test"})}, false,
       "fashion_mnist(\"train\")"},
      {"idx", true, Family::Images, {stringParam("images", true), stringParam("labels", true)}, true,
       "idx(\"images.idx\", \"labels.idx\")"},
      {"csv", true, Family::Csv, {stringParam("path", true)}, true, "csv(\"data.csv\")"},
      // Known to the language (LANGUAGE.md) and the runtime, not yet to the compiler.
      {"synthetic_mmoe", false, Family::Csv, {}, false, ""},
      {"multi_fashion", false, Family::Images, {}, false, ""},
  };
  return table;
}

const SourceInfo *findSource(const std::string &name) {
  for (const auto &s : sourceTable())
    if (name == s.name) return &s;
  return nullptr;
}

constexpr int64_t kFashionPixels = 28 * 28;

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
  SourceRange loc;
};

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
      if (hint.empty()) hint = "; the sources are fashion_mnist, idx and csv";
      diags_.error(c.nameLoc, fmt::format("unknown data source '{}'{}", c.name, hint));
    } else if (!info->supported) {
      diags_.error(c.nameLoc, fmt::format("data source '{}' is not supported yet; use "
                                          "fashion_mnist, idx or csv",
                                          c.name));
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
      }
    }
    sources[src.role] = cs;
  }
  if (!seenRole.count("train"))
    diags_.error(block.keywordLoc, "the data block has no 'train' source; add e.g. "
                                   "'train csv(\"data.csv\")' or 'train fashion_mnist(\"train\")'");
  const CheckedSource *train = sources.count("train") ? &sources["train"] : nullptr;
  const CheckedSource *test = sources.count("test") ? &sources["test"] : nullptr;
  if (train && train->info) model_.data.train = train->spec;
  if (test && test->info) model_.data.test = test->spec;
  if (train && train->info && test && test->info && train->info->family != test->info->family) {
    diags_.error(test->loc, fmt::format("the test source {} does not have the same fields as the "
                                        "train source {}",
                                        test->info->name, train->info->name));
    diags_.note(train->loc, "the train source is here");
  }
  // The fields the bindings read come from the train source (or the test source alone).
  const SourceInfo *fields = train && train->info ? train->info
                             : !train && test && test->info ? test->info
                                                            : nullptr;

  // ---- Bindings
  std::vector<std::optional<rt::Binding>> inputBinds(model_.inputs.size()), labelBinds(model_.tasks.size());
  std::map<std::string, SourceRange> bound;
  for (const ast::Binding &b : block.bindings) {
    auto it = names_.find(b.target);
    bool targetOk = true;
    if (it == names_.end()) {
      std::vector<std::string> candidates;
      for (const auto &[name, info] : names_)
        if (info.kind != NameKind::Shared) candidates.push_back(name);
      diags_.error(b.targetLoc, fmt::format("'{}' is not an input or a task{}", b.target,
                                            didYouMean(b.target, candidates)));
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
    if (fields && fields->family == Family::Images) {
      if (f.hasParens) {
        diags_.error(f.loc, fmt::format("{}(...) is not a field of {}; its fields are pixels and label{}",
                                        f.name, fields->name,
                                        f.name == "columns" ? " (columns(...) selects csv columns)" : ""));
        exprOk = false;
      } else if (f.name != "pixels" && f.name != "label") {
        std::string hint = didYouMean(f.name, {"pixels", "label"});
        if (hint.empty()) hint = "; its fields are pixels and label";
        diags_.error(f.nameLoc, fmt::format("{} has no field '{}'{}", fields->name, f.name, hint));
        exprOk = false;
      } else {
        re.ref.field = f.name;
        if (f.name == "label") width = 1;
        else if (std::string(fields->name) == "fashion_mnist") width = kFashionPixels;
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
                           t.loss == rt::LossKind::MSE ? "mse" : "l1", plural(t.labelWidth, "label value"));
        break;
      }
      declLoc = taskDecls_[info.index]->nameLoc;
    }
    if (exprOk && width && expected && *width != *expected) {
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
    diags_.error(block.keywordLoc, fmt::format("no data binding for the label of task '{}'; add "
                                               "'{} = FIELD' to the data block",
                                               name, name));
    diags_.note(taskDecls_[i]->nameLoc, fmt::format("task '{}' is declared here", name));
  }
}

}  // namespace detail
}  // namespace mtlc::sema
