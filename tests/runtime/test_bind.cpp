// Data bindings (`x = columns(1..3) / 2`, `flag = label in {5, 7, 9}`, ...) and label checks.
#include "TestUtil.h"

#include "runtime/data/Dataset.h"
#include "spec/Error.h"

#include <cmath>

using namespace mtlc::rt;
using namespace mtlc::rt::test;
using Catch::Matchers::Contains;
using Op = BindExpr::Op;

namespace {

// A csv-like table: columns a, b, c, label over 4 rows (lines 2..5 of "t.csv").
Table table() {
  Table t;
  t.origin = "t.csv";
  t.columnar = true;
  t.rows = 4;
  t.rowLine = {2, 3, 4, 5};
  t.fields = {{"a", 1, {1, 2, 3, 4}}, {"b", 1, {10, 20, 30, 40}}, {"c", 1, {-1, 0, 1, std::nanf("")}},
              {"label", 1, {5, 6, 7, 9}}};
  return t;
}

Binding bind(std::string target, Op op, FieldRef ref, int64_t width = 1, double value = 0,
             std::vector<double> set = {}) {
  Binding b;
  b.target = std::move(target);
  b.expr.op = op;
  b.expr.ref = std::move(ref);
  b.expr.value = value;
  b.expr.set = std::move(set);
  b.width = width;
  return b;
}

FieldRef named(std::string f) { FieldRef r; r.field = std::move(f); return r; }
FieldRef range(int64_t a, int64_t b) { FieldRef r; r.colFirst = a; r.colLast = b; return r; }
FieldRef cols(std::vector<std::string> c) { FieldRef r; r.columns = std::move(c); return r; }

std::vector<float> eval(Binding b) {
  Dataset d = bindTable(table(), {b}, {});
  REQUIRE(d.inputs.size() == 1);
  REQUIRE(d.inputs[0].name == b.target);
  return {d.inputs[0].data.begin(), d.inputs[0].data.end()};
}

bool same(const std::vector<float>& got, const std::vector<float>& want) {
  if (got.size() != want.size()) return false;
  for (size_t i = 0; i < got.size(); ++i)
    if (!(got[i] == want[i] || (std::isnan(got[i]) && std::isnan(want[i])))) return false;
  return true;
}

}  // namespace

TEST_CASE("bindings: transforms", "[bind]") {
  const float nan = std::nanf("");
  CHECK(eval(bind("y", Op::Field, named("a"))) == std::vector<float>{1, 2, 3, 4});
  CHECK(eval(bind("y", Op::Div, named("b"), 1, 4)) == std::vector<float>{2.5f, 5, 7.5f, 10});
  CHECK(eval(bind("y", Op::Mul, named("a"), 1, -2)) == std::vector<float>{-2, -4, -6, -8});
  CHECK(eval(bind("y", Op::Add, named("a"), 1, 0.5)) == std::vector<float>{1.5f, 2.5f, 3.5f, 4.5f});
  CHECK(eval(bind("y", Op::Sub, named("a"), 1, 1)) == std::vector<float>{0, 1, 2, 3});
  CHECK(eval(bind("y", Op::In, named("label"), 1, 0, {5, 7, 9})) == std::vector<float>{1, 0, 1, 1});
  CHECK(eval(bind("y", Op::Eq, named("label"), 1, 6)) == std::vector<float>{0, 1, 0, 0});
  CHECK(eval(bind("y", Op::Ne, named("label"), 1, 6)) == std::vector<float>{1, 0, 1, 1});
  CHECK(eval(bind("y", Op::Gt, named("a"), 1, 2)) == std::vector<float>{0, 0, 1, 1});
  CHECK(eval(bind("y", Op::Ge, named("a"), 1, 2)) == std::vector<float>{0, 1, 1, 1});
  CHECK(eval(bind("y", Op::Lt, named("a"), 1, 2)) == std::vector<float>{1, 0, 0, 0});
  CHECK(eval(bind("y", Op::Le, named("a"), 1, 2)) == std::vector<float>{1, 1, 0, 0});
  // A missing value stays missing through a comparison.
  CHECK(same(eval(bind("y", Op::Gt, named("c"), 1, 0)), {0, 0, 1, nan}));
}

TEST_CASE("bindings: column lists and inclusive ranges, row-major", "[bind]") {
  CHECK(eval(bind("x", Op::Field, range(0, 1), 2)) == std::vector<float>{1, 10, 2, 20, 3, 30, 4, 40});
  CHECK(eval(bind("x", Op::Div, range(1, 1), 1, 10)) == std::vector<float>{1, 2, 3, 4});
  CHECK(eval(bind("x", Op::Field, cols({"label", "a"}), 2)) == std::vector<float>{5, 1, 6, 2, 7, 3, 9, 4});
}

