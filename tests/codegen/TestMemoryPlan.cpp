// The memory plan: external leaves, views, slots, and outputs written in place or copied.
#include "Harness.h"

using namespace mtlc;
using namespace mtlc::test;
using Base = passes::Storage::Base;
using Kind = ir::Output::Kind;

TEST_CASE("memory plan: leaves are external, values get aligned slots", "[codegen][plan]") {
  Harness h(5);
  Node *x = h.input({3, 4});                 // batched, 12 per sample
  Node *w = h.param({7, 12});
  Node *flat = h.b.reshape(x, batched({12}));
  Node *y = h.b.matmul(flat, w, false, true);  // [n,7]
  Node *r = h.b.unary(OpKind::Relu, y);
  Node *c = h.b.constant(2.0);
  Node *lw = h.lossWeight(0);
  Node *lab = h.label({7});
  Node *loss = h.b.loss(OpKind::MSE, r, lab);
  Node *total = h.b.mul(lw, loss);
  Node *scaled = h.b.mul(c, total);
  h.bind(loss, Kind::TaskLoss, 0);
  h.bind(scaled, Kind::TotalLoss, 0);
  h.bind(r, Kind::Head, 0);

  passes::MemoryPlan p = passes::planMemory(h.module, h.fn, nullptr, codegen::kernelScratchFloats);
  CHECK(p.storage[x->id] == passes::Storage{Base::Input, 0, 0});
  CHECK(p.storage[w->id] == passes::Storage{Base::Params, 0, h.module.params[0].offset});
  CHECK(p.storage[lab->id] == passes::Storage{Base::Label, 0, 0});
  CHECK(p.storage[lw->id] == passes::Storage{Base::LossWeights, 0, 0});
  CHECK(p.offset[x->id] == -1);
  CHECK(p.storage[flat->id] == p.storage[x->id]);  // a view of the input
  // Outputs in place.
  CHECK(p.storage[r->id] == passes::Storage{Base::Output, 0, 0});
  CHECK(p.storage[loss->id] == passes::Storage{Base::Losses, 0, 0});
  CHECK(p.storage[scaled->id] == passes::Storage{Base::Losses, 0, 1});  // losses[T], T = 1
  CHECK(p.copies.empty());
  // Slots: y (batched, 7·maxBatch floats), c, total; each 16-aligned. y is dead after relu
  // reads it, so the constant after it reuses y's slot; total is live with c, so they differ.
  CHECK(p.storage[y->id].base == Base::Acts);
  CHECK(p.offset[y->id] % passes::kSlotAlign == 0);
  CHECK(p.offset[c->id] == p.offset[y->id]);
  CHECK(p.offset[c->id] % passes::kSlotAlign == 0);
  CHECK(p.offset[total->id] % passes::kSlotAlign == 0);
  CHECK(p.offset[total->id] != p.offset[c->id]);
  CHECK(p.actsFloats % passes::kSlotAlign == 0);
  CHECK(p.actsFloats >= p.offset[total->id] + 1);
  codegen::CodegenOptions unfused;
  unfused.fuse = false;
  CHECK(codegen::scheduleModule(h.module, unfused).actsFloats == p.actsFloats);
}

TEST_CASE("memory plan: grads in place, second bindings and views copied", "[codegen][plan]") {
  Harness h(4);
  Node *x = h.input({6});
  Node *w = h.param({6});
  Node *g = h.b.reduceBatch(x);                 // [6], the gradient of w
  Node *view = h.b.reshape(x, batched({2, 3}));
  h.param({2, 3});
  h.bind(g, Kind::Grad, 0);
  h.bind(g, Kind::Head, 0);                     // type mismatch for verify, but plan copies
  h.bind(view, Kind::Head, 1);
  (void)w;
  passes::MemoryPlan p = passes::planMemory(h.module, h.fn, nullptr, codegen::kernelScratchFloats);
  CHECK(p.storage[g->id] == passes::Storage{Base::Grads, 0, h.module.params[0].offset});
  REQUIRE(p.copies.size() == 2);
  CHECK(p.copies[0].value == g);
  CHECK(p.copies[0].to == passes::Storage{Base::Output, 0, 0});
  CHECK(p.copies[1].value == view);
  CHECK(p.copies[1].to == passes::Storage{Base::Output, 1, 0});
}

TEST_CASE("outputs: grads overwrite, copies land, views alias", "[codegen][plan]") {
  Harness h(6);
  Node *x = h.input({2, 3});
  Node *w = h.param({2, 3});
  Node *g = h.b.reduceBatch(x);
  Node *view = h.b.reshape(x, batched({6}));
  Node *tw = h.b.unary(OpKind::Tanh, view);
  h.bind(g, Kind::Grad, 0);
  h.bind(view, Kind::Head, 0);  // a view of an input: copied into outputs[0]
  h.bind(tw, Kind::Head, 1);
  (void)w;
  h.fillUniform(x);
  auto xs = values(h, x);
  for (int rep = 0; rep < 2; ++rep) {  // a second call must not accumulate into the grads
    h.run(4);
    std::vector<double> want(6, 0.0), head0, head1;
    for (int s = 0; s < 4; ++s)
      for (int e = 0; e < 6; ++e) {
        want[e] += xs[s * 6 + e];
        head0.push_back(xs[s * 6 + e]);
        head1.push_back(std::tanh(xs[s * 6 + e]));
      }
    requireClose(h.read(g), want, 1e-6, 1e-6, "grad");
    std::vector<double> out0(h.outputBuffer(0).begin(), h.outputBuffer(0).begin() + 24);
    std::vector<double> out1(h.outputBuffer(1).begin(), h.outputBuffer(1).begin() + 24);
    requireClose(out0, head0, 0, 0, "copied head");
    requireClose(out1, head1, 1e-6, 1e-7, "head");
  }
}
