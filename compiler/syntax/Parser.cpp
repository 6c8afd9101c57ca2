#include "syntax/Parser.h"

#include "spec/Vocabulary.h"
#include "syntax/Limits.h"

#include "MTLLexer.h"
#include "MTLParser.h"
#include "antlr4-runtime.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <fmt/format.h>

namespace mtlc {

using grammar::MTLLexer;
using grammar::MTLParser;
using antlr4::Token;

// ---- UTF-8 sanitising ---------------------------------------------------------------------------

std::string sanitizeUtf8(const std::string &s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    auto b = static_cast<unsigned char>(s[i]);
    size_t n = 0;
    uint32_t cp = 0;
    if (b < 0x80) { out += s[i++]; continue; }
    if ((b & 0xE0) == 0xC0) { n = 2; cp = b & 0x1F; }
    else if ((b & 0xF0) == 0xE0) { n = 3; cp = b & 0x0F; }
    else if ((b & 0xF8) == 0xF0) { n = 4; cp = b & 0x07; }
    bool ok = n > 0 && i + n <= s.size();
    for (size_t k = 1; ok && k < n; ++k) {
      auto c = static_cast<unsigned char>(s[i + k]);
      if ((c & 0xC0) != 0x80) ok = false;
      else cp = (cp << 6) | (c & 0x3F);
    }
    if (ok && ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
               cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)))
      ok = false;
    if (ok) {
      out.append(s, i, n);
      i += n;
    } else {
      out += "\xEF\xBF\xBD";
      ++i;
    }
  }
  return out;
}

namespace {

// ---- Locations ----------------------------------------------------------------------------------

SourceRange tokenRange(const Token *t) {
  SourceRange r;
  if (!t) return r;
  r.begin.line = static_cast<int>(t->getLine());
  r.begin.column = static_cast<int>(t->getCharPositionInLine()) + 1;
  r.end = r.begin;
  if (t->getType() != Token::EOF && t->getStopIndex() >= t->getStartIndex())
    r.end.column += static_cast<int>(t->getStopIndex() - t->getStartIndex());
  return r;
}

SourceRange ctxRange(antlr4::ParserRuleContext *ctx) {
  SourceRange r = tokenRange(ctx->getStart());
  const Token *stop = ctx->getStop();
  if (stop && stop->getTokenIndex() >= ctx->getStart()->getTokenIndex())
    r.end = tokenRange(stop).end;
  return r;
}

SourceRange join(SourceRange a, SourceRange b) { return {a.begin, b.end}; }

// The position just after a token (where a missing token would go).
SourceRange afterToken(const Token *t) {
  SourceRange r = tokenRange(t);
  r.begin.column = r.end.column + 1;
  r.end = r.begin;
  return r;
}

// ---- Readable syntax errors ---------------------------------------------------------------------

// Thrown (internally) out of the rule that met a syntax error, after reporting it: the declaration
// being parsed is abandoned and parsing resumes at the next one (see resyncPoint).
struct SyntaxError {
  size_t tokenIndex;  // the offending token
};

std::string tokenName(size_t type) {
  switch (type) {
  case Token::EOF: return "end of file";
  case MTLParser::IDENT: return "a name";
  case MTLParser::INT: return "an integer";
  case MTLParser::FLOAT: return "a number";
  case MTLParser::STRING: return "a string";
  default: break;
  }
  return "";  // see literalName
}

std::string literalName(const antlr4::dfa::Vocabulary &v, size_t type) {
  std::string n = tokenName(type);
  if (!n.empty()) return n;
  std::string lit = v.getLiteralName(type);  // "'->'"
  if (!lit.empty()) return lit;
  return v.getDisplayName(type);
}

std::string shorten(std::string s) {
  if (s.size() > 24) s = s.substr(0, 21) + "...";
  return s;
}

std::string describeToken(const Token *t) {
  if (!t || t->getType() == Token::EOF) return "end of file";
  std::string text = t->getText();
  switch (t->getType()) {
  case MTLParser::STRING: return "string " + shorten(text);
  case MTLParser::INT:
  case MTLParser::FLOAT: return "number " + shorten(text);
  default: return "'" + shorten(text) + "'";
  }
}

// "a, b or c"
std::string joinOr(const std::vector<std::string> &items) {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out += i + 1 == items.size() ? " or " : ", ";
    out += items[i];
  }
  return out;
}

std::string expectedList(const antlr4::dfa::Vocabulary &v, const antlr4::misc::IntervalSet &set) {
  std::vector<std::string> names;
  bool number = false;
  auto in = [&](size_t t) { return set.contains(t); };
  for (ssize_t st : set.toList()) {
    if (st == -2) continue;  // EPSILON
    size_t type = st == -1 ? Token::EOF : static_cast<size_t>(st);
    if (type == MTLParser::INT || type == MTLParser::FLOAT || type == MTLParser::MINUS) {
      if (type == MTLParser::MINUS && !in(MTLParser::INT)) {
        names.push_back("'-'");
        continue;
      }
      if (!number) names.push_back(in(MTLParser::FLOAT) || type == MTLParser::MINUS
                                       ? "a number" : "an integer");
      number = true;
      continue;
    }
    names.push_back(literalName(v, static_cast<size_t>(type)));
  }
  if (names.size() == 1) return names[0];
  return "one of " + joinOr(names);
}

const std::vector<std::string> kKeywords = {"model", "input", "shared", "task", "train", "data"};

