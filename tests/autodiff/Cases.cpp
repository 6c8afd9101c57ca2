// The gradient-check cases: for every op, a model with parameters UPSTREAM of the op (so the
// op's data-path backward rule carries their gradient), the op with its own parameters if it has
// any (checked directly), then a head projection and a loss:
//     x (input) -> dense or conv [P1] -> OP [its params] -> (flatten) -> dense head -> loss
//
// Non-differentiable points are avoided by construction: the driver redraws the data until the
// double reference finds every relu / leaky_relu input, every maxpool window's top-two gap and
// every l1 residual at least Case::minMargin (1e-3) away from the kink — a thousand times the
// finite-difference step, far beyond float rounding. No case places relu before maxpool without
// a positive bias: all-zero windows would tie (harmless for the gradient, but not checkable).
//
// Tolerances: 1e-4*|fd| + 1e-5 unless a case says otherwise.
#include "GradCheck.h"

#include <tuple>

namespace mtlc::test::gradcheck {

namespace {

ir::Type vec(int64_t k) { return ir::Type{{k}, true}; }

Node *flatten(Net &net, Node *x) {
  return x->type.dims.size() == 1 ? x : net.b.reshape(x, vec(x->type.elements()));
}

// The usual tail: flatten, a dense head of `width`, MSE.
void mseHead(Net &net, Node *x, int64_t width = 3) {
  net.task(OpKind::MSE, net.dense(flatten(net, x), width, "head"));
}

// x[5] -> dense(8) [P1] -> op -> dense head -> MSE.
Case activation(const std::string &group, const std::string &name, OpKind op, double f = 0) {
  return {group, name, [=](Net &net) {
            Node *h = net.dense(net.input({5}), 8, "fc1");
            mseHead(net, net.b.unary(op, h, f));
          }};
}

// A DSelect-k gate as lower/Lower.cpp builds it: z = dense(x) [k·m], w = softmax(dense(x)) [k];
// selector i's weights over the 2^m experts are the products of S(z_ij) or 1 − S(z_ij) per bit,
// built from the least significant bit up by concat (the more significant half second); the gate
// Σ_i w_i·r_i mixes E dense experts. A negative γ swaps S and 1 − S (the op's f flips the sign).
Case dselectCase(int64_t k, int64_t E, double gamma) {
  return {"dselect", "k " + std::to_string(k) + ", " + std::to_string(E) + " experts, gamma " + std::to_string(gamma),
          [=](Net &net) {
            int64_t m = 0;
            while ((int64_t(1) << m) < E) ++m;
            Node *x = net.input({4});
            Node *z = net.dense(x, k * m, "z", {-1, 1});
            Node *on = net.b.unary(OpKind::SmoothStep, z, gamma), *off = net.b.unary(OpKind::SmoothStep, z, -gamma);
            std::vector<Node *> selectors;
            for (int64_t i = 0; i < k; ++i) {
              Node *r = nullptr;
              for (int64_t j = m - 1; j >= 0; --j) {
                Node *s1 = net.b.slice(on, i * m + j, 1), *s0 = net.b.slice(off, i * m + j, 1);
                r = r ? net.b.concat({net.b.mix(s0, {r}), net.b.mix(s1, {r})}) : net.b.concat({s0, s1});
              }
              selectors.push_back(r);
            }
            Node *gate = net.b.mix(net.b.softmax(net.dense(x, k, "w")), selectors);
            std::vector<Node *> experts;
            for (int64_t e = 0; e < E; ++e) experts.push_back(net.dense(x, 3, "expert" + std::to_string(e)));
            mseHead(net, net.b.mix(gate, experts));
          }};
}

// x[2,8,7] -> conv(2, 3x3) [P1] -> [2,6,5] -> pool(k, stride) -> flatten -> dense(3) -> MSE.
Case pooling(OpKind op, int64_t k, int64_t stride, const std::string &note) {
  std::string group = op == OpKind::MaxPool ? "maxpool" : "avgpool";
  return {group, group + " k" + std::to_string(k) + " s" + std::to_string(stride) + note,
          [=](Net &net) {
            Node *c = net.conv(net.input({2, 8, 7}), 2, 3, 3, 1, 0, "conv1");
            Node *p = op == OpKind::MaxPool ? net.b.maxPool(c, k, stride) : net.b.avgPool(c, k, stride);
            mseHead(net, p);
          }};
}

// A CNN's trunk: x -> conv 3x3 (its weight and bias the parameters checked) -> act -> maxpool ->
// flatten -> dense(4) -> cross-entropy.
Case trunk(const std::string &name, std::vector<int64_t> x, Range xr, int64_t O, int64_t stride, int64_t pad,
           OpKind act, Range w, Range b, int64_t poolK, int64_t poolStride) {
  return {"maxpool", name, [=](Net &net) {
            Node *in = net.input(x, xr);
            Node *W = net.param("conv1.weight", {O, x[0], 3, 3}, w);
            Node *bias = net.param("conv1.bias", {O}, b);
            Node *c = net.b.unary(act, net.b.biasAdd(net.b.conv2d(in, W, stride, pad), bias));
            net.task(OpKind::CrossEntropy, net.dense(flatten(net, net.b.maxPool(c, poolK, poolStride)), 4, "head"));
          }};
}

// x[2,5,4] -> conv(3, 3x3) [P1] -> [3,3,2] -> conv_transpose2d(2, khxkw, stride, pad, output_padding)
// + bias -> flatten -> dense(2) -> MSE.
Case transposed(int64_t kh, int64_t kw, int64_t stride, int64_t pad, int64_t outPad, const std::string &note = "") {
  return {"conv_transpose2d",
          "conv_transpose2d " + std::to_string(kh) + "x" + std::to_string(kw) + " s" + std::to_string(stride) +
              " p" + std::to_string(pad) + " op" + std::to_string(outPad) + " on [3,3,2]" + note,
          [=](Net &net) {
            Node *c1 = net.conv(net.input({2, 5, 4}), 3, 3, 3, 1, 0, "conv1");
            Node *w = net.param("up.weight", {3, 2, kh, kw}, {-0.5, 0.5});
            Node *bias = net.param("up.bias", {2}, {-0.3, 0.3});
            mseHead(net, net.b.biasAdd(net.b.convTranspose2d(c1, w, stride, pad, outPad), bias), 2);
          }};
}

// x[2,7,6] -> conv(3, 3x3) [P1] -> [3,5,4] -> conv(2, khxkw, stride, pad) -> flatten -> dense(2) -> MSE.
Case convolution(int64_t kh, int64_t kw, int64_t stride, int64_t pad, const std::string &note = "") {
  return {"conv2d",
          "conv " + std::to_string(kh) + "x" + std::to_string(kw) + " s" + std::to_string(stride) +
              " p" + std::to_string(pad) + " on [3,5,4]" + note,
          [=](Net &net) {
            Node *c1 = net.conv(net.input({2, 7, 6}), 3, 3, 3, 1, 0, "conv1");
            Node *c2 = net.conv(c1, 2, kh, kw, stride, pad, "conv2");
            mseHead(net, c2, 2);
          }};
}

// op(U)*op(V) = W [5,3], a weight computed from two parameters, then h[n,5]*W.
Case factorized(bool tA, bool tB) {
  return {"matmul",
          std::string("unbatched product U*V with transA=") + (tA ? "1" : "0") + " transB=" + (tB ? "1" : "0"),
          [=](Net &net) {
            Node *h = net.dense(net.input({4}), 5, "fc1");
            Node *U = net.param("U", tA ? std::vector<int64_t>{2, 5} : std::vector<int64_t>{5, 2});
            Node *V = net.param("V", tB ? std::vector<int64_t>{3, 2} : std::vector<int64_t>{2, 3});
            Node *W = net.b.matmul(U, V, tA, tB);  // [5,3]
            Node *y = net.b.matmul(h, W, false, false);
            net.task(OpKind::MSE, net.dense(y, 3, "head"));
          }};
}

std::vector<Case> makeCases() {
  std::vector<Case> cs;
  using K = OpKind;

  // ---- dense: matmul (x*W^T) + bias_add ----
  cs.push_back({"dense", "x[5] -> dense 6 -> dense 3 -> mse", [](Net &net) {
                  mseHead(net, net.dense(net.input({5}), 6, "fc1"));
                }});
  cs.push_back({"dense", "dense over a [2,3,2] sample (matmul's [n, 12] view) -> dense 4", [](Net &net) {
                  Node *c = net.conv(net.input({2, 4, 3}), 2, 2, 2, 1, 0, "conv1");  // [2,3,2]
                  Node *h = net.b.biasAdd(net.b.matmul(c, net.param("fc.weight", {4, 12}), false, true),
                                          net.param("fc.bias", {4}));
                  mseHead(net, h);
                }});

  // ---- matmul: every transpose flag over the 2-D views ----
  cs.push_back({"matmul", "x*W without transpose (W [5,3])", [](Net &net) {
                  Node *h = net.dense(net.input({4}), 5, "fc1");
                  Node *y = net.b.matmul(h, net.param("W", {5, 3}), false, false);
                  net.task(K::MSE, y);
                }});
  for (bool tA : {false, true})
    for (bool tB : {false, true}) cs.push_back(factorized(tA, tB));
  cs.push_back({"matmul", "batch-contracting a^T*b (transA over batched operands) used as a weight",
                [](Net &net) {
                  Node *x = net.input({4});
                  Node *a = net.dense(x, 4, "a"), *bb = net.dense(x, 3, "b"), *c = net.dense(x, 4, "c");
                  Node *G = net.b.matmul(a, bb, true, false);  // [4,3], sums over the n samples
                  net.task(K::MSE, net.b.matmul(c, G, false, false));
                }});

  // ---- conv2d: strides, paddings, kernel shapes, non-square input ----
  cs.push_back(convolution(3, 3, 1, 0));
  cs.push_back(convolution(3, 3, 1, 1));
  cs.push_back(convolution(3, 3, 2, 0));
  cs.push_back(convolution(3, 3, 2, 1));
  cs.push_back(convolution(2, 3, 1, 1, " (non-square kernel)"));
  cs.push_back(convolution(1, 1, 1, 0, " (1x1: no im2col)"));
  cs.push_back(convolution(1, 1, 2, 0, " (1x1 strided)"));
  cs.push_back({"conv2d", "conv 3x3 s2 p1 straight on a [1,9,8] input", [](Net &net) {
                  mseHead(net, net.conv(net.input({1, 9, 8}), 2, 3, 3, 2, 1, "conv1"));
                }});
  // A first layer over one channel (the direct forward, EmitConvDirect.cpp): rows of 19 and 17
  // outputs (a vector and an overlapping one), unpadded and padded.
  cs.push_back({"conv2d", "conv 3x3 s1 over one channel [1,5,21], p0 and p1, to a maxpool", [](Net &net) {
                  Node *c = net.conv(net.input({1, 5, 21}), 3, 3, 3, 1, 0, "first");  // [3,3,19]
                  Node *d = net.conv(net.input({1, 4, 17}), 2, 3, 3, 1, 1, "padded");  // [2,4,17]
                  mseHead(net, net.b.maxPool(c, 2, 2));
                  mseHead(net, d);
                }});
  // The ResNet geometries: a 7x7 stride-2 stem padded by 3, a "same" 7x7, a 1x1 stride-2 shortcut
  // on an odd extent.
  cs.push_back(convolution(7, 7, 2, 3, " (ResNet stem)"));
  cs.push_back(convolution(7, 7, 1, 3, " (same size)"));
  cs.push_back({"conv2d", "conv 7x7 s2 p3 then 1x1 s2 on a [2,11,10] input", [](Net &net) {
                  Node *c = net.conv(net.input({2, 11, 10}), 3, 7, 7, 2, 3, "stem");  // [3,6,5]
                  mseHead(net, net.conv(c, 2, 1, 1, 2, 0, "shortcut"));               // [2,3,3]
                }});

  // ---- batchnorm (training: batch statistics, biased variance) ----
  // ---- conv_transpose2d: the decoder's x2 (2×2 s2, 3×3 s2 p1 op1), stride 1, 1×1 ----
  cs.push_back(transposed(2, 2, 2, 0, 0));
  cs.push_back(transposed(3, 3, 2, 1, 1));
  cs.push_back(transposed(3, 3, 1, 1, 0));
  cs.push_back(transposed(3, 2, 3, 2, 2, " (non-square kernel, padding above the taps)"));
  cs.push_back(transposed(1, 1, 1, 0, 0, " (1x1: no col2im)"));
  cs.push_back({"conv_transpose2d", "conv 3x3 s2 -> conv_transpose2d 3x3 s2 p1 op1 -> relu: back to [2,6,5]",
                [](Net &net) {
                  Node *c = net.conv(net.input({2, 6, 5}), 3, 3, 3, 2, 1, "down");  // [3,3,3]
                  Node *w = net.param("up.weight", {3, 2, 3, 3}, {-0.5, 0.5});
                  Node *u = net.b.convTranspose2d(c, w, 2, 1, 1);  // [2,6,6]
                  mseHead(net, net.b.unary(OpKind::Relu, u));
                }});
  cs.push_back({"batchnorm", "conv -> batchnorm over [3,5,4] channels", [](Net &net) {
                  Node *c = net.conv(net.input({2, 7, 6}), 3, 3, 3, 1, 0, "conv1");
                  mseHead(net, net.batchNorm(c, "bn"));
                }});
  cs.push_back({"batchnorm", "dense -> batchnorm over [6] features -> tanh", [](Net &net) {
                  Node *h = net.dense(net.input({5}), 6, "fc1");
                  mseHead(net, net.b.unary(K::Tanh, net.batchNorm(h, "bn")));
                }});
  cs.push_back({"batchnorm", "[3,5,4] channels, eps 0.5 (eps must be the node's)", [](Net &net) {
                  Node *c = net.conv(net.input({2, 7, 6}), 3, 3, 3, 1, 0, "conv1");
                  mseHead(net, net.batchNorm(c, "bn", 0.5));
                }});
  {
    Case one{"batchnorm", "one sample: statistics over the plane alone", [](Net &net) {
               Node *c = net.conv(net.input({2, 7, 6}), 3, 3, 3, 1, 1, "conv1");
               mseHead(net, net.batchNorm(c, "bn"));
             }};
    one.n = 1;
    cs.push_back(one);
  }
  cs.push_back({"batchnorm", "two tasks through conv -> batchnorm -> conv -> batchnorm", [](Net &net) {
                  Node *c = net.batchNorm(net.conv(net.input({2, 7, 6}), 3, 3, 3, 1, 1, "conv1"), "bn1");
                  c = net.batchNorm(net.conv(c, 2, 3, 3, 2, 1, "conv2"), "bn2");
                  net.task(K::MSE, net.dense(flatten(net, c), 2, "a"));
                  net.task(K::CrossEntropy, net.dense(flatten(net, c), 3, "b"), 0.5);
                }});

  // ---- global_avgpool, upsample ----
  cs.push_back({"global_avgpool", "conv -> global_avgpool [3,5,4] -> [3]", [](Net &net) {
                  mseHead(net, net.b.globalAvgPool(net.conv(net.input({2, 7, 6}), 3, 3, 3, 1, 0, "conv1")));
                }});
  for (auto [scale, mode, name] : {std::tuple{2, ir::UpsampleMode::Nearest, "nearest x2"},
                                   std::tuple{3, ir::UpsampleMode::Nearest, "nearest x3"},
                                   std::tuple{2, ir::UpsampleMode::Bilinear, "bilinear x2"},
                                   std::tuple{3, ir::UpsampleMode::Bilinear, "bilinear x3"}}) {
    int64_t s = scale;
    ir::UpsampleMode m = mode;
    cs.push_back({"upsample", std::string("conv -> upsample ") + name + " -> conv on a non-square plane",
                  [s, m](Net &net) {
                    Node *c = net.conv(net.input({2, 6, 5}), 2, 3, 3, 1, 0, "conv1");  // [2,4,3]
                    mseHead(net, net.conv(net.b.upsample(c, s, m), 2, 3, 3, 2, 1, "conv2"));
                  }});
  }

  // ---- pools: no padding, floor extents (5 -> 2 at k2 s2 drops a column), overlapping windows ----
  for (K op : {K::MaxPool, K::AvgPool}) {
    cs.push_back(pooling(op, 2, 2, " (last column outside every window)"));
    cs.push_back(pooling(op, 3, 3, ""));
    cs.push_back(pooling(op, 3, 2, " (overlapping)"));
    cs.push_back(pooling(op, 2, 1, " (overlapping)"));
    cs.push_back(pooling(op, 3, 1, " (overlapping)"));
  }
  cs.push_back(trunk("conv -> relu -> maxpool 2 (the fashion trunk; bias keeps windows positive)",
                     {1, 8, 8}, {0, 1}, 3, 1, 0, K::Relu, {-0.3, 0.3}, {0.6, 0.9}, 2, 2));
  // The pool's and activation's gradients run per sample inside the filter and bias gradients
  // (passes/Fusion.h, per-sample prologue): odd extents with a leftover row and column, strided
  // and padded convolutions, overlapping windows, a tanh instead of the relu.
  cs.push_back(trunk("conv 3x3 s1 [2,9,8] -> relu -> maxpool 2 over [3,7,6] (a leftover row)",
                     {2, 9, 8}, {0, 1}, 3, 1, 0, K::Relu, {-0.3, 0.3}, {0.6, 0.9}, 2, 2));
  cs.push_back(trunk("conv 3x3 s2 p1 [1,11,9] -> tanh -> maxpool 3 s2 over [4,6,5] (overlapping windows)",
                     {1, 11, 9}, {-1, 1}, 4, 2, 1, K::Tanh, {-0.5, 0.5}, {-0.2, 0.2}, 3, 2));

  // ---- reshape ----
  cs.push_back({"reshape", "flatten [3,5,4] -> [60]", [](Net &net) {
                  mseHead(net, net.conv(net.input({2, 5, 4}), 3, 3, 3, 1, 1, "conv1"));
                }});
  cs.push_back({"reshape", "[6] -> [2,3] -> bias_add over 2 channels -> tanh -> [6]", [](Net &net) {
                  Node *h = net.b.reshape(net.dense(net.input({4}), 6, "fc1"), ir::Type{{2, 3}, true});
                  Node *t = net.b.unary(K::Tanh, net.b.biasAdd(h, net.param("bias2", {2})));
                  mseHead(net, net.b.reshape(t, vec(6)));
                }});
  cs.push_back({"reshape", "unflatten [12] -> [3,2,2] -> conv 2x2", [](Net &net) {
                  Node *h = net.b.reshape(net.dense(net.input({4}), 12, "fc1"), ir::Type{{3, 2, 2}, true});
                  mseHead(net, net.conv(h, 2, 2, 2, 1, 0, "conv2"), 2);
                }});

  // ---- activations ----
  cs.push_back(activation("relu", "dense -> relu", K::Relu));
  cs.push_back({"relu", "conv -> relu over [C,H,W]", [](Net &net) {
                  mseHead(net, net.b.unary(K::Relu, net.conv(net.input({2, 5, 4}), 3, 3, 3, 1, 1, "conv1")));
                }});
  cs.push_back(activation("leaky_relu", "slope 0.01", K::LeakyRelu, 0.01));
  cs.push_back(activation("leaky_relu", "slope 0.2", K::LeakyRelu, 0.2));
  cs.push_back(activation("leaky_relu", "slope -0.3 (backward reads x, not y)", K::LeakyRelu, -0.3));
  cs.push_back(activation("leaky_relu", "slope 1.5", K::LeakyRelu, 1.5));
  cs.push_back(activation("sigmoid", "dense -> sigmoid", K::Sigmoid));
  cs.push_back(activation("tanh", "dense -> tanh", K::Tanh));
  cs.push_back(activation("gelu", "dense -> gelu (erf)", K::Gelu));
  cs.push_back({"gelu", "dense -> gelu with wide pre-activations", [](Net &net) {
                  Node *h = net.dense(net.input({5}, {-2, 2}), 8, "fc1", {-1, 1});
                  mseHead(net, net.b.unary(K::Gelu, h));
                }});

  // smooth step: dense outputs reach both flat ends and the cubic; γ < 0 is 1 − S_|γ|.
  cs.push_back({"smooth_step", "gamma 1 (wide pre-activations: flat ends and cubic)", [](Net &net) {
                  mseHead(net, net.b.unary(K::SmoothStep, net.dense(net.input({5}, {-2, 2}), 8, "fc1", {-1, 1}), 1.0));
                }});
  cs.push_back(activation("smooth_step", "gamma -0.7 (1 - S_0.7)", K::SmoothStep, -0.7));
  cs.push_back(activation("smooth_step", "gamma 3 (all in the cubic)", K::SmoothStep, 3.0));

  // ---- dropout: identity-with-mask in the reference, the mask probed from the JIT ----
  cs.push_back({"dropout", "dense -> tanh -> dropout 0.5 -> dense", [](Net &net) {
                  Node *h = net.b.unary(K::Tanh, net.dense(net.input({5}), 16, "fc1"));
                  mseHead(net, net.b.unary(K::Dropout, h, 0.5, {1}));
                }});
  cs.push_back({"dropout", "two sites (p 0.3, salt 1; p 0.6, salt 2)", [](Net &net) {
                  Node *h = net.dense(net.input({5}), 8, "fc1");
                  h = net.b.unary(K::Tanh, net.b.unary(K::Dropout, h, 0.3, {1}));
                  h = net.b.unary(K::Dropout, net.dense(h, 8, "fc2"), 0.6, {2});
                  mseHead(net, h);
                }});
  cs.push_back({"dropout", "conv -> dropout 0.4 over [C,H,W] (in the conv's epilogue)", [](Net &net) {
                  Node *c = net.conv(net.input({2, 5, 4}), 3, 3, 3, 1, 1, "conv1");
                  mseHead(net, net.b.unary(K::Dropout, c, 0.4, {3}));
                }});

  // ---- layernorm: gamma around 1 ----
  cs.push_back({"layernorm", "vector [6], eps 1e-5", [](Net &net) {
                  Node *h = net.dense(net.input({5}), 6, "fc1");
                  Node *y = net.b.layerNorm(h, net.param("ln.weight", {6}, {0.5, 1.5}),
                                            net.param("ln.bias", {6}), 1e-5);
                  mseHead(net, y);
                }});
  cs.push_back({"layernorm", "[3,4,3] samples (all per-sample dims), eps 1e-5", [](Net &net) {
                  Node *c = net.conv(net.input({2, 6, 5}), 3, 3, 3, 1, 0, "conv1");  // [3,4,3]
                  Node *y = net.b.layerNorm(c, net.param("ln.weight", {3, 4, 3}, {0.5, 1.5}),
                                            net.param("ln.bias", {3, 4, 3}), 1e-5);
                  mseHead(net, y);
                }});
  cs.push_back({"layernorm", "vector [6], eps 0.5 (eps must be the node's)", [](Net &net) {
                  Node *h = net.dense(net.input({5}), 6, "fc1");
                  Node *y = net.b.layerNorm(h, net.param("ln.weight", {6}, {0.5, 1.5}),
                                            net.param("ln.bias", {6}), 0.5);
                  mseHead(net, y);
                }});

  // ---- add: residual sums and gradient accumulation ----
  cs.push_back({"add", "residual h + tanh(dense(h))", [](Net &net) {
                  Node *h = net.dense(net.input({5}), 5, "fc1");
                  mseHead(net, net.b.add(h, net.b.unary(K::Tanh, net.dense(h, 5, "fc2"))));
                }});
  cs.push_back({"add", "shared block read by two heads (cross_entropy 1.0, bce 0.5)", [](Net &net) {
                  Node *trunk = net.b.unary(K::Tanh, net.dense(net.input({5}), 6, "trunk"));
                  net.task(K::CrossEntropy, net.dense(trunk, 3, "a"), 1.0);
                  net.task(K::BCE, net.dense(trunk, 1, "b"), 0.5);
                }});
  cs.push_back({"add", "tied weights: one parameter read by two Param nodes", [](Net &net) {
                  Node *x = net.input({5});
                  Node *W = net.param("W", {5, 5});
                  Node *h = net.b.unary(K::Tanh, net.b.matmul(x, W, false, true));
                  Node *y = net.b.biasAdd(net.b.matmul(h, net.reread(W), false, true), net.param("b", {5}));
                  mseHead(net, y);
                }});

  // ---- mul: batched products ----
  cs.push_back({"mul", "gating tanh(a) * sigmoid(g)", [](Net &net) {
                  Node *x = net.input({5});
                  Node *a = net.b.unary(K::Tanh, net.dense(x, 5, "a"));
                  Node *g = net.b.unary(K::Sigmoid, net.dense(x, 5, "g"));
                  mseHead(net, net.b.mul(a, g));
                }});
  cs.push_back({"mul", "square h * h (one node, both operands)", [](Net &net) {
                  Node *h = net.dense(net.input({5}), 5, "fc1");
                  mseHead(net, net.b.mul(h, h));
                }});

  // ---- expert blocks, embeddings, concatenation ----
  cs.push_back({"softmax", "dense -> softmax [5] -> dense", [](Net &net) {
                  Node *h = net.dense(net.input({4}), 5, "fc1", {-1.5, 1.5});
                  mseHead(net, net.b.softmax(h));
                }});
  cs.push_back({"mix", "gated experts: softmax(dense(h)) mixes 3 dense experts (MMoE)", [](Net &net) {
                  Node *h = net.b.unary(K::Tanh, net.dense(net.input({5}), 6, "fc1"));
                  std::vector<Node *> experts;
                  for (int e = 0; e < 3; ++e) experts.push_back(net.dense(h, 4, "expert" + std::to_string(e)));
                  Node *gate = net.b.softmax(net.dense(h, 3, "gate", {-1.5, 1.5}));
                  mseHead(net, net.b.mix(gate, experts));
                }});
  cs.push_back({"mix", "an unbatched [2,3] weight matrix, rows 0 and 1 read by two tasks (cross-stitch)",
                [](Net &net) {
                  Node *x = net.input({5});
                  std::vector<Node *> cols;
                  for (int e = 0; e < 3; ++e) cols.push_back(net.dense(x, 4, "col" + std::to_string(e)));
                  Node *alpha = net.param("alpha", {2, 3}, {-1, 1});
                  net.task(K::MSE, net.dense(net.b.mix(alpha, cols, 0), 2, "a"), 1.0);
                  net.task(K::CrossEntropy, net.dense(net.b.mix(alpha, cols, 1), 3, "b"), 0.7);
                }});
  cs.push_back({"embedding", "4 indices into a [7,3] table (repeats accumulate) -> tanh -> dense",
                [](Net &net) {
                  Node *table = net.param("emb.weight", {7, 3}, {-1, 1});
                  Node *e = net.b.embedding(table, net.indices(4, 7));  // [12]
                  mseHead(net, net.b.unary(K::Tanh, e));
                }});
  cs.push_back({"concat", "concat of two dense branches [3] + [4] (its backward: slices)", [](Net &net) {
                  Node *x = net.input({5});
                  Node *a = net.b.unary(K::Tanh, net.dense(x, 3, "a"));
                  Node *bb = net.dense(x, 4, "b");
                  mseHead(net, net.b.concat({a, bb}));
                }});
  cs.push_back({"concat", "concat(h, input, h): one node twice, a part with no gradient", [](Net &net) {
                  Node *x = net.input({3});
                  Node *h = net.b.unary(K::Tanh, net.dense(x, 4, "fc1"));
                  mseHead(net, net.b.concat({h, x, h}));
                }});
  cs.push_back({"concat", "U-Net skip: concat(up, enc) along channels, as lowering builds it", [](Net &net) {
                  // enc [2,4,4] -> pool -> conv [3,2,2] -> conv_transpose2d x2 [2,4,4] = up; then
                  // [up; enc] (flattened parts, concat, viewed as [4,4,4]) -> conv: both branches.
                  Node *enc = net.b.unary(K::Tanh, net.conv(net.input({1, 4, 4}), 2, 3, 3, 1, 1, "enc"));
                  Node *low = net.conv(net.b.avgPool(enc, 2, 2), 3, 1, 1, 1, 0, "low");
                  Node *up = net.b.convTranspose2d(low, net.param("up.weight", {3, 2, 2, 2}), 2, 0, 0);
                  auto flat = [&](Node *v) { return net.b.reshape(v, vec(v->type.elements())); };
                  Node *joined = net.b.reshape(net.b.concat({flat(up), flat(enc)}), ir::Type{{4, 4, 4}, true});
                  mseHead(net, net.conv(joined, 2, 3, 3, 1, 1, "dec"));
                }});
  cs.push_back({"slice", "two slices of one dense output, one overlapping the other (gradients add)",
                [](Net &net) {
                  Node *h = net.b.unary(K::Tanh, net.dense(net.input({5}), 7, "fc1"));
                  mseHead(net, net.b.concat({net.b.slice(h, 1, 3), net.b.slice(h, 3, 4), net.b.slice(h, 0, 1)}));
                }});
  cs.push_back({"slice", "width-1 slices as mix weights (scaling a vector per sample)", [](Net &net) {
                  Node *x = net.input({4});
                  Node *h = net.dense(x, 3, "fc1");
                  Node *v = net.dense(x, 4, "fc2");
                  mseHead(net, net.b.mix(net.b.slice(h, 2, 1), {v}));
                }});
  cs.push_back({"transpose", "a weight used transposed (x·W with W [5,3] stored [3,5]), and transposed twice",
                [](Net &net) {
                  Node *x = net.input({5});
                  Node *w = net.param("w", {3, 5});
                  Node *y = net.b.matmul(x, net.b.transpose(w), false, false);        // x·Wᵀ, [n,3]
                  Node *z = net.b.matmul(x, net.b.transpose(net.b.transpose(w)), false, true);  // the same
                  mseHead(net, net.b.add(net.b.unary(K::Tanh, y), z));
                }});
  cs.push_back(dselectCase(1, 2, 1.0));
  cs.push_back(dselectCase(2, 4, 1.5));
  cs.push_back(dselectCase(3, 8, -2.0));

  // ---- losses ----
  cs.push_back({"cross_entropy", "4 classes", [](Net &net) {
                  Node *h = net.b.unary(K::Tanh, net.dense(net.input({5}), 6, "fc1"));
                  net.task(K::CrossEntropy, net.dense(h, 4, "head"));
                }});
  cs.push_back({"cross_entropy", "large logits (|z| up to ~25: log-sum-exp)", [](Net &net) {
                  Node *h = net.b.unary(K::Tanh, net.dense(net.input({5}), 6, "fc1", {-1.5, 1.5}));
                  net.task(K::CrossEntropy, net.dense(h, 4, "head", {-4, 4}));
                }});
  cs.push_back({"bce", "one logit, 0/1 labels", [](Net &net) {
                  Node *h = net.b.unary(K::Tanh, net.dense(net.input({5}), 6, "fc1"));
                  net.task(K::BCE, net.dense(h, 1, "head"));
                }});
  cs.push_back({"bce", "large logits (|z| up to ~25)", [](Net &net) {
                  Node *h = net.b.unary(K::Tanh, net.dense(net.input({5}), 6, "fc1", {-1.5, 1.5}));
                  net.task(K::BCE, net.dense(h, 1, "head", {-4, 4}));
                }});
  cs.push_back({"mse", "4 outputs", [](Net &net) {
                  Node *h = net.b.unary(K::Tanh, net.dense(net.input({5}), 6, "fc1"));
                  net.task(K::MSE, net.dense(h, 4, "head"));
                }});
  cs.push_back({"mse", "a [2,5,4] conv head (label width 40)", [](Net &net) {
                  Node *c = net.b.unary(K::Tanh, net.conv(net.input({2, 5, 4}), 2, 3, 3, 1, 1, "conv1"));
                  net.task(K::MSE, net.conv(c, 2, 3, 3, 1, 1, "conv2"));
                }});
  cs.push_back({"l1", "4 outputs (residuals kept away from 0)", [](Net &net) {
                  Node *h = net.b.unary(K::Tanh, net.dense(net.input({5}), 6, "fc1"));
                  net.task(K::L1, net.dense(h, 4, "head"));
                }});

  // ---- per-pixel losses on a [C, H, W] head ----
  cs.push_back({"cross_entropy", "per pixel: a [3,4,5] conv head, a class index per pixel", [](Net &net) {
                  Node *c = net.b.unary(K::Tanh, net.conv(net.input({2, 4, 5}), 3, 3, 3, 1, 1, "conv1"));
                  net.task(K::CrossEntropy, net.conv(c, 3, 3, 3, 1, 1, "conv2"));
                }});
  cs.push_back({"cross_entropy", "per pixel, partial labels (every 3rd pixel unlabelled)", [](Net &net) {
                  Node *c = net.b.unary(K::Tanh, net.conv(net.input({2, 4, 5}), 3, 3, 3, 1, 1, "conv1"));
                  net.task(K::CrossEntropy, net.conv(c, 4, 3, 3, 1, 1, "conv2"), 1.0, 3);
                }});
  cs.push_back({"cosine", "per pixel: a [3,4,4] conv head", [](Net &net) {
                  Node *c = net.b.unary(K::Tanh, net.conv(net.input({2, 4, 4}), 3, 3, 3, 1, 1, "conv1"));
                  net.task(K::Cosine, net.conv(c, 3, 3, 3, 1, 1, "conv2"));
                }});
  cs.push_back({"cosine", "a [4] vector head, partial labels (a NaN leaves its sample out)", [](Net &net) {
                  Node *h = net.b.unary(K::Tanh, net.dense(net.input({5}), 6, "fc1"));
                  net.task(K::Cosine, net.dense(h, 4, "head"), 1.0, 5);
                }});
  cs.push_back({"l1", "per pixel: a [2,4,4] conv head, partial labels", [](Net &net) {
                  Node *c = net.b.unary(K::Tanh, net.conv(net.input({2, 4, 4}), 3, 3, 3, 1, 1, "conv1"));
                  net.task(K::L1, net.conv(c, 2, 3, 3, 1, 1, "conv2"), 1.0, 4);
                }});

  // ---- partial labels: a NaN label is absent; means over the present labels only ----
  cs.push_back({"cross_entropy", "partial labels (sample 1 of 3 absent)", [](Net &net) {
                  Node *h = net.b.unary(K::Tanh, net.dense(net.input({5}), 6, "fc1"));
                  net.task(K::CrossEntropy, net.dense(h, 4, "head"), 1.0, 2);
                }});
  cs.push_back({"bce", "partial labels (sample 1 of 3 absent)", [](Net &net) {
                  Node *h = net.b.unary(K::Tanh, net.dense(net.input({5}), 6, "fc1"));
                  net.task(K::BCE, net.dense(h, 1, "head"), 1.0, 2);
                }});
  cs.push_back({"mse", "partial labels (every third value absent: per-element mask)", [](Net &net) {
                  Node *h = net.b.unary(K::Tanh, net.dense(net.input({5}), 6, "fc1"));
                  net.task(K::MSE, net.dense(h, 4, "head"), 1.0, 3);
                }});
  cs.push_back({"l1", "partial labels (every third value absent: per-element mask)", [](Net &net) {
                  Node *h = net.b.unary(K::Tanh, net.dense(net.input({5}), 6, "fc1"));
                  net.task(K::L1, net.dense(h, 4, "head"), 1.0, 3);
                }});
  cs.push_back({"loss_weights", "a task with every label absent: loss 0, no gradient", [](Net &net) {
                  Node *trunk = net.b.unary(K::Tanh, net.dense(net.input({5}), 6, "trunk"));
                  net.task(K::MSE, net.dense(trunk, 2, "a"), 1.0);
                  net.task(K::CrossEntropy, net.dense(trunk, 3, "b"), 1.0, 1);
                }});

  // ---- the weighted total: run-time weights != 1 (one of them 0) and a Const-scaled term ----
  cs.push_back({"loss_weights", "three tasks weighted 0.3, 2.5, 0 plus 0.75*const x task 0", [](Net &net) {
                  Node *trunk = net.b.unary(K::Tanh, net.dense(net.input({5}), 6, "trunk"));
                  Node *L0 = net.task(K::CrossEntropy, net.dense(trunk, 3, "a"), 0.3);
                  net.task(K::MSE, net.dense(trunk, 2, "b"), 2.5);
                  net.task(K::L1, net.dense(trunk, 2, "c"), 0.0);
                  net.addToTotal(net.b.mul(net.b.constant(0.75), L0));
                }});
  return cs;
}

}  // namespace

const std::vector<Case> &allCases() {
  static const std::vector<Case> cases = makeCases();
  return cases;
}

}  // namespace mtlc::test::gradcheck
