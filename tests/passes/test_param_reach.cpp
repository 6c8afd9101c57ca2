// ParamSpec::tasks: which tasks' losses reach each parameter of a lowered model, and what the
// gradient-based weightings make of it (gradnorm's W; the shared set of pcgrad and mgda).
// The expected tables are written from the architectures' definitions (docs/mtl-architectures.md,
// docs/mtl-methods.md), not printed from the compiler.
#include "LowerExample.h"

#include "spec/Error.h"
#include "runtime/train/Weighting.h"

#include <map>

namespace {

using Reach = std::map<std::string, std::vector<int>>;

// name -> tasks, for every parameter of the table.
Reach reachOf(const mtlc::lower::LoweredModel &lowered) {
  Reach out;
  for (const auto &p : lowered.params) out[p.name] = p.tasks;
  return out;
}

// The runtime's view of the lowered model: enough for Weighting::create.
mtlc::rt::ModelSpec specOf(const mtlc::lower::LoweredModel &lowered, const std::vector<std::string> &tasks,
                           const std::string &weighting) {
  mtlc::rt::ModelSpec spec;
  spec.name = lowered.module.name;
  for (const auto &t : tasks) {
    mtlc::rt::TaskSpec ts;
    ts.name = t;
    spec.tasks.push_back(ts);
  }
  spec.params = lowered.params;
  spec.paramCount = lowered.module.paramFloats;
  if (!mtlc::vocab::parse(weighting.c_str(), spec.train.weighting))
    throw std::invalid_argument("no weighting named " + weighting);
  spec.train.weightingParam = 1.5;
  return spec;
}

void mtlcDummy(const mtlc_args *) {}

// Every `.weight` and `.bias` of a block gets the same reach.
void both(Reach &r, const std::string &prefix, std::vector<int> tasks) {
  r[prefix + ".weight"] = tasks;
  r[prefix + ".bias"] = std::move(tasks);
}

}  // namespace

TEST_CASE("param reach: a shared block read through another by one task only", "[lower][reach]") {
  auto lowered = lowerText(R"(model chain
input x : f32[4]
shared a = x -> dense(8) -> relu
shared b = a -> dense(8) -> relu
task p { b -> dense(1) loss mse }
task q { a -> dense(1) loss mse }
train { optimizer sgd(lr=0.1) batch 8 weighting gradnorm }
)");
  Reach want;
  both(want, "a.0", {0, 1});
  both(want, "b.0", {0});
  both(want, "p.0", {0});
  both(want, "q.0", {1});
  CHECK(reachOf(lowered) == want);
  for (const auto &p : lowered.params) CHECK(p.shared() == (p.block == "a"));
  // GradNorm measures on a's weight: q's loss never reaches b.0.weight, the last shared one.
  auto spec = specOf(lowered, {"p", "q"}, "gradnorm");
  spec.taskGradsStep = mtlcDummy;
  CHECK(mtlc::rt::Weighting::create(spec, 0)->describe() == "gradnorm(alpha=1.5) on a.0.weight");
}

TEST_CASE("param reach: MMoE experts are shared, each gate is its task's own", "[lower][reach]") {
  auto lowered = lowerExample("mmoe_synthetic.mtl");
  Reach want;
  for (int e = 0; e < 8; ++e) both(want, "experts.0." + std::to_string(e) + ".0", {0, 1});
  both(want, "experts.0.gate.y1", {0});
  both(want, "experts.0.gate.y2", {1});
  for (const char *tower : {"y1.0", "y1.2"}) both(want, tower, {0});
  for (const char *tower : {"y2.0", "y2.2"}) both(want, tower, {1});
  CHECK(reachOf(lowered) == want);
  auto spec = specOf(lowered, {"y1", "y2"}, "gradnorm");
  spec.taskGradsStep = mtlcDummy;
  CHECK(mtlc::rt::Weighting::create(spec, 0)->describe() == "gradnorm(alpha=1.5) on experts.0.7.0.weight");
}

