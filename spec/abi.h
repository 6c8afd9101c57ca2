/* The calling convention between generated kernels and the runtime.
 *
 * Every entry point the compiler generates (train_step, eval_step, predict, ...) has the C type
 * `mtlc_entry_fn`: it takes one pointer to an `mtlc_args` record. The record's layout is mirrored
 * field by field in compiler/codegen (CodegenABI), so this header is the single place it is defined.
 * Plain C so that embedded programs (AOT bundles) can include it too.
 */
#ifndef MTLC_RUNTIME_ABI_H
#define MTLC_RUNTIME_ABI_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mtlc_args {
  float *params;               /* parameter arena (all learnable tensors, PyTorch layouts)      */
  float *grads;                /* gradient arena, same layout as params; written by train_step  */
  float *acts;                 /* activation arena, sized by the compiler's memory plan         */
  const float *const *inputs;  /* one pointer per model input: [n, per-sample shape], row-major */
  const float *const *labels;  /* one pointer per task: [n, label width] (class index as float) */
  const float *loss_weights;   /* one weight per task: the total loss is sum_i w_i * L_i        */
  float *losses;               /* out: one batch-mean loss per task, then the weighted total    */
  float *const *outputs;       /* out: one pointer per task: [n, head width] raw head outputs   */
  int64_t n;                   /* samples in this batch (1 .. max batch)                        */
  uint64_t seed;               /* dropout stream for this step                                  */
  /* Threads (optional; zero-initialised = run everything on the calling thread). Kernels with
   * enough work call parallel_for(pool, count, body, ctx): it must run body(ctx, begin, end) over
   * contiguous ranges that together cover [0, count) exactly once, possibly concurrently, and
   * return when all have finished. Results do not depend on how [0, count) is split, so any
   * thread count trains bit-identically. runtime/parallel/ThreadPool provides one
   * (ThreadPool::attach). */
  void *pool;                  /* passed back to parallel_for                                   */
  void (*parallel_for)(void *pool, int64_t count,
                       void (*body)(void *ctx, int64_t begin, int64_t end), void *ctx);
  int32_t threads;             /* how many threads parallel_for runs on; <= 1: kernels stay serial */
  /* Gradient readiness (optional; null = not told). train_step calls grads_ready(ctx, begin, end)
   * between kernels as soon as grads[begin, end) holds its final values and no later kernel of
   * the call reads or writes it, so a data-parallel runtime can start reducing those gradients
   * while the rest of the backward pass runs. The ranges are disjoint, reported in the same order
   * on every call, and together cover the gradients written in place (those delivered by a copy
   * at the end of the call are not reported). */
  void (*grads_ready)(void *ctx, int64_t begin, int64_t end);
  void *grads_ready_ctx;
} mtlc_args;

typedef void (*mtlc_entry_fn)(const mtlc_args *);

#ifdef __cplusplus
}
#endif
#endif
