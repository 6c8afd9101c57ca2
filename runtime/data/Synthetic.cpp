// Generated sources.
//
// synthetic_mmoe(correlation=p, samples=N, dim=d, seed=s): the regression pair of Ma et al.,
// "Modeling Task Relationships in Multi-task Learning with Multi-gate Mixture-of-Experts" (KDD 2018):
//   u1, u2: orthogonal unit vectors in R^d (Gaussian draws, Gram-Schmidt)
//   w1 = c·u1,  w2 = c·(p·u1 + sqrt(1 − p²)·u2)               (c = 1)
//   x ~ N(0, I_d)
//   y_k = w_kᵀx + Σ_{i=1..m} sin(α_i·w_kᵀx + β_i) + ε_k,      m = 10, α_i, β_i ~ N(0, 1), ε ~ N(0, 0.01)
// The Pearson correlation of the labels grows with p (the paper's knob). u1, u2, α, β come from
// `seed` alone, so the train and test sources share one generator; the samples x, ε come from a
// separate stream per split (seed·2 for train, seed·2+1 for test), so the two sets differ.
// Fields: `x` [N, d], `y1` [N, 1], `y2` [N, 1].
//
// multi_fashion("train" | "test"): two Fashion-MNIST items on one image, as MultiMNIST (Sener &
// Koltun, "Multi-Task Learning as Multi-Objective Optimization", 2018): sample i places item i at the
// top-left and item π(i) at the bottom-right of a 36x36 canvas (offset 8 pixels in each direction),
// overlapping pixels take the max, and the canvas is resized to 28x28 bilinearly (pixel centres
// aligned, as torch's interpolate(align_corners=False)). π is a Fisher–Yates permutation from
// mt19937_64(1) for "train" and (2) for "test". Fields: `pixels` [N, 784] in [0, 1], `left`, `right`
// [N, 1] class indices.
//
// multi_fashion_dense("train" | "test"): the same images and labels, plus per-pixel targets from each
// item alone on its own canvas, resized the same way: `left_pixels`, `right_pixels` [N, 784] (the
// top-left and the bottom-right item where it lies on the image) and `segment` [N, 784]: 0 where both
// are below 0.1, else 1 where the top-left item's value is the brighter (ties included), 2 where
// the bottom-right's is.
#include "runtime/data/Dataset.h"
#include "spec/Error.h"
#include "runtime/core/Rng.h"

#include <cmath>
#include <numeric>

