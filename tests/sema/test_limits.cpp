// The front end's size limits (syntax/Limits.h): each absurd size is one located error, reported
// by sema before lowering could allocate anything of that size.
#include "sema/Sema.h"
#include "syntax/Limits.h"
#include "syntax/Parser.h"

#include <catch2/catch.hpp>

#include <string>

namespace {

struct Checked {
  std::string diagnostics;
  int errors = 0;
  bool ok = false;
};

Checked checkText(const std::string &text) {
  mtlc::Diagnostics diags("l.mtl", text);
  Checked c;
  if (auto program = mtlc::parseProgram("l.mtl", text, diags))
    c.ok = mtlc::sema::analyze(*program, "l.mtl", diags).has_value();
  c.diagnostics = diags.str();
  c.errors = diags.errorCount();
  return c;
}

}  // namespace

TEST_CASE("thousands of tasks: one error at the first task past the limit") {
  std::string text = "model m\ninput x : f32[4]\n";
  for (int i = 0; i < 3000; ++i) text += "task t" + std::to_string(i) + " { x -> dense(1) loss mse }\n";
  Checked c = checkText(text);
  CHECK_FALSE(c.ok);
  CHECK(c.errors == 1);
  CHECK(c.diagnostics.rfind("l.mtl:259:6: error: too many tasks: a model has at most 256; 't256' is "
                            "task 257\n", 0) == 0);
  // Exactly the limit is fine.
  std::string most = "model m\ninput x : f32[4]\n";
  for (int i = 0; i < mtlc::limits::kMaxTasks; ++i)
    most += "task t" + std::to_string(i) + " { x -> dense(1) loss mse }\n";
  CHECK(checkText(most).ok);
}

TEST_CASE("element counts that overflow int64 are errors, not wrapped numbers") {
  // 2147483647^3 overflows int64; each dimension alone is within range.
  Checked c = checkText("model m\ninput x : f32[2147483647, 2147483647, 2147483647]\n"
                        "task t { x -> flatten -> dense(1) loss mse }\n");
  CHECK(c.errors == 1);
  CHECK_THAT(c.diagnostics, Catch::StartsWith("l.mtl:2:11: error: input 'x' has too many values per sample (at most 2147483647)"));
  Checked d = checkText("model m\ninput x : f32[9223372036854775808]\ntask t { x -> dense(1) loss mse }\n");
  CHECK_THAT(d.diagnostics, Catch::StartsWith("l.mtl:2:15: error: dimension 9223372036854775808 is too large (at most 2147483647)"));
  Checked e = checkText("model m\ninput x : f32[65536, 65536]\n"
                        "task t { x -> flatten -> dense(1) loss mse }\n");
  CHECK_THAT(e.diagnostics, Catch::StartsWith("l.mtl:2:11: error: input 'x' has too many values per sample"));
}

TEST_CASE("a 10^9-wide layer is past the parameter limit") {
  Checked c = checkText("model m\ninput x : f32[1]\ntask t { x -> dense(1000000000) -> dense(1) loss mse }\n");
  CHECK(c.errors == 1);
  CHECK_THAT(c.diagnostics, Catch::StartsWith("l.mtl:3:15: error: dense(1000000000) brings the model to 2000000000 parameters, more than the supported 268435456 (2^28)"));
  // Parameters add up across blocks: 20000 x 10001 twice is over 2^28; once is not.
  std::string one = "model m\ninput x : f32[10000]\nshared a = x -> dense(20000)\n";
  CHECK(checkText(one + "task t { a -> dense(1) loss mse }\n").ok);
  Checked twice = checkText(one + "shared b = x -> dense(20000)\ntask t { a -> dense(1) loss mse }\n"
                                  "task u { b -> dense(1) loss mse }\n");
  CHECK_THAT(twice.diagnostics, Catch::StartsWith("l.mtl:4:17: error: dense(20000) brings the model to 400040000 parameters"));
}

TEST_CASE("one training step's activations past the limit: the layer, with a note at the batch") {
  // 1 parameter-free layer on a 2^27-value input: fine per sample, but batch 64 makes it 2^33.
  Checked c = checkText("model m\ninput x : f32[134217728]\nshared s = x -> relu\n"
                        "task t { s -> dense(1) loss mse }\ntrain { batch 64 }\n");
  CHECK(c.errors == 1);
  CHECK_THAT(c.diagnostics, Catch::StartsWith(
      "l.mtl:2:1: error: input 'x' takes one training step's activations to 8589934592 values (batch "
      "64 x 134217728 per sample), more than the supported 2147483648 (2^31, 8 GiB)"));
  CHECK_THAT(c.diagnostics, Catch::Contains("l.mtl:5:15: note: the batch, 64, is set here"));
  // The default batch (32): 2^26 values per sample pass the input, the relu's copy crosses.
  Checked d = checkText("model m\ninput x : f32[67108864]\nshared s = x -> relu\n"
                        "task t { s -> dense(1) loss mse }\n");
  CHECK_THAT(d.diagnostics, Catch::StartsWith("l.mtl:3:17: error: relu (in 's') takes one training "
                                              "step's activations to 4294967296 values (batch 32 x "
                                              "134217728 per sample)"));
  CHECK_THAT(d.diagnostics, Catch::Contains("l.mtl: note: the batch is the default, 32; a smaller one goes in train { batch N }"));
  // A batch of 1 fits.
  CHECK(checkText("model m\ninput x : f32[67108864]\nshared s = x -> relu\n"
                  "task t { s -> dense(1) loss mse }\ntrain { batch 1 }\n").ok);
}
