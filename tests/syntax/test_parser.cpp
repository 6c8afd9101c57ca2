// The grammar and the parse-tree -> AST conversion: every documented form parses into the
// expected tree, syntax errors are located and readable, nothing crashes.
#include "SyntaxTestUtil.h"

#include "sema/Sema.h"

#include <random>

using namespace fe_test;
using mtlc::ast::BindExpr;
using mtlc::ast::Pipeline;
using mtlc::ast::Value;

TEST_CASE("the flagship example parses, and its AST dump matches the golden file") {
  auto text = slurp(sourceDir() / "examples/fashion.mtl");
  auto p = parse(text, "fashion.mtl");
  INFO(p.diagnostics);
  REQUIRE(p.program);
  CHECK(p.errors == 0);
  checkGolden(sourceDir() / "tests/syntax/fashion.ast", mtlc::ast::dumpToString(*p.program));
}

TEST_CASE("every example and every whole program of the tests parses") {
  namespace fs = std::filesystem;
  int count = 0;
  for (const auto &dir : {sourceDir() / "examples", sourceDir() / "tests/syntax"}) {
    for (const auto &e : fs::directory_iterator(dir)) {
      if (e.path().extension() != ".mtl") continue;
      DYNAMIC_SECTION(e.path().filename().string()) {
        auto p = parse(slurp(e.path()), e.path().filename().string());
        INFO(p.diagnostics);
        CHECK(p.program);
        CHECK(p.errors == 0);
      }
      ++count;
    }
  }
  CHECK(count >= 4);
}

