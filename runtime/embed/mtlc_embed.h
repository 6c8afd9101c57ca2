/* mtlc_embed: the run-time support of models compiled ahead of time by `mtlc build`.
 *
 * `mtlc build MODEL.mtl -o DIR` writes DIR/<model>.o (the generated kernels plus a constant
 * `mtlc_embed_bundle` describing the model), DIR/<model>.h (typed, documented wrappers around
 * the functions below), this header, and DIR/lib<model>.a (<model>.o and this library's code).
 * A program includes <model>.h and links with DIR alone:
 *   cc -std=c99 -I DIR main.c DIR/lib<model>.a -lm
 * The library needs the C library and libm only: no LLVM, ANTLR, fmt, JSON or C++ runtime.
 * (`cmake --install` also puts libmtlc_embed.a and this header under the prefix, for programs
 * that link <model>.o themselves.) docs/embedding.md has the whole story.
 *
 * Most programs call the typed wrappers of <model>.h, never these functions directly.
 *
 * Memory: each context owns its parameter, gradient, activation and optimizer arenas (64-byte
 * aligned heap memory, sizes in <model>.h). There is no global state: contexts are independent.
 * Thread safety: one context must not be used by two threads at once; distinct contexts may be
 * used concurrently from different threads (the kernels and these functions are reentrant).
 */
#ifndef MTLC_EMBED_H
#define MTLC_EMBED_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct mtlc_args; /* spec/abi.h */

/* A generated entry point (the C type mtlc_entry_fn of spec/abi.h). */
typedef void (*mtlc_embed_entry)(const struct mtlc_args *);

/* What `mtlc build` puts into the object file, as `mtlc_<model>_bundle`. */
typedef struct mtlc_embed_bundle {
  const char *desc;                      /* text description: sizes, tasks, parameter table    */
  mtlc_embed_entry train_step;           /* forward + losses + backward                        */
  mtlc_embed_entry predict;              /* forward: every task's head                         */
  const mtlc_embed_entry *task_predict;  /* one per task: the trunk and that task's head only  */
  const float *weights;                  /* --embed-weights: the parameter arena, else NULL    */
} mtlc_embed_bundle;

/* Status codes: every function returns one (0 = success). */
enum {
  MTLC_OK = 0,
  MTLC_ERR_NULL = 1,       /* a required pointer argument is NULL                              */
  MTLC_ERR_BATCH = 2,      /* n is not in [1, max batch]                                       */
  MTLC_ERR_SIZE = 3,       /* an element count does not equal n times the per-sample size     */
  MTLC_ERR_VALUE = 4,      /* a class label or embedding index is out of range / not integer  */
  MTLC_ERR_IO = 5,         /* a file cannot be read or written                                 */
  MTLC_ERR_FORMAT = 6,     /* a file is not a safetensors file of this model                   */
  MTLC_ERR_NOMEM = 7,      /* out of memory                                                    */
  MTLC_ERR_NONFINITE = 8,  /* a loss became NaN or infinite (the parameters were not updated) */
  MTLC_ERR_TASK = 9,       /* no such task index                                               */
  MTLC_ERR_INTERNAL = 10   /* the bundle's description is inconsistent (a bug in mtlc)         */
};

typedef struct mtlc_embed_ctx mtlc_embed_ctx;

/* Allocates a context. Its parameters are the embedded weights when the bundle has them, else
 * PyTorch-default initialisation from the program's `seed`. Returns NULL (and *status, when
 * status is not NULL) on failure. */
mtlc_embed_ctx *mtlc_embed_create(const mtlc_embed_bundle *bundle, int *status);
void mtlc_embed_destroy(mtlc_embed_ctx *ctx); /* NULL is allowed */

/* Parameters from seed (the rule of `mtlc train`: mt19937_64(seed), parameters in table order);
 * resets the optimizer state and step count; seed also drives dropout of later train steps. */
int mtlc_embed_init(mtlc_embed_ctx *ctx, uint64_t seed);
/* safetensors checkpoints with mtlc train's names (parameters, then optim.* state). load takes
 * every file `mtlc train --save / --checkpoint-every` or an interrupted run writes: it restores the
 * parameters and, for this optimizer, optim.*; it skips the trainer's other state (mtl.* of a loss
 * weighting, train.* of a mid-epoch position); any other tensor, a missing parameter or another
 * shape is MTLC_ERR_FORMAT (another model's file). */
int mtlc_embed_load(mtlc_embed_ctx *ctx, const char *path);
int mtlc_embed_save(mtlc_embed_ctx *ctx, const char *path);

/* inputs/labels: one pointer per model input / task with the element counts of each buffer.
 * task_losses: T floats out (may be NULL); total_loss: 1 float out (may be NULL). */
int mtlc_embed_train_step(mtlc_embed_ctx *ctx, int64_t n, const float *const *inputs,
                          const size_t *input_counts, const float *const *labels,
                          const size_t *label_counts, float *task_losses, float *total_loss);
int mtlc_embed_predict(mtlc_embed_ctx *ctx, int64_t n, const float *const *inputs,
                       const size_t *input_counts, float *const *outputs,
                       const size_t *output_counts);
int mtlc_embed_predict_task(mtlc_embed_ctx *ctx, int task, int64_t n, const float *const *inputs,
                            const size_t *input_counts, float *output, size_t output_count);

const char *mtlc_embed_strerror(int status);
/* A message about the last failure on ctx ("" if none): names the file, tensor or argument. */
const char *mtlc_embed_last_error(const mtlc_embed_ctx *ctx);
/* The parameter arena (PyTorch layouts at the offsets listed in <model>.h) and its length. */
float *mtlc_embed_params(mtlc_embed_ctx *ctx);
int64_t mtlc_embed_param_count(const mtlc_embed_ctx *ctx);
/* Optimizer steps taken (restored by load when the file has optimizer state). */
int64_t mtlc_embed_steps(const mtlc_embed_ctx *ctx);
/* The learning rate of the next train steps: the program's optimizer lr until set. A bundle does
 * not apply the program's `schedule` or `warmup`; a program that wants them sets the rate before
 * each step (docs/language.md gives the rules). set_lr refuses a rate that is not a finite
 * number > 0 (MTLC_ERR_VALUE); lr of NULL is 0. */
int mtlc_embed_set_lr(mtlc_embed_ctx *ctx, double lr);
double mtlc_embed_lr(const mtlc_embed_ctx *ctx);

#ifdef __cplusplus
}
#endif
#endif
