#include "Lower.h"

#include "autodiff/Autodiff.h"
#include "ir/Builder.h"
#include "ir/Siblings.h"

#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <numeric>
#include <unordered_set>

namespace mtlc::lower {

namespace {

using ir::Node;
using ir::OpKind;
using sema::LayerKind;
using sema::SourceKind;

constexpr int64_t kParamAlign = 16;  // floats: each tensor starts on a 64-byte boundary

ir::OpKind lossOp(rt::LossKind k) {
  switch (k) {
    case rt::LossKind::CrossEntropy: return OpKind::CrossEntropy;
    case rt::LossKind::BCE: return OpKind::BCE;
    case rt::LossKind::MSE: return OpKind::MSE;
    case rt::LossKind::L1: return OpKind::L1;
    case rt::LossKind::Cosine: return OpKind::Cosine;
  }
  return OpKind::MSE;
}

int64_t product(const std::vector<int64_t> &s) {
  int64_t p = 1;
  for (int64_t d : s) p *= d;
  return p;
}

// The parameter table, filled while the first function is lowered: a parameter is registered the
// first time a layer asks for it (so only reachable blocks have parameters, in program order), and
// later functions find it by name.
class ParamRegistry {
 public:
  ParamRegistry(ir::Module &m, std::vector<rt::ParamSpec> &specs) : m_(m), specs_(specs) {}

  // `state`: a running statistic (no gradient, no optimizer update); `integer`: saved as I64;
  // `bound`: Init::Uniform's.
  int get(const std::string &name, std::vector<int64_t> shape, rt::Init init, int64_t fanIn,
          const std::string &block, bool state = false, bool integer = false, double bound = 0) {
    auto it = index_.find(name);
    if (it != index_.end()) return it->second;
    rt::ParamSpec ps;
    ps.name = name;
    ps.shape = shape;
    ps.size = product(shape);
    ps.init = init;
    ps.fanIn = fanIn;
    ps.bound = bound;
    ps.block = block;
    ps.state = state;
    ps.integer = integer;
    ps.offset = top_;
    top_ += (ps.size + kParamAlign - 1) / kParamAlign * kParamAlign;
    m_.params.push_back({name, shape, ps.offset, state});
    m_.paramFloats = top_;
    specs_.push_back(std::move(ps));
    return index_[name] = (int)specs_.size() - 1;
  }

 private:
  ir::Module &m_;
  std::vector<rt::ParamSpec> &specs_;
  std::map<std::string, int> index_;
  int64_t top_ = 0;
};

// Lowers the forward pass of the whole model into one function.
class ForwardLowering {
 public:
  ForwardLowering(const sema::Model &model, ir::Module &module, ParamRegistry &params,
                  ir::Function &fn, bool training)
      : model_(model), module_(module), params_(params), b_(fn), training_(training) {}

  double flops = 0;  // forward FLOPs per sample, counted while lowering

  // Head output of each task.
  std::vector<Node *> heads() {
    std::vector<Node *> out;
    for (size_t t = 0; t < model_.tasks.size(); ++t) {
      task_ = (int)t;
      out.push_back(pipeline(model_.tasks[t].head));
    }
    return out;
  }

  // Per-task losses and the weighted total (sum_i w_i * L_i, w_i read at run time).
  std::pair<std::vector<Node *>, Node *> losses(const std::vector<Node *> &heads) {
    std::vector<Node *> taskLosses;
    Node *total = nullptr;
    for (size_t t = 0; t < model_.tasks.size(); ++t) {
      const auto &task = model_.tasks[t];
      Node *label = b_.label((int)t, module_.labels[t]);
      Node *loss = b_.loss(lossOp(task.loss), heads[t], label);
      loss->name = task.name + ".loss";
      taskLosses.push_back(loss);
      Node *weighted = b_.mul(b_.lossWeight((int)t), loss);
      total = total ? b_.add(total, weighted) : weighted;
    }
    total->name = "total_loss";
    return {taskLosses, total};
  }

  // The tensor every task's head starts from, when there is one (MGDA-UB's shared boundary).
  Node *sharedBoundary() const {
    const int index = model_.sharedBoundary();
    auto it = shared_.find(index);
    return index < 0 || it == shared_.end() ? nullptr : it->second;
  }