class ErrorStrategy : public antlr4::DefaultErrorStrategy {
public:
  explicit ErrorStrategy(Diagnostics &diags) : diags_(diags) {}

  // The declaration parsed just before the one being parsed (null after an error), for messages
  // that depend on it ("'->' to continue the pipeline of 'trunk'").
  void setPrevious(MTLParser::ItemContext *item) { previous_ = item; }

protected:
  void reportNoViableAlternative(antlr4::Parser *p, const antlr4::NoViableAltException &e) override {
    fail(p, e.getOffendingToken(), p->getExpectedTokens());
  }
  void reportInputMismatch(antlr4::Parser *p, const antlr4::InputMismatchException &e) override {
    fail(p, e.getOffendingToken(), e.getExpectedTokens());
  }
  void reportFailedPredicate(antlr4::Parser *p, const antlr4::FailedPredicateException &e) override {
    fail(p, e.getOffendingToken(), p->getExpectedTokens());
  }
  void reportUnwantedToken(antlr4::Parser *p) override {
    fail(p, p->getCurrentToken(), getExpectedTokens(p));
  }
  void reportMissingToken(antlr4::Parser *p) override {
    fail(p, p->getCurrentToken(), getExpectedTokens(p));
  }

private:
  [[noreturn]] void fail(antlr4::Parser *p, Token *t, const antlr4::misc::IntervalSet &expected) {
    const Token *prev = nullptr;
    if (t && t->getTokenIndex() > 0) {
      // the previous token on the default channel
      auto *ts = p->getTokenStream();
      for (ssize_t i = static_cast<ssize_t>(t->getTokenIndex()) - 1; i >= 0; --i) {
        Token *c = ts->get(static_cast<size_t>(i));
        if (c->getChannel() == Token::DEFAULT_CHANNEL) { prev = c; break; }
      }
    }
    std::string what = expectation(p, t, prev, expected);
    std::string msg = "expected " + what + ", found " + describeToken(t);
    if (t && t->getType() == MTLParser::SEMI && !inBlockBody(p->getContext()))
      msg = "unexpected ';'; statements need no terminator (layers are joined with '->'; ';' only "
            "separates the stages of a cross_stitch or mtan body)";
    if (t && t->getType() == MTLParser::IDENT) {
      auto *ctx = p->getContext();
      size_t rule = ctx ? ctx->getRuleIndex() : 0;
      if (rule == MTLParser::RuleProgram || rule == MTLParser::RuleItem)
        msg += didYouMean(t->getText(), kKeywords);
    }
    // `wieght 0.5`: the misspelt word parsed as a one-name pipeline, and its value is what failed.
    if (t && prev && prev->getType() == MTLParser::IDENT && p->getContext() &&
        p->getContext()->getRuleIndex() == MTLParser::RuleTaskDecl && !afterArrow(p, prev)) {
      std::string keyword = closestMatch(prev->getText(), {"loss", "weight", "metric"});
      auto *task = dynamic_cast<MTLParser::TaskDeclContext *>(p->getContext());
      if (!keyword.empty() && task && task->name) {
        diags_.error(tokenRange(prev), "unknown statement '" + prev->getText() + "' in task '" +
                                           task->name->getText() + "'; did you mean '" + keyword +
                                           "'?");
        throw SyntaxError{t->getTokenIndex()};
      }
    }
    SourceRange where;
    if (t && t->getType() == Token::EOF)
      where = prev ? afterToken(prev) : SourceRange{{1, 1}, {1, 1}};
    else
      where = tokenRange(t);
    diags_.error(where, msg);
    throw SyntaxError{t ? t->getTokenIndex() : 0};
  }

  // Whether the default-channel token before `t` is '->' (so `t` names a layer, not a source).
  static bool afterArrow(antlr4::Parser *p, const Token *t) {
    auto *ts = p->getTokenStream();
    for (ssize_t i = static_cast<ssize_t>(t->getTokenIndex()) - 1; i >= 0; --i) {
      Token *c = ts->get(static_cast<size_t>(i));
      if (c->getChannel() == Token::DEFAULT_CHANNEL) return c->getType() == MTLParser::ARROW;
    }
    return false;
  }

  static bool has(const antlr4::misc::IntervalSet &s, size_t type) {
    return s.contains(type);
  }

  // The expert block (`mixture`, `ple`, ...) whose body `ctx` is in (or which `ctx` is), or "".
  static std::string blockName(antlr4::tree::ParseTree *ctx) {
    for (auto *c = ctx; c; c = c->parent) {
      if (dynamic_cast<MTLParser::MixtureStageContext *>(c)) return "mixture";
      if (auto *l = dynamic_cast<MTLParser::LayerStageContext *>(c))
        return l->call() && l->call()->name ? l->call()->name->getText() : "";
    }
    return "";
  }
  static bool inBlockBody(antlr4::tree::ParseTree *ctx) {
    for (auto *c = ctx; c; c = c->parent)
      if (dynamic_cast<MTLParser::BlockBodyContext *>(c)) return true;
    return false;
  }
  static bool isBlockName(const std::string &name) {
    const vocab::Entry *row = vocab::find(vocab::layers(), name.c_str());
    return row && (row->flags & vocab::kBlock);
  }
  // The names of a vocabulary table: "cross_entropy, bce, mse or l1".
  static std::string namesOf(vocab::Rows rows) {
    std::string out;
    for (int i = 0, n = rows.size(); i < n; ++i)
      out += std::string(i == 0 ? "" : i + 1 == n ? " or " : ", ") + rows.begin()[i].name;
    return out;
  }

