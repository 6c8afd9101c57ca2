#include "RefEval.h"

#include "ir/Builder.h"  // ir::matrixView: MatMul's documented operand views

#include <algorithm>
#include <cmath>
#include <sstream>
#include <stdexcept>
#include <unordered_map>

namespace mtlc::test::ref {

using ir::Node;
using ir::OpKind;

void Kink::note(double distance, const ir::Node &n, const char *what) {
  if (!(distance < margin)) return;
  margin = distance;
  std::ostringstream s;
  s << ir::mnemonic(n.op) << " %" << n.id << ": " << what << " (distance " << distance << ")";
  where = s.str();
}

const ir::Node *output(const ir::Function &f, ir::Output::Kind kind, int index) {
  for (const auto &o : f.outputs)
    if (o.kind == kind && (kind == ir::Output::Kind::TotalLoss || o.index == index)) return o.value;
  throw std::logic_error("ref::output: the function has no such output");
}

namespace {

class Interpreter {
 public:
  Interpreter(const Env &env, Values &out) : env_(env), out_(out), n_(env.n) {}

  void eval(const Node &node) {
    std::vector<double> &y = out_.byId.at(node.id);
    y.assign(count(node.type), 0.0);
    const auto &ops = node.operands;
    auto in = [&](size_t i) -> const std::vector<double> & {
      const auto &v = out_.byId.at(ops.at(i)->id);
      if (v.size() != (size_t)count(ops[i]->type))
        throw std::logic_error("ref: operand not evaluated or wrongly sized");
      return v;
    };
    switch (node.op) {
      // ---- leaves ----
      case OpKind::Input: copyRows(env_.inputs.at(node.ints.at(0)), y); break;
      case OpKind::Label: copyRows(env_.labels.at(node.ints.at(0)), y); break;
      case OpKind::Param: {
        const auto &p = env_.params.at(node.ints.at(0));
        if (p.size() != y.size()) throw std::logic_error("ref: parameter size differs");
        y = p;
        break;
      }
      case OpKind::LossWeight: y[0] = env_.lossWeights.at(node.ints.at(0)); break;
      case OpKind::Const: y[0] = node.f; break;

      // ---- layers ----
      case OpKind::MatMul: matmul(node, in(0), in(1), y); break;
      case OpKind::BiasAdd: {
        const auto &x = in(0), &b = in(1);
        int64_t C = node.type.dims[0], rest = node.type.elements() / C;
        for (int64_t s = 0; s < n_; ++s)
          for (int64_t c = 0; c < C; ++c)
            for (int64_t r = 0; r < rest; ++r) {
              int64_t i = (s * C + c) * rest + r;
              y[i] = x[i] + b[c];
            }
        break;
      }
      case OpKind::Conv2d: conv2d(node, in(0), in(1), y); break;
      case OpKind::ConvTranspose2d: convTranspose2d(node, in(0), in(1), y); break;
      case OpKind::MaxPool:
      case OpKind::AvgPool: pool(node, in(0), y); break;
      case OpKind::Reshape: y = in(0); break;
      case OpKind::Relu:
        unary(in(0), y, [&](double x) {
          out_.kink.note(std::abs(x), node, "relu input near 0");
          return x > 0 ? x : 0.0;
        });
        break;
      case OpKind::LeakyRelu:
        unary(in(0), y, [&](double x) {
          out_.kink.note(std::abs(x), node, "leaky_relu input near 0");
          return x > 0 ? x : node.f * x;
        });
        break;
      case OpKind::Sigmoid: unary(in(0), y, [](double x) { return 1 / (1 + std::exp(-x)); }); break;
      case OpKind::Tanh: unary(in(0), y, [](double x) { return std::tanh(x); }); break;
      case OpKind::Gelu:  // exact form: x·Φ(x), Φ(x) = ½(1 + erf(x/√2))
        unary(in(0), y, [](double x) { return 0.5 * x * (1 + std::erf(x / std::sqrt(2.0))); });
        break;
      case OpKind::SmoothStep:  // u = x/γ: 0, 1, or −2u³ + 3u/2 + ½ between
        unary(in(0), y, [&](double x) {
          double u = x / node.f;
          return u <= -0.5 ? 0.0 : u >= 0.5 ? 1.0 : -2 * u * u * u + 1.5 * u + 0.5;
        });
        break;
      case OpKind::Dropout: {
        auto it = env_.dropoutKeep.find(node.ints.at(0));
        if (it == env_.dropoutKeep.end()) throw std::logic_error("ref: no mask for a dropout site");
        const auto &x = in(0), &keep = it->second;
        if (keep.size() < y.size()) throw std::logic_error("ref: dropout mask too small");
        double scale = node.f < 1 ? 1 / (1 - node.f) : 0.0;
        for (size_t i = 0; i < y.size(); ++i) y[i] = keep[i] != 0 ? x[i] * scale : 0.0;
        break;
      }
      case OpKind::LayerNorm: layerNorm(node, in(0), in(1), in(2), y); break;
      case OpKind::BatchNorm: batchNorm(node, in(0), in(1), in(2), nullptr, nullptr, y); break;
      case OpKind::BatchNormEval: batchNorm(node, in(0), in(1), in(2), &in(3), &in(4), y); break;
      case OpKind::GlobalAvgPool: {
        const auto &x = in(0);
        int64_t planes = n_ * node.type.dims[0], P = ops[0]->type.elements() / node.type.dims[0];
        for (int64_t q = 0; q < planes; ++q) {
          double sum = 0;
          for (int64_t p = 0; p < P; ++p) sum += x[q * P + p];
          y[q] = sum / double(P);
        }
        break;
      }
      case OpKind::Upsample: upsample(node, in(0), y); break;
      case OpKind::Add:
      case OpKind::Mul: {
        const auto &a = in(0), &b = in(1);
        for (size_t i = 0; i < y.size(); ++i) y[i] = node.op == OpKind::Add ? a[i] + b[i] : a[i] * b[i];
        break;
      }

      case OpKind::Softmax: {
        const auto &x = in(0);
        int64_t E = node.type.elements();
        for (int64_t s = 0; s < n_; ++s) {
          const double *row = &x[s * E];
          double mx = *std::max_element(row, row + E), se = 0;
          for (int64_t i = 0; i < E; ++i) se += std::exp(row[i] - mx);
          for (int64_t i = 0; i < E; ++i) y[s * E + i] = std::exp(row[i] - mx) / se;
        }
        break;
      }
      case OpKind::Mix: {
        // Σ_k w_k·x_k with w a per-sample gate [E] or row ints[0] of an unbatched [R, E] matrix.
        const auto &w = in(0);
        int64_t E = (int64_t)ops.size() - 1, D = node.type.elements();
        bool gate = ops[0]->type.batched;
        for (int64_t k = 0; k < E; ++k) {
          const auto &x = in(1 + k);
          for (int64_t s = 0; s < n_; ++s) {
            double wk = gate ? w[s * E + k] : w[node.ints.at(0) * E + k];
            for (int64_t i = 0; i < D; ++i) y[s * D + i] += wk * x[s * D + i];
          }
        }
        break;
      }
      case OpKind::Embedding: {
        // table [V, D], indices [k] -> [k·D]: row idx_j of the table at j·D.
        const auto &table = in(0), &idx = in(1);
        int64_t V = ops[0]->type.dims[0], D = ops[0]->type.dims[1], K = ops[1]->type.elements();
        for (int64_t s = 0; s < n_; ++s)
          for (int64_t j = 0; j < K; ++j) {
            double v = idx[s * K + j];
            auto row = (int64_t)std::llround(v);
            if (row != v || row < 0 || row >= V) throw std::logic_error("ref: embedding index out of range");
            for (int64_t d = 0; d < D; ++d) y[(s * K + j) * D + d] = table[row * D + d];
          }
        break;
      }
      case OpKind::Concat: {
        int64_t width = node.type.elements(), at = 0;
        for (size_t k = 0; k < ops.size(); ++k) {
          const auto &x = in(k);
          int64_t d = ops[k]->type.elements();
          for (int64_t s = 0; s < n_; ++s)
            for (int64_t i = 0; i < d; ++i) y[s * width + at + i] = x[s * d + i];
          at += d;
        }
        break;
      }
      case OpKind::Transpose: {  // unbatched [R, C] -> [C, R]
        const auto &x = in(0);
        const int64_t R = ops[0]->type.dims.at(0), C = ops[0]->type.dims.at(1);
        for (int64_t r = 0; r < R; ++r)
          for (int64_t c = 0; c < C; ++c) y[c * R + r] = x[r * C + c];
        break;
      }
      case OpKind::Slice: {
        const auto &x = in(0);
        int64_t d = ops[0]->type.elements(), offset = node.ints.at(0), width = node.ints.at(1);
        for (int64_t s = 0; s < n_; ++s)
          for (int64_t i = 0; i < width; ++i) y[s * width + i] = x[s * d + offset + i];
        break;
      }

      // ---- losses: means over the present labels (a NaN label is absent; none present: 0) ----
      case OpKind::CrossEntropy: {  // one label per sample or pixel: masks per sample or pixel
        const auto &z = in(0), &label = in(1);
        const int64_t P = ops[1]->type.elements(), C = ops[0]->type.elements() / P;
        double sum = 0, present = 0;
        for (int64_t s = 0; s < n_; ++s)
          for (int64_t p = 0; p < P; ++p) {
            const double l = label[s * P + p];
            if (std::isnan(l)) continue;
            std::vector<double> row(C);  // the pixel's logits, P apart in [C, H, W]
            for (int64_t c = 0; c < C; ++c) row[c] = z[(s * C + c) * P + p];
            double mx = *std::max_element(row.begin(), row.end()), se = 0;
            for (int64_t c = 0; c < C; ++c) se += std::exp(row[c] - mx);
            auto cls = (int64_t)std::llround(l);
            if (cls < 0 || cls >= C) throw std::logic_error("ref: class index out of range");
            sum += mx + std::log(se) - row[cls];
            present += 1;
          }
        y[0] = present > 0 ? sum / present : 0.0;
        break;
      }
      case OpKind::Cosine: {  // 1 − cos over the channels, mean over pixels with a non-zero label
        const auto &pr = in(0), &t = in(1);
        const auto &d = ops[0]->type.dims;
        const int64_t C = d[0], P = ops[0]->type.elements() / C;
        double sum = 0, present = 0;
        for (int64_t s = 0; s < n_; ++s)
          for (int64_t p = 0; p < P; ++p) {
            double dot = 0, pp = 0, tt = 0;
            for (int64_t c = 0; c < C; ++c) {
              const double a = pr[(s * C + c) * P + p], b = t[(s * C + c) * P + p];
              dot += a * b, pp += a * a, tt += b * b;
            }
            if (!(tt > 0)) continue;
            sum += 1 - dot / (std::max(std::sqrt(pp), 1e-8) * std::max(std::sqrt(tt), 1e-8));
            present += 1;
          }
        y[0] = present > 0 ? sum / present : 0.0;
        break;
      }
      case OpKind::BCE:  // one label per sample, so per element is per sample
      case OpKind::MSE:  // mse and l1 mask per element: the mean over label[mask], as PyTorch
      case OpKind::L1: {
        const auto &p = in(0), &t = in(1);
        double sum = 0, present = 0;
        for (size_t i = 0; i < p.size(); ++i) {
          if (std::isnan(t[i])) continue;
          present += 1;
          double d = p[i] - t[i];
          if (node.op == OpKind::BCE)  // with logits: max(z,0) − z·y + log(1 + e^−|z|)
            sum += std::max(p[i], 0.0) - p[i] * t[i] + std::log1p(std::exp(-std::abs(p[i])));
          else if (node.op == OpKind::MSE)
            sum += d * d;
          else {
            out_.kink.note(std::abs(d), node, "l1 residual near 0");
            sum += std::abs(d);
          }
        }
        y[0] = present > 0 ? sum / present : 0.0;
        break;
      }
      default:
        throw std::logic_error(std::string("ref: not a forward op: ") + ir::mnemonic(node.op));
    }
  }

