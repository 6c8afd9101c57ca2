// libFuzzer harness of the front end: any bytes go through parse -> check -> lower -> IR
// verification -> graph passes (verified after each), i.e. everything `mtlc MODEL.mtl` does before
// code generation. Built with -DMTLC_FUZZ=ON (clang; see cmake/Hardening.cmake and README,
// "Hardening").
//
// A finding is anything that is not a clean diagnostic: a crash, a sanitizer report, a hang, a
// leak, an uncaught exception, an IR verification failure, or an "internal error" diagnostic (the
// parser and sema catch stray exceptions and report them that way; for a fuzzer that is a bug), or
// a syntax error in ANTLR's words (Parser.cpp's safety-net listener: a path the error strategy
// does not cover).
#include "ir/Verifier.h"
#include "lower/Lower.h"
#include "passes/Passes.h"
#include "sema/Sema.h"
#include "syntax/Parser.h"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace {

[[noreturn]] void finding(const std::string &what, const mtlc::Diagnostics &diags) {
  std::fprintf(stderr, "mtlc_fuzz: %s\n%s", what.c_str(), diags.str().c_str());
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  std::string text(reinterpret_cast<const char *>(data), size);
  mtlc::Diagnostics diags("fuzz.mtl", text);
  auto program = mtlc::parseProgram("fuzz.mtl", text, diags);
  std::optional<mtlc::sema::Model> model;
  if (program) model = mtlc::sema::analyze(*program, "fuzz.mtl", diags);
  if (program && !model && !diags.hasErrors()) finding("sema failed without an error", diags);
  if (!program && !diags.hasErrors()) finding("the parser failed without an error", diags);
  for (const auto &d : diags.diagnostics())
    if (d.message.rfind("internal error", 0) == 0) finding("internal error", diags);
    else if (d.message.rfind("syntax error: ", 0) == 0)  // ANTLR's own message: an unforeseen path
      finding("a syntax error the error strategy did not word", diags);
  (void)diags.str();  // rendering (carets, long lines, invalid UTF-8) is part of the front end
  if (!model) return 0;

  mtlc::lower::LoweredModel lowered = mtlc::lower::lowerModel(*model, model->train.batch);
  auto problems = mtlc::ir::verify(lowered.module);
  if (!problems.empty()) finding("IR verification failed after lowering: " + problems[0], diags);
  mtlc::passes::runGraphPasses(lowered.module, /*verifyEach=*/true);
  return 0;
}