  // The steps of expectation() for the rules that need more than a line.

  // Between declarations: `shared trunk = image -> conv2d(8, kernel=3) relu` is probably a
  // missing arrow.
  std::string expectItem(const Token *t, const Token *prev) {
    std::string decl = "a declaration ('model', 'input', 'shared', 'task', 'train' or 'data')";
    MTLParser::ItemContext *last = previous_;
    if (last && t && t->getType() == MTLParser::IDENT && prev &&
        (prev->getType() == MTLParser::IDENT || prev->getType() == MTLParser::RPAREN ||
         prev->getType() == MTLParser::RBRACE)) {
      if (last->sharedDecl() && last->sharedDecl()->pipeline()) {
        auto stages = last->sharedDecl()->pipeline()->stage();
        auto *stage = stages.empty() ? nullptr
                                     : dynamic_cast<MTLParser::LayerStageContext *>(stages.back());
        if (stage && !stage->blockBody() && stage->call() && stage->call()->name &&
            isBlockName(stage->call()->name->getText()) && stage->call()->getStop() == prev)
          return "'{' and the expert's layers after " + stage->call()->name->getText() + "(...)";
      }
      if (last->sharedDecl() && last->sharedDecl()->name)
        return "'->' to continue the pipeline of '" + last->sharedDecl()->name->getText() +
               "', or " + decl;
    }
    return decl;
  }

  std::string expectSourceOrStage(antlr4::ParserRuleContext *ctx, const antlr4::misc::IntervalSet &exp,
                                  const std::string &generic) {
    switch (ctx->getRuleIndex()) {
    case MTLParser::RuleSource:
      if (dynamic_cast<MTLParser::GateSourceContext *>(ctx)) {
        if (has(exp, MTLParser::IDENT)) return "the name of a mixture in gate(...)";
        if (has(exp, MTLParser::RPAREN)) return "')' after gate's argument";
        if (has(exp, MTLParser::LPAREN)) return "'(' after 'gate'";
        return generic;
      }
      if (auto *c = dynamic_cast<MTLParser::CallSourceContext *>(ctx)) {
        std::string f = c->func ? c->func->getText() : "the source";
        if (has(exp, MTLParser::RPAREN)) return "',' or ')' in " + f + "(...)";
        if (has(exp, MTLParser::IDENT)) return "a name in " + f + "(...)";
        return generic;
      }
      return "a pipeline source (an input or a shared block, gate(...), column(...) or concat(...))";
    case MTLParser::RuleStage:
      if (dynamic_cast<MTLParser::MixtureStageContext *>(ctx)) {
        if (has(exp, MTLParser::LPAREN)) return "'(' after 'mixture'";
        if (has(exp, MTLParser::LBRACE)) return "'{' and the expert's layers after mixture(...)";
        if (has(exp, MTLParser::RPAREN)) return "',' or ')' after the mixture's arguments";
        if (has(exp, MTLParser::RBRACE)) return "'->', ';' or '}' in the body of mixture";
        return generic;
      }
      if (auto *l = dynamic_cast<MTLParser::LayerStageContext *>(ctx); l && l->blockBody())
        return "'->', ';' or '}' in the body of " + blockName(ctx);
      return "a layer after '->'";
    default: return generic;
    }
  }

  std::string expectCall(antlr4::ParserRuleContext *ctx, size_t parentRule, const Token *prev,
                         const antlr4::misc::IntervalSet &exp, const std::string &generic) {
    auto callName = [](antlr4::ParserRuleContext *c) -> std::string {
      auto *call = dynamic_cast<MTLParser::CallContext *>(c);
      return call && call->name ? call->name->getText() : "";
    };
    auto *call = dynamic_cast<MTLParser::CallContext *>(ctx);
    if (call && !call->name) {
      switch (parentRule) {
      case MTLParser::RuleStage: return "a layer after '->'";
      case MTLParser::RuleBlockLayers: {
        std::string after = prev && prev->getType() == MTLParser::SEMI ? "';'"
                            : prev && prev->getType() == MTLParser::LBRACE ? "'{'"
                                                                           : "'->'";
        return "a layer after " + after + " in the body of " + blockName(ctx);
      }
      case MTLParser::RuleTaskItem: return "a loss name after 'loss' (" + namesOf(vocab::losses()) + ")";
      case MTLParser::RuleDataItem: return "a data source such as fashion_mnist(\"train\")";
      default: return "a name";
      }
    }
    std::string name = callName(ctx);
    std::string what = parentRule == MTLParser::RuleStage || parentRule == MTLParser::RuleBlockLayers
                           ? "layer arguments"
                           : "the arguments of '" + name + "'";
    if (has(exp, MTLParser::RPAREN) && call && call->argList())
      return "',' or ')' after " + what;
    if (has(exp, MTLParser::RPAREN)) return "an argument or ')' after '" + name + "('";
    return generic;
  }

