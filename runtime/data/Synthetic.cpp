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

Table multiFashion(const std::string& split, const std::string& dir) {
  Table src = fashionMnist(split, dir);
  const Field& px = *src.find("pixels");
  const Field& lab = *src.find("label");
  if (px.width != 784) throwError("{}: multi_fashion needs 28x28 images, found {} pixels", src.origin, px.width);
  const int64_t n = src.rows;
  std::vector<int64_t> perm(n);
  std::iota(perm.begin(), perm.end(), 0);
  Rng rng(split == "test" ? 2 : 1);
  for (int64_t i = n - 1; i > 0; --i) std::swap(perm[i], perm[uniformBelow(rng, uint64_t(i) + 1)]);

  Table t;
  t.origin = fmt::format("multi_fashion(\"{}\")", split);
  t.rows = n;
  Field pixels{"pixels", 784, HugeFloats(size_t(n) * 784)};
  Field left{"left", 1, HugeFloats(n)}, right{"right", 1, HugeFloats(n)};
  const int C = 36, S = 28, off = 8;
  float canvas[C * C];
  for (int64_t r = 0; r < n; ++r) {
    const float* a = &px.data[size_t(r) * 784];
    const float* b = &px.data[size_t(perm[r]) * 784];
    std::fill(canvas, canvas + C * C, 0.0f);
    for (int y = 0; y < S; ++y)
      for (int x = 0; x < S; ++x) {
        canvas[y * C + x] = a[y * S + x];
        float& c = canvas[(y + off) * C + x + off];
        c = std::max(c, b[y * S + x]);
      }
    // Bilinear 36 -> 28: output pixel centre (o + 0.5) maps to source coordinate (o + 0.5)·36/28 − 0.5.
    float* out = &pixels.data[size_t(r) * 784];
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
    left.data[r] = lab.data[r];
    right.data[r] = lab.data[perm[r]];
  }
  t.fields.push_back(std::move(pixels));
  t.fields.push_back(std::move(left));
  t.fields.push_back(std::move(right));
  return t;
}

}  // namespace mtlc::rt