 private:
  Node *source(const sema::Pipeline &p) {
    switch (p.sourceKind) {
      case SourceKind::Input: return input(p.sourceIndex);
      case SourceKind::Shared: return shared(p.sourceIndex);
      case SourceKind::Concat: {
        std::vector<Node *> parts;  // sema checked that [C, H, W] parts have the first's H and W
        for (const auto &part : p.concat)
          parts.push_back(part.kind == SourceKind::Input ? input(part.index) : shared(part.index));
        return parts.front()->type.dims.size() == 1 ? b_.concat(parts) : channelConcat(parts);
      }
      case SourceKind::Gate:
      case SourceKind::Column: return expertBlock(p.sourceIndex).at(task_);
    }
    throw ir::IRError("lower: unknown source kind");
  }

  Node *input(int index) {
    auto &slot = inputs_[index];
    if (!slot) slot = b_.input(index, module_.inputs[index]);
    return slot;
  }

  // A shared block's tensor, computed once however many readers it has.
  Node *shared(int index) {
    auto it = shared_.find(index);
    if (it != shared_.end()) return it->second;
    const sema::Pipeline &p = model_.shared[index];
    Node *x = layers(p.name, p.layers, source(p), p.name);
    return shared_[index] = x;
  }

  // The per-task outputs (indexed by task) of the expert block ending shared[index].
  std::map<int, Node *> &expertBlock(int index) {
    auto it = experts_.find(index);
    if (it != experts_.end()) return it->second;
    const sema::Pipeline &p = model_.shared[index];
    const sema::Layer &block = p.layers.back();
    std::vector<sema::Layer> before(p.layers.begin(), p.layers.end() - 1);
    int savedTask = task_;
    Node *x = layers(p.name, before, source(p), p.name);
    std::string prefix = fmt::format("{}.{}", p.name, block.index);
    std::map<int, Node *> out;
    switch (block.kind) {
      case LayerKind::Mixture: out = mixture(prefix, block, x, p.name); break;
      case LayerKind::Ple: out = ple(prefix, block, x, p.name); break;
      case LayerKind::CrossStitch: out = crossStitch(prefix, block, x, p.name); break;
      case LayerKind::Mtan: out = mtan(prefix, block, x, p.name); break;
      default: throw ir::IRError("lower: not an expert block");
    }
    task_ = savedTask;
    return experts_[index] = std::move(out);
  }

  // A softmax gate over `count` experts computed from x (flattened): dense + softmax.
  Node *gate(const std::string &prefix, Node *x, int64_t count, const std::string &block) {
    if (x->type.dims.size() != 1) x = b_.reshape(x, ir::Type{{x->type.elements()}, true});
    int64_t in = x->type.dims[0];
    flops += 2.0 * in * count;
    Node *w = param(prefix + ".weight", {count, in}, rt::Init::UniformFanIn, in, block);
    Node *bias = param(prefix + ".bias", {count}, rt::Init::UniformFanIn, in, block);
    return b_.softmax(b_.biasAdd(b_.matmul(x, w, false, true), bias));
  }

  // MMoE: E experts on x; each reading task mixes them with its own gate.
  std::map<int, Node *> mixture(const std::string &prefix, const sema::Layer &block, Node *x,
                                const std::string &owner) {
    std::vector<Node *> experts;
    for (int64_t e = 0; e < block.experts; ++e)
      experts.push_back(layers(fmt::format("{}.{}", prefix, e), block.expert, x, owner));
    std::map<int, Node *> out;
    for (int t : block.readers) {
      const std::string name = fmt::format("{}.gate.{}", prefix, model_.tasks[t].name);
      Node *g = block.dselect ? dselectGate(name, x, block, owner) : gate(name, x, block.experts, owner);
      out[t] = b_.mix(g, experts);
    }
    return out;
  }