 private:
  int64_t count(const ir::Type &t) const { return t.elements() * (t.batched ? n_ : 1); }

  void copyRows(const std::vector<double> &from, std::vector<double> &y) {
    if (from.size() < y.size()) throw std::logic_error("ref: leaf has fewer values than n rows");
    std::copy(from.begin(), from.begin() + (long)y.size(), y.begin());
  }

  template <typename F>
  void unary(const std::vector<double> &x, std::vector<double> &y, F f) {
    for (size_t i = 0; i < y.size(); ++i) y[i] = f(x[i]);
  }

  // C = op(A)·op(B) over the 2-D views (a batched operand is [n, per-sample elements]).
  void matmul(const Node &node, const std::vector<double> &A, const std::vector<double> &B,
              std::vector<double> &C) {
    bool tA = node.ints.at(0), tB = node.ints.at(1);
    auto view = [&](const ir::Type &t) {
      auto [r, c] = ir::matrixView(t);
      return std::pair<int64_t, int64_t>{r == -1 ? n_ : r, c};
    };
    auto [ar, ac] = view(node.operands[0]->type);
    auto [br, bc] = view(node.operands[1]->type);
    int64_t M = tA ? ac : ar, K = tA ? ar : ac, K2 = tB ? bc : br, N = tB ? br : bc;
    if (K != K2 || (int64_t)C.size() != M * N) throw std::logic_error("ref: matmul extents");
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) {
        double sum = 0;
        for (int64_t k = 0; k < K; ++k)
          sum += (tA ? A[k * ac + i] : A[i * ac + k]) * (tB ? B[j * bc + k] : B[k * bc + j]);
        C[i * N + j] = sum;
      }
  }

