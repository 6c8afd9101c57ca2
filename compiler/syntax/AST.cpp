#include "syntax/AST.h"

#include <ostream>
#include <sstream>

namespace mtlc::ast {

const char *opSpelling(BindExpr::Op op) {
  switch (op) {
  case BindExpr::Op::Field: return "";
  case BindExpr::Op::Div: return "/";
  case BindExpr::Op::Mul: return "*";
  case BindExpr::Op::Add: return "+";
  case BindExpr::Op::Sub: return "-";
  case BindExpr::Op::In: return "in";
  case BindExpr::Op::Eq: return "==";
  case BindExpr::Op::Ne: return "!=";
  case BindExpr::Op::Gt: return ">";
  case BindExpr::Op::Ge: return ">=";
  case BindExpr::Op::Lt: return "<";
  case BindExpr::Op::Le: return "<=";
  }
  return "?";
}

std::string str(const Value &v) {
  switch (v.kind) {
  case Value::Kind::Number: return v.text;
  case Value::Kind::Name: return v.text;
  case Value::Kind::List: {
    std::string out = "{";
    for (size_t i = 0; i < v.items.size(); ++i) out += (i ? ", " : "") + str(v.items[i]);
    return out + "}";
  }
  case Value::Kind::String: {
    std::string out = "\"";
    for (char c : v.text) {
      if (c == '"' || c == '\\') out += '\\';
      if (c == '\n') { out += "\\n"; continue; }
      if (c == '\t') { out += "\\t"; continue; }
      out += c;
    }
    return out + "\"";
  }
  }
  return "?";
}

namespace {

// ` { dense(16) -> relu ; dense(8) }` or "".
std::string bodyStr(const Call &c) {
  if (!c.hasBody) return "";
  std::string out = " {";
  for (size_t s = 0; s < c.body.size(); ++s) {
    if (s) out += " ;";
    for (size_t i = 0; i < c.body[s].size(); ++i) out += (i ? " -> " : " ") + str(c.body[s][i]);
  }
  return out + " }";
}

}  // namespace

std::string str(const Call &c) {
  std::string out = c.name;
  if (!c.hasParens) return out + bodyStr(c);
  out += '(';
  bool first = true;
  for (const auto &v : c.positional) {
    if (!first) out += ", ";
    out += str(v);
    first = false;
  }
  for (const auto &k : c.keyword) {
    if (!first) out += ", ";
    out += k.key + "=" + str(k.value);
    first = false;
  }
  out += ')';
  return out + bodyStr(c);
}

std::string str(const FieldRef &f) {
  std::string out = f.name;
  if (!f.hasParens) return out;
  out += '(';
  for (size_t i = 0; i < f.columns.size(); ++i) {
    const ColumnSel &c = f.columns[i];
    if (i) out += ", ";
    if (c.isName) {
      Value v;
      v.kind = Value::Kind::String;
      v.text = c.name;
      out += str(v);
    } else if (c.isRange) {
      out += std::to_string(c.first) + ".." + std::to_string(c.last);
    } else {
      out += std::to_string(c.first);
    }
  }
  return out + ')';
}

std::string str(const BindExpr &e) {
  std::string out = str(e.field);
  if (e.op == BindExpr::Op::Field) return out;
  out += std::string(" ") + opSpelling(e.op) + " ";
  if (e.op == BindExpr::Op::In) {
    out += '{';
    for (size_t i = 0; i < e.set.size(); ++i) out += (i ? ", " : "") + str(e.set[i]);
    return out + '}';
  }
  return out + str(e.operand);
}

std::string str(const SourceRange &r) {
  return "<" + std::to_string(r.begin.line) + ":" + std::to_string(r.begin.column) + "-" +
         std::to_string(r.end.line) + ":" + std::to_string(r.end.column) + ">";
}

std::string sourceStr(const Pipeline &p) {
  switch (p.sourceKind) {
  case Pipeline::SourceKind::Name: return p.source;
  case Pipeline::SourceKind::Gate: return "gate(" + p.source + ")";
  case Pipeline::SourceKind::Call: {
    std::string out = p.source + "(";
    for (size_t i = 0; i < p.sourceArgs.size(); ++i) out += (i ? ", " : "") + p.sourceArgs[i].name;
    return out + ")";
  }
  }
  return "?";
}

namespace {

void dumpPipeline(const Pipeline &p, std::ostream &os, const std::string &ind) {
  os << ind << "Pipeline " << str(p.loc) << '\n';
  const char *kind = p.sourceKind == Pipeline::SourceKind::Gate   ? "GateSource"
                     : p.sourceKind == Pipeline::SourceKind::Call ? "CallSource"
                                                                  : "Source";
  os << ind << "  " << kind << ' ' << sourceStr(p) << ' ' << str(p.sourceLoc) << '\n';
  for (const auto &l : p.layers) os << ind << "  Layer " << str(l) << ' ' << str(l.loc) << '\n';
}

}  // namespace

void dump(const Program &program, std::ostream &os) {
  os << "Program\n";
  for (const auto &item : program.order) {
    switch (item.kind) {
    case Program::ItemKind::Model: {
      const auto &m = program.models[item.index];
      os << "  Model " << m.name << ' ' << str(m.loc) << '\n';
      break;
    }
    case Program::ItemKind::Input: {
      const auto &in = program.inputs[item.index];
      os << "  Input " << in.name << " : " << in.dtype << '[';
      for (size_t i = 0; i < in.dims.size(); ++i) os << (i ? ", " : "") << str(in.dims[i]);
      os << "] " << str(in.loc) << '\n';
      break;
    }
    case Program::ItemKind::Shared: {
      const auto &s = program.shared[item.index];
      os << "  Shared " << s.name << ' ' << str(s.loc) << '\n';
      dumpPipeline(s.pipeline, os, "    ");
      break;
    }
    case Program::ItemKind::Task: {
      const auto &t = program.tasks[item.index];
      os << "  Task " << t.name << ' ' << str(t.loc) << '\n';
      for (const auto &p : t.pipelines) dumpPipeline(p, os, "    ");
      for (const auto &l : t.losses) os << "    Loss " << str(l) << ' ' << str(l.loc) << '\n';
      for (const auto &w : t.weights) os << "    Weight " << str(w) << ' ' << str(w.loc) << '\n';
      for (const auto &m : t.metrics) os << "    Metric " << m.name << ' ' << str(m.loc) << '\n';
      break;
    }
    case Program::ItemKind::Train: {
      const auto &b = program.trains[item.index];
      os << "  Train " << str(b.loc) << '\n';
      for (const auto &s : b.settings) {
        auto keyed = [](const std::string &key) { return key.empty() ? std::string() : key + "="; };
        os << "    Setting " << s.name << " = " << keyed(s.key) << (s.isCall ? str(s.call) : str(s.value));
        for (const auto &v : s.more) os << ", " << keyed(v.key) << (v.isCall ? str(v.call) : str(v.value));
        os << ' ' << str(s.loc) << '\n';
      }
      break;
    }
    case Program::ItemKind::Data: {
      const auto &b = program.datas[item.index];
      os << "  Data " << str(b.loc) << '\n';
      for (const auto &s : b.sources)
        os << "    DataSource " << s.role << " = " << str(s.call) << ' ' << str(s.loc) << '\n';
      for (const auto &bi : b.bindings)
        os << "    Binding " << bi.target << " = " << str(bi.expr) << ' ' << str(bi.loc) << '\n';
      break;
    }
    }
  }
}

std::string dumpToString(const Program &program) {
  std::ostringstream os;
  dump(program, os);
  return os.str();
}

}  // namespace mtlc::ast