  static std::string expectNumber(antlr4::tree::ParseTree *parent, size_t parentRule) {
    switch (parentRule) {
    case MTLParser::RuleInputDecl: return "a dimension (an integer)";
    case MTLParser::RuleTaskItem: return "a number after 'weight'";
    case MTLParser::RuleBindExpr: {
      auto *be = dynamic_cast<MTLParser::BindExprContext *>(parent);
      if (be && be->IN()) return "a number in the set";
      if (be && be->binOp()) return "a number after '" + be->binOp()->getText() + "'";
      return "a number";
    }
    default: return "a number";
    }
  }

  // What the parser expected, in words, from the rule it is in and the expected token set.
  std::string expectation(antlr4::Parser *p, const Token *t, const Token *prev,
                          const antlr4::misc::IntervalSet &exp) {
    auto *ctx = p->getContext();
    std::string generic = expectedList(p->getVocabulary(), exp);
    if (!ctx) return generic;
    auto *parent = dynamic_cast<antlr4::ParserRuleContext *>(ctx->parent);
    size_t parentRule = parent ? parent->getRuleIndex() : SIZE_MAX;
    switch (ctx->getRuleIndex()) {
    case MTLParser::RuleProgram:
    case MTLParser::RuleItem: return expectItem(t, prev);
    case MTLParser::RuleModelDecl:
      return "a model name after 'model'";
    case MTLParser::RuleInputDecl: {
      auto *in = dynamic_cast<MTLParser::InputDeclContext *>(ctx);
      if (has(exp, MTLParser::COLON)) return "':' after the input's name (input NAME : f32[d, ...])";
      if (has(exp, MTLParser::LBRACKET)) return "'[' and the shape after the element type (f32[d, ...])";
      if (has(exp, MTLParser::RBRACKET)) return "',' or ']' in the input's shape";
      if (has(exp, MTLParser::IDENT) && in && !in->name) return "an input name after 'input'";
      if (has(exp, MTLParser::IDENT)) return "an element type such as f32 after ':'";
      return generic;
    }
    case MTLParser::RuleSharedDecl:
      if (has(exp, MTLParser::IDENT)) return "a name after 'shared'";
      if (has(exp, MTLParser::ASSIGN)) return "'=' after the shared block's name (shared NAME = SOURCE -> ...)";
      return generic;
    case MTLParser::RuleTaskDecl: {
      auto *task = dynamic_cast<MTLParser::TaskDeclContext *>(ctx);
      if (has(exp, MTLParser::IDENT) && task && !task->name) return "a task name after 'task'";
      if (has(exp, MTLParser::LBRACE)) return "'{' after the task's name";
      std::string name = task && task->name ? " of task '" + task->name->getText() + "'" : "";
      return "a pipeline, 'loss', 'weight', 'metric' or '}' in the body" + name;
    }
    case MTLParser::RuleTaskItem:
      if (has(exp, MTLParser::COMMA)) return "',' or the next statement after the metric";
      return generic;
    case MTLParser::RuleMetricName:
      return "a metric name (" + namesOf(vocab::metrics()) + ")";
    case MTLParser::RulePipeline:
      return "'->' and a layer";
    case MTLParser::RuleSource:
    case MTLParser::RuleStage: return expectSourceOrStage(ctx, exp, generic);
    case MTLParser::RuleBlockBody:
      return "'->', ';' or '}' in the body of " + blockName(ctx);
    case MTLParser::RuleBlockLayers:
      return "'->', ';' or '}' in the body of " + blockName(ctx);
    case MTLParser::RuleCall: return expectCall(ctx, parentRule, prev, exp, generic);
    case MTLParser::RuleArgList:
      return "',' or ')' after an argument";
    case MTLParser::RuleArg: {
      auto *arg = dynamic_cast<MTLParser::ArgContext *>(ctx);
      if (arg && arg->key) return "a value after '" + arg->key->getText() + "='";
      return "an argument (a number, a string, a name or NAME=VALUE)";
    }
    case MTLParser::RuleValue: {
      auto *arg = dynamic_cast<MTLParser::ArgContext *>(parent);
      if (arg && arg->key) return "a value after '" + arg->key->getText() + "='";
      return "an argument value (a number, a string, a name or {a list, of numbers})";
    }
    case MTLParser::RuleNumber: return expectNumber(parent, parentRule);
    case MTLParser::RuleTrainBlock:
      if (has(exp, MTLParser::LBRACE)) return "'{' after 'train'";
      return "a setting (optimizer, batch, epochs, weighting, seed, shuffle or freeze) or '}'";
    case MTLParser::RuleTrainSetting:
    case MTLParser::RuleSettingValue: {
      auto *set = dynamic_cast<MTLParser::TrainSettingContext *>(
          ctx->getRuleIndex() == MTLParser::RuleTrainSetting ? ctx : parent);
      std::string key = set && set->key ? set->key->getText() : "the setting";
      return "a value after '" + key + "' (a number or a name)";
    }
    case MTLParser::RuleDataBlock:
      if (has(exp, MTLParser::LBRACE)) return "'{' after 'data'";
      return "'train SOURCE', 'test SOURCE', a binding 'NAME = FIELD' or '}'";
    case MTLParser::RuleDataItem: {
      std::string name = prev ? prev->getText() : "";
      return "'=' (a binding) or a data source after '" + name + "'";
    }
    case MTLParser::RuleBindExpr: {
      auto *be = dynamic_cast<MTLParser::BindExprContext *>(ctx);
      if (be && be->IN()) {
        if (has(exp, MTLParser::LBRACE)) return "'{' after 'in'";
        return "',' or '}' in the set";
      }
      return generic;
    }
    case MTLParser::RuleFieldRef: {
      auto *f = dynamic_cast<MTLParser::FieldRefContext *>(ctx);
      // (name is the token found even where it is not a name: `x = }`)
      if (f && (!f->name || (f->name->getType() != MTLParser::IDENT && f->name->getType() != MTLParser::DATA)))
        return "a field name after '='";
      if (has(exp, MTLParser::RPAREN)) return "',' or ')' in " + (f && f->name ? f->name->getText() : std::string("columns")) + "(...)";
      return "a column name (a string) or a 0-based column position";
    }
    case MTLParser::RuleColumnSel:
      if (has(exp, MTLParser::INT) && !has(exp, MTLParser::STRING)) return "an integer after '..'";
      return "a column name (a string) or a 0-based column position";
    default:
      return generic;
    }
  }