  // Cross-correlation with zero padding, NCHW, like torch.nn.functional.conv2d.
  // Calls fn(in, out, wi) for every tap of the convolution of a [C,H,W] `inT` into a [O,OH,OW]
  // `outT` with w [O, C, KH, KW] (flat indices over the batch): out += in·w[wi].
  template <typename Fn>
  void convTaps(const ir::Type &inT, const ir::Type &outT, const ir::Type &wT, int64_t stride, int64_t pad, Fn fn) {
    int64_t C = inT.dims[0], H = inT.dims[1], W = inT.dims[2], O = outT.dims[0], OH = outT.dims[1];
    int64_t OW = outT.dims[2], KH = wT.dims[2], KW = wT.dims[3];
    for (int64_t s = 0; s < n_; ++s)
      for (int64_t o = 0; o < O; ++o)
        for (int64_t oh = 0; oh < OH; ++oh)
          for (int64_t ow = 0; ow < OW; ++ow)
            for (int64_t c = 0; c < C; ++c)
              for (int64_t kh = 0; kh < KH; ++kh)
                for (int64_t kw = 0; kw < KW; ++kw) {
                  int64_t ih = oh * stride - pad + kh, iw = ow * stride - pad + kw;
                  if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                  fn(((s * C + c) * H + ih) * W + iw, ((s * O + o) * OH + oh) * OW + ow,
                     ((o * C + c) * KH + kh) * KW + kw);
                }
  }

