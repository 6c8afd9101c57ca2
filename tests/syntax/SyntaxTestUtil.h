// Helpers for the front-end tests: reading files, parsing text, golden comparison.
#pragma once

#include "syntax/Parser.h"

#include <catch2/catch.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace fe_test {

inline std::filesystem::path sourceDir() { return std::filesystem::path(MTLC_SOURCE_DIR); }

inline std::string slurp(const std::filesystem::path &p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline bool updateGolden() {
  const char *v = std::getenv("MTLC_UPDATE_GOLDEN");
  return v && std::string(v) == "1";
}

// Compares `actual` with the golden file (or rewrites it under MTLC_UPDATE_GOLDEN=1).
inline void checkGolden(const std::filesystem::path &golden, const std::string &actual) {
  if (updateGolden()) {
    std::ofstream(golden, std::ios::binary) << actual;
    return;
  }
  INFO("golden file " << golden.string() << " (MTLC_UPDATE_GOLDEN=1 rewrites it)");
  REQUIRE(std::filesystem::exists(golden));
  CHECK(slurp(golden) == actual);
}

struct Parsed {
  std::optional<mtlc::ast::Program> program;
  std::string diagnostics;  // rendered, no colour
  int errors = 0;
};

inline Parsed parse(const std::string &text, const std::string &file = "test.mtl") {
  mtlc::Diagnostics diags(file, text);
  Parsed p;
  p.program = mtlc::parseProgram(file, text, diags);
  p.diagnostics = diags.str();
  p.errors = diags.errorCount();
  return p;
}

}  // namespace fe_test
