// jit::IncrementalCompiler (the REPL's compiler): a second compile of a module builds no kernel
// and reuses every one; a changed module builds only the kernels that changed; the entry points of
// every compile agree bit-for-bit with a plain jit::compile, and stay callable while their
// CompiledModule lives.
#include "Harness.h"

#include "runtime/parallel/ThreadPool.h"

#include <functional>
#include <optional>

using namespace mtlc;
using namespace mtlc::test;
using Kind = ir::Output::Kind;

namespace {

// predict: head 0 = act(x·Wᵀ) · Vᵀ for a [5, 6] input, W [hidden, 6], V [3, hidden].
struct Mlp {
  ir::Module module;
  explicit Mlp(OpKind act, int64_t hidden = 16) {
    module.name = "inc";
    module.maxBatch = 8;
    module.functions.push_back(std::make_unique<ir::Function>());
    ir::Function &f = *module.functions.back();
    f.name = "predict";
    ir::Builder b(f);
    Node *x = b.input(0, batched({6}));
    module.inputs.push_back(x->type);
    Node *w = b.param(0, {hidden, 6});
    Node *v = b.param(1, {3, hidden});
    module.params.push_back({"w", {hidden, 6}, 0});
    module.params.push_back({"v", {3, hidden}, 6 * hidden});
    module.paramFloats = 9 * hidden;
    Node *y = b.matmul(b.unary(act, b.matmul(x, w, false, true)), v, false, true);
    module.heads.push_back(y->type);
    f.outputs.push_back({Kind::Head, 0, y});
  }
};

std::vector<float> run(const jit::CompiledModule &c, const std::vector<float> &params, const std::vector<float> &x) {
  std::vector<float> acts(size_t(c.actsFloats) + 16), out(8 * 3, -1);
  const float *inputs[] = {x.data()};
  float *outputs[] = {out.data()};
  mtlc_args a{};
  a.params = const_cast<float *>(params.data());
  a.acts = acts.data();
  a.inputs = inputs;
  a.outputs = outputs;
  a.n = 5;
  c.entry("predict")(&a);
  return std::vector<float>(out.begin(), out.begin() + 15);
}

}  // namespace

TEST_CASE("incremental compiles reuse unchanged kernels and agree with a plain compile", "[codegen][jit]") {
  std::vector<float> params(144), x(8 * 6);
  for (size_t i = 0; i < params.size(); ++i) params[i] = float(std::sin(0.37 * double(i)));
  for (size_t i = 0; i < x.size(); ++i) x[i] = float(std::cos(0.11 * double(i)));
  jit::CompileOptions o;
  Mlp relu(OpKind::Relu), tanh(OpKind::Tanh);

  jit::IncrementalCompiler inc;
  jit::CompiledModule first = inc.compile(relu.module, o);
  CHECK(first.kernelsCompiled >= 2);
  CHECK(first.kernelsReused == 0);
  CHECK(run(first, params, x) == run(jit::compile(relu.module, o), params, x));

  jit::CompiledModule again = inc.compile(relu.module, o);
  CHECK(again.kernelsCompiled == 0);
  CHECK(again.kernelsReused == first.kernelsCompiled);
  CHECK(run(again, params, x) == run(first, params, x));

  // tanh instead of relu: the fused matmul+activation kernel is new, the second matmul is reused.
  jit::CompiledModule changed = inc.compile(tanh.module, o);
  CHECK(changed.kernelsCompiled >= 1);
  CHECK(changed.kernelsReused >= 1);
  CHECK(run(changed, params, x) == run(jit::compile(tanh.module, o), params, x));
  // The earlier programs are still callable while their CompiledModule lives.
  CHECK(run(first, params, x) == run(again, params, x));
  CHECK(inc.cachedKernels() == size_t(first.kernelsCompiled + changed.kernelsCompiled));
}

