// The vocabulary table (spec/Vocabulary.def) is consistent: every enum value has its row, names are
// unique within a kind, every optional argument's default lies in its range, aliases name rows,
// and the names that are contract (checkpoints, logs, headers) keep their spelling.
#include "spec/Vocabulary.h"

#include <catch2/catch.hpp>

#include <cstdint>
#include <set>
#include <string>

namespace vocab = mtlc::vocab;

namespace {

bool inRange(const vocab::Arg &a, double v) {
  const bool aboveLo = a.loOpen ? v > a.lo : v >= a.lo;
  const bool belowHi = a.hiOpen ? v < a.hi : v <= a.hi;
  return aboveLo && belowHi;
}

void checkRows(vocab::Rows rows, int kinds, const char *what) {
  INFO(what);
  std::set<std::string> names;
  std::set<int> kindsSeen;
  for (const vocab::Entry &e : rows) {
    INFO(e.name);
    CHECK(names.insert(e.name).second);  // no name twice
    CHECK(e.kind >= 0);
    CHECK(e.kind < kinds);
    kindsSeen.insert(e.kind);
    CHECK(e.description != nullptr);
    std::set<std::string> args;
    bool optionalSeen = false;
    for (const vocab::Arg &a : e.args) {
      if (!a.name) break;
      INFO(a.name);
      CHECK(args.insert(a.name).second);
      // Positional arguments bind in order: a required one after an optional one could never be
      // given positionally without the optional one.
      CHECK_FALSE((a.required && optionalSeen));
      optionalSeen |= !a.required;
      if (!a.required && !a.shownDefault) CHECK(inRange(a, a.def));
      if (a.type == vocab::ArgType::Int) CHECK(a.def == double(int64_t(a.def)));
    }
  }
  CHECK(int(kindsSeen.size()) == kinds);  // every enum value has a row
}

}  // namespace

TEST_CASE("vocabulary: every kind has its rows, unique names, defaults in range") {
  checkRows(vocab::layers(), int(vocab::LayerKind::Mtan) + 1, "layers");
  checkRows(vocab::losses(), int(vocab::LossKind::Cosine) + 1, "losses");
  checkRows(vocab::metrics(), int(vocab::Metric::AngleErr) + 1, "metrics");
  checkRows(vocab::optimizers(), int(vocab::OptimizerKind::RmsProp) + 1, "optimizers");
  checkRows(vocab::weightings(), int(vocab::WeightingKind::ExcessMtl) + 1, "weightings");
  checkRows(vocab::schedules(), int(vocab::ScheduleKind::Cosine) + 1, "schedules");
  // Every metric fits at least one loss.
  for (const vocab::Entry &m : vocab::metrics()) {
    bool fits = false;
    for (const vocab::Entry &l : vocab::losses()) fits |= (m.needs & l.flags) != 0;
    CHECK(fits);
  }
}