TEST_CASE("param reach: DSelect-k's gates are their tasks' own, initialised as LibMTL's", "[lower][reach]") {
  auto lowered = lowerExample("dselect_synthetic.mtl");
  Reach want;
  for (int e = 0; e < 8; ++e) both(want, "experts.0." + std::to_string(e) + ".0", {0, 1});
  for (const char *part : {"z", "w"}) {
    both(want, std::string("experts.0.gate.y1.") + part, {0});
    both(want, std::string("experts.0.gate.y2.") + part, {1});
  }
  for (const char *tower : {"y1.0", "y1.2"}) both(want, tower, {0});
  for (const char *tower : {"y2.0", "y2.2"}) both(want, tower, {1});
  CHECK(reachOf(lowered) == want);
  int gates = 0;
  for (const auto &p : lowered.params) {
    if (p.name.find(".gate.") == std::string::npos) continue;
    ++gates;
    CHECK(p.init == mtlc::rt::Init::Uniform);
    const bool z = p.name.find(".z.") != std::string::npos;
    CHECK(p.bound == (z ? 1.0 / 100 : 0.05));  // gamma 1: z in (-gamma/100, gamma/100)
    const bool weight = p.name.size() > 7 && p.name.compare(p.name.size() - 7, 7, ".weight") == 0;
    // select 2, log2(8) = 3 bits: z has 6 rows, w 2; the input has 100 features.
    const std::vector<int64_t> shape = weight ? std::vector<int64_t>{z ? 6 : 2, 100} : std::vector<int64_t>{z ? 6 : 2};
    CHECK(p.shape == shape);
  }
  CHECK(gates == 8);
}

TEST_CASE("param reach: PLE below the top level feeds every reader through the shared gate", "[lower][reach]") {
  // Readers y1, y2; task z reads only the trunk. Level 0: the shared expert, both task experts
  // (mixed by the shared gate into level 1's shared input) and the shared gate reach y1 and y2;
  // each task gate reaches its task (its output is that task's level-1 input). Level 1 (top): the
  // shared expert reaches both, each task's expert and gate only its task.
  auto lowered = lowerText(R"(model p
input x : f32[6]
shared trunk = x -> dense(8) -> relu
shared extract = trunk -> ple(levels=2, shared=1, specific=1) { dense(4) -> relu }
task y1 { gate(extract) -> dense(1) loss mse }
task y2 { gate(extract) -> dense(1) loss mse }
task z { trunk -> dense(1) loss mse }
train { optimizer sgd(lr=0.1) batch 8 weighting gradnorm }
)");
  Reach want;
  both(want, "trunk.0", {0, 1, 2});
  both(want, "extract.0.0.shared.0.0", {0, 1});
  both(want, "extract.0.0.y1.0.0", {0, 1});
  both(want, "extract.0.0.y2.0.0", {0, 1});
  both(want, "extract.0.0.gate.y1", {0});
  both(want, "extract.0.0.gate.y2", {1});
  both(want, "extract.0.0.gate.shared", {0, 1});
  both(want, "extract.0.1.shared.0.0", {0, 1});
  both(want, "extract.0.1.y1.0.0", {0});
  both(want, "extract.0.1.y2.0.0", {1});
  both(want, "extract.0.1.gate.y1", {0});
  both(want, "extract.0.1.gate.y2", {1});
  both(want, "y1.0", {0});
  both(want, "y2.0", {1});
  both(want, "z.0", {2});
  CHECK(reachOf(lowered) == want);
  auto spec = specOf(lowered, {"y1", "y2", "z"}, "gradnorm");
  spec.taskGradsStep = mtlcDummy;
  CHECK(mtlc::rt::Weighting::create(spec, 0)->describe() == "gradnorm(alpha=1.5) on trunk.0.weight");
}

