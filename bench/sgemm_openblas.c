/* sgemm_openblas: OpenBLAS's cblas_sgemm on one thread, the reference for mtlc's matmul kernel.
 *
 *   sgemm_openblas [--reps R] [N ...]      (default N = 64 128 256 512 1024, R = 5)
 *
 * C = A·B, row-major, no transposes, alpha 1, beta 0 (what mtlc's [N,N]·[N,N] matmul computes).
 * For each N: two warm-up calls, then R blocks of enough calls for about 0.2 s; GFLOP/s = 2·N³ per
 * call, the median block is reported. Prints one JSON object with the kernel OpenBLAS chose
 * (openblas_get_corename: set by CPU detection unless OPENBLAS_CORETYPE forces one) and its build
 * configuration. bench/run.py runs it with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The few OpenBLAS entry points used, declared here: Debian's /usr/include/cblas.h may be
 * netlib's through the alternatives system, and these three are OpenBLAS extensions. */
enum { RowMajor = 101, NoTrans = 111 };
void cblas_sgemm(int order, int transA, int transB, int m, int n, int k, float alpha, const float *a,
                 int lda, const float *b, int ldb, float beta, float *c, int ldc);
void openblas_set_num_threads(int n);
char *openblas_get_corename(void);
char *openblas_get_config(void);

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static void json_string(const char *s) {
  putchar('"');
  for (; s && *s; ++s) {
    if (*s == '"' || *s == '\\') putchar('\\');
    if ((unsigned char)*s >= 0x20) putchar(*s);
  }
  putchar('"');
}

int main(int argc, char **argv) {
  int reps = 5;
  int sizes[64], count = 0;
  for (int i = 1; i < argc; ++i) {
    if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc) reps = atoi(argv[++i]);
    else if (count < 64 && atoi(argv[i]) > 0) sizes[count++] = atoi(argv[i]);
    else {
      fprintf(stderr, "usage: sgemm_openblas [--reps R] [N ...]\n");
      return 2;
    }
  }
  if (count == 0) {
    int d[] = {64, 128, 256, 512, 1024};
    for (count = 0; count < 5; ++count) sizes[count] = d[count];
  }
  if (reps < 1) reps = 1;
  if (reps > 99) reps = 99;
  openblas_set_num_threads(1);

  printf("{\n  \"library\": \"openblas\",\n  \"corename\": ");
  json_string(openblas_get_corename());
  printf(",\n  \"config\": ");
  json_string(openblas_get_config());
  printf(",\n  \"coretype_env\": ");
  json_string(getenv("OPENBLAS_CORETYPE") ? getenv("OPENBLAS_CORETYPE") : "");
  printf(",\n  \"threads\": 1,\n  \"reps\": %d,\n  \"results\": [", reps);

  for (int s = 0; s < count; ++s) {
    const int n = sizes[s];
    float *a = aligned_alloc(64, sizeof(float) * (size_t)n * n + 64);
    float *b = aligned_alloc(64, sizeof(float) * (size_t)n * n + 64);
    float *c = aligned_alloc(64, sizeof(float) * (size_t)n * n + 64);
    srand(1);
    for (long i = 0; i < (long)n * n; ++i) {
      a[i] = (float)rand() / (float)RAND_MAX * 2.f - 1.f;
      b[i] = (float)rand() / (float)RAND_MAX * 2.f - 1.f;
    }
    double t0 = now_s();
    cblas_sgemm(RowMajor, NoTrans, NoTrans, n, n, n, 1.f, a, n, b, n, 0.f, c, n);
    cblas_sgemm(RowMajor, NoTrans, NoTrans, n, n, n, 1.f, a, n, b, n, 0.f, c, n);
    double once = (now_s() - t0) / 2;
    if (once < 1e-7) once = 1e-7;
    long iters = (long)(0.2 / once);
    if (iters < 1) iters = 1;
    double g[99];
    for (int r = 0; r < reps; ++r) {
      t0 = now_s();
      for (long i = 0; i < iters; ++i)
        cblas_sgemm(RowMajor, NoTrans, NoTrans, n, n, n, 1.f, a, n, b, n, 0.f, c, n);
      double sec = now_s() - t0;
      g[r] = 2.0 * n * (double)n * n * (double)iters / sec / 1e9;
    }
    double sorted[99];
    memcpy(sorted, g, sizeof(double) * reps);
    qsort(sorted, reps, sizeof(double), cmp_double);
    double med = reps % 2 ? sorted[reps / 2] : 0.5 * (sorted[reps / 2 - 1] + sorted[reps / 2]);
    printf("%s\n    {\"n\": %d, \"gflops\": %.3f, \"iters_per_rep\": %ld, \"rep_gflops\": [", s ? "," : "", n, med,
           iters);
    for (int r = 0; r < reps; ++r) printf("%s%.3f", r ? ", " : "", g[r]);
    printf("]}");
    free(a);
    free(b);
    free(c);
  }
  printf("\n  ]\n}\n");
  return 0;
}
