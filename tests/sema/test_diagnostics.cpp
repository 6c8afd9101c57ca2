// Golden diagnostics: every tests/diagnostics/NAME.mtl is a malformed program; parsing and
// analysing it must render exactly tests/diagnostics/NAME.expected (no colour, the file shown as
// NAME.mtl). MTLC_UPDATE_GOLDEN=1 rewrites the expected files (then review them by eye).
#include "sema/Sema.h"
#include "syntax/Parser.h"

#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace fs = std::filesystem;

namespace {

std::string slurp(const fs::path &p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string check(const fs::path &file, int &errors) {
  std::string text = slurp(file);
  std::string name = file.filename().string();
  mtlc::Diagnostics diags(name, text);
  if (auto program = mtlc::parseProgram(name, text, diags))
    mtlc::sema::analyze(*program, file.string(), diags);
  errors = diags.errorCount();
  return diags.str();
}

}  // namespace

TEST_CASE("malformed programs give exactly the expected diagnostics") {
  fs::path dir = fs::path(MTLC_SOURCE_DIR) / "tests/diagnostics";
  std::vector<fs::path> files;
  for (const auto &e : fs::directory_iterator(dir))
    if (e.path().extension() == ".mtl") files.push_back(e.path());
  std::sort(files.begin(), files.end());
  CHECK(files.size() >= 60);  // issue 7: at least 60 malformed programs
  const char *update = std::getenv("MTLC_UPDATE_GOLDEN");
  for (const auto &file : files) {
    DYNAMIC_SECTION(file.filename().string()) {
      int errors = 0;
      std::string actual = check(file, errors);
      fs::path expected = fs::path(file).replace_extension(".expected");
      CHECK(errors >= 1);  // every file here is wrong somewhere
      if (update && std::string(update) == "1") {
        std::ofstream(expected, std::ios::binary) << actual;
      } else {
        INFO("expected file: " << expected.string() << " (MTLC_UPDATE_GOLDEN=1 rewrites it)");
        REQUIRE(fs::exists(expected));
        CHECK(slurp(expected) == actual);
      }
    }
  }
}

TEST_CASE("every expected file belongs to a program") {
  fs::path dir = fs::path(MTLC_SOURCE_DIR) / "tests/diagnostics";
  for (const auto &e : fs::directory_iterator(dir))
    if (e.path().extension() == ".expected") {
      INFO(e.path().string());
      CHECK(fs::exists(fs::path(e.path()).replace_extension(".mtl")));
    }
}