  // DSelect-k's gate (Hazimeh et al. 2021) over E = 2^m experts from x (flattened), with k
  // selectors: z = W_z·x + b_z [k·m], w = W_w·x + b_w [k]; selector i's weight of expert e is
  // r_i(e) = Π_j (bit j of e ? S(z_ij) : 1 − S(z_ij)), bits most significant first (numpy's
  // binary_repr: expert 1 of 4 is "01"); the gate is Σ_i softmax(w)_i·r_i. r_i is built from the
  // least significant bit up: [1 − S, S] of bit m−1, then each more significant bit j puts the
  // halves (1 − S(z_ij))·r and S(z_ij)·r side by side. 1 − S(z) is the smooth step with −γ.
  Node *dselectGate(const std::string &prefix, Node *x, const sema::Layer &block, const std::string &owner) {
    if (x->type.dims.size() != 1) x = b_.reshape(x, ir::Type{{x->type.elements()}, true});
    const int64_t in = x->type.dims[0], k = block.select;
    int64_t m = 0;
    while ((int64_t(1) << m) < block.experts) ++m;
    flops += 2.0 * in * k * (m + 1);
    auto dense = [&](const char *what, int64_t rows, double bound) {
      Node *w = param(fmt::format("{}.{}.weight", prefix, what), {rows, in}, rt::Init::Uniform, in, owner, false,
                      false, bound);
      Node *b = param(fmt::format("{}.{}.bias", prefix, what), {rows}, rt::Init::Uniform, in, owner, false, false, bound);
      return b_.biasAdd(b_.matmul(x, w, false, true), b);
    };
    Node *z = dense("z", k * m, block.gamma / 100);  // LibMTL's initialisation
    Node *weights = b_.softmax(dense("w", k, 0.05));
    Node *on = b_.unary(OpKind::SmoothStep, z, block.gamma), *off = b_.unary(OpKind::SmoothStep, z, -block.gamma);
    std::vector<Node *> selectors;
    for (int64_t i = 0; i < k; ++i) {
      Node *r = nullptr;
      for (int64_t j = m - 1; j >= 0; --j) {
        Node *s1 = b_.slice(on, i * m + j, 1), *s0 = b_.slice(off, i * m + j, 1);
        r = r ? b_.concat({b_.mix(s0, {r}), b_.mix(s1, {r})}) : b_.concat({s0, s1});
      }
      selectors.push_back(r);
    }
    return b_.mix(weights, selectors);
  }

  // PLE (CGC when levels = 1): per level, S shared experts and K experts per reading task; each
  // task's gate mixes its own and the shared experts; below the top level a shared gate mixes all
  // experts into the next level's shared input, and each task's output is its next input.
  std::map<int, Node *> ple(const std::string &prefix, const sema::Layer &block, Node *x,
                            const std::string &owner) {
    Node *sharedIn = x;
    std::map<int, Node *> taskIn;
    for (int t : block.readers) taskIn[t] = x;
    std::map<int, Node *> out;
    for (int64_t l = 0; l < block.levels; ++l) {
      std::string level = fmt::format("{}.{}", prefix, l);
      std::vector<Node *> sharedExperts, all;
      for (int64_t s = 0; s < block.sharedExperts; ++s)
        sharedExperts.push_back(layers(fmt::format("{}.shared.{}", level, s), block.expert, sharedIn, owner));
      all = sharedExperts;
      std::map<int, Node *> next;
      for (int t : block.readers) {
        const std::string &task = model_.tasks[t].name;
        std::vector<Node *> mine;
        for (int64_t k = 0; k < block.specificExperts; ++k)
          mine.push_back(layers(fmt::format("{}.{}.{}", level, task, k), block.expert, taskIn[t], owner));
        all.insert(all.end(), mine.begin(), mine.end());
        mine.insert(mine.end(), sharedExperts.begin(), sharedExperts.end());
        Node *g = gate(fmt::format("{}.gate.{}", level, task), taskIn[t], (int64_t)mine.size(), owner);
        next[t] = b_.mix(g, mine);
      }
      if (l + 1 < block.levels) {
        Node *g = gate(fmt::format("{}.gate.shared", level), sharedIn, (int64_t)all.size(), owner);
        sharedIn = b_.mix(g, all);
      }
      taskIn = next;
      out = next;
    }
    return out;
  }

  // Cross-stitch: one column per reading task; between consecutive stages a learned [T, T]
  // matrix α mixes the columns: column_i ← Σ_j α_ij · column_j.
  std::map<int, Node *> crossStitch(const std::string &prefix, const sema::Layer &block, Node *x,
                                    const std::string &owner) {
    const auto &readers = block.readers;
    std::vector<Node *> cols(readers.size(), x);
    int64_t T = (int64_t)readers.size();
    for (size_t s = 0; s < block.stages.size(); ++s) {
      for (size_t i = 0; i < readers.size(); ++i)
        cols[i] = layers(fmt::format("{}.{}.{}", prefix, s, model_.tasks[readers[i]].name),
                         block.stages[s], cols[i], owner);
      if (s + 1 == block.stages.size() || T < 2) continue;
      Node *alpha = param(fmt::format("{}.{}.alpha", prefix, s), {T, T}, rt::Init::CrossStitch, T, owner);
      std::vector<Node *> mixed;
      for (int64_t i = 0; i < T; ++i) mixed.push_back(b_.mix(alpha, cols, i));
      cols = mixed;
    }
    std::map<int, Node *> out;
    for (size_t i = 0; i < readers.size(); ++i) out[readers[i]] = cols[i];
    return out;
  }

