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
