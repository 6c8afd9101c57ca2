// Binding a call's arguments (`conv2d(32, kernel=3)`, `adam(lr=0.01)`) to a parameter list.
#include "sema/SemaInternal.h"

#include <fmt/format.h>

namespace mtlc::sema::detail {

ParamDef intParam(std::string name, bool required, double def, double lo) {
  ParamDef p;
  p.name = std::move(name);
  p.type = ParamDef::Type::Int;
  p.required = required;
  p.def = def;
  p.lo = lo;
  p.hi = static_cast<double>(kMaxInt);
  return p;
}

ParamDef realParam(std::string name, bool required, double def) {
  ParamDef p;
  p.name = std::move(name);
  p.type = ParamDef::Type::Real;
  p.required = required;
  p.def = def;
  return p;
}

ParamDef stringParam(std::string name, bool required, std::vector<std::string> choices) {
  ParamDef p;
  p.name = std::move(name);
  p.type = ParamDef::Type::String;
  p.required = required;
  p.choices = std::move(choices);
  return p;
}

std::string fmtNum(double v) {
  if (std::isfinite(v) && v == std::floor(v) && std::fabs(v) < 1e15)
    return fmt::format("{}", static_cast<int64_t>(v));
  return fmt::format("{}", v);
}

double BoundArgs::num(const std::string &name) const { return at(name).number; }

const ArgValue &BoundArgs::at(const std::string &name) const {
  static const ArgValue none;
  auto it = values.find(name);
  return it == values.end() ? none : it->second;
}

namespace {

std::string describeValue(const ast::Value &v) {
  switch (v.kind) {
  case ast::Value::Kind::Number: return v.text;
  case ast::Value::Kind::String: return "the string " + ast::str(v);
  case ast::Value::Kind::Name: return "the name '" + v.text + "'";
  case ast::Value::Kind::List: return "the list " + v.text;
  }
  return "?";
}

std::string rangeText(const ParamDef &p) {
  bool hasLo = std::isfinite(p.lo), hasHi = std::isfinite(p.hi) && p.hi < static_cast<double>(kMaxInt);
  if (hasLo && hasHi)
    return fmt::format("in {}{}, {}{}", p.loOpen ? "(" : "[", fmtNum(p.lo), fmtNum(p.hi),
                       p.hiOpen ? ")" : "]");
  if (hasLo) return (p.loOpen ? "greater than " : "at least ") + fmtNum(p.lo);
  if (hasHi) return (p.hiOpen ? "less than " : "at most ") + fmtNum(p.hi);
  return "";
}

std::string paramList(const std::vector<ParamDef> &params) {
  std::vector<std::string> names;
  for (const auto &p : params) names.push_back(p.name);
  std::string out;
  for (size_t i = 0; i < names.size(); ++i) {
    if (i) out += i + 1 == names.size() ? " and " : ", ";
    out += names[i];
  }
  return out;
}

// `{a, b, ...}`: integers of at least p.lo, each larger than the one before.
bool convertList(const ast::Value &v, const ParamDef &p, const std::string &arg, ArgValue &out,
                 Diagnostics &diags) {
  if (v.kind != ast::Value::Kind::List) {
    diags.error(v.loc, fmt::format("{} must be a list of integers such as {{15, 30}}, got {}", arg, describeValue(v)));
    return false;
  }
  for (const ast::Value &item : v.items) {
    if (!item.isInteger || item.number < p.lo || item.number > static_cast<double>(kMaxInt)) {
      diags.error(item.loc, fmt::format("{} must list integers of at least {}, got {}", arg, fmtNum(p.lo), item.text));
      return false;
    }
    if (!out.list.empty() && item.number <= static_cast<double>(out.list.back())) {
      diags.error(item.loc, fmt::format("{} must list increasing integers, got {} after {}", arg, item.text,
                                        out.list.back()));
      return false;
    }
    out.list.push_back(static_cast<int64_t>(item.number));
  }
  return true;
}

// Checks one value against its parameter; reports and returns false on a mismatch.
bool convert(const ast::Value &v, const ParamDef &p, const std::string &what, ArgValue &out,
             Diagnostics &diags) {
  out.given = true;
  out.loc = v.loc;
  std::string arg = "'" + p.name + "' of " + what;
  switch (p.type) {
  case ParamDef::Type::Int:
  case ParamDef::Type::Real: {
    if (v.kind != ast::Value::Kind::Number) {
      diags.error(v.loc, fmt::format("{} must be {}, got {}", arg,
                                     p.type == ParamDef::Type::Int ? "an integer" : "a number",
                                     describeValue(v)));
      return false;
    }
    if (!std::isfinite(v.number)) {
      diags.error(v.loc, fmt::format("the number {} is out of range", v.text));
      return false;
    }
    if (p.type == ParamDef::Type::Int && v.number != std::floor(v.number)) {
      diags.error(v.loc, fmt::format("{} must be an integer, got {}", arg, v.text));
      return false;
    }
    bool tooLow = p.loOpen ? !(v.number > p.lo) : !(v.number >= p.lo);
    bool tooHigh = p.hiOpen ? !(v.number < p.hi) : !(v.number <= p.hi);
    if (tooLow || tooHigh) {
      if (tooHigh && p.hi >= static_cast<double>(kMaxInt))
        diags.error(v.loc, fmt::format("{} is too large: {} (at most {})", arg, v.text, kMaxInt));
      else
        diags.error(v.loc, fmt::format("{} must be {}, got {}", arg, rangeText(p), v.text));
      return false;
    }
    out.number = v.number;
    return true;
  }
  case ParamDef::Type::String: {
    if (v.kind != ast::Value::Kind::String) {
      std::string hint = v.kind == ast::Value::Kind::Name ? fmt::format(" (write \"{}\")", v.text) : "";
      diags.error(v.loc, fmt::format("{} must be a string, got {}{}", arg, describeValue(v), hint));
      return false;
    }
    if (!p.choices.empty()) {
      bool found = false;
      for (const auto &c : p.choices) found |= c == v.text;
      if (!found) {
        std::string list;
        for (size_t i = 0; i < p.choices.size(); ++i)
          list += (i ? (i + 1 == p.choices.size() ? " or " : ", ") : "") + ("\"" + p.choices[i] + "\"");
        diags.error(v.loc, fmt::format("{} must be {}, got {}{}", arg, list, ast::str(v),
                                       didYouMean(v.text, p.choices)));
        return false;
      }
    }
    out.text = v.text;
    return true;
  }
  case ParamDef::Type::Bool: {
    if (v.kind != ast::Value::Kind::Name || (v.text != "true" && v.text != "false")) {
      diags.error(v.loc, fmt::format("{} must be true or false, got {}", arg, describeValue(v)));
      return false;
    }
    out.number = v.text == "true" ? 1 : 0;
    return true;
  }
  case ParamDef::Type::IntList: return convertList(v, p, arg, out, diags);
  case ParamDef::Type::Choice: {
    for (size_t i = 0; i < p.choices.size(); ++i)
      if (v.kind != ast::Value::Kind::Number && v.text == p.choices[i]) {
        out.number = double(i);
        out.text = v.text;
        return true;
      }
    std::string list;
    for (size_t i = 0; i < p.choices.size(); ++i)
      list += (i ? (i + 1 == p.choices.size() ? " or " : ", ") : "") + p.choices[i];
    diags.error(v.loc, fmt::format("{} must be {}, got {}{}", arg, list, describeValue(v),
                                   v.kind == ast::Value::Kind::Number ? "" : didYouMean(v.text, p.choices)));
    return false;
  }
  }
  return false;
}

}  // namespace

BoundArgs bindArgs(const ast::Call &call, const std::string &what,
                   const std::vector<ParamDef> &params, const std::string &example,
                   Diagnostics &diags) {
  BoundArgs out;
  std::map<std::string, SourceRange> givenAt;
  // Positional arguments, in parameter order.
  for (size_t i = 0; i < call.positional.size(); ++i) {
    const ast::Value &v = call.positional[i];
    if (i >= params.size()) {
      if (params.empty())
        diags.error(v.loc, fmt::format("{} takes no arguments", what));
      else
        diags.error(v.loc, fmt::format("too many arguments for {}: it takes {} ({})", what,
                                       params.size(), paramList(params)));
      out.ok = false;
      break;
    }
    const ParamDef &p = params[i];
    ArgValue a;
    if (!convert(v, p, what, a, diags)) out.ok = false;
    out.values[p.name] = a;
    givenAt[p.name] = v.loc;
  }
  // Keyword arguments.
  for (const auto &k : call.keyword) {
    const ParamDef *p = nullptr;
    for (const auto &q : params)
      if (q.name == k.key) p = &q;
    if (!p) {
      std::vector<std::string> names;
      for (const auto &q : params) names.push_back(q.name);
      std::string hint = didYouMean(k.key, names);
      if (hint.empty())
        hint = params.empty() ? fmt::format("; {} takes no arguments", what)
                              : fmt::format("; {} accepts {}", what, paramList(params));
      diags.error(k.keyLoc, fmt::format("unknown argument '{}' for {}{}", k.key, what, hint));
      out.ok = false;
      continue;
    }
    if (auto it = givenAt.find(p->name); it != givenAt.end()) {
      diags.error(k.loc, fmt::format("argument '{}' of {} is given twice", p->name, what));
      diags.note(it->second, "first given here");
      out.ok = false;
      continue;
    }
    ArgValue a;
    if (!convert(k.value, *p, what, a, diags)) out.ok = false;
    out.values[p->name] = a;
    givenAt[p->name] = k.loc;
  }
  // Missing required arguments and defaults.
  for (const auto &p : params) {
    if (givenAt.count(p.name)) continue;
    if (p.required) {
      std::string ex = example.empty() ? "" : fmt::format(", e.g. {}", example);
      diags.error(call.loc, fmt::format("{} needs the argument '{}'{}", what, p.name, ex));
      out.ok = false;
      continue;
    }
    ArgValue a;
    a.number = p.def;
    a.loc = call.loc;
    out.values[p.name] = a;
  }
  return out;
}

}  // namespace mtlc::sema::detail