  // MTAN (Liu et al., CVPR 2019): the stages run once, shared; p_s is stage s's output. Each
  // reading task t has, per stage, an attention mask a_t^s = attention(p_0) for s = 0, else
  // attention([p_s ; f_t^{s-1}]) (channel concat), and its attended feature â_t^s = a_t^s ⊙ p_s;
  // between stages f_t^s = down(â_t^s) carries it to stage s+1's channels and size. column(NAME)
  // is the last â_t. Named as a PyTorch module with `stages` (a ModuleList of Sequentials) and
  // `attention`, `down` (ModuleDicts by task of ModuleLists by stage of Sequentials).
  std::map<int, Node *> mtan(const std::string &prefix, const sema::Layer &block, Node *x,
                             const std::string &owner) {
    std::vector<Node *> p;
    for (size_t s = 0; s < block.stages.size(); ++s)
      p.push_back(x = layers(fmt::format("{}.stages.{}", prefix, s), block.stages[s], x, owner));
    std::map<int, Node *> out;
    for (int t : block.readers) {
      const std::string &task = model_.tasks[t].name;
      Node *carried = nullptr;  // f_t^{s-1}
      for (size_t s = 0; s < p.size(); ++s) {
        Node *in = carried ? channelConcat({p[s], carried}) : p[s];
        Node *mask = mtanAttention(fmt::format("{}.attention.{}.{}", prefix, task, s), in, p[s]->type.dims[0], owner);
        flops += double(p[s]->type.elements());
        Node *attended = named(b_.mul(mask, p[s]), fmt::format("{}.attended.{}.{}", prefix, task, s));
        if (s + 1 == p.size()) {
          out[t] = attended;
          break;
        }
        carried = mtanDown(fmt::format("{}.down.{}.{}", prefix, task, s), attended, p[s + 1]->type.dims, owner);
      }
    }
    return out;
  }

  // [C_i, H, W] parts joined along the channels: per sample, NCHW's channel blocks follow one
  // another, so that is the concatenation of the flattened parts, viewed as [ΣC_i, H, W].
  Node *channelConcat(const std::vector<Node *> &parts) {
    std::vector<Node *> flat;
    std::vector<int64_t> joined = parts.front()->type.dims;
    joined[0] = 0;
    for (Node *x : parts) {
      joined[0] += x->type.dims[0];
      flat.push_back(b_.reshape(x, ir::Type{{x->type.elements()}, true}));
    }
    return b_.reshape(b_.concat(flat), ir::Type{std::move(joined), true});
  }

  // A 2-D convolution without bias (a batchnorm follows and would cancel one), PyTorch's init.
  Node *convNoBias(const std::string &name, Node *x, int64_t channels, int64_t kernel, int64_t padding,
                   const std::string &owner) {
    const int64_t fanIn = x->type.dims[0] * kernel * kernel;
    Node *w = param(name + ".weight", {channels, x->type.dims[0], kernel, kernel}, rt::Init::UniformFanIn, fanIn, owner);
    Node *y = b_.conv2d(x, w, 1, padding);
    flops += 2.0 * double(y->type.elements()) * double(fanIn);
    return y;
  }

  // MTAN's attention module: conv1x1 (-> C) -> batchnorm -> relu -> conv1x1 (-> C) -> batchnorm
  // -> sigmoid, Sequential indices 0..5.
  Node *mtanAttention(const std::string &name, Node *x, int64_t channels, const std::string &owner) {
    Node *h = named(convNoBias(name + ".0", x, channels, 1, 0, owner), name + ".0");
    h = named(batchNorm(name + ".1", h, 1e-5, owner), name + ".1");
    h = named(b_.unary(OpKind::Relu, h), name + ".2");
    h = named(convNoBias(name + ".3", h, channels, 1, 0, owner), name + ".3");
    h = named(batchNorm(name + ".4", h, 1e-5, owner), name + ".4");
    return named(b_.unary(OpKind::Sigmoid, h), name + ".5");
  }