namespace mtlc::rt {
static double normal(Rng& rng) { return standardNormal(rng); }

Table syntheticMmoe(double p, int64_t samples, int64_t dim, uint64_t seed, const std::string& split) {
  const int m = 10;
  const double c = 1.0;
  Rng gen(seed);
  std::vector<double> u1(dim), u2(dim);
  for (double& v : u1) v = normal(gen);
  for (double& v : u2) v = normal(gen);
  double n1 = std::sqrt(std::inner_product(u1.begin(), u1.end(), u1.begin(), 0.0));
  for (double& v : u1) v /= n1;
  double d12 = std::inner_product(u1.begin(), u1.end(), u2.begin(), 0.0);
  for (int64_t i = 0; i < dim; ++i) u2[i] -= d12 * u1[i];  // Gram–Schmidt: u2 ⟂ u1
  double n2 = std::sqrt(std::inner_product(u2.begin(), u2.end(), u2.begin(), 0.0));
  for (double& v : u2) v /= n2;
  std::vector<double> w1(dim), w2(dim);
  for (int64_t i = 0; i < dim; ++i) {
    w1[i] = c * u1[i];
    w2[i] = c * (p * u1[i] + std::sqrt(1 - p * p) * u2[i]);
  }
  double alpha[m], beta[m];
  for (int i = 0; i < m; ++i) alpha[i] = normal(gen), beta[i] = normal(gen);

  Table t;
  t.origin = fmt::format("synthetic_mmoe(correlation={}, samples={}, dim={}) [{}]", p, samples, dim, split);
  t.rows = samples;
  Field x{"x", dim, HugeFloats(size_t(samples) * dim)};
  Field y1{"y1", 1, HugeFloats(samples)}, y2{"y2", 1, HugeFloats(samples)};
  Rng draw(seed * 2 + (split == "test" ? 1 : 0));
  std::vector<double> xs(dim);
  for (int64_t r = 0; r < samples; ++r) {
    double a = 0, b = 0;  // w1ᵀx, w2ᵀx
    for (int64_t i = 0; i < dim; ++i) {
      xs[i] = normal(draw);
      x.data[size_t(r) * dim + i] = float(xs[i]);
      a += w1[i] * xs[i];
      b += w2[i] * xs[i];
    }
    double s1 = 0, s2 = 0;
    for (int i = 0; i < m; ++i) {
      s1 += std::sin(alpha[i] * a + beta[i]);
      s2 += std::sin(alpha[i] * b + beta[i]);
    }
    y1.data[r] = float(a + s1 + 0.1 * normal(draw));
    y2.data[r] = float(b + s2 + 0.1 * normal(draw));
  }
  t.fields.push_back(std::move(x));
  t.fields.push_back(std::move(y1));
  t.fields.push_back(std::move(y2));
  return t;
}

namespace {

constexpr int kCanvas = 36, kSide = 28, kOffset = 8;

// Bilinear 36 -> 28: output pixel centre (o + 0.5) maps to source coordinate (o + 0.5)·36/28 − 0.5.
void resizeCanvas(const float* canvas, float* out) {
  const int C = kCanvas, S = kSide;
  for (int oy = 0; oy < S; ++oy) {
    double sy = std::max(0.0, (oy + 0.5) * C / S - 0.5);
    int y0 = std::min(int(sy), C - 1), y1 = std::min(y0 + 1, C - 1);
    double fy = sy - y0;
    for (int ox = 0; ox < S; ++ox) {
      double sx = std::max(0.0, (ox + 0.5) * C / S - 0.5);
      int x0 = std::min(int(sx), C - 1), x1 = std::min(x0 + 1, C - 1);
      double fx = sx - x0;
      double v = (1 - fy) * ((1 - fx) * canvas[y0 * C + x0] + fx * canvas[y0 * C + x1]) +
                 fy * ((1 - fx) * canvas[y1 * C + x0] + fx * canvas[y1 * C + x1]);
      out[oy * S + ox] = float(v);
    }
  }
}

// One item alone on the canvas at offset (off, off).
void place(const float* item, int off, float* canvas) {
  std::fill(canvas, canvas + kCanvas * kCanvas, 0.0f);
  for (int y = 0; y < kSide; ++y)
    for (int x = 0; x < kSide; ++x) canvas[(y + off) * kCanvas + x + off] = item[y * kSide + x];
}

// multi_fashion's table; with `dense`, also segment, left_pixels and right_pixels.
Table overlaidFashion(const std::string& split, const std::string& dir, bool dense) {
  const char* name = dense ? "multi_fashion_dense" : "multi_fashion";
  Table src = fashionMnist(split, dir);
  const Field& px = *src.find("pixels");
  const Field& lab = *src.find("label");
  if (px.width != 784) throwError("{}: {} needs 28x28 images, found {} pixels", src.origin, name, px.width);
  const int64_t n = src.rows;
  std::vector<int64_t> perm(n);
  std::iota(perm.begin(), perm.end(), 0);
  Rng rng(split == "test" ? 2 : 1);
  for (int64_t i = n - 1; i > 0; --i) std::swap(perm[i], perm[uniformBelow(rng, uint64_t(i) + 1)]);

  Table t;
  t.origin = fmt::format("{}(\"{}\")", name, split);
  t.rows = n;
  const size_t P = kSide * kSide;
  Field pixels{"pixels", int64_t(P), HugeFloats(size_t(n) * P)};
  Field left{"left", 1, HugeFloats(n)}, right{"right", 1, HugeFloats(n)};
  const size_t denseRows = dense ? size_t(n) : 0;
  Field segment{"segment", int64_t(P), HugeFloats(denseRows * P)};
  Field leftPixels{"left_pixels", int64_t(P), HugeFloats(denseRows * P)};
  Field rightPixels{"right_pixels", int64_t(P), HugeFloats(denseRows * P)};
  float canvas[kCanvas * kCanvas], second[kCanvas * kCanvas];
  for (int64_t r = 0; r < n; ++r) {
    const float* a = &px.data[size_t(r) * P];
    const float* b = &px.data[size_t(perm[r]) * P];
    place(b, kOffset, second);
    if (dense) {
      place(a, 0, canvas);
      resizeCanvas(canvas, &leftPixels.data[size_t(r) * P]);
      resizeCanvas(second, &rightPixels.data[size_t(r) * P]);
    }
    for (int y = 0; y < kSide; ++y)  // the overlay: item a at the top-left, the max where they meet
      for (int x = 0; x < kSide; ++x) {
        float& c = second[y * kCanvas + x];
        c = std::max(c, a[y * kSide + x]);
      }
    resizeCanvas(second, &pixels.data[size_t(r) * P]);
    left.data[r] = lab.data[r];
    right.data[r] = lab.data[perm[r]];
    if (!dense) continue;
    for (size_t p = 0; p < P; ++p) {
      float l = leftPixels.data[size_t(r) * P + p], rt = rightPixels.data[size_t(r) * P + p];
      segment.data[size_t(r) * P + p] = l < 0.1f && rt < 0.1f ? 0.0f : l >= rt ? 1.0f : 2.0f;
    }
  }
  t.fields.push_back(std::move(pixels));
  t.fields.push_back(std::move(left));
  t.fields.push_back(std::move(right));
  if (dense) {
    t.fields.push_back(std::move(segment));
    t.fields.push_back(std::move(leftPixels));
    t.fields.push_back(std::move(rightPixels));
  }
  return t;
}

}  // namespace

Table multiFashion(const std::string& split, const std::string& dir) { return overlaidFashion(split, dir, false); }

Table multiFashionDense(const std::string& split, const std::string& dir) {
  return overlaidFashion(split, dir, true);
}

}  // namespace mtlc::rt