  void conv2d(const Node &node, const std::vector<double> &x, const std::vector<double> &w,
              std::vector<double> &y) {
    convTaps(node.operands[0]->type, node.type, node.operands[1]->type, node.ints.at(0), node.ints.at(1),
             [&](int64_t in, int64_t out, int64_t wi) { y[out] += x[in] * w[wi]; });
  }

  // nn.ConvTranspose2d without bias, w [C, O, KH, KW]: each input element scatters onto the output
  // at (ih·stride − pad + kh, iw·stride − pad + kw), the taps of the convolution from y back to x.
  void convTranspose2d(const Node &node, const std::vector<double> &x, const std::vector<double> &w,
                       std::vector<double> &y) {
    convTaps(node.type, node.operands[0]->type, node.operands[1]->type, node.ints.at(0), node.ints.at(1),
             [&](int64_t in, int64_t out, int64_t wi) { y[in] += x[out] * w[wi]; });
  }

  // k×k windows, no padding, floor output extents; avgpool divides by k².
  void pool(const Node &node, const std::vector<double> &x, std::vector<double> &y) {
    const auto &xd = node.operands[0]->type.dims, &yd = node.type.dims;
    int64_t C = xd[0], H = xd[1], W = xd[2], OH = yd[1], OW = yd[2];
    int64_t k = node.ints.at(0), stride = node.ints.at(1);
    bool isMax = node.op == OpKind::MaxPool;
    for (int64_t s = 0; s < n_; ++s)
      for (int64_t c = 0; c < C; ++c)
        for (int64_t oh = 0; oh < OH; ++oh)
          for (int64_t ow = 0; ow < OW; ++ow) {
            double best = -INFINITY, second = -INFINITY, sum = 0;
            for (int64_t kh = 0; kh < k; ++kh)
              for (int64_t kw = 0; kw < k; ++kw) {
                int64_t ih = oh * stride + kh, iw = ow * stride + kw;
                if (ih >= H || iw >= W) throw std::logic_error("ref: pool window out of range");
                double v = x[((s * C + c) * H + ih) * W + iw];
                sum += v;
                if (v > best) {
                  second = best;
                  best = v;
                } else if (v > second) {
                  second = v;
                }
              }
            if (isMax && k > 1) out_.kink.note(best - second, node, "maxpool window's top two values near a tie");
            y[((s * C + c) * OH + oh) * OW + ow] = isMax ? best : sum / double(k * k);
          }
  }

  // Over all per-sample elements: biased variance, then the elementwise affine map.
  void layerNorm(const Node &node, const std::vector<double> &x, const std::vector<double> &gamma,
                 const std::vector<double> &beta, std::vector<double> &y) {
    int64_t E = node.type.elements();
    for (int64_t s = 0; s < n_; ++s) {
      const double *row = &x[s * E];
      double mean = 0, var = 0;
      for (int64_t i = 0; i < E; ++i) mean += row[i];
      mean /= (double)E;
      for (int64_t i = 0; i < E; ++i) var += (row[i] - mean) * (row[i] - mean);
      var /= (double)E;
      double inv = 1 / std::sqrt(var + node.f);
      for (int64_t i = 0; i < E; ++i) y[s * E + i] = (row[i] - mean) * inv * gamma[i] + beta[i];
    }
  }