  // What --emit=ir prints after the node: the module path it computes.
  static Node *named(Node *n, const std::string &name) {
    if (n->name.empty()) n->name = name;
    return n;
  }

  // MTAN's f between stages: conv3x3 (padding 1, -> the next stage's channels) -> batchnorm ->
  // relu, then (index 3) a 2x2 max-pool where the next stage halves the size (sema: same or half).
  Node *mtanDown(const std::string &name, Node *x, const std::vector<int64_t> &next, const std::string &owner) {
    Node *y = named(convNoBias(name + ".0", x, next[0], 3, 1, owner), name + ".0");
    y = named(batchNorm(name + ".1", y, 1e-5, owner), name + ".1");
    y = named(b_.unary(OpKind::Relu, y), name + ".2");
    if (y->type.dims[1] != next[1] || y->type.dims[2] != next[2]) y = named(b_.maxPool(y, 2, 2), name + ".3");
    return y;
  }

  Node *param(const std::string &name, std::vector<int64_t> shape, rt::Init init, int64_t fanIn,
              const std::string &block, bool state = false, bool integer = false, double bound = 0) {
    int index = params_.get(name, shape, init, fanIn, block, state, integer, bound);
    return b_.param(index, shape);
  }

  // nn.BatchNorm1d/2d: weight, bias, and the buffers running_mean, running_var,
  // num_batches_tracked; train_step normalises with the batch's statistics and updates the
  // buffers, eval_step and predict use them.
  Node *batchNorm(const std::string &name, Node *x, double eps, const std::string &owner) {
    const int64_t c = x->type.dims[0];
    auto p = [&](const char *what, std::vector<int64_t> shape, rt::Init init, bool state = false) {
      const bool integer = shape.empty();  // num_batches_tracked, a count
      return param(name + "." + what, std::move(shape), init, 1, owner, state, integer);
    };
    Node *gamma = p("weight", {c}, rt::Init::Ones), *beta = p("bias", {c}, rt::Init::Zeros);
    Node *mean = p("running_mean", {c}, rt::Init::Zeros, true), *var = p("running_var", {c}, rt::Init::Ones, true);
    Node *batches = p("num_batches_tracked", {}, rt::Init::Zeros, true);
    flops += 4.0 * x->type.elements();
    if (!training_) return b_.batchNormEval(x, gamma, beta, mean, var, eps);
    return b_.batchNorm(x, gamma, beta, mean, var, batches, eps);
  }

  // residual { body }: body(x) + x, or + batchnorm(conv1x1(x)) (no bias) when the body changes
  // the shape; named as a PyTorch module with `body` and `shortcut` nn.Sequentials.
  Node *residual(const std::string &name, const sema::Layer &l, Node *x, const std::string &owner) {
    Node *y = layers(name + ".body", l.body, x, owner);
    Node *shortcut = x;
    if (l.projection) {
      const int64_t in = x->type.dims[0], out = l.out[0];
      Node *w = param(name + ".shortcut.0.weight", {out, in, 1, 1}, rt::Init::UniformFanIn, in, owner);
      shortcut = b_.conv2d(x, w, l.stride, 0);
      flops += 2.0 * shortcut->type.elements() * in;
      shortcut = batchNorm(name + ".shortcut.1", shortcut, 1e-5, owner);
    }
    flops += double(y->type.elements());
    return b_.add(y, shortcut);
  }

  Node *pipeline(const sema::Pipeline &p) {
    return layers(p.name, p.layers, source(p), p.name);
  }

  // Applies `ls` to x; parameters are named "<prefix>.<layer index>.<weight|bias>".
  Node *layers(const std::string &prefix, const std::vector<sema::Layer> &ls, Node *x,
               const std::string &owner) {
    for (const auto &l : ls) {
      x = layer(fmt::format("{}.{}", prefix, l.index), l, x, owner);
      if (x->name.empty()) x->name = fmt::format("{}.{}", prefix, l.index);
    }
    return x;
  }

