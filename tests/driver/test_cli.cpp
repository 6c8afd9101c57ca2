// The mtlc command as a user meets it: help, emit modes, located errors and exit codes.
#include "Run.h"

#include <catch2/catch.hpp>

#include <filesystem>

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
  CHECK_THAT(bad.err, Catch::Contains("unknown pass 'cs' (known: fold-constants, cse, siblings, dce, fusion)"));
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
  // Found when the program is checked (the csv header is read then), at the source.
  CHECK_THAT(r.err, Catch::Contains("nodata.mtl:5:13: error: missing.csv: cannot open: No such file or directory"));
  CHECK(r.out.empty());
}

TEST_CASE("--emit=llvm prints one module that llvm-as accepts") {
  // Compiled in partitions on several threads, printed as one module: each partition declares
  // the kernels another defines, so partitions printed one after another do not assemble.
  std::string llvmAs;
  for (const char *candidate : {"/usr/bin/llvm-as-19", "/usr/lib/llvm-19/bin/llvm-as"})
    if (std::filesystem::exists(candidate)) llvmAs = candidate;
  REQUIRE(!llvmAs.empty());
  for (const char *model : {"fashion.mtl", "tabular.mtl", "mmoe_synthetic.mtl"}) {
    INFO(model);
    auto path = (testDir("emit") / (std::string(model) + ".ll")).string();
    auto r = runMtlc("--emit=llvm -o '" + path + "' " + example(model));
    REQUIRE(r.exitCode == 0);
    const std::string text = slurp(path);
    CHECK(occurrences(text, "; ModuleID") == 1);
    const std::string log = (testDir("emit") / "llvm-as.txt").string();
    CHECK(std::system((llvmAs + " -o /dev/null '" + path + "' 2>'" + log + "'").c_str()) == 0);
    INFO(slurp(log));
    CHECK(slurp(log).empty());
  }
}

TEST_CASE("mtlc --version prints the version") {
  auto r = runMtlc("--version");
  CHECK(r.exitCode == 0);
  CHECK_THAT(r.out, Catch::StartsWith("mtlc 0.1.0 (LLVM 19."));
  CHECK(r.err.empty());
}

TEST_CASE("a misspelt command gets a did-you-mean") {
  for (const std::string &args : {std::string("trian"), "trian " + example("fashion.mtl"), std::string("biuld")}) {
    auto r = runMtlc(args);
    CHECK(r.exitCode == 2);
    CHECK_THAT(r.err, Catch::StartsWith("mtlc: error: unknown command '"));
    CHECK_THAT(r.err, Catch::Contains("did you mean '"));
  }
  CHECK_THAT(runMtlc("trian").err, Catch::Contains("unknown command 'trian'; did you mean 'train'?"));
  // A file of that name is a program, not a command.
  auto dir = testDir("command-file");
  std::filesystem::copy_file(example("tabular.mtl"), dir / "trian", std::filesystem::copy_options::overwrite_existing);
  for (const char *csv : {"tabular.csv", "tabular_test.csv"})
    std::filesystem::copy_file(example(csv), dir / csv, std::filesystem::copy_options::overwrite_existing);
  CHECK(runMtlc("trian", dir.string()).exitCode == 0);
}

TEST_CASE("an option of another command says which command it belongs to") {
  auto r = runMtlc("--epochs 3 " + example("tabular.mtl"));
  CHECK(r.exitCode == 2);
  CHECK(r.err == "mtlc: error: --epochs is an option of `mtlc train`; write `mtlc train --epochs ...`\n");
  auto q = runMtlc(example("tabular.mtl") + " -q");
  CHECK(q.exitCode == 2);
  CHECK_THAT(q.err, Catch::StartsWith("mtlc: error: -q is an option of `mtlc train`"));
  auto b = runMtlc("build --steps=2 -o x " + example("tabular.mtl"));
  CHECK(b.exitCode == 2);
  CHECK_THAT(b.err, Catch::StartsWith("mtlc: error: --steps is an option of `mtlc train`, not of `mtlc build`"));
}

TEST_CASE("bad option values are explained in plain words") {
  auto e = runMtlc("--emit=foo " + example("tabular.mtl"));
  CHECK(e.exitCode == 2);
  CHECK_THAT(e.err, Catch::StartsWith("mtlc: error: --emit: 'foo' is not a form mtlc can print; the forms are "
                                      "ast, ir, ir-opt and llvm\n"));
  CHECK(runMtlc("--emit=IR-OPT " + example("tabular.mtl")).exitCode == 0);  // any case, as before
  for (const char *bad : {"0", "-3", "1e3", "99999999999999999999999"}) {
    auto r = runMtlc(std::string("train --epochs ") + bad + " " + example("tabular.mtl"));
    CHECK(r.exitCode == 2);
    CHECK_THAT(r.err, Catch::StartsWith("mtlc: error: --epochs: expected a whole number of at least 1, got "));
    CHECK(r.err.size() < 200);  // no 300-digit bound
  }
  auto t = runMtlc("train --threads 2000 " + example("tabular.mtl"));
  CHECK_THAT(t.err, Catch::StartsWith("mtlc: error: --threads: expected a whole number from 0 to 1024, got 2000"));
  CHECK_THAT(runMtlc("-O7 " + example("tabular.mtl")).err,
             Catch::StartsWith("mtlc: error: -O: expected a whole number from 0 to 3, got 7"));
}