  Diagnostics &diags_;
  MTLParser::ItemContext *previous_ = nullptr;
};

// A safety net: the error strategy above reports every parser error itself and the lexer has a
// catch-all token, so ANTLR should never call a listener; if it does (a path we did not foresee),
// the message still becomes a located diagnostic instead of console output.
class Listener : public antlr4::BaseErrorListener {
public:
  explicit Listener(Diagnostics &diags) : diags_(diags) {}
  void syntaxError(antlr4::Recognizer *, Token *offending, size_t line, size_t column,
                   const std::string &msg, std::exception_ptr) override {
    if (reported_) return;
    reported_ = true;
    SourceRange where = offending ? tokenRange(offending)
                                  : SourceRange{{static_cast<int>(line), static_cast<int>(column) + 1},
                                                {static_cast<int>(line), static_cast<int>(column) + 1}};
    diags_.error(where, "syntax error: " + msg);
  }

private:
  Diagnostics &diags_;
  bool reported_ = false;
};

// ---- Parse tree -> AST --------------------------------------------------------------------------

class Builder {
public:
  explicit Builder(Diagnostics &diags) : diags_(diags) {}

  ast::Program program(const std::vector<MTLParser::ItemContext *> &items) {
    ast::Program p;
    for (auto *item : items) {
      if (auto *m = item->modelDecl()) {
        ast::ModelDecl d;
        d.name = m->name->getText();
        d.nameLoc = tokenRange(m->name);
        d.loc = ctxRange(m);
        p.order.push_back({ast::Program::ItemKind::Model, p.models.size(), d.loc});
        p.models.push_back(std::move(d));
      } else if (auto *in = item->inputDecl()) {
        ast::InputDecl d;
        d.name = in->name->getText();
        d.nameLoc = tokenRange(in->name);
        d.dtype = in->dtype->getText();
        d.dtypeLoc = tokenRange(in->dtype);
        for (auto *n : in->number()) d.dims.push_back(number(n));
        d.shapeLoc = join(d.dtypeLoc, tokenRange(in->RBRACKET()->getSymbol()));
        d.loc = ctxRange(in);
        p.order.push_back({ast::Program::ItemKind::Input, p.inputs.size(), d.loc});
        p.inputs.push_back(std::move(d));
      } else if (auto *sh = item->sharedDecl()) {
        ast::SharedDecl d;
        d.name = sh->name->getText();
        d.nameLoc = tokenRange(sh->name);
        d.pipeline = pipeline(sh->pipeline());
        d.loc = ctxRange(sh);
        p.order.push_back({ast::Program::ItemKind::Shared, p.shared.size(), d.loc});
        p.shared.push_back(std::move(d));
      } else if (auto *task = item->taskDecl()) {
        ast::TaskDecl d = taskDecl(task);
        p.order.push_back({ast::Program::ItemKind::Task, p.tasks.size(), d.loc});
        p.tasks.push_back(std::move(d));
      } else if (auto *tr = item->trainBlock()) {
        ast::TrainBlock b;
        b.keywordLoc = tokenRange(tr->TRAIN()->getSymbol());
        b.loc = ctxRange(tr);
        for (auto *s : tr->trainSetting()) b.settings.push_back(setting(s));
        p.order.push_back({ast::Program::ItemKind::Train, p.trains.size(), b.loc});
        p.trains.push_back(std::move(b));
      } else if (auto *da = item->dataBlock()) {
        ast::DataBlock b = dataBlock(da);
        p.order.push_back({ast::Program::ItemKind::Data, p.datas.size(), b.loc});
        p.datas.push_back(std::move(b));
      }
    }
    return p;
  }

private:
  ast::Value number(MTLParser::NumberContext *ctx) {
    ast::Value v;
    v.kind = ast::Value::Kind::Number;
    v.loc = ctxRange(ctx);
    bool neg = ctx->MINUS() != nullptr;
    antlr4::tree::TerminalNode *tok = ctx->INT() ? ctx->INT() : ctx->FLOAT();
    std::string digits = tok ? tok->getText() : "0";
    v.isInteger = ctx->INT() != nullptr;
    v.number = std::strtod(digits.c_str(), nullptr);  // inf on overflow: sema rejects it
    if (neg) v.number = -v.number;
    v.text = (neg ? "-" : "") + digits;
    return v;
  }

  static std::string unescape(const std::string &quoted) {
    std::string out;
    for (size_t i = 1; i + 1 < quoted.size(); ++i) {
      char c = quoted[i];
      if (c == '\\' && i + 2 < quoted.size()) {
        char e = quoted[++i];
        switch (e) {
        case 'n': out += '\n'; break;
        case 't': out += '\t'; break;
        default: out += e; break;
        }
      } else {
        out += c;
      }
    }
    return out;
  }