TEST_CASE("param reach: cross-stitch columns mix before the last stage", "[lower][reach]") {
  auto lowered = lowerText(R"(model c
input x : f32[6]
shared stitch = x -> cross_stitch { dense(4) -> relu ; dense(3) }
task y1 { column(stitch) -> dense(1) loss mse }
task y2 { column(stitch) -> dense(1) loss mse }
task z { x -> dense(1) loss mse }
train { optimizer sgd(lr=0.1) batch 8 weighting pcgrad }
)");
  Reach want;
  both(want, "stitch.0.0.y1.0", {0, 1});  // mixed into both columns by the unit after stage 0
  both(want, "stitch.0.0.y2.0", {0, 1});
  want["stitch.0.0.alpha"] = {0, 1};
  both(want, "stitch.0.1.y1.0", {0});     // the last stage: each column is its task's
  both(want, "stitch.0.1.y2.0", {1});
  both(want, "y1.0", {0});
  both(want, "y2.0", {1});
  both(want, "z.0", {2});
  CHECK(reachOf(lowered) == want);
  // gradnorm: z reaches no weight of the stitch, so no W fits; refused before training.
  auto spec = specOf(lowered, {"y1", "y2", "z"}, "gradnorm");
  spec.taskGradsStep = mtlcDummy;
  CHECK_THROWS_WITH(mtlc::rt::Weighting::create(spec, 0),
                    Catch::Contains("no parameter named `*.weight` is reached by all 3 tasks' losses (the last shared "
                                    "one, `stitch.0.0.y2.0.weight`, only by y1, y2)"));
}

TEST_CASE("param reach: mtan's stages are shared, attention and down modules each task's own", "[lower][reach]") {
  auto lowered = lowerText(R"(model m
input x : f32[1, 8, 8]
shared trunk = x -> relu -> mtan { conv2d(2, kernel=3, padding=1) ; maxpool(2) -> conv2d(3, kernel=1) }
task y1 { column(trunk) -> flatten -> dense(1) loss mse }
task y2 { column(trunk) -> flatten -> dense(1) loss mse }
train { optimizer sgd(lr=0.1) batch 8 weighting pcgrad }
)");
  Reach want;
  both(want, "trunk.1.stages.0.0", {0, 1});
  both(want, "trunk.1.stages.1.1", {0, 1});
  auto batchNorm = [&](const std::string &at, int task) {  // parameters and buffers
    for (const char *n : {".weight", ".bias", ".running_mean", ".running_var", ".num_batches_tracked"})
      want[at + n] = {task};
  };
  const std::vector<std::pair<std::string, int>> tasks{{"y1", 0}, {"y2", 1}};
  for (const auto &[t, i] : tasks) {
    for (const char *s : {"0", "1"}) {
      const std::string at = "trunk.1.attention." + t + "." + s;
      want[at + ".0.weight"] = {i};  // 1x1 convolutions without bias, each before a batchnorm
      want[at + ".3.weight"] = {i};
      batchNorm(at + ".1", i);
      batchNorm(at + ".4", i);
    }
    want["trunk.1.down." + t + ".0.0.weight"] = {i};
    batchNorm("trunk.1.down." + t + ".0.1", i);
    both(want, t + ".1", {i});
  }
  CHECK(reachOf(lowered) == want);
  // The shapes PyTorch's modules give them: stage 1's mask reads [p_1 ; f] (3 + 3 channels).
  std::map<std::string, std::vector<int64_t>> shapes;
  for (const auto &p : lowered.params) shapes[p.name] = p.shape;
  CHECK(shapes["trunk.1.attention.y2.1.0.weight"] == std::vector<int64_t>{3, 6, 1, 1});
  CHECK(shapes["trunk.1.attention.y2.0.3.weight"] == std::vector<int64_t>{2, 2, 1, 1});
  CHECK(shapes["trunk.1.down.y1.0.0.weight"] == std::vector<int64_t>{3, 2, 3, 3});
}