  Node *layer(const std::string &name, const sema::Layer &l, Node *x, const std::string &owner) {
    auto p = [&](const char *what, std::vector<int64_t> shape, rt::Init init, int64_t fanIn) {
      return param(name + "." + what, std::move(shape), init, fanIn, owner);
    };
    switch (l.kind) {
      case LayerKind::Dense: {
        int64_t in = x->type.elements();
        flops += 2.0 * in * l.units;
        Node *y = b_.matmul(x, p("weight", {l.units, in}, rt::Init::UniformFanIn, in), false, true);
        return b_.biasAdd(y, p("bias", {l.units}, rt::Init::UniformFanIn, in));
      }
      case LayerKind::Conv2d: {
        int64_t c = x->type.dims[0], fanIn = c * l.kernel * l.kernel;
        Node *w = p("weight", {l.units, c, l.kernel, l.kernel}, rt::Init::UniformFanIn, fanIn);
        Node *y = b_.conv2d(x, w, l.stride, l.padding);
        const auto &o = y->type.dims;
        flops += 2.0 * o[0] * o[1] * o[2] * fanIn;
        if (!l.bias) return y;
        return b_.biasAdd(y, p("bias", {l.units}, rt::Init::UniformFanIn, fanIn));
      }
      case LayerKind::ConvTranspose2d: {
        // nn.ConvTranspose2d: weight [in, out, k, k]; its init reads fan_in from dim 1 (out·k·k).
        int64_t c = x->type.dims[0], fanIn = l.units * l.kernel * l.kernel;
        Node *w = p("weight", {c, l.units, l.kernel, l.kernel}, rt::Init::UniformFanIn, fanIn);
        Node *y = b_.convTranspose2d(x, w, l.stride, l.padding, l.outputPadding);
        flops += 2.0 * x->type.elements() * fanIn;
        if (!l.bias) return y;
        return b_.biasAdd(y, p("bias", {l.units}, rt::Init::UniformFanIn, fanIn));
      }
      case LayerKind::BatchNorm: return batchNorm(name, x, l.value > 0 ? l.value : 1e-5, owner);
      case LayerKind::GlobalAvgPool: return b_.globalAvgPool(x);
      case LayerKind::Upsample: return b_.upsample(x, l.scale, ir::UpsampleMode(l.mode));
      case LayerKind::Residual: return residual(name, l, x, owner);
      case LayerKind::Embedding:
        return b_.embedding(p("weight", {l.vocab, l.units}, rt::Init::Normal, 1), x);
      case LayerKind::MaxPool: return b_.maxPool(x, l.kernel, l.stride);
      case LayerKind::AvgPool: return b_.avgPool(x, l.kernel, l.stride);
      case LayerKind::Flatten: return b_.reshape(x, ir::Type{{x->type.elements()}, true});
      case LayerKind::Relu: return b_.unary(OpKind::Relu, x);
      case LayerKind::LeakyRelu: return b_.unary(OpKind::LeakyRelu, x, l.value);
      case LayerKind::Sigmoid: return b_.unary(OpKind::Sigmoid, x);
      case LayerKind::Tanh: return b_.unary(OpKind::Tanh, x);
      case LayerKind::Gelu: return b_.unary(OpKind::Gelu, x);
      case LayerKind::Dropout:
        // Identity outside training; each dropout site draws its own mask stream (salt).
        if (!training_ || l.value <= 0) return x;
        return b_.unary(OpKind::Dropout, x, l.value, {nextSalt_++});
      case LayerKind::LayerNorm:
        return b_.layerNorm(x, p("weight", x->type.dims, rt::Init::Ones, 1),
                            p("bias", x->type.dims, rt::Init::Zeros, 1), l.value > 0 ? l.value : 1e-5);
      case LayerKind::Mixture:
      case LayerKind::Ple:
      case LayerKind::CrossStitch:
      case LayerKind::Mtan:
        throw ir::IRError("lower: an expert block must end its shared pipeline");
    }
    throw ir::IRError("lower: unknown layer kind");
  }