  ast::Value value(MTLParser::ValueContext *ctx) {
    if (!ctx->LBRACE() && !ctx->number().empty()) return number(ctx->number(0));
    ast::Value v;
    v.loc = ctxRange(ctx);
    if (ctx->STRING()) {
      v.kind = ast::Value::Kind::String;
      v.text = unescape(ctx->STRING()->getText());
    } else if (ctx->LBRACE()) {
      v.kind = ast::Value::Kind::List;
      for (auto *n : ctx->number()) v.items.push_back(number(n));
      v.text = ast::str(v);
    } else {
      v.kind = ast::Value::Kind::Name;
      v.text = ctx->IDENT()->getText();
    }
    return v;
  }

  void args(MTLParser::ArgListContext *list, ast::Call &c) {
    if (!list) return;
    for (auto *a : list->arg()) {
      if (a->key) {
        ast::KeywordArg k;
        k.key = a->key->getText();
        k.keyLoc = tokenRange(a->key);
        k.value = value(a->value());
        k.loc = ctxRange(a);
        c.keyword.push_back(std::move(k));
      } else {
        ast::Value v = value(a->value());
        if (!c.keyword.empty()) {
          diags_.error(v.loc, "positional argument after keyword argument '" + c.keyword.back().key +
                                  "'; positional arguments come first");
        }
        c.positional.push_back(std::move(v));
      }
    }
  }

  ast::Call call(MTLParser::CallContext *ctx) {
    ast::Call c;
    c.name = ctx->name->getText();
    c.nameLoc = tokenRange(ctx->name);
    c.hasParens = ctx->LPAREN() != nullptr;
    args(ctx->argList(), c);
    c.loc = ctxRange(ctx);
    return c;
  }

  ast::Pipeline pipeline(MTLParser::PipelineContext *ctx) {
    ast::Pipeline p;
    auto *src = ctx->source();
    p.sourceLoc = ctxRange(src);
    if (auto *n = dynamic_cast<MTLParser::NameSourceContext *>(src)) {
      p.sourceKind = ast::Pipeline::SourceKind::Name;
      p.source = n->IDENT()->getText();
      p.sourceNameLoc = tokenRange(n->IDENT()->getSymbol());
    } else if (auto *g = dynamic_cast<MTLParser::GateSourceContext *>(src)) {
      p.sourceKind = ast::Pipeline::SourceKind::Gate;
      p.source = g->IDENT()->getText();
      p.sourceNameLoc = tokenRange(g->IDENT()->getSymbol());
    } else if (auto *c = dynamic_cast<MTLParser::CallSourceContext *>(src)) {
      p.sourceKind = ast::Pipeline::SourceKind::Call;
      p.source = c->func->getText();
      p.sourceNameLoc = tokenRange(c->func);
      auto names = c->IDENT();
      for (size_t i = 1; i < names.size(); ++i)  // IDENT(0) is the function name
        p.sourceArgs.push_back({names[i]->getText(), tokenRange(names[i]->getSymbol())});
    }
    for (auto *st : ctx->stage()) {
      if (auto *l = dynamic_cast<MTLParser::LayerStageContext *>(st)) {
        ast::Call c = call(l->call());
        if (l->blockBody()) {
          body(l->blockBody(), l->LBRACE(), l->RBRACE(), c);
          c.loc = ctxRange(l);
        }
        p.layers.push_back(std::move(c));
      } else if (auto *m = dynamic_cast<MTLParser::MixtureStageContext *>(st)) {
        ast::Call c;
        c.name = "mixture";
        c.nameLoc = tokenRange(m->MIXTURE()->getSymbol());
        c.hasParens = true;
        args(m->argList(), c);
        body(m->blockBody(), m->LBRACE(), m->RBRACE(), c);
        c.loc = ctxRange(m);
        p.layers.push_back(std::move(c));
      }
    }
    p.loc = ctxRange(ctx);
    return p;
  }

  // `{ dense(16) -> relu ; dense(8) }` into c.body (one vector of layers per stage).
  void body(MTLParser::BlockBodyContext *ctx, antlr4::tree::TerminalNode *lbrace,
            antlr4::tree::TerminalNode *rbrace, ast::Call &c) {
    c.hasBody = true;
    c.bodyLoc = join(tokenRange(lbrace->getSymbol()), tokenRange(rbrace->getSymbol()));
    for (auto *stage : ctx->blockLayers()) {
      std::vector<ast::Call> layers;
      for (auto *l : stage->call()) layers.push_back(call(l));
      c.body.push_back(std::move(layers));
    }
  }

  ast::TaskDecl taskDecl(MTLParser::TaskDeclContext *ctx) {
    ast::TaskDecl d;
    d.name = ctx->name->getText();
    d.nameLoc = tokenRange(ctx->name);
    d.loc = ctxRange(ctx);
    for (auto *item : ctx->taskItem()) {
      if (auto *pi = dynamic_cast<MTLParser::TaskPipelineContext *>(item)) {
        d.pipelines.push_back(pipeline(pi->pipeline()));
      } else if (auto *lo = dynamic_cast<MTLParser::TaskLossContext *>(item)) {
        d.losses.push_back(call(lo->call()));
      } else if (auto *we = dynamic_cast<MTLParser::TaskWeightContext *>(item)) {
        d.weights.push_back(number(we->number()));
      } else if (auto *me = dynamic_cast<MTLParser::TaskMetricContext *>(item)) {
        for (auto *m : me->metricName())
          d.metrics.push_back({m->IDENT()->getText(), ctxRange(m)});
      }
    }
    return d;
  }

