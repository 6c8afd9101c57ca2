// Semantic analysis of well-formed programs: inferred shapes, layer attributes, parameter-naming
// indexes, tasks, and the filled TrainSpec / DataSpec.
#include "sema/Sema.h"
#include "syntax/Parser.h"
#include "spec/Vocabulary.h"

#include <catch2/catch.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace fs = std::filesystem;
using mtlc::sema::LayerKind;
using mtlc::sema::Model;
using mtlc::sema::Shape;
using mtlc::sema::SourceKind;
using Op = mtlc::rt::BindExpr::Op;

namespace {

std::string slurp(const fs::path &p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Parses and analyses; fails the test (showing the diagnostics) unless it is error-free.
Model check(const std::string &text, const std::string &file = "dir/test.mtl") {
  mtlc::Diagnostics diags(file, text);
  auto program = mtlc::parseProgram(file, text, diags);
  std::optional<Model> model;
  if (program) model = mtlc::sema::analyze(*program, file, diags);
  INFO(diags.str());
  REQUIRE(model);
  REQUIRE(diags.errorCount() == 0);
  return *model;
}

std::string errorsOf(const std::string &text) {
  mtlc::Diagnostics diags("e.mtl", text);
  auto program = mtlc::parseProgram("e.mtl", text, diags);
  if (program) CHECK_FALSE(mtlc::sema::analyze(*program, "e.mtl", diags));
  return diags.str();
}

// A csv file with this header and one row of zeros in the tests' work folder; its path.
fs::path csvFile(const std::string &name, const std::string &header) {
  fs::path dir = fs::path(MTLC_BINARY_DIR) / "test-work" / "sema";
  fs::create_directories(dir);
  std::string row = "0";
  for (char c : header)
    if (c == ',') row += ",0";
  std::ofstream(dir / name, std::ios::binary) << header << "\n" << row << "\n";
  return dir / name;
}

// Runs the rest of a test in `dir` (a program's relative data paths are relative to it).
class InFolder {
 public:
  explicit InFolder(const fs::path &dir) : previous_(fs::current_path()) { fs::current_path(dir); }
  ~InFolder() { fs::current_path(previous_); }
  InFolder(const InFolder &) = delete;
  InFolder &operator=(const InFolder &) = delete;

 private:
  fs::path previous_;
};

Model example(const char *name) {
  fs::path p = fs::path(MTLC_SOURCE_DIR) / "examples" / name;
  return check(slurp(p), p.string());
}

}  // namespace

TEST_CASE("fashion.mtl: shapes through the trunk and the heads") {
  Model m = example("fashion.mtl");
  CHECK(m.name == "fashion");
  REQUIRE(m.inputs.size() == 1);
  CHECK(m.inputs[0].name == "image");
  CHECK(m.inputs[0].shape == Shape{1, 28, 28});

  REQUIRE(m.shared.size() == 1);
  const auto &trunk = m.shared[0];
  CHECK(trunk.name == "trunk");
  CHECK(trunk.source == "image");
  CHECK(trunk.sourceIsInput);
  CHECK(trunk.sourceIndex == 0);
  CHECK(trunk.inShape == Shape{1, 28, 28});
  CHECK(trunk.outShape == Shape{5408});
  REQUIRE(trunk.layers.size() == 4);
  const auto &conv = trunk.layers[0];
  CHECK(conv.kind == LayerKind::Conv2d);
  CHECK(conv.units == 32);
  CHECK(conv.kernel == 3);
  CHECK(conv.stride == 1);
  CHECK(conv.padding == 0);
  CHECK(conv.in == Shape{1, 28, 28});
  CHECK(conv.out == Shape{32, 26, 26});
  CHECK(conv.hasParams());
  CHECK(trunk.layers[1].kind == LayerKind::Relu);
  CHECK(trunk.layers[1].out == Shape{32, 26, 26});
  CHECK_FALSE(trunk.layers[1].hasParams());
  CHECK(trunk.layers[2].kind == LayerKind::MaxPool);
  CHECK(trunk.layers[2].kernel == 2);
  CHECK(trunk.layers[2].stride == 2);
  CHECK(trunk.layers[2].out == Shape{32, 13, 13});
  CHECK(trunk.layers[3].kind == LayerKind::Flatten);
  CHECK(trunk.layers[3].out == Shape{5408});
  for (int i = 0; i < 4; ++i) CHECK(trunk.layers[i].index == i);
  CHECK(trunk.layers[0].loc.begin.line == 6);
  CHECK(trunk.layers[0].loc.begin.column == 25);

  REQUIRE(m.tasks.size() == 2);
  const auto &category = m.tasks[0];
  CHECK(category.name == "category");
  CHECK(category.head.name == "category");
  CHECK(category.head.source == "trunk");
  CHECK_FALSE(category.head.sourceIsInput);
  CHECK(category.head.sourceIndex == 0);
  CHECK(category.head.inShape == Shape{5408});
  CHECK(category.head.outShape == Shape{10});
  REQUIRE(category.head.layers.size() == 3);
  // Parameter naming: category.0 is the first dense, category.2 the last.
  CHECK(category.head.layers[0].index == 0);
  CHECK(category.head.layers[0].kind == LayerKind::Dense);
  CHECK(category.head.layers[0].in == Shape{5408});
  CHECK(category.head.layers[0].out == Shape{64});
  CHECK(category.head.layers[1].index == 1);
  CHECK(category.head.layers[1].kind == LayerKind::Relu);
  CHECK(category.head.layers[2].index == 2);
  CHECK(category.head.layers[2].kind == LayerKind::Dense);
  CHECK(category.head.layers[2].units == 10);
  CHECK(category.head.layers[2].in == Shape{64});
  CHECK(category.loss == mtlc::rt::LossKind::CrossEntropy);
  CHECK(category.labelWidth == 1);
  CHECK(category.weight == 1.0);
  CHECK(category.metrics == std::vector<mtlc::rt::Metric>{mtlc::rt::Metric::Accuracy});

  const auto &footwear = m.tasks[1];
  CHECK(footwear.head.outShape == Shape{1});
  CHECK(footwear.loss == mtlc::rt::LossKind::BCE);
  CHECK(footwear.labelWidth == 1);
  CHECK(footwear.weight == 0.5);
  CHECK(footwear.metrics == std::vector<mtlc::rt::Metric>{mtlc::rt::Metric::Accuracy, mtlc::rt::Metric::AUC});
}

TEST_CASE("fashion.mtl: train and data specs") {
  Model m = example("fashion.mtl");
  const auto &t = m.train;
  CHECK(t.optimizer.kind == mtlc::rt::OptimizerKind::Adam);
  CHECK(t.optimizer.lr == Approx(0.001));
  CHECK(t.optimizer.beta1 == Approx(0.9));
  CHECK(t.optimizer.beta2 == Approx(0.999));
  CHECK(t.optimizer.eps == Approx(1e-8));
  CHECK(t.optimizer.weightDecay == 0);
  CHECK(t.batch == 64);
  CHECK(t.epochs == 2);
  CHECK(t.seed == 42);
  CHECK(t.shuffle);
  CHECK(t.weighting == mtlc::rt::WeightingKind::Fixed);

  const auto &d = m.data;
  CHECK(d.train.kind == "fashion_mnist");
  CHECK(d.train.args == std::vector<std::string>{"train"});
  CHECK(d.test.kind == "fashion_mnist");
  CHECK(d.test.args == std::vector<std::string>{"test"});
  REQUIRE(d.inputs.size() == 1);
  CHECK(d.inputs[0].target == "image");
  CHECK(d.inputs[0].expr.op == Op::Field);
  CHECK(d.inputs[0].expr.ref.field == "pixels");
  CHECK(d.inputs[0].width == 784);
  REQUIRE(d.labels.size() == 2);
  CHECK(d.labels[0].target == "category");
  CHECK(d.labels[0].expr.ref.field == "label");
  CHECK(d.labels[0].width == 1);
  CHECK(d.labels[1].target == "footwear");
  CHECK(d.labels[1].expr.op == Op::In);
  CHECK(d.labels[1].expr.set == std::vector<double>{5, 7, 9});
  CHECK(d.labels[1].width == 1);
  CHECK(m.file.find("fashion.mtl") != std::string::npos);
}

TEST_CASE("tabular.mtl: csv paths resolved against the file, column ranges, shuffle false") {
  Model m = example("tabular.mtl");
  fs::path dir = fs::path(MTLC_SOURCE_DIR) / "examples";
  CHECK(m.data.train.kind == "csv");
  REQUIRE(m.data.train.args.size() == 1);
  CHECK(fs::path(m.data.train.args[0]) == (dir / "tabular.csv").lexically_normal());
  CHECK(fs::exists(m.data.train.args[0]));
  CHECK(fs::exists(m.data.test.args[0]));
  CHECK_FALSE(m.train.shuffle);
  REQUIRE(m.data.inputs.size() == 1);
  CHECK(m.data.inputs[0].expr.ref.field.empty());
  CHECK(m.data.inputs[0].expr.ref.colFirst == 0);
  CHECK(m.data.inputs[0].expr.ref.colLast == 7);
  CHECK(m.data.inputs[0].width == 8);
  REQUIRE(m.tasks.size() == 3);
  CHECK(m.tasks[0].loss == mtlc::rt::LossKind::CrossEntropy);
  CHECK(m.tasks[0].head.outShape == Shape{3});
  CHECK(m.tasks[1].loss == mtlc::rt::LossKind::BCE);
  CHECK(m.tasks[2].loss == mtlc::rt::LossKind::MSE);
  CHECK(m.tasks[2].labelWidth == 1);
  for (const auto &l : m.data.labels) CHECK(l.width == 1);
}

TEST_CASE("defaults when the train block or a setting is missing") {
  Model m = check("model m\ninput x : f32[4]\ntask t { x -> dense(1) loss mse }\n");
  CHECK(m.train.optimizer.kind == mtlc::rt::OptimizerKind::Adam);
  CHECK(m.train.optimizer.lr == Approx(0.001));
  CHECK(m.train.batch == 32);
  CHECK(m.train.epochs == 1);
  CHECK(m.train.seed == 0);
  CHECK(m.train.shuffle);
  CHECK(m.train.weighting == mtlc::rt::WeightingKind::Fixed);
  CHECK(m.tasks[0].weight == 1.0);
  CHECK(m.tasks[0].metrics.empty());
  CHECK_FALSE(m.data.train.present());  // no data block: compiles, nothing to train on

  Model s = check("model m\ninput x : f32[4]\ntask t { x -> dense(1) loss mse }\n"
                  "train { optimizer sgd(lr=0.1) epochs 3 weighting uniform shuffle true }\n");
  CHECK(s.train.optimizer.kind == mtlc::rt::OptimizerKind::Sgd);
  CHECK(s.train.optimizer.lr == Approx(0.1));
  CHECK(s.train.optimizer.momentum == 0);
  CHECK(s.train.batch == 32);
  CHECK(s.train.epochs == 3);
  CHECK(s.train.weighting == mtlc::rt::WeightingKind::Uniform);

  Model a = check("model m\ninput x : f32[4]\ntask t { x -> dense(1) loss mse }\n"
                  "train { optimizer adam(0.01, beta2=0.99, eps=1e-6, weight_decay=0.01) seed 18446744073709551615 }\n");
  CHECK(a.train.optimizer.lr == Approx(0.01));
  CHECK(a.train.optimizer.beta1 == Approx(0.9));
  CHECK(a.train.optimizer.beta2 == Approx(0.99));
  CHECK(a.train.optimizer.eps == Approx(1e-6));
  CHECK(a.train.optimizer.weightDecay == Approx(0.01));
  CHECK(a.train.seed == 18446744073709551615ull);

  Model b = check("model m\ninput x : f32[4]\ntask t { x -> dense(1) loss mse }\n"
                  "train { optimizer sgd(lr=0.05, momentum=0.9) }\n");
  CHECK(b.train.optimizer.momentum == Approx(0.9));
  Model c = check("model m\ninput x : f32[4]\ntask t { x -> dense(1) loss mse }\ntrain { optimizer adam }\n");
  CHECK(c.train.optimizer.kind == mtlc::rt::OptimizerKind::Adam);
  CHECK(c.train.optimizer.lr == Approx(0.001));
}

TEST_CASE("optimizers adamw, rmsprop, sgd nesterov; schedules and warm-up") {
  const std::string head = "model m\ninput x : f32[4]\ntask t { x -> dense(1) loss mse }\n";
  Model w = check(head + "train { optimizer adamw(lr=0.01) }\n");
  CHECK(w.train.optimizer.kind == mtlc::rt::OptimizerKind::AdamW);
  CHECK(w.train.optimizer.weightDecay == Approx(0.01));  // torch.optim.AdamW's default
  CHECK_FALSE(w.train.schedule);
  CHECK(w.train.warmup == 0);
  Model r = check(head + "train { optimizer rmsprop(momentum=0.5) }\n");
  CHECK(r.train.optimizer.kind == mtlc::rt::OptimizerKind::RmsProp);
  CHECK(r.train.optimizer.lr == Approx(0.01));
  CHECK(r.train.optimizer.alpha == Approx(0.99));
  Model n = check(head + "train { optimizer sgd(0.1, 0.9, true) schedule multistep(at={15, 30}) warmup 500 }\n");
  CHECK(n.train.optimizer.nesterov == 1);
  REQUIRE(n.train.schedule);
  CHECK(n.train.schedule->kind == mtlc::rt::ScheduleKind::MultiStep);
  CHECK((n.train.schedule->at == std::vector<int64_t>{15, 30}));
  CHECK(n.train.schedule->gamma == Approx(0.1));
  CHECK(n.train.warmup == 500);
  Model c = check(head + "train { schedule cosine(eta_min=1e-5) }\n");
  REQUIRE(c.train.schedule);
  CHECK(c.train.schedule->kind == mtlc::rt::ScheduleKind::Cosine);
  CHECK(c.train.schedule->tMax == 0);  // the run's epochs
  CHECK(c.train.schedule->etaMin == Approx(1e-5));
}

TEST_CASE("layer rules: conv padding and stride, pools, flatten, layernorm, elementwise") {
  Model m = check(
      "model m\ninput img : f32[3, 32, 32]\n"
      "shared a = img -> conv2d(8, kernel=5, stride=2, padding=2) -> avgpool(2) -> maxpool(3, stride=1)\n"
      "shared b = a -> layernorm -> leaky_relu -> dropout(0.25) -> gelu -> tanh -> sigmoid -> flatten\n"
      "shared c = b -> layernorm(eps=0.001) -> leaky_relu(slope=-0.2) -> dropout\n"
      "task t { c -> dense(5) -> layernorm loss mse metric mse, mae }\n");
  const auto &a = m.shared[0];
  CHECK(a.layers[0].out == Shape{8, 16, 16});   // (32 + 4 - 5) / 2 + 1 = 16
  CHECK(a.layers[1].kind == LayerKind::AvgPool);
  CHECK(a.layers[1].stride == 2);
  CHECK(a.layers[1].out == Shape{8, 8, 8});
  CHECK(a.layers[2].stride == 1);
  CHECK(a.layers[2].out == Shape{8, 6, 6});
  const auto &b = m.shared[1];
  CHECK(b.source == "a");
  CHECK_FALSE(b.sourceIsInput);
  CHECK(b.sourceIndex == 0);
  CHECK(b.layers[0].kind == LayerKind::LayerNorm);
  CHECK(b.layers[0].value == Approx(1e-5));
  CHECK(b.layers[0].out == Shape{8, 6, 6});
  CHECK(b.layers[1].value == Approx(0.01));
  CHECK(b.layers[2].value == Approx(0.25));
  CHECK(b.outShape == Shape{288});
  const auto &c = m.shared[2];
  CHECK(c.sourceIndex == 1);
  CHECK(c.layers[0].value == Approx(0.001));
  CHECK(c.layers[1].value == Approx(-0.2));
  CHECK(c.layers[2].value == Approx(0.5));
  CHECK(m.tasks[0].head.outShape == Shape{5});
  CHECK(m.tasks[0].labelWidth == 5);
  CHECK(m.tasks[0].loss == mtlc::rt::LossKind::MSE);
}

TEST_CASE("vision layers: batchnorm, global_avgpool, upsample, residual shortcuts") {
  Model m = check(
      "model m\ninput img : f32[3, 16, 16]\n"
      "shared a = img -> conv2d(8, kernel=3, padding=1) -> batchnorm -> relu\n"
      "  -> residual { conv2d(8, kernel=3, padding=1) -> batchnorm -> relu -> conv2d(8, kernel=3, padding=1) } -> relu\n"
      "  -> residual { conv2d(16, kernel=3, stride=2, padding=1) -> batchnorm(eps=0.001) -> maxpool(2) }\n"
      "  -> upsample(3, mode=bilinear) -> upsample(2) -> global_avgpool -> batchnorm\n"
      "task t { a -> dense(2) loss mse }\n");
  const auto &l = m.shared[0].layers;
  REQUIRE(l.size() == 10);
  CHECK(l[1].kind == LayerKind::BatchNorm);
  CHECK(l[1].value == Approx(1e-5));
  CHECK(l[1].out == Shape{8, 16, 16});
  CHECK(l[3].kind == LayerKind::Residual);
  CHECK_FALSE(l[3].projection);  // the body keeps [8, 16, 16]: identity
  CHECK(l[3].body.size() == 4);
  CHECK(l[3].body[3].index == 3);
  CHECK(l[5].projection);  // [8, 16, 16] -> [16, 4, 4]: 1x1 conv2d, stride 2 x 2
  CHECK(l[5].stride == 4);
  CHECK(l[5].body[1].value == Approx(0.001));
  CHECK(l[5].out == Shape{16, 4, 4});
  CHECK(l[6].scale == 3);
  CHECK(l[6].mode == 1);
  CHECK(l[6].out == Shape{16, 12, 12});
  CHECK(l[7].mode == 0);
  CHECK(l[7].out == Shape{16, 24, 24});
  CHECK(l[8].out == Shape{16});
  CHECK(l[9].kind == LayerKind::BatchNorm);  // over features: nn.BatchNorm1d
  CHECK(m.shared[0].outShape == Shape{16});
}

TEST_CASE("per-pixel tasks: a [C, H, W] head, its label widths and metrics") {
  Model m = check(
      "model m\ninput image : f32[1, 6, 5]\n"
      "shared trunk = image -> conv2d(4, kernel=3, padding=1) -> relu\n"
      "task seg    { trunk -> conv2d(3, kernel=3, padding=1) loss cross_entropy metric pixel_accuracy, miou }\n"
      "task depth  { trunk -> conv2d(1, kernel=3, padding=1) loss l1 metric abs_err, rel_err }\n"
      "task normal { trunk -> conv2d(3, kernel=1) loss cosine metric angle_err }\n"
      "task kind   { trunk -> flatten -> dense(3) loss cross_entropy metric pixel_accuracy, miou }\n");
  REQUIRE(m.tasks.size() == 4);
  CHECK(m.tasks[0].head.outShape == Shape{3, 6, 5});
  CHECK(m.tasks[0].labelWidth == 30);  // a class index per pixel
  CHECK(m.tasks[0].metrics == std::vector<mtlc::rt::Metric>{mtlc::rt::Metric::PixelAccuracy, mtlc::rt::Metric::MIoU});
  CHECK(m.tasks[1].labelWidth == 30);
  CHECK(m.tasks[2].loss == mtlc::rt::LossKind::Cosine);
  CHECK(m.tasks[2].labelWidth == 90);
  CHECK(m.tasks[3].labelWidth == 1);  // pixel_accuracy and miou on a [C] head: per sample
}

TEST_CASE("tasks may read inputs and any shared block; l1; weights; labels for wide heads") {
  const std::string data = fs::absolute(csvFile("data.csv", "a,b,c,d,e,f,g,h,i,j,k,l,m,n,o")).string();
  Model m = check(
      "model m\ninput x : f32[6]\ninput y : f32[2, 3]\n"
      "task early { late -> dense(3) loss l1 weight 0 metric mae }\n"
      "shared late = y -> flatten -> dense(4)\n"
      "task raw { x loss mse }\n"
      "data { train csv(\"" + data + "\") x = columns(0..5) y = columns(\"a\",\"b\",\"c\",\"d\",\"e\",\"f\") / 10\n"
      "       early = columns(6..8) raw = columns(9..14) }\n");
  CHECK(m.tasks[0].head.source == "late");
  CHECK(m.tasks[0].loss == mtlc::rt::LossKind::L1);
  CHECK(m.tasks[0].weight == 0);
  CHECK(m.tasks[0].labelWidth == 3);
  CHECK(m.tasks[1].head.sourceIsInput);
  CHECK(m.tasks[1].head.sourceIndex == 0);
  CHECK(m.tasks[1].head.layers.empty());
  CHECK(m.tasks[1].labelWidth == 6);
  CHECK(m.data.train.args == std::vector<std::string>{data});  // absolute: kept
  REQUIRE(m.data.inputs.size() == 2);
  CHECK(m.data.inputs[1].target == "y");
  CHECK(m.data.inputs[1].expr.ref.columns.size() == 6);
  CHECK(m.data.inputs[1].expr.op == Op::Div);
  CHECK(m.data.inputs[1].expr.value == 10);
  CHECK(m.data.inputs[1].width == 6);
  CHECK(m.data.labels[0].width == 3);
  CHECK(m.data.labels[1].width == 6);
}

TEST_CASE("idx sources: paths joined with the .mtl directory; any pixel count accepted") {
  Model m = check("model m\ninput img : f32[1, 20, 20]\ntask c { img -> flatten -> dense(3) loss cross_entropy }\n"
                  "data { train idx(\"../data/images.idx\", \"labels.idx.gz\") img = pixels / 255 c = label }\n",
                  "models/sub/m.mtl");
  CHECK(m.data.train.kind == "idx");
  CHECK(m.data.train.args == std::vector<std::string>{"models/data/images.idx", "models/sub/labels.idx.gz"});
  CHECK(m.data.inputs[0].width == 400);
  CHECK(m.data.labels[0].width == 1);
}

TEST_CASE("npz sources: arrays bound by name, widths from the archive's headers, --data checked") {
  const std::string images = (fs::path(MTLC_SOURCE_DIR) / "tests/diagnostics/images.npz").string();
  const std::string program = "model m\ninput img : f32[1, 6, 6]\n"
                              "task c { img -> flatten -> dense(3) loss cross_entropy }\n"
                              "task s { img -> flatten -> dense(3) loss mse }\n"
                              "data { train npz(\"" + images + "\") img = x / 255 c = label s = seg }\n";
  Model m = check(program);
  CHECK(m.data.train.kind == "npz");
  CHECK(m.data.train.args == std::vector<std::string>{images});
  REQUIRE(m.data.inputs.size() == 1);
  CHECK(m.data.inputs[0].expr.ref.field == "x");
  CHECK(m.data.inputs[0].width == 36);
  CHECK(m.data.labels[0].expr.ref.field == "label");
  CHECK(m.data.labels[1].width == 3);
  // `--data train=FILE` is checked in place of the program's source: counts.npz has no `seg`.
  const std::string counts = (fs::path(MTLC_SOURCE_DIR) / "tests/diagnostics/counts.npz").string();
  mtlc::Diagnostics diags("m.mtl", program);
  auto parsed = mtlc::parseProgram("m.mtl", program, diags);
  REQUIRE(parsed);
  CHECK_FALSE(mtlc::sema::analyze(*parsed, "m.mtl", diags, {{"train", counts}}));
  CHECK_THAT(diags.str(), Catch::Matchers::Contains("counts.npz: the arrays have different sample counts"));
  CHECK_THAT(diags.str(), Catch::Matchers::Contains("--data train=" + counts + " replaces this source"));
}

TEST_CASE("a file in the current directory keeps its data paths as written") {
  InFolder here(csvFile("d.csv", "a,b").parent_path());
  Model m = check("model m\ninput x : f32[1]\ntask t { x -> dense(1) loss mse }\n"
                  "data { train csv(\"d.csv\") x = a t = b }\n",
                  "m.mtl");
  CHECK(m.data.train.args == std::vector<std::string>{"d.csv"});
  CHECK(m.data.inputs[0].expr.ref.field == "a");
}

TEST_CASE("comparisons in bindings") {
  const fs::path dir = csvFile("vl.csv", "v,l").parent_path();
  Model m = check("model m\ninput x : f32[1]\ntask a { x -> dense(1) loss bce }\ntask b { x -> dense(1) loss bce }\n"
                  "task c { x -> dense(1) loss bce }\ntask d { x -> dense(1) loss bce }\n"
                  "data { train csv(\"vl.csv\") x = v * -1 a = l == 3 b = l != 3 c = l >= 0.5 d = l <= 2 }\n",
                  (dir / "cmp.mtl").string());
  CHECK(m.data.inputs[0].expr.op == Op::Mul);
  CHECK(m.data.inputs[0].expr.value == -1);
  CHECK(m.data.labels[0].expr.op == Op::Eq);
  CHECK(m.data.labels[1].expr.op == Op::Ne);
  CHECK(m.data.labels[2].expr.op == Op::Ge);
  CHECK(m.data.labels[2].expr.value == 0.5);
  CHECK(m.data.labels[3].expr.op == Op::Le);
}

TEST_CASE("analysis reports independent errors but not their consequences") {
  // One unknown layer: the rest of that pipeline has an unknown shape, so no dense/loss errors.
  std::string e = errorsOf("model m\ninput x : f32[1, 4, 4]\nshared t = x -> frobnicate -> dense(3)\n"
                           "task a { t -> dense(1) loss cross_entropy }\n"
                           "task b { x -> dense(2) loss mse }\n");
  CHECK_THAT(e, Catch::Contains("unknown layer 'frobnicate'"));
  CHECK_THAT(e, !Catch::Contains("cross_entropy needs"));
  CHECK_THAT(e, Catch::Contains("e.mtl:5:15: error: dense needs a 1-D input"));
  // An input with a bad dimension: no shape errors downstream.
  std::string f = errorsOf("model m\ninput x : f32[0]\ntask a { x -> dense(1) loss mse }\n"
                           "data { train csv(\"d.csv\") x = columns(0..3) a = y }\n");
  CHECK_THAT(f, Catch::Contains("got 0"));
  CHECK_THAT(f, !Catch::Contains("takes"));
}

TEST_CASE("parameter limits and huge shapes are errors, not crashes") {
  CHECK_THAT(errorsOf("model m\ninput x : f32[100000, 100000]\ntask a { x -> flatten -> dense(1) loss mse }\n"),
             Catch::Contains("too many values per sample"));
  CHECK_THAT(errorsOf("model m\ninput x : f32[100000]\ntask a { x -> dense(100000) -> dense(1) loss mse }\n"),
             Catch::Contains("e.mtl:3:15: error: dense(100000) brings the model to 10000100000 "
                             "parameters, more than the supported 268435456 (2^28)"));
  CHECK_THAT(errorsOf("model m\ninput x : f32[8]\ntask a { x -> dense(1e30) loss mse }\n"),
             Catch::Contains("is too large"));
  CHECK_THAT(errorsOf("model m\ninput x : f32[8]\ntask a { x -> dense(1) loss mse weight 1e999 }\n"),
             Catch::Contains("out of range"));
}

TEST_CASE("arguments take the vocabulary's ranges and defaults") {
  // A pooling stride is at least 1; left out, it is the window (the default shown as `kernel`).
  CHECK_THAT(errorsOf("model m\ninput x : f32[1, 8, 8]\ntask a { x -> maxpool(2, stride=0) -> flatten -> dense(1) "
                      "loss mse }\n"),
             Catch::Contains("e.mtl:3:33: error: 'stride' of maxpool must be at least 1, got 0"));
  Model m = check("model m\ninput x : f32[1, 8, 8]\ntask a { x -> avgpool(4) -> flatten -> dense(1) loss mse }\n");
  CHECK(m.tasks[0].head.layers[0].stride == 4);
  CHECK(m.tasks[0].head.layers[0].out == Shape{1, 2, 2});
  Model o = check("model m\ninput x : f32[4]\ntask a { x -> dense(1) loss mse }\ntrain { optimizer sgd(0.5, 0.9) }\n");
  CHECK(o.train.optimizer.kind == mtlc::rt::OptimizerKind::Sgd);
  CHECK(o.train.optimizer.lr == 0.5);        // positional, in the table's order
  CHECK(o.train.optimizer.momentum == 0.9);
  CHECK(o.train.optimizer.weightDecay == 0);  // the table's default
  CHECK(o.train.optimizer.beta1 == 0.9);      // not an sgd argument: untouched
  CHECK_THAT(errorsOf("model m\ninput x : f32[4]\ntask a { x -> dense(1) loss mse }\ntrain { optimizer adam(beta2=1) }\n"),
             Catch::Contains("'beta2' of optimizer 'adam' must be in [0, 1), got 1"));
}

TEST_CASE("known name lists") {
  CHECK(mtlc::sema::knownLayers().size() == 18);
  CHECK(mtlc::sema::knownBlocks() == std::vector<std::string>{"mixture", "ple", "cgc", "cross_stitch", "mtan"});
  const std::vector<std::string> weightings = mtlc::sema::knownWeightings();
  CHECK(weightings.size() == 22);  // the seven, then #26's fifteen
  for (const char *w : {"mgda", "rlw", "gls", "imtl", "cagrad", "gradvac", "graddrop", "nash_mtl", "aligned_mtl",
                        "db_mtl", "famo", "upgrad", "moco", "stch", "fairgrad", "excess_mtl"})
    CHECK(std::find(weightings.begin(), weightings.end(), w) != weightings.end());
  CHECK(std::string(mtlc::sema::layerName(LayerKind::Embedding)) == "embedding");
  CHECK(std::string(mtlc::sema::layerName(LayerKind::CrossStitch)) == "cross_stitch");
  CHECK(mtlc::sema::knownLosses() == std::vector<std::string>{"cross_entropy", "bce", "mse", "l1", "cosine"});
  CHECK(mtlc::sema::knownMetrics().size() == 9);
  CHECK(mtlc::sema::knownSources() ==
        std::vector<std::string>{"fashion_mnist", "idx", "csv", "npz", "npy", "synthetic_mmoe", "multi_fashion",
                                 "multi_fashion_dense"});
  CHECK(std::string(mtlc::sema::layerName(LayerKind::LeakyRelu)) == "leaky_relu");
  CHECK(mtlc::sema::shapeStr({1, 28, 28}) == "[1, 28, 28]");
  CHECK(mtlc::sema::shapeStr({}) == "[]");
  CHECK(mtlc::sema::elementCount({32, 13, 13}) == 5408);
}

// ---- Multi-task architectures (docs/mtl-architectures.md) ---------------------------------------

TEST_CASE("mmoe_synthetic.mtl: the mixture, its readers, gate sources and the synthetic source") {
  Model m = example("mmoe_synthetic.mtl");
  REQUIRE(m.shared.size() == 1);
  const auto &experts = m.shared[0];
  CHECK(experts.sourceKind == SourceKind::Input);
  CHECK(experts.inShape == Shape{100});
  CHECK(experts.outShape == Shape{16});
  REQUIRE(experts.layers.size() == 1);
  const auto &mix = experts.layers[0];
  CHECK(mix.kind == LayerKind::Mixture);
  CHECK(mix.isExpertBlock());
  CHECK(mix.hasParams());
  CHECK(mix.index == 0);
  CHECK(mix.experts == 8);
  CHECK(mix.in == Shape{100});
  CHECK(mix.out == Shape{16});
  REQUIRE(mix.expert.size() == 2);
  CHECK(mix.expert[0].kind == LayerKind::Dense);
  CHECK(mix.expert[0].index == 0);
  CHECK(mix.expert[0].in == Shape{100});
  CHECK(mix.expert[0].out == Shape{16});
  CHECK(mix.expert[1].kind == LayerKind::Relu);
  CHECK(mix.expert[1].index == 1);
  CHECK(mix.readers == std::vector<int>{0, 1});
  CHECK(mix.stages.empty());
  for (const auto &t : m.tasks) {
    CHECK(t.head.sourceKind == SourceKind::Gate);
    CHECK(t.head.source == "experts");
    CHECK_FALSE(t.head.sourceIsInput);
    CHECK(t.head.sourceIndex == 0);
    CHECK(t.head.inShape == Shape{16});
    CHECK(t.head.outShape == Shape{1});
    CHECK(t.head.layers[0].in == Shape{16});
  }
  CHECK(m.train.batch == 256);
  CHECK_FALSE(mix.dselect);
  CHECK(m.data.train.kind == "synthetic_mmoe");
  CHECK(m.data.train.args.empty());
  CHECK(m.data.train.options.at("correlation") == 0.5);
  CHECK(m.data.train.options.at("samples") == 12000);
  CHECK(m.data.train.options.at("dim") == 100);
  CHECK(m.data.train.options.at("seed") == 1);
  CHECK(m.data.test.options.at("samples") == 2000);
  REQUIRE(m.data.inputs.size() == 1);
  CHECK(m.data.inputs[0].expr.ref.field == "x");
  CHECK(m.data.inputs[0].width == 100);
  CHECK(m.data.labels[0].expr.ref.field == "y1");
  CHECK(m.data.labels[1].expr.ref.field == "y2");
}

TEST_CASE("dselect_synthetic.mtl: a mixture with DSelect-k's gates binds select and gamma") {
  Model m = example("dselect_synthetic.mtl");
  REQUIRE(m.shared.size() == 1);
  const auto &mix = m.shared[0].layers.at(0);
  CHECK(mix.kind == LayerKind::Mixture);
  CHECK(mix.experts == 8);
  CHECK(mix.dselect);
  CHECK(mix.select == 2);
  CHECK(mix.gamma == 1.0);
  CHECK(mix.out == Shape{16});
  CHECK(mix.readers == std::vector<int>{0, 1});
}

TEST_CASE("ple.mtl: levels, shared and specific experts, later levels' shapes") {
  Model m = example("ple.mtl");
  const auto &ple = m.shared[0].layers[0];
  CHECK(ple.kind == LayerKind::Ple);
  CHECK(ple.levels == 2);
  CHECK(ple.sharedExperts == 2);
  CHECK(ple.specificExperts == 2);
  CHECK(ple.experts == 0);
  CHECK(ple.in == Shape{100});
  CHECK(ple.out == Shape{16});
  REQUIRE(ple.expert.size() == 2);
  CHECK(ple.expert[0].in == Shape{100});
  REQUIRE(ple.laterExpert.size() == 2);
  CHECK(ple.laterExpert[0].kind == LayerKind::Dense);
  CHECK(ple.laterExpert[0].units == 16);
  CHECK(ple.laterExpert[0].in == Shape{16});
  CHECK(ple.laterExpert[1].out == Shape{16});
  CHECK(ple.readers == std::vector<int>{0, 1});
  CHECK(m.tasks[1].head.sourceKind == SourceKind::Gate);
  CHECK(m.tasks[1].head.inShape == Shape{16});

  Model c = check("model m\ninput x : f32[5]\nshared b = x -> cgc(shared=1, specific=3) { dense(4) }\n"
                  "task t { gate(b) -> dense(1) loss mse }\n");
  const auto &cgc = c.shared[0].layers[0];
  CHECK(cgc.kind == LayerKind::Ple);
  CHECK(cgc.levels == 1);
  CHECK(cgc.sharedExperts == 1);
  CHECK(cgc.specificExperts == 3);
  CHECK(cgc.laterExpert.empty());
  CHECK(cgc.readers == std::vector<int>{0});
}

TEST_CASE("cross_stitch.mtl: stages, columns, weighting uncertainty") {
  Model m = example("cross_stitch.mtl");
  const auto &cs = m.shared[0].layers[0];
  CHECK(cs.kind == LayerKind::CrossStitch);
  CHECK(cs.expert.empty());
  REQUIRE(cs.stages.size() == 2);
  REQUIRE(cs.stages[0].size() == 2);
  CHECK(cs.stages[0][0].in == Shape{100});
  CHECK(cs.stages[0][0].out == Shape{32});
  CHECK(cs.stages[1][0].index == 0);
  CHECK(cs.stages[1][0].in == Shape{32});
  CHECK(cs.stages[1][1].out == Shape{16});
  CHECK(cs.in == Shape{100});
  CHECK(cs.out == Shape{16});
  CHECK(cs.readers == std::vector<int>{0, 1});
  CHECK(m.shared[0].outShape == Shape{16});
  CHECK(m.tasks[0].head.sourceKind == SourceKind::Column);
  CHECK(m.tasks[0].head.source == "stitch");
  CHECK(m.tasks[0].head.inShape == Shape{16});
  CHECK(m.train.weighting == mtlc::rt::WeightingKind::Uncertainty);
}

TEST_CASE("mtan_fashion.mtl: shared stages, one attention column per task") {
  Model m = example("mtan_fashion.mtl");
  const auto &b = m.shared[0].layers[0];
  CHECK(b.kind == LayerKind::Mtan);
  REQUIRE(b.stages.size() == 3);
  CHECK(b.in == Shape{1, 28, 28});
  CHECK(b.stages[0].back().out == Shape{16, 28, 28});
  CHECK(b.stages[1].front().index == 0);
  CHECK(b.stages[1].back().out == Shape{32, 14, 14});
  CHECK(b.stages[2].back().out == Shape{64, 7, 7});
  CHECK(b.out == Shape{64, 7, 7});
  CHECK(b.readers == std::vector<int>{0, 1});
  CHECK(m.tasks[1].head.sourceKind == SourceKind::Column);
  CHECK(m.tasks[1].head.inShape == Shape{64, 7, 7});
  CHECK(m.train.batch == 64);
}

TEST_CASE("multi_fashion.mtl: the multi_fashion source and pcgrad") {
  Model m = example("multi_fashion.mtl");
  CHECK(m.shared[0].outShape == Shape{50});
  CHECK(m.train.weighting == mtlc::rt::WeightingKind::PCGrad);
  CHECK(m.data.train.kind == "multi_fashion");
  CHECK(m.data.train.args == std::vector<std::string>{"train"});
  CHECK(m.data.test.args == std::vector<std::string>{"test"});
  CHECK(m.data.inputs[0].expr.ref.field == "pixels");
  CHECK(m.data.inputs[0].width == 784);
  CHECK(m.data.labels[0].expr.ref.field == "left");
  CHECK(m.data.labels[1].expr.ref.field == "right");
  CHECK(m.tasks[0].loss == mtlc::rt::LossKind::CrossEntropy);
}

TEST_CASE("recsys.mtl: embeddings record categories, concat parts, a mixture over them") {
  Model m = example("recsys.mtl");
  REQUIRE(m.inputs.size() == 3);
  CHECK(m.inputs[0].categories == 0);
  CHECK(m.inputs[1].categories == 20);
  CHECK(m.inputs[2].categories == 50);
  const auto &emb = m.shared[0].layers[0];
  CHECK(emb.kind == LayerKind::Embedding);
  CHECK(emb.hasParams());
  CHECK(emb.vocab == 20);
  CHECK(emb.units == 4);
  CHECK(emb.in == Shape{1});
  CHECK(emb.out == Shape{4});
  CHECK(m.shared[1].outShape == Shape{8});
  const auto &experts = m.shared[2];
  CHECK(experts.sourceKind == SourceKind::Concat);
  CHECK(experts.source == "concat");
  CHECK_FALSE(experts.sourceIsInput);
  REQUIRE(experts.concat.size() == 3);
  CHECK(experts.concat[0].kind == SourceKind::Input);
  CHECK(experts.concat[0].index == 0);
  CHECK(experts.concat[0].name == "numeric");
  CHECK(experts.concat[1].kind == SourceKind::Shared);
  CHECK(experts.concat[1].index == 0);
  CHECK(experts.concat[2].kind == SourceKind::Shared);
  CHECK(experts.concat[2].index == 1);
  CHECK(experts.inShape == Shape{18});
  CHECK(experts.layers[0].kind == LayerKind::Mixture);
  CHECK(experts.layers[0].experts == 4);
  CHECK(experts.layers[0].in == Shape{18});
  CHECK(m.train.weighting == mtlc::rt::WeightingKind::Uniform);
  CHECK(m.data.inputs[1].expr.ref.field == "user_group");
  CHECK(m.data.inputs[1].width == 1);
  CHECK(m.data.labels[1].expr.ref.field == "buy");
}

TEST_CASE("architectures.mtl: every multi-task form in one program") {
  fs::path p = fs::path(MTLC_SOURCE_DIR) / "tests/syntax/architectures.mtl";
  Model m = check(slurp(p), p.string());
  CHECK(m.inputs[1].categories == 100);
  CHECK(m.shared[0].outShape == Shape{12});                     // cat [3] -> embedding(100, 4)
  CHECK(m.shared[2].inShape == Shape{12 + 12 + 64});            // concat(dense_x, emb, flat)
  CHECK(m.shared[2].concat[2].name == "flat");
  const auto &deep = m.shared[4].layers[0];
  CHECK(deep.levels == 3);
  CHECK(deep.laterExpert[0].in == Shape{8});
  CHECK(deep.readers == std::vector<int>{2, 3});
  const auto &one = m.shared[5].layers[0];
  CHECK(one.levels == 1);
  CHECK(one.sharedExperts == 2);
  CHECK(one.specificExperts == 1);
  CHECK(one.readers == std::vector<int>{4});
  const auto &cs = m.shared[6].layers[0];
  REQUIRE(cs.stages.size() == 3);
  CHECK(cs.stages[2][0].kind == LayerKind::LayerNorm);
  CHECK(cs.stages[2][0].in == Shape{8});
  CHECK(cs.readers == std::vector<int>{5, 6});
  CHECK(m.tasks[6].head.layers.empty());
  CHECK(m.tasks[6].labelWidth == 8);
  CHECK(m.tasks[7].head.sourceKind == SourceKind::Concat);
  CHECK(m.tasks[7].head.inShape == Shape{24});
  CHECK(m.train.weighting == mtlc::rt::WeightingKind::GradNorm);
  CHECK(m.train.weightingParam == 0.5);
  CHECK(m.train.freeze == std::vector<std::string>{"emb", "flat", "joined"});
  CHECK(m.train.batch == 16);
}

TEST_CASE("weighting strategies and their parameters") {
  const std::string base = "model m\ninput x : f32[4]\nshared s = x -> dense(4)\n"
                           "task a { s -> dense(1) loss mse }\ntask b { s -> dense(1) loss mse }\n";
  struct Case {
    const char *setting;
    const char *name;
    double param;
  };
  const Case cases[] = {{"fixed", "fixed", 0},          {"uniform", "uniform", 0},
                        {"uncertainty", "uncertainty", 0}, {"dwa", "dwa", 2},
                        {"dwa(temperature=0.5)", "dwa", 0.5}, {"dwa(3)", "dwa", 3},
                        {"gradnorm", "gradnorm", 1.5},   {"gradnorm(alpha=0)", "gradnorm", 0},
                        {"pcgrad", "pcgrad", 0},         {"mgda", "mgda", 0}};
  for (const auto &c : cases) {
    DYNAMIC_SECTION(c.setting) {
      Model m = check(base + "train { weighting " + c.setting + " }\n");
      CHECK(std::string(mtlc::vocab::name(m.train.weighting)) == c.name);
      CHECK(m.train.weightingParam == Approx(c.param));
    }
  }
  // Loss-based strategies work with one task and nothing shared.
  Model one = check("model m\ninput x : f32[4]\ntask a { x -> dense(1) loss mse }\ntrain { weighting dwa }\n");
  CHECK(one.train.weighting == mtlc::rt::WeightingKind::Dwa);
  CHECK_THAT(errorsOf("model m\ninput x : f32[4]\nshared s = x -> flatten\n"
                      "task a { s -> dense(1) loss mse }\ntask b { s -> dense(1) loss mse }\n"
                      "train { weighting mgda }\n"),
             Catch::Contains("no shared block has learnable parameters"));
  CHECK_THAT(errorsOf(base + "train { weighting dwa(temperature=0) }\n"),
             Catch::Contains("'temperature' of weighting 'dwa' must be greater than 0"));
  CHECK_THAT(errorsOf(base + "train { weighting pcgrad(1) }\n"),
             Catch::Contains("weighting 'pcgrad' takes no arguments"));
}

// rep_grad=true: accepted where every head reads one shared block, refused elsewhere by every method
// that has the argument (tests/diagnostics/rep_grad_*.mtl show the messages); mgda, which has none,
// falls back to the shared parameters' gradients there (runtime/train/Weighting.cpp).
TEST_CASE("rep_grad needs one shared block that every head reads") {
  const std::string trunk = "model m\ninput x : f32[4]\nshared s = x -> dense(4)\n"
                            "task a { s -> dense(1) loss mse }\ntask b { s -> dense(1) loss mse }\n";
  const std::string gates = "model m\ninput x : f32[4]\nshared e = x -> mixture(experts=2) { dense(4) }\n"
                            "task a { gate(e) -> dense(1) loss mse }\ntask b { gate(e) -> dense(1) loss mse }\n";
  for (const char *w : {"imtl", "cagrad", "upgrad", "aligned_mtl", "nash_mtl"}) {
    DYNAMIC_SECTION(w) {
      const std::string setting = std::string("train { weighting ") + w + "(rep_grad=true) }\n";
      Model m = check(trunk + setting);
      CHECK(m.sharedBoundary() == 0);
      CHECK(m.train.repGrad);
      CHECK_FALSE(check(trunk + "train { weighting " + w + " }\n").train.repGrad);
      CHECK_THAT(errorsOf(gates + setting), Catch::Contains(std::string("weighting '") + w +
                                                            "' with rep_grad=true takes the task gradients"));
    }
  }
  Model mgda = check(gates + "train { weighting mgda }\n");
  CHECK(mgda.sharedBoundary() == -1);
  CHECK(mgda.train.repGrad);  // asks for rep_grads; lowering finds no boundary and leaves it out
  CHECK(check(trunk + "train { weighting mgda }\n").sharedBoundary() == 0);
  CHECK_THAT(errorsOf(trunk + "train { weighting gradvac(rep_grad=true) }\n"),
             Catch::Contains("rep_grad (the task gradients at the shared representation) is an argument of imtl, "
                             "cagrad, upgrad, aligned_mtl and nash_mtl only"));
}

TEST_CASE("freeze lists shared blocks and tasks") {
  const std::string base = "model m\ninput x : f32[4]\nshared s = x -> dense(4)\n"
                           "task a { s -> dense(1) loss mse }\ntask b { s -> dense(1) loss mse }\n";
  Model m = check(base + "train { freeze s, b batch 8 }\n");
  CHECK(m.train.freeze == std::vector<std::string>{"s", "b"});
  CHECK(m.train.batch == 8);
  CHECK(check(base).train.freeze.empty());
  CHECK_THAT(errorsOf(base + "train { freeze x }\n"), Catch::Contains("'x' is an input, which has no parameters"));
  CHECK_THAT(errorsOf(base + "train { freeze ss }\n"), Catch::Contains("unknown block 'ss' in freeze; did you mean 's'?"));
  CHECK_THAT(errorsOf(base + "train { freeze s, a, s }\n"), Catch::Contains("'s' is frozen twice"));
  CHECK_THAT(errorsOf(base + "train { freeze 3 }\n"), Catch::Contains("freeze takes the names of shared blocks and tasks, got 3"));
  CHECK_THAT(errorsOf(base + "train { batch 8, 9 }\n"),
             Catch::Contains("'batch' takes one value; only freeze and lr_scale take a list"));
}

TEST_CASE("synthetic_mmoe: defaults and option ranges; dim sets the width of x") {
  Model m = check("model m\ninput x : f32[7]\ntask a { x -> dense(1) loss mse }\n"
                  "data { train synthetic_mmoe(dim=7) x = x a = y2 }\n");
  CHECK(m.data.train.options.at("correlation") == 0.5);
  CHECK(m.data.train.options.at("samples") == 12000);
  CHECK(m.data.train.options.at("dim") == 7);
  CHECK(m.data.train.options.at("seed") == 0);
  CHECK(m.data.inputs[0].width == 7);
  CHECK_THAT(errorsOf("model m\ninput x : f32[100]\ntask a { x -> dense(1) loss mse }\n"
                      "data { train synthetic_mmoe(correlation=1.5) x = x a = y1 }\n"),
             Catch::Contains("'correlation' of data source 'synthetic_mmoe' must be in [-1, 1], got 1.5"));
  Model d = check("model m\ninput x : f32[100]\ntask a { x -> dense(1) loss mse }\n"
                  "data { train synthetic_mmoe x = x a = y1 }\n");
  CHECK(d.data.inputs[0].width == 100);
}

TEST_CASE("every example and every program of docs/mtl-architectures.md checks cleanly") {
  int examples = 0;
  for (const auto &e : fs::directory_iterator(fs::path(MTLC_SOURCE_DIR) / "examples")) {
    if (e.path().extension() != ".mtl") continue;
    DYNAMIC_SECTION(e.path().filename().string()) { check(slurp(e.path()), e.path().string()); }
    ++examples;
  }
  CHECK(examples >= 7);
  // The fenced ```mtl blocks of the language reference, each a whole program.
  fs::path doc = fs::path(MTLC_SOURCE_DIR) / "docs/mtl-architectures.md";
  std::istringstream in(slurp(doc));
  std::vector<std::string> blocks;
  std::string line, block;
  bool inside = false;
  while (std::getline(in, line)) {
    if (!inside && line == "```mtl") {
      inside = true;
      block.clear();
    } else if (inside && line == "```") {
      inside = false;
      blocks.push_back(block);
    } else if (inside) {
      block += line + "\n";
    }
  }
  CHECK(blocks.size() >= 6);
  for (size_t i = 0; i < blocks.size(); ++i) {
    DYNAMIC_SECTION("docs block " << i + 1) {
      Model m = check(blocks[i], (fs::path(MTLC_SOURCE_DIR) / "docs/block.mtl").string());
      CHECK_FALSE(m.tasks.empty());
    }
  }
}

namespace {

// Analyses with `--data` overrides; the diagnostics.
std::string diagnosticsWith(const std::string &text, const std::string &file,
                            const mtlc::sema::DataOverrides &overrides) {
  mtlc::Diagnostics diags("o.mtl", text);
  auto program = mtlc::parseProgram("o.mtl", text, diags);
  REQUIRE(program);
  mtlc::sema::analyze(*program, file, diags, overrides);
  return diags.str();
}

}  // namespace

TEST_CASE("--data overrides: the replacing csv file's header is the one checked") {
  const fs::path program = csvFile("prog.csv", "price,rooms").parent_path() / "o.mtl";
  const std::string other = csvFile("other.csv", "cost,rooms").string();
  const std::string text = "model m\ninput x : f32[1]\ntask price { x -> dense(1) loss mse }\n"
                           "data {\n  train csv(\"prog.csv\")\n  x = rooms\n  price = price\n}\n";
  CHECK(diagnosticsWith(text, program.string(), {}).empty());
  // The program's file has `price`; the override's does not.
  CHECK(diagnosticsWith(text, program.string(), {{"train", other}}) ==
        "o.mtl:7:11: error: " + other + " has no column 'price'; its columns are cost, rooms\n"
        "  price = price\n          ^~~~~\n");
  // A missing override file: at the source it replaces, with a note naming the override.
  const std::string missing = (program.parent_path() / "missing.csv").string();
  CHECK(diagnosticsWith(text, program.string(), {{"train", missing}}) ==
        "o.mtl:5:9: error: " + missing + ": cannot open: No such file or directory\n"
        "  train csv(\"prog.csv\")\n        ^~~~~~~~~~~~~~~\n"
        "o.mtl:5:9: note: --data train=" + missing + " replaces this source\n"
        "  train csv(\"prog.csv\")\n        ^~~~~~~~~~~~~~~\n");
  // A test override for a program without a test source is checked too.
  CHECK_THAT(diagnosticsWith(text, program.string(), {{"test", other}}),
             Catch::StartsWith("o.mtl:7:11: error: " + other + " has no column 'price'"));
}

TEST_CASE("decoder layers: conv_transpose2d shapes and a U-Net skip through concat") {
  Model m = check(
      "model m\ninput img : f32[1, 28, 28]\ninput v : f32[4]\n"
      "shared enc1 = img -> conv2d(8, kernel=3, padding=1) -> relu\n"
      "shared enc2 = enc1 -> maxpool(2) -> conv2d(16, kernel=3, padding=1) -> relu\n"
      "shared up = enc2 -> conv_transpose2d(8, kernel=2, stride=2, bias=false)\n"
      "shared dec = concat(up, enc1, img) -> conv_transpose2d(2, kernel=3, stride=2, padding=1, output_padding=1)\n"
      "  -> conv_transpose2d(1, 5, padding=2)\n"
      "shared both = concat(v, v)\n"
      "task t { dec -> flatten -> dense(2) loss mse }\n"
      "task u { both -> dense(1) loss mse }\n");
  const mtlc::sema::Layer &up = m.shared[2].layers[0];
  CHECK(up.kind == LayerKind::ConvTranspose2d);
  CHECK_FALSE(up.bias);
  CHECK(up.out == Shape{8, 28, 28});
  CHECK(m.shared[3].sourceKind == SourceKind::Concat);
  CHECK(m.shared[3].inShape == Shape{17, 28, 28});  // 8 + 8 + 1 channels
  const auto &d = m.shared[3].layers;
  CHECK(d[0].outputPadding == 1);
  CHECK(d[0].out == Shape{2, 56, 56});  // (28-1)*2 - 2 + 3 + 1
  CHECK(d[1].kernel == 5);
  CHECK(d[1].out == Shape{1, 56, 56});  // stride 1, padding 2, kernel 5: the same size
  CHECK(m.shared[4].outShape == Shape{8});  // 1-D parts still join along the features
}

TEST_CASE("multi_fashion_dense: per-pixel fields bind to flattened heads") {
  Model m = check(
      "model m\ninput image : f32[1, 28, 28]\n"
      "shared enc = image -> conv2d(4, kernel=3, padding=1) -> relu\n"
      "task left_item { enc -> conv2d(1, kernel=1) -> flatten loss mse }\n"
      "task segment { enc -> flatten -> dense(784) loss mse }\n"
      "task right { enc -> flatten -> dense(10) loss cross_entropy }\n"
      "data { train multi_fashion_dense(\"train\") test multi_fashion_dense(\"test\")\n"
      "       image = pixels left_item = left_pixels segment = segment right = right }\n");
  CHECK(m.data.train.kind == "multi_fashion_dense");
  CHECK(m.data.inputs[0].width == 784);
  CHECK(m.data.labels[0].expr.ref.field == "left_pixels");
  CHECK(m.data.labels[0].width == 784);
  CHECK(m.data.labels[1].width == 784);
  CHECK(m.data.labels[2].width == 1);
}
