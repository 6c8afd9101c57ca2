// jit::IncrementalCompiler (the REPL's compiler): a second compile of a module builds no kernel
// and reuses every one; a changed module builds only the kernels that changed; the entry points of
// every compile agree bit-for-bit with a plain jit::compile, and stay callable while their
// CompiledModule lives.
#include "Harness.h"

using namespace mtlc;
using namespace mtlc::test;
using Kind = ir::Output::Kind;

namespace {

// predict: head 0 = act(x·Wᵀ) · Vᵀ for a [5, 6] input, W [16, 6], V [3, 16].
struct Mlp {
  ir::Module module;
  explicit Mlp(OpKind act) {
    module.name = "inc";
    module.maxBatch = 8;
    module.functions.push_back(std::make_unique<ir::Function>());
    ir::Function &f = *module.functions.back();
    f.name = "predict";
    ir::Builder b(f);
    Node *x = b.input(0, batched({6}));
    module.inputs.push_back(x->type);
    Node *w = b.param(0, {16, 6});
    Node *v = b.param(1, {3, 16});
    module.params.push_back({"w", {16, 6}, 0});
    module.params.push_back({"v", {3, 16}, 96});
    module.paramFloats = 96 + 48;
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