TEST_CASE("the form catalogue parses into the expected tree") {
  auto p = parse(slurp(sourceDir() / "tests/syntax/everything.mtl"), "everything.mtl");
  INFO(p.diagnostics);
  REQUIRE(p.program);
  checkGolden(sourceDir() / "tests/syntax/everything.ast", mtlc::ast::dumpToString(*p.program));
  const auto &prog = *p.program;
  REQUIRE(prog.inputs.size() == 2);
  REQUIRE(prog.shared.size() == 3);
  REQUIRE(prog.tasks.size() == 4);

  SECTION("layers with positional and keyword arguments") {
    const auto &conv = prog.shared[0].pipeline.layers[0];
    CHECK(conv.name == "conv2d");
    REQUIRE(conv.positional.size() == 1);
    CHECK(conv.positional[0].number == 32);
    CHECK(conv.positional[0].isInteger);
    REQUIRE(conv.keyword.size() == 3);
    CHECK(conv.keyword[0].key == "kernel");
    CHECK(conv.keyword[2].key == "padding");
    CHECK(conv.keyword[2].value.number == 0);
    const auto &relu = prog.shared[0].pipeline.layers[1];
    CHECK(relu.name == "relu");
    CHECK_FALSE(relu.hasParens);
    CHECK_FALSE(relu.hasArgs());
    const auto &reluParens = prog.shared[2].pipeline.layers[2];
    CHECK(reluParens.hasParens);
    CHECK_FALSE(reluParens.hasArgs());
    const auto &ln = prog.shared[2].pipeline.layers[0];
    CHECK(ln.keyword[0].value.number == Approx(1e-5));
    CHECK_FALSE(ln.keyword[0].value.isInteger);
    CHECK(ln.keyword[0].value.text == "1e-5");
  }
  SECTION("mixture stages and gate sources") {
    const auto &mix = prog.shared[2].pipeline.layers[3];
    CHECK(mix.hasBody);
    CHECK(mix.name == "mixture");
    CHECK(mix.keyword[0].key == "experts");
    REQUIRE(mix.body.size() == 1);
    REQUIRE(mix.body[0].size() == 2);
    CHECK(mix.body[0][0].name == "dense");
    CHECK(prog.tasks[2].pipelines[0].sourceKind == Pipeline::SourceKind::Gate);
    CHECK(prog.tasks[2].pipelines[0].source == "c");
  }
  SECTION("task statements in any order") {
    const auto &t1 = prog.tasks[0];
    REQUIRE(t1.pipelines.size() == 1);
    CHECK(t1.pipelines[0].source == "a");
    CHECK(t1.losses[0].name == "cross_entropy");
    CHECK(t1.weights[0].number == 2);
    const auto &t2 = prog.tasks[1];
    REQUIRE(t2.metrics.size() == 2);
    CHECK(t2.metrics[1].name == "auc");
    CHECK(t2.metrics[1].loc.begin.line == t2.metrics[0].loc.begin.line + 1);
    CHECK(t2.weights[0].number == 0.5);
    CHECK(prog.tasks[3].pipelines[0].layers.empty());
  }
  SECTION("train settings: numbers, names and calls; negative numbers in arguments") {
    const auto &s = prog.trains[0].settings;
    REQUIRE(s.size() == 6);
    CHECK(s[0].name == "optimizer");
    CHECK(s[0].isCall);
    CHECK(s[0].call.keyword[2].value.number == Approx(-1e-4));
    CHECK(s[1].name == "batch");
    CHECK_FALSE(s[1].isCall);
    CHECK(s[1].value.number == 64);
    CHECK(s[3].call.name == "dwa");
    CHECK(s[5].call.name == "false");
    CHECK_FALSE(s[5].call.hasParens);
  }
  SECTION("data sources and every binding form") {
    const auto &d = prog.datas[0];
    REQUIRE(d.sources.size() == 2);
    CHECK(d.sources[0].role == "train");
    CHECK(d.sources[0].call.positional[1].text == "labels.idx");
    CHECK(d.sources[1].role == "test");
    CHECK(d.sources[1].call.keyword[0].value.kind == Value::Kind::String);
    const auto &b = d.bindings;
    REQUIRE(b.size() == 13);
    CHECK(b[0].expr.op == BindExpr::Op::Div);
    CHECK(b[0].expr.operand.number == 255);
    CHECK(b[1].expr.field.hasParens);
    CHECK(b[1].expr.field.columns[0].isRange);
    CHECK(b[1].expr.field.columns[0].first == 3);
    CHECK(b[1].expr.field.columns[0].last == 10);
    CHECK(b[1].expr.op == BindExpr::Op::Mul);
    CHECK(b[3].expr.op == BindExpr::Op::In);
    REQUIRE(b[3].expr.set.size() == 3);
    CHECK(b[3].expr.set[2].number == 9);
    CHECK(b[4].expr.field.columns[1].name == "b");
    CHECK(b[4].expr.op == BindExpr::Op::Sub);
    CHECK(b[5].expr.op == BindExpr::Op::Add);
    CHECK(b[5].expr.operand.number == -0.5);
    CHECK(b[6].expr.op == BindExpr::Op::Eq);
    CHECK(b[7].expr.op == BindExpr::Op::Ne);
    CHECK(b[8].expr.op == BindExpr::Op::Gt);
    CHECK(b[9].expr.op == BindExpr::Op::Ge);
    CHECK(b[9].expr.operand.number == -1);
    CHECK(b[10].expr.op == BindExpr::Op::Lt);
    CHECK(b[10].expr.operand.number == 1000);
    CHECK(b[11].expr.op == BindExpr::Op::Le);
    CHECK(b[11].expr.operand.number == 250);
    CHECK(b[12].expr.field.columns[0].name == "with \"escaped\" quotes");
    CHECK(b[12].expr.field.columns[1].name == "tab\there");
  }
}