  ast::Setting setting(MTLParser::TrainSettingContext *ctx) {
    ast::Setting s;
    s.name = ctx->key->getText();
    s.nameLoc = tokenRange(ctx->key);
    auto values = ctx->settingValue();
    for (size_t i = 0; i < values.size(); ++i) {
      auto *v = values[i];
      ast::SettingValue sv;
      sv.loc = ctxRange(v);
      if (v->scaled) {  // `lr_scale trunk=0.1` (error recovery may leave the number out)
        sv.key = v->scaled->getText();
        sv.keyLoc = tokenRange(v->scaled);
        if (v->number()) sv.value = number(v->number());
      } else if (v->call()) {
        sv.isCall = true;
        sv.call = call(v->call());
      } else if (v->dotted) {  // `select task.metric`: a name "task.metric" for sema to split
        sv.isCall = true;                // (error recovery may leave the member out)
        sv.call.name = v->dotted->getText() + "." + (v->member ? v->member->getText() : std::string());
        sv.call.nameLoc = sv.loc;
        sv.call.loc = sv.loc;
      } else if (v->number()) {
        sv.value = number(v->number());
      }
      if (i == 0) {
        s.isCall = sv.isCall;
        s.call = std::move(sv.call);
        s.value = std::move(sv.value);
        s.valueLoc = sv.loc;
        s.key = std::move(sv.key);
        s.keyLoc = sv.keyLoc;
      } else {
        s.more.push_back(std::move(sv));
      }
    }
    s.loc = ctxRange(ctx);
    return s;
  }

  ast::DataBlock dataBlock(MTLParser::DataBlockContext *ctx) {
    ast::DataBlock b;
    b.keywordLoc = tokenRange(ctx->DATA()->getSymbol());
    b.loc = ctxRange(ctx);
    for (auto *item : ctx->dataItem()) {
      if (auto *s = dynamic_cast<MTLParser::DataSourceContext *>(item)) {
        ast::DataSource src;
        src.role = s->role->getText();
        src.roleLoc = tokenRange(s->role);
        src.call = call(s->call());
        src.loc = ctxRange(s);
        b.sources.push_back(std::move(src));
      } else if (auto *bi = dynamic_cast<MTLParser::DataBindingContext *>(item)) {
        ast::Binding bind;
        bind.target = bi->target->getText();
        bind.targetLoc = tokenRange(bi->target);
        bind.expr = bindExpr(bi->bindExpr());
        bind.loc = ctxRange(bi);
        b.bindings.push_back(std::move(bind));
      }
    }
    return b;
  }

  static int64_t parseInt(const std::string &s, bool &overflow) {
    errno = 0;
    long long v = std::strtoll(s.c_str(), nullptr, 10);
    if (errno == ERANGE) overflow = true;
    return v;
  }

  ast::BindExpr bindExpr(MTLParser::BindExprContext *ctx) {
    ast::BindExpr e;
    auto *f = ctx->fieldRef();
    e.field.name = f->name->getText();
    e.field.nameLoc = tokenRange(f->name);
    e.field.hasParens = f->LPAREN() != nullptr;
    e.field.loc = ctxRange(f);
    for (auto *sel : f->columnSel()) {
      ast::ColumnSel c;
      c.loc = ctxRange(sel);
      if (auto *n = dynamic_cast<MTLParser::ColumnNameContext *>(sel)) {
        c.isName = true;
        c.name = unescape(n->STRING()->getText());
      } else if (auto *r = dynamic_cast<MTLParser::ColumnRangeContext *>(sel)) {
        c.first = c.last = parseInt(r->INT(0)->getText(), c.overflow);
        if (r->DOTDOT()) {
          c.isRange = true;
          c.last = parseInt(r->INT(1)->getText(), c.overflow);
        }
      }
      e.field.columns.push_back(std::move(c));
    }
    if (auto *op = ctx->binOp()) {
      e.opLoc = ctxRange(op);
      using Op = ast::BindExpr::Op;
      Op o = Op::Field;
      if (op->SLASH()) o = Op::Div;
      else if (op->STAR()) o = Op::Mul;
      else if (op->PLUS()) o = Op::Add;
      else if (op->MINUS()) o = Op::Sub;
      else if (op->EQEQ()) o = Op::Eq;
      else if (op->NEQ()) o = Op::Ne;
      else if (op->GT()) o = Op::Gt;
      else if (op->GE()) o = Op::Ge;
      else if (op->LT()) o = Op::Lt;
      else if (op->LE()) o = Op::Le;
      e.op = o;
      e.operand = number(ctx->number(0));
    } else if (ctx->IN()) {
      e.op = ast::BindExpr::Op::In;
      e.opLoc = tokenRange(ctx->IN()->getSymbol());
      for (auto *n : ctx->number()) e.set.push_back(number(n));
    }
    e.loc = ctxRange(ctx);
    return e;
  }

  Diagnostics &diags_;
};

