/* Embedding a compiled model in a C program: train a few steps on arrays, save, reload, predict.
 *
 *   mtlc build sensor.mtl -o gen   # gen/sensor.h, gen/mtlc_embed.h, gen/libsensor.a (+ gen/sensor.o)
 *   cc -std=c99 -I gen main.c gen/libsensor.a -lm
 *
 * Usage: embed_c [CHECKPOINT_PATH]
 */
#include "sensor.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define N SENSOR_MAX_BATCH

/* A deterministic toy problem: features in [-1, 1), cls = argmax of three feature sums,
 * flag = f0 > 0, target = f1 * f2. */
static void make_batch(unsigned *state, float *x, float *cls, float *flag, float *target) {
  int i, j;
  for (i = 0; i < N; ++i) {
    for (j = 0; j < SENSOR_INPUT_FEATURES_SIZE; ++j) {
      *state = *state * 1664525u + 1013904223u;
      x[i * 8 + j] = (float)(*state >> 8) / 8388608.0f - 1.0f;
    }
    {
      float a = x[i * 8 + 0] + x[i * 8 + 1], b = x[i * 8 + 2] + x[i * 8 + 3], c = x[i * 8 + 4] + x[i * 8 + 5];
      cls[i] = (float)(a >= b && a >= c ? 0 : b >= c ? 1 : 2);
    }
    flag[i] = x[i * 8] > 0 ? 1.0f : 0.0f;
    target[i] = x[i * 8 + 1] * x[i * 8 + 2];
  }
}

static int check(int status, const char *what, sensor_ctx *ctx) {
  if (status != SENSOR_OK) {
    fprintf(stderr, "%s: %s (%s)\n", what, sensor_strerror(status), ctx ? sensor_last_error(ctx) : "");
    return 1;
  }
  return 0;
}

int main(int argc, char **argv) {
  const char *path = argc > 1 ? argv[1] : "sensor_c.safetensors";
  static float x[N * 8], cls[N], flag[N], target[N];
  static float out_cls[N * 3], out_flag[N], out_target[N], again[N * 3], only_cls[N * 3];
  float losses[SENSOR_NUM_TASKS], total = 0, first = 0;
  unsigned state = 12345u;
  int step, status;
  sensor_ctx *ctx = sensor_create(), *copy;
  if (!ctx) return fprintf(stderr, "out of memory\n"), 1;
  if (check(sensor_init(ctx, 42), "init", ctx)) return 1;

  for (step = 1; step <= 30; ++step) {
    make_batch(&state, x, cls, flag, target);
    status = sensor_train_step(ctx, N, x, N * 8, cls, N, flag, N, target, N, losses, &total);
    if (check(status, "train_step", ctx)) return 1;
    if (step == 1) first = total;
    if (step % 10 == 0 || step == 1)
      printf("step %2d: total %.5f  cls %.5f  flag %.5f  target %.5f\n", step, total, losses[0], losses[1], losses[2]);
  }
  if (!(total < first)) return fprintf(stderr, "the loss did not go down: %g -> %g\n", first, total), 1;

  /* A wrong-sized buffer is refused, and nothing changes. */
  status = sensor_train_step(ctx, N, x, N * 8 - 1, cls, N, flag, N, target, N, losses, &total);
  if (status != SENSOR_ERR_SIZE) return fprintf(stderr, "a short buffer was accepted\n"), 1;
  printf("short input refused: %s (%s)\n", sensor_strerror(status), sensor_last_error(ctx));
  cls[0] = 3; /* not a class of a 3-way head */
  status = sensor_train_step(ctx, N, x, N * 8, cls, N, flag, N, target, N, losses, &total);
  if (status != SENSOR_ERR_VALUE) return fprintf(stderr, "an out-of-range class was accepted\n"), 1;
  cls[0] = 0;

  if (check(sensor_save(ctx, path), "save", ctx)) return 1;
  if (check(sensor_predict(ctx, N, x, N * 8, out_cls, N * 3, out_flag, N, out_target, N), "predict", ctx)) return 1;

  copy = sensor_create();
  if (!copy || check(sensor_load(copy, path), "load", copy)) return 1;
  if (sensor_steps(copy) != 30) return fprintf(stderr, "steps after load: %ld\n", (long)sensor_steps(copy)), 1;
  if (check(sensor_predict(copy, N, x, N * 8, again, N * 3, out_flag, N, out_target, N), "predict", copy)) return 1;
  if (memcmp(again, out_cls, sizeof again) != 0) return fprintf(stderr, "reloaded predictions differ\n"), 1;
  if (check(sensor_predict_cls(copy, N, x, N * 8, only_cls, N * 3), "predict_cls", copy)) return 1;
  if (memcmp(only_cls, out_cls, sizeof only_cls) != 0) return fprintf(stderr, "predict_cls differs from predict\n"), 1;
  {
    int i, correct = 0;
    for (i = 0; i < N; ++i) {
      const float *z = out_cls + i * 3;
      int arg = z[0] >= z[1] && z[0] >= z[2] ? 0 : z[1] >= z[2] ? 1 : 2;
      correct += arg == (int)cls[i];
    }
    printf("saved %s, reloaded: predictions identical; cls accuracy on the last batch %d/%d\n", path, correct, N);
  }
  sensor_destroy(copy);
  sensor_destroy(ctx);
  return 0;
}
