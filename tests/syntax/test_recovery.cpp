// Syntax error recovery (the parser resumes at the next declaration), the error caps, and inputs
// that are large or deeply nested on purpose: each gives located errors, never a crash or a hang.
#include "SyntaxTestUtil.h"

#include "syntax/Limits.h"
#include "syntax/SourceFile.h"

using fe_test::parse;

namespace {

std::string repeat(const std::string &s, size_t n) {
  std::string out;
  out.reserve(s.size() * n);
  for (size_t i = 0; i < n; ++i) out += s;
  return out;
}

size_t count(const std::string &haystack, const std::string &needle) {
  size_t n = 0;
  for (size_t at = haystack.find(needle); at != std::string::npos; at = haystack.find(needle, at + 1))
    ++n;
  return n;
}

}  // namespace

TEST_CASE("a syntax error in each of two declarations: both are reported") {
  auto p = parse("model m\n"
                 "input x : f32[4\n"                             // missing ']'
                 "shared s = x -> dense(4 -> relu\n"             // missing ')'
                 "task t { s -> dense(1) loss mse }\n");
  CHECK_FALSE(p.program);
  CHECK(p.errors == 2);
  CHECK_THAT(p.diagnostics, Catch::Contains("test.mtl:3:1: error: expected ',' or ']' in the input's shape, found 'shared'"));
  CHECK_THAT(p.diagnostics, Catch::Contains("test.mtl:3:25: error: expected ',' or ')' after layer arguments, found '->'"));
}

TEST_CASE("a missing '}' does not swallow the next declaration on its own line") {
  auto p = parse("model m\ninput x : f32[4]\n"
                 "task t { x -> dense(1) loss mse\n"
                 "task u { x -> dense(1) loss }\n");
  CHECK(p.errors == 2);
  CHECK_THAT(p.diagnostics, Catch::Contains("test.mtl:4:1: error: expected a pipeline, 'loss', 'weight', 'metric' or '}' in the body of task 't', found 'task'"));
  CHECK_THAT(p.diagnostics, Catch::Contains("test.mtl:4:29: error: expected a loss name after 'loss'"));
}

TEST_CASE("resuming skips declaration words that are arguments or data roles") {
  // `shared=` inside ple(...) and `train SOURCE` inside data { } are not declarations.
  auto p = parse("model m\ninput x : f32[4]\n"
                 "shared s = x -> ple(levels=1 shared=2, specific=1) { dense(4) }\n"
                 "data { test csv(\"a.csv\" train csv(\"b.csv\") }\n"
                 "task t { x -> dense(1) loss mse weight }\n");
  CHECK(p.errors == 3);
  CHECK(count(p.diagnostics, ": error: ") == 3);
  CHECK_THAT(p.diagnostics, Catch::Contains("test.mtl:3:30: error:"));
  CHECK_THAT(p.diagnostics, Catch::Contains("test.mtl:4:25: error:"));
  CHECK_THAT(p.diagnostics, Catch::Contains("test.mtl:5:40: error: expected a number after 'weight'"));
}

TEST_CASE("syntax errors stop at the limit; rendering stops at the error limit") {
  std::string text = "model m\n" + repeat("input x f32[1]\n", 50);
  auto p = parse(text);
  CHECK(p.errors == mtlc::limits::kMaxSyntaxErrors);
  CHECK(count(p.diagnostics, ": error: ") == 20);

  mtlc::Diagnostics diags("d.mtl", "a\nb\n");
  for (int i = 0; i < 25; ++i) {
    diags.error({{1, 1}, {1, 1}}, "e" + std::to_string(i));
    diags.note({{2, 1}, {2, 1}}, "n" + std::to_string(i));
  }
  std::string shown = diags.str();
  CHECK(count(shown, ": error: ") == 20);
  CHECK(count(shown, ": note: n") == 20);  // each shown error keeps its note
  CHECK_THAT(shown, Catch::EndsWith("d.mtl: note: 5 more errors not shown (at most 20 are)\n"));
  CHECK(diags.errorCount() == 25);
  diags.setErrorLimit(0);
  CHECK(count(diags.str(), ": error: ") == 25);
}

TEST_CASE("a misspelt task statement before its value is named") {
  auto p = parse("model m\ninput x : f32[4]\ntask t { x -> dense(1) loss mse wieght 0.5 }\n");
  CHECK(p.errors == 1);
  CHECK_THAT(p.diagnostics, Catch::StartsWith("test.mtl:3:33: error: unknown statement 'wieght' in task 't'; did you mean 'weight'?"));
  // After '->' the word is a layer name, which sema checks.
  auto q = parse("model m\ninput x : f32[4]\ntask t { x -> wieght 0.5 }\n");
  CHECK_THAT(q.diagnostics, !Catch::Contains("did you mean 'weight'"));
}

TEST_CASE("programs past the size limit are rejected before lexing") {
  std::string ok = "model m\n" + std::string(mtlc::limits::kMaxProgramBytes - 8, '#');
  REQUIRE(ok.size() == mtlc::limits::kMaxProgramBytes);
  CHECK(parse(ok).errors == 0);
  auto p = parse(ok + "\n");
  CHECK(p.errors == 1);
  CHECK(p.diagnostics == "test.mtl: error: the program is larger than the supported 1048576 bytes (1 MiB)\n");
}

TEST_CASE("reading a source file stops one byte past the size limit") {
  std::string text;
  REQUIRE(mtlc::readSourceFile("/dev/zero", text));  // endless
  CHECK(text.size() == mtlc::limits::kMaxProgramBytes + 1);
  CHECK_FALSE(mtlc::readSourceFile("/nonexistent/x.mtl", text));
  CHECK(text.empty());
}

TEST_CASE("deep nesting and long repetitions parse without deep recursion") {
  // Nothing in the grammar nests recursively, so none of these can grow the parser's stack; each
  // is one located error (or none), at most a few hundred KiB of input.
  auto parens = parse("model m\ninput x : f32[4]\nshared s = x -> dense" + repeat("(", 200000));
  CHECK(parens.errors == 1);
  CHECK_THAT(parens.diagnostics, Catch::StartsWith("test.mtl:3:23: error: expected an argument or ')' after 'dense(', found '('"));
  auto braces = parse("model m\ninput x : f32[4]\nshared s = x -> mixture(experts=2) " + repeat("{", 200000));
  CHECK(braces.errors == 1);
  auto tasks = parse("model m\n" + repeat("task t {", 100000));
  CHECK(tasks.errors == 1);
  auto brackets = parse("model m\ninput x : f32" + repeat("[", 200000));
  CHECK(brackets.errors == 1);
  // A 100000-layer pipeline is valid syntax, parsed in a loop.
  auto layers = parse("model m\ninput x : f32[4]\nshared s = x" + repeat(" -> relu", 100000) +
                      "\ntask t { s -> dense(1) loss mse }\n");
  REQUIRE(layers.program);
  CHECK(layers.program->shared[0].pipeline.layers.size() == 100000);
}