namespace {

// A module whose kernels depend on its largest batch: predict writes head 0 = relu(x·Wᵀ)·Vᵀ
// [n, 128] (x [n, 64], W [256, 64], V [128, 256]: GEMMs blocked by the batch), head 1 =
// conv3x3(img, K) [n, 3, 5, 5], and, as parameter gradients, Yᵀ·H [128, 256] (a GEMM whose K is
// the batch: its blocking and form follow maxBatch) and conv_bwd_filter(img, head 1) (summed over
// the batch's chunks, whose count follows maxBatch).
struct BatchBound {
  static constexpr int64_t kV = 256 * 64, kK = kV + 128 * 256;  // parameter offsets
  ir::Module module;
  explicit BatchBound(int64_t maxBatch) {
    module.name = "bb";
    module.maxBatch = maxBatch;
    module.functions.push_back(std::make_unique<ir::Function>());
    ir::Function &f = *module.functions.back();
    f.name = "predict";
    ir::Builder b(f);
    Node *x = b.input(0, batched({64}));
    Node *img = b.input(1, batched({2, 5, 5}));
    module.inputs = {x->type, img->type};
    Node *w = b.param(0, {256, 64});
    Node *v = b.param(1, {128, 256});
    Node *k = b.param(2, {3, 2, 3, 3});
    module.params.push_back({"w", {256, 64}, 0});
    module.params.push_back({"v", {128, 256}, kV});
    module.params.push_back({"k", {3, 2, 3, 3}, kK});
    module.paramFloats = kK + 54;
    Node *h = b.unary(OpKind::Relu, b.matmul(x, w, false, true));
    Node *y = b.matmul(h, v, false, true);
    Node *c = b.conv2d(img, k, 1, 1);
    module.heads = {y->type, c->type};
    f.outputs.push_back({Kind::Head, 0, y});
    f.outputs.push_back({Kind::Head, 1, c});
    f.outputs.push_back({Kind::Grad, 1, b.matmul(y, h, true, false)});
    f.outputs.push_back({Kind::Grad, 2, b.conv2dBwdFilter(img, c, k->type, 1, 1)});
  }
};

// Every value predict writes for a batch of n (heads, then the gradient arena), on `threads`.
std::vector<float> runBatchBound(const jit::CompiledModule &c, int64_t n, int threads) {
  const size_t floats = BatchBound::kK + 54;
  std::vector<float> params(floats), grads(floats, -1), acts(size_t(c.actsFloats) + 16);
  std::vector<float> x(size_t(n) * 64), img(size_t(n) * 50), y(size_t(n) * 128, -1), conv(size_t(n) * 75, -1);
  for (size_t i = 0; i < params.size(); ++i) params[i] = 0.1f * float(std::sin(0.37 * double(i)));
  for (size_t i = 0; i < x.size(); ++i) x[i] = float(std::cos(0.11 * double(i)));
  for (size_t i = 0; i < img.size(); ++i) img[i] = float(std::sin(0.013 * double(i) + 0.5));
  const float *inputs[] = {x.data(), img.data()};
  float *outputs[] = {y.data(), conv.data()};
  mtlc_args a{};
  a.params = params.data();
  a.grads = grads.data();
  a.acts = acts.data();
  a.inputs = inputs;
  a.outputs = outputs;
  a.n = n;
  rt::ThreadPool pool(threads);
  if (threads > 1) pool.attach(a);
  c.entry("predict")(&a);
  std::vector<float> all = y;
  all.insert(all.end(), conv.begin(), conv.end());
  all.insert(all.end(), grads.begin(), grads.end());
  return all;
}

}  // namespace

