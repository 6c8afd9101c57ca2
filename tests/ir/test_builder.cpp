// Shape rules of ir::Builder and the checks of ir::verify.
#include "ir/Builder.h"
#include "ir/Printer.h"
#include "ir/Verifier.h"

#include <catch2/catch.hpp>

#include <sstream>

using namespace mtlc::ir;

namespace {

Module makeModule() {
  Module m;
  m.name = "t";
  m.maxBatch = 8;
  m.params = {{"a.0.weight", {4, 6}, 0}, {"a.0.bias", {4}, 32}, {"c.0.weight", {5, 3, 3, 3}, 48}};
  m.inputs = {Type{{6}, true}, Type{{3, 9, 7}, true}};
  m.labels = {Type{{1}, true}};
  m.heads = {Type{{4}, true}};
  m.functions.push_back(std::make_unique<Function>());
  m.functions.back()->name = "f";
  return m;
}

}  // namespace

TEST_CASE("matmul types follow the 2-D views, including contraction over the batch") {
  Module m = makeModule();
  Builder b(*m.functions[0]);
  Node *x = b.input(0, m.inputs[0]);
  Node *w = b.param(0, {4, 6});
  Node *y = b.matmul(x, w, false, true);  // [n,6]·[4,6]ᵀ
  CHECK(y->type == Type{{4}, true});
  Node *dx = b.matmul(y, w, false, false);  // [n,4]·[4,6]
  CHECK(dx->type == Type{{6}, true});
  Node *dw = b.matmul(y, x, true, false);  // [4,n]·[n,6]
  CHECK(dw->type == Type{{4, 6}, false});
  CHECK_THROWS_AS(b.matmul(x, w, false, false), IRError);  // 6 vs 4
}

TEST_CASE("conv2d and pooling output extents") {
  Module m = makeModule();
  Builder b(*m.functions[0]);
  Node *x = b.input(1, m.inputs[1]);  // [3,9,7]
  Node *w = b.param(2, {5, 3, 3, 3});
  CHECK(b.conv2d(x, w, 1, 0)->type == Type{{5, 7, 5}, true});
  CHECK(b.conv2d(x, w, 2, 1)->type == Type{{5, 5, 4}, true});
  CHECK(b.maxPool(x, 2, 2)->type == Type{{3, 4, 3}, true});
  CHECK(b.avgPool(x, 3, 2)->type == Type{{3, 4, 3}, true});
  CHECK(Builder::outExtent(28, 3, 1, 0) == 26);
  CHECK_THROWS_AS(b.reshape(x, Type{{190}, true}), IRError);
  CHECK(b.reshape(x, Type{{189}, true})->type.str() == "[n,189]");
}

TEST_CASE("the verifier accepts a well-formed function and names each problem") {
  Module m = makeModule();
  Function &f = *m.functions[0];
  Builder b(f);
  Node *x = b.input(0, m.inputs[0]);
  Node *y = b.biasAdd(b.matmul(x, b.param(0, {4, 6}), false, true), b.param(1, {4}));
  f.outputs.push_back({Output::Kind::Head, 0, y});
  CHECK(verify(m).empty());

  SECTION("a grad output whose type is not its parameter's") {
    f.outputs.push_back({Output::Kind::Grad, 1, y});
    auto p = verify(m);
    REQUIRE(p.size() == 1);
    CHECK_THAT(p[0], Catch::Contains("gradient type differs"));
  }
  SECTION("an operand used before it is defined") {
    Node *early = b.unary(OpKind::Relu, x);
    Node *late = b.unary(OpKind::Tanh, x);
    early->operands[0] = late;  // reads a node defined after it
    auto p = verify(m);
    REQUIRE(p.size() == 1);
    CHECK_THAT(p[0], Catch::Contains("before its definition"));
  }
  SECTION("a leaf index outside the module's tables") {
    b.param(7, {4});
    CHECK_THAT(verify(m)[0], Catch::Contains("parameter index out of range"));
  }
}

TEST_CASE("the printer shows one line per node and the outputs") {
  Module m = makeModule();
  Function &f = *m.functions[0];
  Builder b(f);
  Node *x = b.input(0, m.inputs[0]);
  Node *y = b.matmul(x, b.param(0, {4, 6}), false, true);
  f.outputs.push_back({Output::Kind::Head, 0, y});
  std::ostringstream os;
  print(m, f, os);
  CHECK(os.str() ==
        "func @f(n <= 8) {\n"
        "  %0 = input 0 : [n,6]\n"
        "  %1 = param \"a.0.weight\" : [4,6]\n"
        "  %2 = matmul %0, %1 transB : [n,4]\n"
        "  return head(task 0) = %2\n"
        "}\n");
}