// Lexical errors: bad characters and unterminated strings (the grammar turns both into tokens so
// that the lexer itself never fails).
bool checkTokens(antlr4::CommonTokenStream &tokens, Diagnostics &diags) {
  int reported = 0;
  for (Token *t : tokens.getTokens()) {
    if (reported >= 5) break;
    if (t->getType() == MTLLexer::BAD_CHAR) {
      std::string text = t->getText();
      std::u32string cps = antlrcpp::utf8_to_utf32(text.data(), text.data() + text.size());
      char32_t cp = cps.empty() ? 0 : cps[0];
      std::string msg;
      if (cp == 0xFFFD)
        msg = "invalid byte in the source (not UTF-8 text?)";
      else if (cp < 0x20 || cp == 0x7F)
        msg = fmt::format("unexpected control character U+{:04X}", static_cast<uint32_t>(cp));
      else if (cp >= 0x80)
        msg = fmt::format("unexpected character U+{:04X} '{}'", static_cast<uint32_t>(cp), text);
      else if (cp == '\'')
        msg = "unexpected character '''; strings use double quotes: \"...\"";
      else
        msg = "unexpected character '" + text + "'";
      diags.error(tokenRange(t), msg);
      ++reported;
    } else if (t->getType() == MTLLexer::UNTERMINATED_STRING) {
      diags.error(tokenRange(t), "unterminated string: missing the closing '\"' on this line");
      ++reported;
    }
  }
  return reported == 0;
}

// Where parsing resumes after a syntax error in the declaration that starts at token `start`: the
// first token from the offending one on (and after `start`, so that parsing moves on) that begins a
// declaration - a declaration keyword followed by what that declaration needs next (`task NAME`,
// `train {`, ...; so `ple(shared=2)` and a data block's `train SOURCE` do not qualify) - and is
// outside braces, or first on its line (so that a missing '}' does not swallow the rest of the
// file). EOF when there is none.
size_t resyncPoint(antlr4::CommonTokenStream &tokens, size_t start, size_t offending) {
  const auto &all = tokens.getTokens();
  auto type = [&](size_t i) { return i < all.size() ? all[i]->getType() : Token::EOF; };
  size_t from = std::max(offending, start + 1);
  int depth = 0;
  for (size_t i = start; i < from && i < all.size(); ++i) {
    if (type(i) == MTLParser::LBRACE) ++depth;
    if (type(i) == MTLParser::RBRACE) --depth;
  }
  for (size_t i = from; i < all.size(); ++i) {
    size_t ty = type(i), next = type(i + 1);
    bool starts = false;
    switch (ty) {
    case MTLParser::MODEL:
    case MTLParser::INPUT:
    case MTLParser::SHARED:
    case MTLParser::TASK: starts = next == MTLParser::IDENT; break;
    case MTLParser::TRAIN:
    case MTLParser::DATA: starts = next == MTLParser::LBRACE; break;
    case Token::EOF: return i;
    default: break;
    }
    if (starts && (depth <= 0 || all[i]->getCharPositionInLine() == 0)) return i;
    if (ty == MTLParser::LBRACE) ++depth;
    if (ty == MTLParser::RBRACE) --depth;
  }
  return all.empty() ? 0 : all.size() - 1;
}

}  // namespace

std::optional<ast::Program> parseProgram(const std::string &file, const std::string &text,
                                         Diagnostics &diags) {
  (void)file;
  int errorsBefore = diags.errorCount();
  if (text.size() > limits::kMaxProgramBytes) {
    diags.error(fmt::format("the program is larger than the supported {} bytes (1 MiB)",
                            limits::kMaxProgramBytes));
    return std::nullopt;
  }
  try {
    antlr4::ANTLRInputStream input(sanitizeUtf8(text));
    input.name = file;
    Listener listener(diags);
    MTLLexer lexer(&input);
    lexer.removeErrorListeners();
    lexer.addErrorListener(&listener);
    antlr4::CommonTokenStream tokens(&lexer);
    tokens.fill();
    if (!checkTokens(tokens, diags)) return std::nullopt;

    MTLParser parser(&tokens);
    parser.removeErrorListeners();
    parser.addErrorListener(&listener);
    auto strategy = std::make_shared<ErrorStrategy>(diags);
    parser.setErrorHandler(strategy);
    // `program : item* EOF`, one declaration at a time: a syntax error abandons the declaration
    // it is in and parsing resumes at the next one, so that independent mistakes are all reported
    // (up to limits::kMaxSyntaxErrors).
    std::vector<MTLParser::ItemContext *> items;
    int syntaxErrors = 0;
    while (tokens.LA(1) != Token::EOF) {
      size_t start = tokens.index();
      strategy->reset(&parser);
      try {
        items.push_back(parser.item());
        strategy->setPrevious(items.back());
      } catch (const SyntaxError &e) {
        strategy->setPrevious(nullptr);
        if (++syntaxErrors >= limits::kMaxSyntaxErrors) break;
        tokens.seek(resyncPoint(tokens, start, e.tokenIndex));
      }
    }
    if (diags.errorCount() > errorsBefore) return std::nullopt;
    Builder builder(diags);
    ast::Program program = builder.program(items);
    if (diags.errorCount() > errorsBefore) return std::nullopt;
    return program;
  } catch (const std::exception &e) {
    diags.error(std::string("internal error while parsing: ") + e.what());
  } catch (...) {
    diags.error("internal error while parsing");
  }
  return std::nullopt;
}

}  // namespace mtlc
