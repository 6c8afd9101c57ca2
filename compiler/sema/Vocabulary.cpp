// Sema's view of the vocabulary table (spec/Vocabulary.def): the name lists for hints and
// completion, and a row's arguments as the parameter list bindArgs checks.
#include "sema/SemaInternal.h"

#include <fmt/format.h>

namespace mtlc::sema {

namespace {

std::vector<std::string> namesOf(vocab::Rows rows, bool (*keep)(const vocab::Entry &)) {
  std::vector<std::string> out;
  for (const vocab::Entry &e : rows)
    if (keep(e)) out.push_back(e.name);
  return out;
}

bool any(const vocab::Entry &) { return true; }

bool isBlock(const vocab::Entry &e) { return (e.flags & vocab::kBlock) != 0; }
bool isPlainLayer(const vocab::Entry &e) { return !isBlock(e); }

}  // namespace

const char *layerName(LayerKind k) { return vocab::name(k); }

const std::vector<std::string> &knownLayers() { static const auto v = namesOf(vocab::layers(), isPlainLayer); return v; }
const std::vector<std::string> &knownBlocks() { static const auto v = namesOf(vocab::layers(), isBlock); return v; }
const std::vector<std::string> &knownLosses() { static const auto v = namesOf(vocab::losses(), any); return v; }
const std::vector<std::string> &knownMetrics() { static const auto v = namesOf(vocab::metrics(), any); return v; }
const std::vector<std::string> &knownOptimizers() { static const auto v = namesOf(vocab::optimizers(), any); return v; }
const std::vector<std::string> &knownWeightings() { static const auto v = namesOf(vocab::weightings(), any); return v; }
const std::vector<std::string> &knownSchedules() { static const auto v = namesOf(vocab::schedules(), any); return v; }

namespace detail {

std::vector<ParamDef> paramsOf(const vocab::Entry &row) {
  std::vector<ParamDef> out;
  for (const vocab::Arg &a : row.args) {
    if (!a.name) break;
    if (a.type == vocab::ArgType::Int) {
      out.push_back(intParam(a.name, a.required, a.def, a.lo));
      continue;
    }
    if (a.type == vocab::ArgType::Bool || a.type == vocab::ArgType::IntList) {
      ParamDef p = realParam(a.name, a.required, a.def);
      p.type = a.type == vocab::ArgType::Bool ? ParamDef::Type::Bool : ParamDef::Type::IntList;
      p.lo = a.lo;
      out.push_back(std::move(p));
      continue;
    }
    if (a.type == vocab::ArgType::Choice) {  // "a|b|c"; the default is the index of shownDefault
      ParamDef p;
      p.name = a.name;
      p.type = ParamDef::Type::Choice;
      for (const char *c = a.choices, *bar; *c; c = *bar ? bar + 1 : bar) {
        for (bar = c; *bar && *bar != '|'; ++bar) {}
        p.choices.emplace_back(c, bar);
        if (p.choices.back() == a.shownDefault) p.def = double(p.choices.size() - 1);
      }
      out.push_back(std::move(p));
      continue;
    }
    ParamDef p = realParam(a.name, a.required, a.def);
    p.lo = a.lo;
    p.loOpen = a.loOpen;
    p.hi = a.hi;
    p.hiOpen = a.hiOpen;
    out.push_back(std::move(p));
  }
  return out;
}

std::string joinWords(const std::vector<std::string> &words, const char *last) {
  std::string out;
  for (size_t i = 0; i < words.size(); ++i) {
    if (i) out += i + 1 == words.size() ? fmt::format(" {} ", last) : ", ";
    out += words[i];
  }
  return out;
}

}  // namespace detail
}  // namespace mtlc::sema