TEST_CASE("the multi-task forms parse into the expected tree") {
  auto p = parse(slurp(sourceDir() / "tests/syntax/architectures.mtl"), "architectures.mtl");
  INFO(p.diagnostics);
  REQUIRE(p.program);
  checkGolden(sourceDir() / "tests/syntax/architectures.ast", mtlc::ast::dumpToString(*p.program));
  const auto &prog = *p.program;
  REQUIRE(prog.shared.size() == 7);
  REQUIRE(prog.tasks.size() == 8);

  SECTION("concat sources list their parts") {
    const auto &joined = prog.shared[2].pipeline;
    CHECK(joined.sourceKind == Pipeline::SourceKind::Call);
    CHECK(joined.source == "concat");
    REQUIRE(joined.sourceArgs.size() == 3);
    CHECK(joined.sourceArgs[0].name == "dense_x");
    CHECK(joined.sourceArgs[2].name == "flat");
    CHECK(joined.sourceArgs[2].loc.begin.line == joined.sourceArgs[0].loc.begin.line + 1);
    CHECK(joined.sourceNameLoc.begin.column == 17);
    CHECK(mtlc::ast::sourceStr(joined) == "concat(dense_x, emb, flat)");
  }
  SECTION("expert blocks: name, arguments, body stages") {
    const auto &moe = prog.shared[3].pipeline.layers[0];
    CHECK(moe.name == "mixture");
    CHECK(moe.hasBody);
    REQUIRE(moe.body.size() == 1);
    CHECK(moe.body[0].size() == 2);
    const auto &ple = prog.shared[4].pipeline.layers[0];
    CHECK(ple.name == "ple");
    CHECK(ple.hasParens);
    REQUIRE(ple.keyword.size() == 3);
    CHECK(ple.keyword[0].key == "levels");
    const auto &cgc = prog.shared[5].pipeline.layers[0];
    CHECK(cgc.name == "cgc");
    CHECK(cgc.positional.size() == 2);
    CHECK(cgc.bodyLoc.begin.line == 11);
    CHECK(cgc.bodyLoc.end.line == 13);
    CHECK(cgc.loc.end.line == 13);
    const auto &cs = prog.shared[6].pipeline.layers[0];
    CHECK(cs.name == "cross_stitch");
    CHECK_FALSE(cs.hasParens);
    REQUIRE(cs.body.size() == 3);
    CHECK(cs.body[0].size() == 2);
    CHECK(cs.body[1].size() == 1);
    CHECK(cs.body[2][1].name == "tanh");
    CHECK(mtlc::ast::str(cs) == "cross_stitch { dense(16) -> relu ; dense(8) ; layernorm -> tanh }");
  }
  SECTION("gate and column sources") {
    CHECK(prog.tasks[0].pipelines[0].sourceKind == Pipeline::SourceKind::Gate);
    CHECK(prog.tasks[0].pipelines[0].source == "moe");
    const auto &g = prog.tasks[6].pipelines[0];
    CHECK(g.sourceKind == Pipeline::SourceKind::Call);
    CHECK(g.source == "column");
    REQUIRE(g.sourceArgs.size() == 1);
    CHECK(g.sourceArgs[0].name == "cs");
    CHECK(g.layers.empty());
  }
  SECTION("settings with a list of values") {
    const auto &s = prog.trains[0].settings;
    REQUIRE(s.size() == 3);
    CHECK(s[0].call.name == "gradnorm");
    CHECK(s[1].name == "freeze");
    CHECK(s[1].call.name == "emb");
    REQUIRE(s[1].more.size() == 2);
    CHECK(s[1].more[1].call.name == "joined");
    CHECK(s[2].name == "batch");
    CHECK(s[2].more.empty());
  }
}

TEST_CASE("source ranges are 1-based and inclusive") {
  auto p = parse("model m\ninput x : f32[8]\nshared t = x -> dense(16)  # comment\n");
  REQUIRE(p.program);
  const auto &prog = *p.program;
  CHECK(prog.models[0].loc.begin.line == 1);
  CHECK(prog.models[0].loc.begin.column == 1);
  CHECK(prog.models[0].loc.end.column == 7);
  CHECK(prog.inputs[0].nameLoc.begin.column == 7);
  CHECK(prog.inputs[0].shapeLoc.begin.column == 11);
  CHECK(prog.inputs[0].shapeLoc.end.column == 16);
  const auto &dense = prog.shared[0].pipeline.layers[0];
  CHECK(dense.loc.begin.line == 3);
  CHECK(dense.loc.begin.column == 17);
  CHECK(dense.loc.end.column == 25);
  CHECK(dense.nameLoc.end.column == 21);
  CHECK(prog.order.size() == 3);
}

TEST_CASE("a whole program on one line means the same as on many") {
  auto many = parse(slurp(sourceDir() / "examples/fashion.mtl"));
  std::string text = slurp(sourceDir() / "examples/fashion.mtl");
  // Drop comments, then join the lines.
  std::string oneLine;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    auto hash = line.find('#');
    oneLine += line.substr(0, hash) + ' ';
  }
  auto one = parse(oneLine);
  INFO(one.diagnostics);
  REQUIRE(one.program);
  REQUIRE(many.program);
  // Same tree apart from locations: compare dumps with the ranges stripped.
  auto strip = [](std::string s) {
    std::string out;
    bool in = false;
    for (char c : s) {
      if (c == '<') in = true;
      if (!in) out += c;
      if (c == '>') in = false;
    }
    return out;
  };
  CHECK(strip(mtlc::ast::dumpToString(*one.program)) == strip(mtlc::ast::dumpToString(*many.program)));
}