TEST_CASE("an incremental compile after a change of batch, options or target equals a fresh compile bit for bit",
          "[codegen][jit]") {
  // The kernel cache's key must hold everything the generated code depends on: each step changes
  // one input of codegen (the largest batch, in both directions; tiling, split and parallel
  // overrides; fusion; the target's vector shape and masked-memory form; compile threads) and the
  // incremental compile, which may reuse the kernels of every earlier step, must give exactly
  // what a fresh compile of the same module gives.
  struct Step {
    const char *what;
    int64_t maxBatch;
    std::function<void(jit::CompileOptions &)> set;
    int threads = 1;  // the runtime pool's
  };
  auto none = [](jit::CompileOptions &) {};
  const std::vector<Step> steps = {
      {"batch 64", 64, none},
      {"batch 64 -> 1000", 1000, none},
      {"batch 1000 -> 64", 64, none},
      {"batch 64 -> 1", 1, none},
      {"batch 1 -> 300", 300, none},
      {"3 threads, parallel always", 300, [](jit::CompileOptions &o) { o.codegen.parallelAlways = true; }, 3},
      {"3 threads, parallel by cost", 300, none, 3},
      {"gemm split by columns", 300, [](jit::CompileOptions &o) { o.codegen.gemmSplit = 2; }, 3},
      {"gemm split by rows", 300, [](jit::CompileOptions &o) { o.codegen.gemmSplit = 1; }, 3},
      {"gemm cache blocks", 300, [](jit::CompileOptions &o) { o.codegen.gemmKC = 16; }},
      {"gemm packed", 300, [](jit::CompileOptions &o) { o.codegen.gemmKind = codegen::GemmKind::Packed; }},
      {"gemm axpy", 300, [](jit::CompileOptions &o) { o.codegen.gemmKind = codegen::GemmKind::Axpy; }},
      {"no fusion", 300, [](jit::CompileOptions &o) { o.fuse = false; }},
      {"target generic", 300, [](jit::CompileOptions &o) { o.target = "generic"; }},
      {"target avx2", 300, [](jit::CompileOptions &o) { o.target = "avx2"; }},
      {"target zen-avx2", 300, [](jit::CompileOptions &o) { o.target = "zen-avx2"; }},
      {"target avx512", 300, [](jit::CompileOptions &o) { o.target = "avx512"; }},
      {"target avx512 -> host, 4 compile threads", 300, [](jit::CompileOptions &o) { o.threads = 4; }},
      {"unoptimised", 300, [](jit::CompileOptions &o) { o.optimize = false; }},
      {"optimised again, batch 7", 7, none},
  };
  jit::IncrementalCompiler inc;
  std::vector<jit::CompiledModule> alive;  // earlier programs stay loaded: their kernels stay cached
  for (const Step &s : steps) {
    INFO(s.what);
    jit::CompileOptions o;
    o.threads = 1;
    s.set(o);
    BatchBound net(s.maxBatch);
    jit::CompiledModule incremental = inc.compile(net.module, o);
    jit::CompiledModule fresh = jit::compile(net.module, o);
    for (int64_t n : {s.maxBatch, std::min<int64_t>(s.maxBatch, 5)}) {
      INFO("n = " << n);
      CHECK(runBatchBound(incremental, n, s.threads) == runBatchBound(fresh, n, s.threads));
    }
    alive.push_back(std::move(incremental));
  }
}

TEST_CASE("kernels that no live module calls are unloaded and leave the cache", "[codegen][jit]") {
  jit::CompileOptions o;
  std::vector<float> params(9 * 40), x(8 * 6);
  for (size_t i = 0; i < params.size(); ++i) params[i] = float(std::sin(0.37 * double(i)));
  for (size_t i = 0; i < x.size(); ++i) x[i] = float(std::cos(0.11 * double(i)));
  jit::IncrementalCompiler inc;
  // A kernel that a live module calls stays, with the kernels compiled alongside it.
  Mlp relu(OpKind::Relu), tanh(OpKind::Tanh);
  std::optional<jit::CompiledModule> first = inc.compile(relu.module, o);
  std::optional<jit::CompiledModule> second = inc.compile(tanh.module, o);
  REQUIRE(second->kernelsReused >= 1);
  const size_t both = size_t(first->kernelsCompiled + second->kernelsCompiled);
  CHECK(inc.cachedKernels() == both);
  first.reset();
  CHECK(inc.cachedKernels() == both);
  CHECK(run(*second, params, x) == run(jit::compile(tanh.module, o), params, x));
  second.reset();
  CHECK(inc.cachedKernels() == 0);
  // A long session of redefinitions (a new width each time, so no kernel repeats) holds the
  // kernels of the live program only, however many it compiled before.
  std::optional<jit::CompiledModule> live;
  for (int64_t hidden = 16; hidden < 40; ++hidden) {
    Mlp next(OpKind::Relu, hidden);
    jit::CompiledModule compiled = inc.compile(next.module, o);
    live = std::move(compiled);
    CHECK(inc.cachedKernels() == size_t(live->kernelsCompiled + live->kernelsReused));
    if (hidden % 8 == 0) CHECK(run(*live, params, x) == run(jit::compile(next.module, o), params, x));
  }
}
