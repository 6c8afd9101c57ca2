// The memory-traffic bound of the batch-1 MLP step (bench/models/mlp.mtl at batch 1, sgd with
// momentum): its two large weights, W1 [256, 784] and W2 [128, 256] (99.2% of the 235,275
// parameters; the heads and biases are left out), trained one sample at a time as mtlc does it
// today and with the weight gradient fused into the update, in plain vector code on this core.
//
//   today:  forward (reads W1, W2), the input gradient of layer 2 (reads W2 again), the weight
//           gradients as outer products (writes G), then the optimizer over the arena (reads G,
//           M and W, writes M and W): 7 passes over the weights' size.
//   fused:  forward, the input gradient, then per row g = dy·x, M = mu·M + g, W = W − lr·M, the
//           gradient never stored: 5 passes.
//
// Weights, gradients and momentum (2.8 MB) live in L3 between steps, so the step is bound by this
// core's L3 bandwidth; each line prints the fastest of 3000 runs (the least disturbed by other
// processes), the bytes it moves and the rate. bench/RESULTS.md has the numbers and the arithmetic.
// Build: the `batch1_bound` target (-march=native: it measures the machine it is built on).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define OUT1 256
#define IN1 784
#define OUT2 128
#define IN2 256
#define PARAMS ((long)OUT1 * IN1 + (long)OUT2 * IN2)

typedef float v16 __attribute__((vector_size(64)));

static float *weights, *grads, *momentum;
static float x1[IN1], h1[OUT1], h2[OUT2], dy1[OUT1], dy2[OUT2];
static volatile float sink;

static v16 load16(const float *p) {
  v16 v;
  memcpy(&v, p, sizeof v);
  return v;
}

static float sum16(v16 v) {
  float s = 0;
  for (int i = 0; i < 16; ++i) s += v[i];
  return s;
}

static double seconds(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

// y = relu(w·x), w [out, in] row-major, two vector accumulators per row (in is a multiple of 16).
static void matvecRelu(const float *w, const float *x, float *y, int out, int in) {
  for (int i = 0; i < out; ++i) {
    const float *row = w + (long)i * in;
    v16 a = {0}, b = {0};
    int j = 0;
    for (; j + 32 <= in; j += 32) {
      a += load16(row + j) * load16(x + j);
      b += load16(row + j + 16) * load16(x + j + 16);
    }
    for (; j < in; j += 16) a += load16(row + j) * load16(x + j);
    float s = sum16(a + b);
    y[i] = s > 0 ? s : 0;
  }
}

// The forward pass and layer 2's input gradient dy1 = W2ᵀ·dy2 (reads W2 a second time).
static void forwardAndInputGradient(void) {
  const float *w2 = weights + (long)OUT1 * IN1;
  matvecRelu(weights, x1, h1, OUT1, IN1);
  matvecRelu(w2, h1, h2, OUT2, IN2);
  memset(dy1, 0, sizeof dy1);
  for (int i = 0; i < OUT2; ++i)
    for (int j = 0; j < IN2; ++j) dy1[j] += dy2[i] * w2[(long)i * IN2 + j];
}

static void outerProduct(float *g, const float *dy, const float *x, int out, int in) {
  for (int i = 0; i < out; ++i)
    for (int j = 0; j < in; ++j) g[(long)i * in + j] = dy[i] * x[j];
}

static void sgdMomentum(long count, float lr, float mu) {
  for (long i = 0; i < count; ++i) {
    momentum[i] = mu * momentum[i] + grads[i];
    weights[i] = weights[i] - lr * momentum[i];
  }
}

static void outerProductUpdate(float *w, float *m, const float *dy, const float *x, int out, int in,
                               float lr, float mu) {
  for (int i = 0; i < out; ++i) {
    float *wr = w + (long)i * in, *mr = m + (long)i * in;
    for (int j = 0; j < in; ++j) {
      float b = mu * mr[j] + dy[i] * x[j];
      mr[j] = b;
      wr[j] = wr[j] - lr * b;
    }
  }
}

static void outerProducts(void) {
  outerProduct(grads, dy1, x1, OUT1, IN1);
  outerProduct(grads + (long)OUT1 * IN1, dy2, h1, OUT2, IN2);
}

static void stepToday(void) {
  forwardAndInputGradient();
  outerProducts();
  sgdMomentum(PARAMS, 1e-3f, 0.9f);
}

static void stepFused(void) {
  forwardAndInputGradient();
  outerProductUpdate(weights, momentum, dy1, x1, OUT1, IN1, 1e-3f, 0.9f);
  outerProductUpdate(weights + (long)OUT1 * IN1, momentum + (long)OUT1 * IN1, dy2, h1, OUT2, IN2, 1e-3f, 0.9f);
}

static void updateAlone(void) { sgdMomentum(PARAMS, 1e-3f, 0.9f); }

static void readThreeStreams(void) {
  v16 a = {0}, b = {0}, c = {0};
  for (long i = 0; i < PARAMS; i += 16) {
    a += load16(weights + i);
    b += load16(momentum + i);
    c += load16(grads + i);
  }
  sink = sum16(a + b + c);
}

static double fastestMicroseconds(void (*f)(void), int runs) {
  for (int i = 0; i < 50; ++i) f();
  double best = 1e30;
  for (int i = 0; i < runs; ++i) {
    double t = seconds();
    f();
    double d = seconds() - t;
    if (d < best) best = d;
  }
  return best * 1e6;
}

int main(void) {
  const size_t bytes = (size_t)PARAMS * sizeof(float);
  weights = aligned_alloc(64, bytes), grads = aligned_alloc(64, bytes), momentum = aligned_alloc(64, bytes);
  if (!weights || !grads || !momentum) return 1;
  for (long i = 0; i < PARAMS; ++i) weights[i] = 1e-3f * (float)(i % 97), grads[i] = 0, momentum[i] = 0;
  for (int j = 0; j < IN1; ++j) x1[j] = 0.01f * (float)(j % 13);
  for (int i = 0; i < OUT1; ++i) dy1[i] = 1e-4f * (float)i;
  for (int i = 0; i < OUT2; ++i) dy2[i] = 1e-3f * (float)i;

  const double w = (double)bytes, w2 = (double)OUT2 * IN2 * sizeof(float);
  struct { const char *name; void (*f)(void); double bytes; } cases[] = {
      {"step today (7 passes)", stepToday, 7 * w + w2},
      {"step, gradient fused (5 passes)", stepFused, 5 * w + w2},
      {"forward + input gradient", forwardAndInputGradient, w + w2},
      {"outer products (write G)", outerProducts, w},
      {"sgd-momentum update (5 streams)", updateAlone, 5 * w},
      {"read W, M, G (3 streams)", readThreeStreams, 3 * w},
  };
  printf("batch-1 MLP step, W1 [256,784] + W2 [128,256] (%.2f MB of weights); fastest of 3000 runs\n", w * 1e-6);
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; ++k) {
    double us = fastestMicroseconds(cases[k].f, 3000);
    printf("  %-34s %7.2f µs  %5.2f MB  %6.1f GB/s\n", cases[k].name, us, cases[k].bytes * 1e-6,
           cases[k].bytes / us * 1e-3);
  }
  return 0;
}