TEST_CASE("syntax errors are located and say what was expected") {
  struct Case {
    const char *text;
    const char *message;
  };
  const Case cases[] = {
      {"model m\ninput x : f32[8]\nshared t = x -> dense(64 -> relu\n",
       "test.mtl:3:26: error: expected ',' or ')' after layer arguments, found '->'"},
      {"model m\ninput x f32[8]\n",
       "test.mtl:2:9: error: expected ':' after the input's name (input NAME : f32[d, ...]), found 'f32'"},
      {"model m\ninput x : f32[8\n", "test.mtl:2:16: error: expected ',' or ']' in the input's shape, found end of file"},
      {"model", "test.mtl:1:6: error: expected a model name after 'model', found end of file"},
      {"model m\ntask t {\n  x -> dense(1)\n",
       "test.mtl:3:16: error: expected a pipeline, 'loss', 'weight', 'metric' or '}' in the body of task 't', found end of file"},
      {"model m\nshared t = x -> -> relu\n", "test.mtl:2:17: error: expected a layer after '->', found '->'"},
      {"model m\nshared t x -> relu\n",
       "test.mtl:2:10: error: expected '=' after the shared block's name (shared NAME = SOURCE -> ...), found 'x'"},
      {"model m\ntrain { batch }\n", "test.mtl:2:15: error: expected a value after 'batch' (a number or a name), found '}'"},
      {"model m\ndata { train }\n", "test.mtl:2:14: error: expected a data source such as fashion_mnist(\"train\"), found '}'"},
      {"model m\ndata { x = label in 5 }\n", "test.mtl:2:21: error: expected '{' after 'in', found number 5"},
      {"model m\ndata { x = label in {5 7} }\n", "test.mtl:2:24: error: expected ',' or '}' in the set, found number 7"},
      {"model m\ndata { x = columns(3..) }\n", "test.mtl:2:23: error: expected an integer after '..', found ')'"},
      {"model m\ndata { x = label / }\n", "test.mtl:2:20: error: expected a number after '/', found '}'"},
      {"model m\ndata { x 3 }\n", "test.mtl:2:10: error: expected '=' (a binding) or a data source after 'x', found number 3"},
      {"modle m\n", "test.mtl:1:1: error: expected a declaration ('model', 'input', 'shared', 'task', 'train' or 'data'), found 'modle'; did you mean 'model'?"},
      {"model m\ninput x : f32[8]\nshared t = x -> dense(8) relu\n",
       "test.mtl:3:26: error: expected '->' to continue the pipeline of 't', or a declaration"},
      {"model m\ntask t { x -> dense(1) loss mse metric }\n",
       "test.mtl:2:40: error: expected a metric name (accuracy, auc, mse, mae, pixel_accuracy, miou, abs_err, rel_err or angle_err), found '}'"},
      {"model m\ntask t { x -> dense(1) loss }\n",
       "test.mtl:2:29: error: expected a loss name after 'loss' (cross_entropy, bce, mse, l1 or cosine), found '}'"},
      {"model m\nshared s = x -> dense(units=)\n", "test.mtl:2:29: error: expected a value after 'units=', found ')'"},
      {"model m\nshared s = x -> mixture(experts=2) dense\n",
       "test.mtl:2:36: error: expected '{' and the expert's layers after mixture(...), found 'dense'"},
      {"model m\nshared s = gate(3)\n", "test.mtl:2:17: error: expected the name of a mixture in gate(...), found number 3"},
      {"model m\nshared s = x -> ple(levels=2, shared=1, specific=1) dense\n",
       "test.mtl:2:53: error: expected '{' and the expert's layers after ple(...), found 'dense'"},
      {"model m\nshared s = x -> cgc(shared=1, specific=1) { }\n",
       "test.mtl:2:45: error: expected a layer after '{' in the body of cgc, found '}'"},
      {"model m\nshared s = x -> cross_stitch { dense(4) ; }\n",
       "test.mtl:2:43: error: expected a layer after ';' in the body of cross_stitch, found '}'"},
      {"model m\nshared s = x -> mixture(experts=2) { dense(4) relu }\n",
       "test.mtl:2:47: error: expected '->', ';' or '}' in the body of mixture, found 'relu'"},
      {"model m\nshared s = x -> mixture(experts=2) { dense(4) -> }\n",
       "test.mtl:2:50: error: expected a layer after '->' in the body of mixture, found '}'"},
      {"model m\nshared s = x -> dense(4) -> relu;\n",
       "test.mtl:2:33: error: unexpected ';'; statements need no terminator"},
      {"model m\ntask t { concat() -> dense(1) loss mse }\n",
       "test.mtl:2:17: error: expected a name in concat(...), found ')'"},
      {"model m\ntask t { concat(a b) -> dense(1) loss mse }\n",
       "test.mtl:2:19: error: expected ',' or ')' in concat(...), found 'b'"},
      {"model m\ntrain { freeze a, }\n", "test.mtl:2:19: error: expected a value after 'freeze' (a number or a name), found '}'"},
  };
  for (const auto &c : cases) {
    DYNAMIC_SECTION(c.text) {
      auto p = parse(c.text);
      CHECK_FALSE(p.program);
      CHECK(p.errors == 1);
      CHECK_THAT(p.diagnostics, Catch::StartsWith(c.message));
    }
  }
}

