// The mtlc command as a user meets it: help, emit modes, located errors and exit codes.
#include "Run.h"

#include <catch2/catch.hpp>

TEST_CASE("mtlc --help documents the commands and options") {
  auto r = runMtlc("--help");
  CHECK(r.exitCode == 0);
  for (const char *word : {"train", "--emit", "-o", "MODEL"}) CHECK_THAT(r.out, Catch::Contains(word));
  auto t = runMtlc("train --help");
  CHECK(t.exitCode == 0);
  for (const char *word : {"--epochs", "--steps", "--init", "--save", "--log", "--data", "--seed"})
    CHECK_THAT(t.out, Catch::Contains(word));
}

TEST_CASE("bad command lines exit 2 with a message") {
  CHECK(runMtlc("").exitCode == 2);
  auto r = runMtlc("--emit=bogus " + example("fashion.mtl"));
  CHECK(r.exitCode == 2);
  CHECK(runMtlc("no-such-file.mtl").exitCode == 2);
  CHECK(runMtlc("train --data nonsense " + example("fashion.mtl")).exitCode == 2);
}

TEST_CASE("compiling the flagship prints a summary") {
  auto r = runMtlc(example("fashion.mtl"));
  REQUIRE(r.exitCode == 0);
  CHECK_THAT(r.out, Catch::Contains("model fashion"));
  CHECK_THAT(r.out, Catch::Contains("trunk"));
  CHECK_THAT(r.out, Catch::Contains("category"));
  CHECK_THAT(r.out, Catch::Contains("compile time"));
  // conv 32*1*9+32, dense 5408*64+64 and 64*10+10, dense 5408*64+64 and 64+1.
  CHECK_THAT(r.out, Catch::Contains(std::to_string(320 + 346176 + 650 + 346176 + 65)));
}

TEST_CASE("--emit=ir shows the forward and the backward graph") {
  auto r = runMtlc("--emit=ir " + example("fashion.mtl"));
  REQUIRE(r.exitCode == 0);
  for (const char *s : {"func @train_step", "func @eval_step", "func @predict", "conv2d ",
                        "conv2d_bwd_filter", "maxpool_bwd", "cross_entropy_bwd", "bce_bwd",
                        "return grad(trunk.0.weight)", "return loss(task 1)"})
    CHECK_THAT(r.out, Catch::Contains(s));
}