  // Per channel (dims[0]) over the batch and the plane: training (no running statistics given)
  // normalises with the batch's mean and biased variance, eval with the running ones.
  void batchNorm(const Node &node, const std::vector<double> &x, const std::vector<double> &gamma,
                 const std::vector<double> &beta, const std::vector<double> *runningMean,
                 const std::vector<double> *runningVar, std::vector<double> &y) {
    int64_t C = node.type.dims[0], S = node.type.elements() / C;
    for (int64_t c = 0; c < C; ++c) {
      double mean = 0, var = 0, N = double(n_ * S);
      for (int64_t s = 0; s < n_; ++s)
        for (int64_t p = 0; p < S; ++p) mean += x[(s * C + c) * S + p];
      mean /= N;
      for (int64_t s = 0; s < n_; ++s)
        for (int64_t p = 0; p < S; ++p) var += (x[(s * C + c) * S + p] - mean) * (x[(s * C + c) * S + p] - mean);
      var /= N;
      if (runningMean) mean = (*runningMean)[c], var = (*runningVar)[c];
      double inv = 1 / std::sqrt(var + node.f);
      for (int64_t s = 0; s < n_; ++s)
        for (int64_t p = 0; p < S; ++p) {
          int64_t i = (s * C + c) * S + p;
          y[i] = (x[i] - mean) * inv * gamma[c] + beta[c];
        }
    }
  }

  // nn.Upsample(scale_factor=s): nearest x[oh/s, ow/s]; bilinear with align_corners=False, the
  // source coordinate (o + 0.5)/s - 0.5 clamped at 0, its floor and the next index (clamped).
  void upsample(const Node &node, const std::vector<double> &x, std::vector<double> &y) {
    const auto &xd = node.operands[0]->type.dims;
    int64_t C = xd[0], H = xd[1], W = xd[2], s = node.ints.at(0), OH = H * s, OW = W * s;
    bool lerp = node.ints.at(1) == int64_t(ir::UpsampleMode::Bilinear);
    struct Src { int64_t i0, i1; double l0, l1; };
    auto source = [&](int64_t o, int64_t in) {
      double src = std::max(0.0, (double(o) + 0.5) / double(s) - 0.5);
      auto i0 = (int64_t)std::floor(src);
      int64_t i1 = std::min(i0 + 1, in - 1);
      return Src{i0, i1, 1 - (src - double(i0)), src - double(i0)};
    };
    for (int64_t q = 0; q < n_ * C; ++q)
      for (int64_t oh = 0; oh < OH; ++oh)
        for (int64_t ow = 0; ow < OW; ++ow) {
          const double *plane = &x[q * H * W];
          double v;
          if (!lerp) {
            v = plane[(oh / s) * W + ow / s];
          } else {
            Src h = source(oh, H), w = source(ow, W);
            v = h.l0 * (w.l0 * plane[h.i0 * W + w.i0] + w.l1 * plane[h.i0 * W + w.i1]) +
                h.l1 * (w.l0 * plane[h.i1 * W + w.i0] + w.l1 * plane[h.i1 * W + w.i1]);
          }
          y[(q * OH + oh) * OW + ow] = v;
        }
  }

  const Env &env_;
  Values &out_;
  int64_t n_;
};

}  // namespace

Values evaluate(const ir::Function &f, const Env &env, const std::vector<const ir::Node *> &targets) {
  Values out;
  int maxId = 0;
  for (const auto &up : f.nodes) maxId = std::max(maxId, up->id);
  out.byId.resize(maxId + 1);

  // The nodes the targets need (nodes are in topological order).
  std::unordered_map<const Node *, bool> needed;
  for (const Node *t : targets) needed[t] = true;
  for (size_t i = f.nodes.size(); i-- > 0;) {
    const Node *n = f.nodes[i].get();
    if (!targets.empty() && !needed.count(n)) continue;
    for (const Node *o : n->operands) needed[o] = true;
  }
  Interpreter interp(env, out);
  for (const auto &up : f.nodes)
    if (targets.empty() || needed.count(up.get())) interp.eval(*up);
  return out;
}

double totalLoss(const ir::Function &f, const Env &env) {
  const Node *total = output(f, ir::Output::Kind::TotalLoss);
  return evaluate(f, env, {total}).of(total).at(0);
}

}  // namespace mtlc::test::ref