TEST_CASE("lexical errors: bad characters, unterminated strings, invalid UTF-8") {
  auto semi = parse("model m;\n");
  CHECK_THAT(semi.diagnostics, Catch::StartsWith("test.mtl:1:8: error: unexpected ';'"));
  auto quote = parse("model m\ndata { train csv('x.csv') }\n");
  CHECK_THAT(quote.diagnostics, Catch::StartsWith("test.mtl:2:18: error: unexpected character '''; strings use double quotes"));
  auto str = parse("model m\ndata { train csv(\"x.csv) }\n");
  CHECK_THAT(str.diagnostics, Catch::StartsWith("test.mtl:2:18: error: unterminated string"));
  CHECK_THAT(str.diagnostics, Catch::Contains("\n                 ^~~~~~~~~\n"));
  auto utf = parse("model m\ninput x : f32[8] \xC3\xA9\n");
  CHECK_THAT(utf.diagnostics, Catch::StartsWith("test.mtl:2:18: error: unexpected character U+00E9 '\xC3\xA9'"));
  auto bad = parse("model m \xFF\xFE\n");
  CHECK_THAT(bad.diagnostics, Catch::StartsWith("test.mtl:1:9: error: invalid byte in the source"));
  CHECK(bad.errors == 2);
  auto ctrl = parse("model m\x01\n");
  CHECK_THAT(ctrl.diagnostics, Catch::StartsWith("test.mtl:1:8: error: unexpected control character U+0001"));
  // At most five lexical errors are reported.
  auto many = parse(std::string(100, '$'));
  CHECK(many.errors == 5);
}

TEST_CASE("keyword arguments must follow positional ones") {
  auto p = parse("model m\nshared s = x -> conv2d(kernel=3, 32)\n");
  CHECK_FALSE(p.program);
  CHECK_THAT(p.diagnostics, Catch::StartsWith("test.mtl:2:34: error: positional argument after keyword argument 'kernel'"));
}

TEST_CASE("numbers: integers, decimals, exponents, signs, huge values") {
  auto p = parse("model m\nshared s = x -> f(3, 0.5, 1e-3, -2, -0.25, 2.5E+2, 1e999, 99999999999999999999)\n");
  REQUIRE(p.program);
  const auto &args = p.program->shared[0].pipeline.layers[0].positional;
  REQUIRE(args.size() == 8);
  CHECK(args[0].isInteger);
  CHECK(args[0].number == 3);
  CHECK_FALSE(args[1].isInteger);
  CHECK(args[1].number == 0.5);
  CHECK(args[2].number == Approx(1e-3));
  CHECK(args[3].number == -2);
  CHECK(args[3].isInteger);
  CHECK(args[4].number == -0.25);
  CHECK(args[5].number == 250);
  CHECK(std::isinf(args[6].number));
  CHECK(args[7].number == Approx(1e20));
  CHECK(args[7].text == "99999999999999999999");
}