  const sema::Model &model_;
  ir::Module &module_;
  ParamRegistry &params_;
  ir::Builder b_;
  bool training_;
  int task_ = 0;  // the task whose head is being lowered (picks its gate / column)
  std::map<int, Node *> inputs_, shared_;
  std::map<int, std::map<int, Node *>> experts_;
  int64_t nextSalt_ = 1;
};

void addOutputs(ir::Function &fn, const std::vector<Node *> &heads,
                const std::vector<Node *> *losses, Node *total) {
  for (size_t t = 0; t < heads.size(); ++t)
    fn.outputs.push_back({ir::Output::Kind::Head, (int)t, heads[t]});
  if (!losses) return;
  for (size_t t = 0; t < losses->size(); ++t)
    fn.outputs.push_back({ir::Output::Kind::TaskLoss, (int)t, (*losses)[t]});
  fn.outputs.push_back({ir::Output::Kind::TotalLoss, 0, total});
}

// ParamSpec::tasks: the parameters each task's loss reaches, by a walk from the loss back through
// the operands to the Param leaves. The graph, not the block structure, decides, so every way a
// task reads a tensor counts (shared blocks read through later blocks, gates, PLE's shared gates,
// cross-stitch units); a path whose gradient happens to vanish (an inactive relu) still counts.
void recordTaskReach(const std::vector<Node *> &losses, std::vector<rt::ParamSpec> &params) {
  for (size_t t = 0; t < losses.size(); ++t) {
    std::vector<bool> reached(params.size(), false);
    std::unordered_set<const Node *> seen{losses[t]};
    std::vector<const Node *> pending{losses[t]};
    while (!pending.empty()) {
      const Node *n = pending.back();
      pending.pop_back();
      if (n->op == OpKind::Param) reached.at(size_t(n->ints.at(0))) = true;
      for (const Node *o : n->operands)
        if (seen.insert(o).second) pending.push_back(o);
    }
    for (size_t i = 0; i < params.size(); ++i)
      if (reached[i]) params[i].tasks.push_back((int)t);
  }
}

// Moves the weights of sibling products (ir/Siblings.h) back to back in the arena, in program
// order, so the pass `siblings` can read each group as one span; every other parameter keeps its
// place in the order. Only offsets move: the table, and with it the order parameters are drawn in
// at initialisation, and every name stay as they are. A weight whose size is not a whole number of
// alignment units would leave a gap after it, so a group takes at most one, last.
void placeSiblingWeights(LoweredModel &out) {
  ir::Module &m = out.module;
  const ir::Function *train = m.function("train_step");
  if (!train) return;
  std::vector<int> runOf(m.params.size(), -1);
  std::vector<std::vector<int>> runs;
  for (const ir::SiblingProducts &g : ir::findSiblingProducts(m, *train)) {
    std::vector<int> run;
    for (int p : g.params)
      if (m.params[p].elements() % kParamAlign == 0) run.push_back(p);
    for (int p : g.params)
      if (m.params[p].elements() % kParamAlign != 0) {
        run.push_back(p);
        break;
      }
    if (run.size() < 2) continue;
    for (int p : run) runOf[p] = (int)runs.size();
    runs.push_back(std::move(run));
  }
  if (runs.empty()) return;
  std::vector<int> order(m.params.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return m.params[a].offset < m.params[b].offset; });
  int64_t top = 0;
  auto place = [&](int p) {
    m.params[p].offset = out.params[p].offset = top;
    top += (m.params[p].elements() + kParamAlign - 1) / kParamAlign * kParamAlign;
  };
  std::vector<bool> placed(runs.size(), false);
  for (int p : order) {
    if (runOf[p] < 0) place(p);
    else if (!placed[runOf[p]]) {
      placed[runOf[p]] = true;
      for (int q : runs[runOf[p]]) place(q);
    }
  }
  m.paramFloats = top;
}

bool needsTaskGradients(rt::WeightingKind weighting) { return vocab::has(weighting, vocab::kTaskGradients); }

}  // namespace

