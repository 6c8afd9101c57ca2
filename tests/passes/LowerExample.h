// Parses, checks and lowers a program for the pass tests.
#pragma once

#include "lower/Lower.h"
#include "sema/Sema.h"
#include "syntax/Parser.h"

#include <catch2/catch.hpp>

#include <fstream>
#include <sstream>

inline mtlc::lower::LoweredModel lowerText(const std::string &text, const std::string &file = "t.mtl") {
  mtlc::Diagnostics diags(file, text);
  auto ast = mtlc::parseProgram(file, text, diags);
  REQUIRE(ast);
  auto model = mtlc::sema::analyze(*ast, file, diags);
  INFO(diags.str());
  REQUIRE(model);
  return mtlc::lower::lowerModel(*model, model->train.batch);
}

inline mtlc::lower::LoweredModel lowerExample(const std::string &name) {
  std::string path = std::string(MTLC_SOURCE_DIR) + "/examples/" + name;
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return lowerText(ss.str(), path);
}

// The text of one function of `m` as `--emit=ir` prints it (golden before/after tests).
#include "ir/Printer.h"
inline std::string printed(const mtlc::ir::Module &m, const std::string &function) {
  std::ostringstream os;
  mtlc::ir::print(m, *m.function(function), os);
  return os.str();
}

// The golden text tests/passes/golden/NAME: the IR of kTinyProgram / kTwoTaskProgram after each
// stage (lowered, folded, cse, dce, fused), each pass's test going from one file to the next.
inline std::string golden(const std::string &name) {
  std::ifstream in(std::string(MTLC_SOURCE_DIR) + "/tests/passes/golden/" + name, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  REQUIRE(!ss.str().empty());
  return ss.str();
}

// Runs `pass` on `function` of m, which must read as golden `before` and then as golden `after`,
// verify, and stay unchanged by a second run (a fixed point).
#include "ir/Verifier.h"
inline void checkGoldenPass(mtlc::ir::Module &m, const std::string &function, bool (*pass)(mtlc::ir::Function &),
                            const std::string &before, const std::string &after) {
  CHECK(printed(m, function) == golden(before));
  CHECK(pass(*m.function(function)));
  CHECK(printed(m, function) == golden(after));
  CHECK(mtlc::ir::verify(m).empty());
  CHECK_FALSE(pass(*m.function(function)));
}

// A module with one empty function and the given per-sample input, head and label types, for
// hand-built graphs.
inline mtlc::ir::Module handBuiltModule(std::vector<mtlc::ir::Type> inputs, std::vector<mtlc::ir::Type> heads,
                                        std::vector<mtlc::ir::Type> labels = {}) {
  mtlc::ir::Module m;
  m.name = "s";
  m.inputs = std::move(inputs);
  m.heads = std::move(heads);
  m.labels = std::move(labels);
  m.functions.push_back(std::make_unique<mtlc::ir::Function>());
  return m;
}

inline int countOps(const mtlc::ir::Function &f, mtlc::ir::OpKind op) {
  int c = 0;
  for (const auto &n : f.nodes) c += n->op == op;
  return c;
}

// A one-task model small enough to read its whole train_step: 4 features → dense(3) → relu →
// dense(2) → cross entropy, weight 0.5.
inline const char *kTinyProgram = R"(model g
input x : f32[4]
task y { x -> dense(3) -> relu -> dense(2) loss cross_entropy weight 0.5 }
train { optimizer sgd(lr=0.1) batch 8 }
)";

// Two tasks under pcgrad: its task_grads entry point runs each task's backward from its own
// seed d(L_t) = 1.
inline const char *kTwoTaskProgram = R"(model h
input x : f32[3]
shared s = x -> dense(2)
task a { s -> dense(2) loss cross_entropy }
task b { s -> dense(1) loss mse }
train { optimizer sgd(lr=0.1) batch 8 weighting pcgrad }
)";