TEST_CASE("the parser survives anything: empty, garbage, mutations of a real program") {
  CHECK(parse("").program);  // empty is syntactically fine (sema reports the missing model)
  CHECK(parse("# only a comment").program);
  CHECK(parse("\n\n\r\n\t  ").program);
  std::string zeros(64, '\0');
  CHECK_FALSE(parse(zeros).program);
  std::mt19937 rng(12345);
  std::string garbage;
  for (int i = 0; i < 4096; ++i) garbage += static_cast<char>(rng() & 0xFF);
  auto g = parse(garbage);
  CHECK_FALSE(g.program);
  CHECK(g.errors >= 1);

  // Deterministic mutation fuzzing: delete / insert / replace a few characters of the flagship,
  // then parse and analyse. Never a crash or exception; failure always has an error.
  const std::string base = slurp(sourceDir() / "examples/fashion.mtl");
  const std::string alphabet = "(){}[]-><=,.:\"#abcxyz0123456789 \n_";
  int parsed = 0, rejected = 0;
  for (int iter = 0; iter < 1500; ++iter) {
    std::string text = base;
    int edits = 1 + static_cast<int>(rng() % 3);
    for (int e = 0; e < edits && !text.empty(); ++e) {
      size_t pos = rng() % text.size();
      switch (rng() % 3) {
      case 0: text.erase(pos, 1 + rng() % 4); break;
      case 1: text.insert(pos, 1, alphabet[rng() % alphabet.size()]); break;
      default: text[pos] = alphabet[rng() % alphabet.size()]; break;
      }
    }
    mtlc::Diagnostics diags("fuzz.mtl", text);
    std::optional<mtlc::ast::Program> prog;
    REQUIRE_NOTHROW(prog = mtlc::parseProgram("fuzz.mtl", text, diags));
    if (prog) {
      std::optional<mtlc::sema::Model> model;
      REQUIRE_NOTHROW(model = mtlc::sema::analyze(*prog, "fuzz.mtl", diags));
      if (!model) CHECK(diags.hasErrors());
      ++parsed;
    } else {
      CHECK(diags.hasErrors());
      ++rejected;
    }
    REQUIRE_NOTHROW(diags.str());
  }
  CHECK(parsed > 100);
  CHECK(rejected > 100);
}

TEST_CASE("large programs parse quickly") {
  std::string text = "model big\ninput x : f32[8]\n";
  for (int i = 0; i < 2000; ++i)
    text += "task t" + std::to_string(i) + " { x -> dense(4) -> relu -> dense(1) loss mse weight 0.5 metric mae }\n";
  auto p = parse(text);
  REQUIRE(p.program);
  CHECK(p.program->tasks.size() == 2000);
}

TEST_CASE("mutations of the multi-task programs never crash the front end") {
  std::mt19937 rng(4242);
  const std::string alphabet = "(){}[]-><=,.:;\"#abcxyz0123456789 \n_";
  for (const char *file : {"tests/syntax/architectures.mtl", "examples/recsys.mtl", "examples/ple.mtl"}) {
    const std::string base = slurp(sourceDir() / file);
    int analysed = 0;
    for (int iter = 0; iter < 800; ++iter) {
      std::string text = base;
      int edits = 1 + static_cast<int>(rng() % 3);
      for (int e = 0; e < edits && !text.empty(); ++e) {
        size_t pos = rng() % text.size();
        switch (rng() % 3) {
        case 0: text.erase(pos, 1 + rng() % 6); break;
        case 1: text.insert(pos, 1, alphabet[rng() % alphabet.size()]); break;
        default: text[pos] = alphabet[rng() % alphabet.size()]; break;
        }
      }
      mtlc::Diagnostics diags("fuzz.mtl", text);
      std::optional<mtlc::ast::Program> prog;
      REQUIRE_NOTHROW(prog = mtlc::parseProgram("fuzz.mtl", text, diags));
      if (prog) {
        std::optional<mtlc::sema::Model> model;
        REQUIRE_NOTHROW(model = mtlc::sema::analyze(*prog, "fuzz.mtl", diags));
        if (!model) CHECK(diags.hasErrors());
        ++analysed;
      } else {
        CHECK(diags.hasErrors());
      }
      REQUIRE_NOTHROW(diags.str());
    }
    CHECK(analysed > 100);
  }
}