TEST_CASE("vocabulary: names are contract and round-trip through the enums") {
  // Checkpoint metadata, logs and AOT headers spell these; they never change.
  CHECK(std::string(vocab::name(vocab::WeightingKind::Fixed)) == "fixed");
  CHECK(std::string(vocab::name(vocab::WeightingKind::GradNorm)) == "gradnorm");
  CHECK(std::string(vocab::name(vocab::WeightingKind::PCGrad)) == "pcgrad");
  CHECK(std::string(vocab::name(vocab::OptimizerKind::Sgd)) == "sgd");
  CHECK(std::string(vocab::name(vocab::OptimizerKind::Adam)) == "adam");
  CHECK(std::string(vocab::name(vocab::OptimizerKind::AdamW)) == "adamw");
  CHECK(std::string(vocab::name(vocab::OptimizerKind::RmsProp)) == "rmsprop");
  CHECK(std::string(vocab::name(vocab::ScheduleKind::MultiStep)) == "multistep");
  CHECK(std::string(vocab::name(vocab::ScheduleKind::Cosine)) == "cosine");
  CHECK(std::string(vocab::name(vocab::LossKind::CrossEntropy)) == "cross_entropy");
  CHECK(std::string(vocab::name(vocab::Metric::AUC)) == "auc");
  CHECK(std::string(vocab::name(vocab::LayerKind::Ple)) == "ple");  // not its other form, cgc
  for (const vocab::Entry &w : vocab::weightings()) {
    vocab::WeightingKind k{};  // parse sets it (REQUIRE); g++ cannot see that
    REQUIRE(vocab::parse(w.name, k));
    CHECK(std::string(vocab::name(k)) == w.name);
  }
  vocab::LossKind loss = vocab::LossKind::MSE;
  CHECK_FALSE(vocab::parse("softmax", loss));
  CHECK(loss == vocab::LossKind::MSE);  // unchanged
  CHECK(std::string(vocab::aliasOf(vocab::AliasOf::Loss, "softmax")) == "cross_entropy");
  CHECK(vocab::aliasOf(vocab::AliasOf::Metric, "softmax") == nullptr);
  // Every alias names a row of its table.
  for (const vocab::Alias *a = vocab::table::kAliases; a->name; ++a) {
    INFO(a->spelling);
    CHECK(vocab::find(a->table == vocab::AliasOf::Loss ? vocab::losses() : vocab::metrics(), a->name));
  }
}

TEST_CASE("vocabulary: traits drive the strategies' rules") {
  using W = vocab::WeightingKind;
  // The weight lines scale the losses under fixed and pcgrad only.
  for (W w : {W::Fixed, W::PCGrad}) CHECK(vocab::has(w, vocab::kUsesTaskWeights));
  for (W w : {W::Uniform, W::Uncertainty, W::Dwa, W::GradNorm, W::Mgda}) CHECK_FALSE(vocab::has(w, vocab::kUsesTaskWeights));
  // Per-task gradients: gradnorm, pcgrad, mgda (the lowering emits task_grads for them).
  for (W w : {W::GradNorm, W::PCGrad, W::Mgda}) CHECK(vocab::has(w, vocab::kTaskGradients));
  // A bundle and the REPL's own loop train fixed and uniform only.
  for (W w : {W::Fixed, W::Uniform}) CHECK_FALSE(vocab::has(w, vocab::kAdaptive));
  for (W w : {W::Uncertainty, W::Dwa, W::GradNorm, W::PCGrad, W::Mgda}) CHECK(vocab::has(w, vocab::kAdaptive));
  CHECK(vocab::metricFits(vocab::Metric::AUC, vocab::LossKind::BCE));
  CHECK_FALSE(vocab::metricFits(vocab::Metric::AUC, vocab::LossKind::CrossEntropy));
  CHECK(vocab::lowerIsBetter(vocab::Metric::MAE));
  CHECK_FALSE(vocab::lowerIsBetter(vocab::Metric::Accuracy));
  // The per-pixel metrics: classes need cross_entropy (not bce), angle_err the cosine loss.
  using M = vocab::Metric;
  using L = vocab::LossKind;
  for (M m : {M::PixelAccuracy, M::MIoU}) {
    CHECK(vocab::metricFits(m, L::CrossEntropy));
    CHECK_FALSE(vocab::metricFits(m, L::BCE));
    CHECK_FALSE(vocab::lowerIsBetter(m));
  }
  for (M m : {M::AbsErr, M::RelErr}) {
    CHECK(vocab::metricFits(m, L::MSE));
    CHECK(vocab::metricFits(m, L::L1));
    CHECK_FALSE(vocab::metricFits(m, L::Cosine));
    CHECK(vocab::lowerIsBetter(m));
  }
  CHECK(vocab::metricFits(M::AngleErr, L::Cosine));
  CHECK_FALSE(vocab::metricFits(M::AngleErr, L::MSE));
  CHECK_FALSE(vocab::metricFits(M::MSE, L::Cosine));
  CHECK(vocab::lowerIsBetter(M::AngleErr));
}