TEST_CASE("bindings: several bindings of one field, inputs and labels", "[bind]") {
  Dataset d = bindTable(table(), {bind("x", Op::Field, range(0, 1), 2), bind("raw", Op::Field, named("label"))},
                        {bind("kind", Op::Field, named("label")), bind("flag", Op::In, named("label"), 1, 0, {9})});
  REQUIRE(d.rows == 4);
  CHECK(d.origin == "t.csv");
  CHECK(d.inputs[1].data == HugeFloats{5, 6, 7, 9});
  CHECK(d.labels[0].name == "kind");
  CHECK(d.labels[0].data == HugeFloats{5, 6, 7, 9});
  CHECK(d.labels[1].data == HugeFloats{0, 0, 0, 1});
  CHECK(d.rowPos(2) == "t.csv:4");
}

TEST_CASE("bindings: errors name the source and the binding", "[bind]") {
  CHECK_THROWS_WITH(eval(bind("image", Op::Field, named("a"), 784)),
                    "t.csv: binding `image` expects 784 values per sample, source field `a` has 1");
  CHECK_THROWS_WITH(eval(bind("x", Op::Field, range(2, 5), 4)),
                    "t.csv: binding `x` reads columns(2..5), but the file has columns 0..3");
  CHECK_THROWS_WITH(eval(bind("x", Op::Field, range(0, 2), 4)),
                    "t.csv: binding `x` expects 4 values per sample, source columns 0..2 has 3");
  CHECK_THROWS_WITH(eval(bind("x", Op::Field, named("zzz"))),
                    "t.csv: binding `x` reads field `zzz`, which the source does not have (fields: a, b, c, label)");
  CHECK_THROWS_WITH(eval(bind("x", Op::Div, named("a"), 1, 0)), "t.csv: binding `x` divides by zero");
  Table img;
  img.origin = "fashion_mnist(\"train\")";
  img.rows = 1;
  img.fields = {{"pixels", 2, {0, 1}}, {"label", 1, {3}}};
  CHECK_THROWS_WITH(bindTable(img, {bind("x", Op::Field, range(0, 0))}, {}),
                    Contains("uses columns(a..b), which needs a csv source"));
  Table empty = table();
  empty.rows = 0;
  for (Field& f : empty.fields) f.data.clear();
  CHECK_THROWS_WITH(bindTable(empty, {}, {}), "t.csv: the source has no samples");
}

TEST_CASE("labels are checked against the task's loss", "[bind]") {
  TaskSpec kind;
  kind.name = "kind";
  kind.loss = LossKind::CrossEntropy;
  kind.outWidth = 8;
  TaskSpec flag;
  flag.name = "flag";
  flag.loss = LossKind::BCE;
  Dataset d = bindTable(table(), {}, {bind("kind", Op::Field, named("label")), bind("flag", Op::Field, named("a"))});
  CHECK_THROWS_WITH(validateLabels({kind}, d), "t.csv:5: task `kind` label 9 is not a class index in [0, 8)");
  kind.outWidth = 10;
  CHECK_NOTHROW(validateLabels({kind}, d));
  CHECK_THROWS_WITH(validateLabels({flag}, d), "t.csv:3: task `flag` label 2 is outside [0, 1] (bce needs 0/1 labels)");
  // Partial labels: a NaN label is absent and accepted; the present ones are still checked.
  Dataset withNan = bindTable(table(), {}, {bind("kind", Op::Field, named("c"))});
  kind.loss = LossKind::MSE;
  CHECK_NOTHROW(validateLabels({kind}, withNan));
  kind.loss = LossKind::CrossEntropy;
  CHECK_THROWS_WITH(validateLabels({kind}, withNan), "t.csv:2: task `kind` label -1 is not a class index in [0, 10)");
  Dataset shifted = bindTable(table(), {}, {bind("kind", Op::Add, named("c"), 1, 1)});  // 0, 1, 2, NaN
  CHECK_NOTHROW(validateLabels({kind}, shifted));
  Dataset flags = bindTable(table(), {}, {bind("flag", Op::Ge, named("c"), 1, 0)});      // 0, 1, 1, NaN
  CHECK_NOTHROW(validateLabels({flag}, flags));
  Dataset badFlag = bindTable(table(), {}, {bind("flag", Op::Mul, named("c"), 1, 2)});   // -2, 0, 2, NaN
  CHECK_THROWS_WITH(validateLabels({flag}, badFlag), "t.csv:2: task `flag` label -2 is outside [0, 1] (bce needs 0/1 labels)");
  TaskSpec other;
  other.name = "other";
  CHECK_THROWS_WITH(validateLabels({other}, d), "t.csv: no label binding for task `other`");
}

TEST_CASE("embedding inputs must hold category indices", "[bind]") {
  InputSpec in;
  in.name = "user";
  in.size = 1;
  in.categories = 9;
  Dataset d = bindTable(table(), {bind("user", Op::Field, named("label"))}, {});
  CHECK_THROWS_WITH(validateInputs({in}, d), "t.csv:5: input `user` value 9 is not a category index in [0, 9)");
  in.categories = 10;
  CHECK_NOTHROW(validateInputs({in}, d));
  Dataset half = bindTable(table(), {bind("user", Op::Div, named("label"), 1, 2)}, {});
  CHECK_THROWS_WITH(validateInputs({in}, half), "t.csv:2: input `user` value 2.5 is not a category index in [0, 10)");
  in.categories = 0;  // not an embedding input: anything goes
  CHECK_NOTHROW(validateInputs({in}, half));
}