LoweredModel lowerModel(const sema::Model &model, int64_t maxBatch) {
  LoweredModel out;
  ir::Module &m = out.module;
  m.name = model.name;
  m.maxBatch = maxBatch;
  for (const auto &in : model.inputs) m.inputs.push_back(ir::Type{in.shape, true});
  for (const auto &t : model.tasks) {
    m.labels.push_back(ir::Type{{t.labelWidth}, true});
    m.heads.push_back(ir::Type{t.head.outShape, true});
  }
  ParamRegistry params(m, out.params);

  auto makeFunction = [&](const char *name) {
    m.functions.push_back(std::make_unique<ir::Function>());
    m.functions.back()->name = name;
    return m.functions.back().get();
  };

  {  // train_step: forward with dropout, losses, then reverse mode for every parameter.
    ir::Function *fn = makeFunction("train_step");
    ForwardLowering fwd(model, m, params, *fn, /*training=*/true);
    auto heads = fwd.heads();
    auto [losses, total] = fwd.losses(heads);
    addOutputs(*fn, heads, &losses, total);
    recordTaskReach(losses, out.params);
    autodiff::appendGradients(m, *fn, total);
  }
  {
    ir::Function *fn = makeFunction("eval_step");
    ForwardLowering fwd(model, m, params, *fn, /*training=*/false);
    auto heads = fwd.heads();
    auto [losses, total] = fwd.losses(heads);
    addOutputs(*fn, heads, &losses, total);
    out.flopsPerSample = fwd.flops;
  }
  {
    ir::Function *fn = makeFunction("predict");
    ForwardLowering fwd(model, m, params, *fn, /*training=*/false);
    addOutputs(*fn, fwd.heads(), nullptr, nullptr);
  }
  if (needsTaskGradients(model.train.weighting)) {
    // task_grads: every task's own, unweighted gradient of every parameter. The heads are
    // differentiated once each; the shared trunk once per task (no forward recomputation).
    ir::Function *fn = makeFunction("task_grads");
    ForwardLowering fwd(model, m, params, *fn, /*training=*/true);
    auto heads = fwd.heads();
    auto [losses, total] = fwd.losses(heads);
    addOutputs(*fn, heads, &losses, total);
    for (size_t t = 0; t < losses.size(); ++t) {
      auto g = autodiff::differentiate(m, *fn, losses[t]);
      for (auto &[index, node] : g.params)
        fn->outputs.push_back({ir::Output::Kind::TaskGrad, (int)index, node, (int)t});
    }
    // rep_grads (MGDA-UB): each task's gradient with respect to the one shared tensor all heads
    // read, through the heads only.
    if (model.train.repGrad) {
      ir::Function *rf = makeFunction("rep_grads");
      ForwardLowering rfwd(model, m, params, *rf, /*training=*/true);
      auto rheads = rfwd.heads();
      auto [rlosses, rtotal] = rfwd.losses(rheads);
      if (Node *z = rfwd.sharedBoundary()) {
        addOutputs(*rf, rheads, &rlosses, rtotal);
        out.repWidth = z->type.elements();
        for (size_t t = 0; t < rlosses.size(); ++t) {
          auto g = autodiff::differentiate(m, *rf, rlosses[t], {z});
          auto it = g.nodes.find(z);
          if (it == g.nodes.end()) continue;
          Node *dz = it->second;
          if (dz->type.dims.size() != 1) dz = ir::Builder(*rf).reshape(dz, ir::Type{{dz->type.elements()}, true});
          rf->outputs.push_back({ir::Output::Kind::RepGrad, (int)t, dz});
        }
      } else {
        m.functions.pop_back();  // no single shared boundary: MGDA works on parameter gradients
      }
    }
  }
  placeSiblingWeights(out);
  // Mark frozen blocks' parameters.
  for (auto &p : out.params)
    for (const auto &f : model.train.freeze)
      if (p.block == f) p.frozen = true;
  return out;
}

rt::ModelSpec describeModel(const sema::Model &model, const LoweredModel &lowered) {
  rt::ModelSpec spec;
  spec.name = model.name;
  for (const auto &in : model.inputs) {
    rt::InputSpec is;
    is.name = in.name;
    is.shape = in.shape;
    is.size = 1;
    for (int64_t d : in.shape) is.size *= d;
    is.categories = in.categories;
    spec.inputs.push_back(std::move(is));
  }
  for (const auto &t : model.tasks) {
    rt::TaskSpec ts;
    ts.name = t.name;
    ts.loss = t.loss;
    ts.metrics = t.metrics;
    ts.weight = t.weight;
    ts.outWidth = 1;
    for (int64_t d : t.head.outShape) ts.outWidth *= d;
    ts.labelWidth = t.labelWidth;
    if (t.head.outShape.size() == 3) ts.pixels = t.head.outShape[1] * t.head.outShape[2];
    spec.tasks.push_back(std::move(ts));
  }
  spec.params = lowered.params;
  spec.paramCount = lowered.module.paramFloats;
  spec.maxBatch = lowered.module.maxBatch;
  spec.train = model.train;
  spec.data = model.data;
  spec.flopsPerSample = lowered.flopsPerSample;
  return spec;
}

}  // namespace mtlc::lower