namespace {

int occurrences(const std::string &text, const std::string &what) {
  int n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

}  // namespace

TEST_CASE("--emit=ir is the graph as lowered, --emit=ir-opt after the passes with fusion groups") {
  auto before = runMtlc("--emit=ir " + example("fashion.mtl"));
  auto after = runMtlc("--emit=ir-opt " + example("fashion.mtl"));
  REQUIRE(before.exitCode == 0);
  REQUIRE(after.exitCode == 0);
  // Lowered: reverse mode seeds d(total) = 1 (`const 1`) and multiplies it into each loss weight;
  // one param read per use. After fold-constants, cse and dce none of that is left.
  CHECK_THAT(before.out, Catch::Contains("= const 1 :"));
  CHECK_THAT(after.out, !Catch::Contains("= const"));
  CHECK(occurrences(after.out, "\n  %") < occurrences(before.out, "\n  %"));  // fewer nodes
  CHECK(occurrences(before.out, "; kernel:") == 0);
  // Fusion groups: conv + bias + relu in one kernel, the relu derivative in a matmul's epilogue.
  CHECK_THAT(after.out, Catch::Matches("(.|\n)*kernel: %[0-9]+ conv2d -> %[0-9]+ bias_add -> %[0-9]+ relu(.|\n)*"));
  CHECK_THAT(after.out, Catch::Matches("(.|\n)*kernel: %[0-9]+ matmul -> %[0-9]+ relu_bwd(.|\n)*"));
  CHECK(occurrences(after.out, "; fused into %") > 10);
}

TEST_CASE("-O0 and --disable-pass turn passes off; unknown pass names are usage errors") {
  auto all = runMtlc("--emit=ir-opt " + example("fashion.mtl"));
  auto o0 = runMtlc("-O0 --emit=ir-opt " + example("fashion.mtl"));
  auto lowered = runMtlc("--emit=ir " + example("fashion.mtl"));
  REQUIRE(o0.exitCode == 0);
  CHECK(o0.out == lowered.out);  // every pass off: the IR as lowered, no groups
  auto noFusion = runMtlc("--disable-pass=fusion --emit=ir-opt " + example("fashion.mtl"));
  REQUIRE(noFusion.exitCode == 0);
  CHECK(occurrences(noFusion.out, "; kernel:") == 0);
  CHECK_THAT(noFusion.out, !Catch::Contains("= const"));  // the rewrites still ran
  auto noFold = runMtlc("--disable-pass fold-constants --disable-pass=dce --emit=ir-opt " + example("fashion.mtl"));
  REQUIRE(noFold.exitCode == 0);
  CHECK_THAT(noFold.out, Catch::Contains("= const 1 :"));
  CHECK(occurrences(noFold.out, "; kernel:") > 0);
  // The program still compiles and runs with passes off (the summary needs the JIT).
  CHECK(runMtlc("-O0 " + example("tabular.mtl")).exitCode == 0);
  CHECK(runMtlc("--disable-pass=cse --disable-pass=fusion " + example("tabular.mtl")).exitCode == 0);
  auto bad = runMtlc("--disable-pass=cs " + example("fashion.mtl"));
  CHECK(bad.exitCode == 2);
  CHECK_THAT(bad.err, Catch::Contains("unknown pass 'cs' (known: fold-constants, cse, dce, fusion)"));
  CHECK(all.out != noFusion.out);
}

TEST_CASE("--emit=llvm prints the generated module; -o writes it to a file") {
  auto r = runMtlc("--emit=llvm " + example("fashion.mtl"));
  REQUIRE(r.exitCode == 0);
  CHECK_THAT(r.out, Catch::Contains("define"));
  CHECK_THAT(r.out, Catch::Contains("mtlc_fashion_train_step"));
  auto path = (testDir("emit") / "fashion.ll").string();
  auto o = runMtlc("--emit=llvm -o '" + path + "' " + example("fashion.mtl"));
  CHECK(o.exitCode == 0);
  CHECK(o.out.empty());
  CHECK_THAT(slurp(path), Catch::Contains("mtlc_fashion_eval_step"));
  // The module is compiled in partitions on several threads (jit/ParallelCompile.h); the printed
  // text is the same every run.
  CHECK(slurp(path) == r.out);
}

TEST_CASE("a malformed program gives a located error and exit 1, never a signal") {
  auto file = writeFile("bad.mtl", "model m\ninput x : f32[4]\nshared t = x -> dens(3)\n");
  auto r = runMtlc("'" + file + "'");
  CHECK(r.exitCode == 1);
  CHECK(r.signal == 0);
  CHECK_THAT(r.err, Catch::Contains("bad.mtl:3:17: error:"));
  CHECK_THAT(r.err, Catch::Contains("dense"));  // did you mean
  CHECK_THAT(r.err, Catch::Contains("^"));
}

TEST_CASE("garbage input never crashes the compiler") {
  std::string garbage;
  for (int i = 0; i < 512; ++i) garbage += static_cast<char>((i * 7919 + 13) % 256);
  for (const std::string &text : {std::string(""), std::string("model"), garbage,
                                  std::string("model m\ntask t { ") ,
                                  std::string("model m\ninput x : f32[99999999999999999999]\n")}) {
    auto r = runMtlc("'" + writeFile("garbage.mtl", text) + "'");
    CHECK(r.signal == 0);
    CHECK(r.exitCode == 1);
    CHECK_THAT(r.err, Catch::Contains("error:"));
  }
}

TEST_CASE("an endless or oversized program file is read only up to the size limit") {
  for (const std::string &args : {std::string("/dev/zero"), std::string("--emit=ast /dev/zero")}) {
    auto r = runMtlc(args);
    CHECK(r.signal == 0);
    CHECK(r.exitCode == 1);
    CHECK(r.err == "/dev/zero: error: the program is larger than the supported 1048576 bytes (1 MiB)\n");
  }
}

TEST_CASE("a missing data file is a clear error with exit 1") {
  auto file = writeFile("nodata.mtl",
                        "model m\ninput x : f32[2]\ntask y { x -> dense(1) loss mse }\n"
                        "data {\n  train csv(\"missing.csv\")\n  x = columns(0..1)\n  y = y\n}\n");
  auto r = runMtlc("train '" + file + "'");
  CHECK(r.exitCode == 1);
  CHECK(r.signal == 0);
  CHECK_THAT(r.err, Catch::Contains("missing.csv"));
}