TEST_CASE("mtlc build --help describes -o as the output folder") {
  auto r = runMtlc("build --help");
  CHECK(r.exitCode == 0);
  CHECK_THAT(r.out, Catch::Contains("-o,--output TEXT            The output folder"));
  CHECK_THAT(r.out, !Catch::Contains("--emit output to this file"));
  CHECK_THAT(runMtlc("--help").out, Catch::Contains("Write --emit output to this file"));
}

namespace {

// The summary's table row: the name left-aligned in 20 columns, the count right-aligned in 12.
std::string summaryRow(const std::string &name, int64_t count) {
  const std::string n = std::to_string(count);
  return "  " + name + std::string(20 - name.size(), ' ') + " " + std::string(12 - n.size(), ' ') + n + "\n";
}

}  // namespace

TEST_CASE("the summary and the compile line give one parameter count: the learnable parameters") {
  // tabular: trunk 8*64+64 + 64*32+32, cls 32*3+3, flag and target 32*16+16 + 16+1 each.
  const int64_t trunk = 8 * 64 + 64 + 64 * 32 + 32, heads = 99 + 545 + 545;
  auto s = runMtlc(example("tabular.mtl"));
  REQUIRE(s.exitCode == 0);
  CHECK_THAT(s.out, Catch::Contains(summaryRow("learnable total", trunk + heads)));
  CHECK(occurrences(s.out, "total") == 1);
  auto t = runMtlc("train --steps 1 -q " + example("tabular.mtl"));
  REQUIRE(t.exitCode == 0);
  CHECK_THAT(t.out, Catch::Contains("(" + std::to_string(trunk + heads) + " learnable parameters,"));
  // The trainer's own header gives the same count (not the arena's size, which holds padding).
  auto v = runMtlc("train --steps 1 " + example("tabular.mtl"));
  REQUIRE(v.exitCode == 0);
  CHECK_THAT(v.out, Catch::Contains("model tabular: 3 tasks, " + std::to_string(trunk + heads) + " learnable parameters;"));

  // A frozen block is not learnt: marked in the table, left out of the count.
  auto dir = testDir("frozen");
  for (const char *csv : {"tabular.csv", "tabular_test.csv"})
    std::filesystem::copy_file(example(csv), dir / csv, std::filesystem::copy_options::overwrite_existing);
  std::string program = slurp(example("tabular.mtl"));
  const size_t seed = program.find("seed      7");
  REQUIRE(seed != std::string::npos);
  program.insert(seed, "freeze trunk\n  ");
  std::ofstream(dir / "frozen.mtl") << program;
  auto f = runMtlc("frozen.mtl", dir.string());
  REQUIRE(f.exitCode == 0);
  std::string trunkRow = summaryRow("trunk", trunk);
  trunkRow.insert(trunkRow.size() - 1, "  frozen (not learnt)");
  CHECK_THAT(f.out, Catch::Contains(trunkRow));
  CHECK_THAT(f.out, Catch::Contains(summaryRow("learnable total", heads)));
}

TEST_CASE("data bindings are checked against the csv header when the program is checked") {
  auto dir = testDir("csv-header");
  std::ofstream(dir / "houses.csv") << "rooms,price\n3,250\n";
  std::ofstream(dir / "renamed.csv") << "rooms,cost\n3,250\n";
  std::ofstream(dir / "houses.mtl") << "model houses\ninput x : f32[1]\ntask price { x -> dense(1) loss mse }\n"
                                       "data {\n  train csv(\"houses.csv\")\n  x = rooms\n  price = prise\n}\n";
  // `mtlc FILE` only checks and compiles: the misspelt column is found there, at the binding.
  auto r = runMtlc("houses.mtl", dir.string());
  CHECK(r.exitCode == 1);
  CHECK(r.err == "houses.mtl:7:11: error: houses.csv has no column 'prise'; did you mean 'price'?\n"
                 "  price = prise\n          ^~~~~\n");
  // --data train=PATH: the replacing file's header is the one checked.
  std::ofstream(dir / "houses.mtl") << "model houses\ninput x : f32[1]\ntask price { x -> dense(1) loss mse }\n"
                                       "data {\n  train csv(\"houses.csv\")\n  x = rooms\n  price = price\n}\n";
  CHECK(runMtlc("train --steps 1 -q houses.mtl", dir.string()).exitCode == 0);
  auto o = runMtlc("train --steps 1 --data train=renamed.csv houses.mtl", dir.string());
  CHECK(o.exitCode == 1);
  CHECK_THAT(o.err, Catch::StartsWith("houses.mtl:7:11: error: renamed.csv has no column 'price'; its columns are "
                                      "rooms, cost\n"));
  CHECK(o.out.empty());  // nothing compiled or trained
}
