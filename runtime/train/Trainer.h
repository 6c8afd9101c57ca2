// The training loop: data → batches → the weighting strategy (which runs spec.trainStep, or
// taskGradsStep / repGradsStep, and leaves the model gradient in the grads arena) → optimizer,
// with evaluation, logging, progress and checkpoints. Everything the compiled kernels do not do
// themselves.
//
// Seeds: with s = TrainOptions::seed or else spec.train.seed,
//   initial parameters  initParams(spec, s)                       (Init.h)
//   epoch e's shuffle   Fisher–Yates from mt19937_64(s + e), e = 0 for the first epoch (Batcher.h)
//   dropout of step k   mtlc_args::seed = mix64(mix64(s) ^ k), k = 1 for the first step (Rng.h)
//
// Loss weights: Weighting.h (fixed, uniform, uncertainty, dwa, gradnorm, pcgrad, mgda). The log's
// `tasks.<t>.weight` is the effective weight of L_t in that step's gradient and "loss" the
// strategy's total (Σ w_i·L_i; uncertainty: its whole objective). Buffers: a T × paramCount arena
// for task_grads (zeroed before each call, so a kernel may leave untouched what a task's loss does
// not reach) and T extra outputs of maxBatch × repWidth for rep_grads (zeroed likewise).
//
// Partial labels: a NaN label is absent. The kernels mask it; the trainer counts the present
// labels of each batch (the strategies get them: a task without labels in a batch leaves its
// uncertainty s and GradNorm's loss ratio alone), metrics skip absent labels, and epoch means weight
// each batch by its present-label count (Metrics.h). The start lists the present counts when any
// label is missing.
//
// Threads: TrainOptions::threads sizes one ThreadPool (ThreadPool.h) that every kernel call of
// the run (train_step, task_grads, rep_grads, eval_step) is handed through mtlc_args. The kernels
// split work so that results do not depend on the thread count: a run trains bit-identically
// with any --threads.
//
// Denormals: flushed to zero while train() runs (TrainOptions::flushDenormals, FloatMode.h says
// why); the caller's floating-point mode is restored when it returns.
//
// Stopping: after `epochs` epochs (TrainOptions::epochs, or spec.train.epochs when −1), or earlier
// after `steps` optimizer steps when TrainOptions::steps ≥ 0 (mid-epoch; the test evaluation and
// the checkpoint still happen). SIGINT or SIGTERM (once) stops after the step in progress, as
// `steps` does, and writes the checkpoint when there is a savePath; a second signal kills.
//
// Checkpoints and resuming: every checkpoint the trainer writes (savePath at the end, and after
// every `checkpointEvery` steps) holds the parameters, the optimizer and weighting state and the
// run's position (Checkpoint.h TrainPosition). `resumePath` loads all of it and continues from that
// step: the steps, losses, weights and final parameters are bit-identical to a run that was never
// stopped. The seed, batch size and training set must be the run's (an Error otherwise). The log
// file, when it is the run's, keeps its lines up to the checkpoint and continues after them.
//
// `--init FILE` (transfer): the parameters are first initialised from the seed, then every one
// whose name AND shape match a tensor of the file is loaded (Checkpoint.h loadMatchingParams; an
// Error when none does). When some are not, the start prints what was loaded, what was initialised
// fresh (with both shapes on a mismatch) and what of the file went unused. Only when the file is
// of this model (every parameter loaded, no other parameter tensor in it) are the optimizer state
// (same optimizer) and the weighting's `mtl.` state (same strategy and tasks) restored too, so a
// saved run continues where it stopped.
//
// Frozen parameters (ParamSpec::frozen, from `freeze BLOCK`) are skipped by the optimizer; the
// start prints the frozen blocks, and warns about a frozen parameter that --init did not load.
//
// Validation: `data { val SOURCE }`, or `train { validation F }` — the last ceil(F·rows) rows of
// the training source in file order are held out (no random draw: the split is the same for every
// seed) and never trained on. After every epoch the validation set is evaluated like the test set
// and the selected value (`select TASK.METRIC`, else the total validation loss Σ weight·loss)
// compared with the best so far (strictly better; lower for losses, mse, mae, higher otherwise).
// A better epoch is written to saveBestPath (a checkpoint with the run's position: it can be
// resumed); `patience N` stops after N epochs in a row without one. The best value, its epoch and
// the epochs without improvement are part of the checkpoint's position (`train.best`).
//
// Gradient accumulation (`accumulate N`, TrainSpec::accumulate): the batches of an epoch form
// groups of N consecutive batches (the last group is shorter when N does not divide the epoch's
// batch count, and ends at the epoch's end: groups never span two epochs). Each batch's gradient,
// scaled by 1/N, is added to the group's sum; the group's last batch then clips the sum and takes
// one optimizer step on it: PyTorch's `(loss / N).backward()` with `step()` and `zero_grad()` when
// `(i + 1) % N == 0 or i == last`, so a short last group keeps the 1/N scaling. Everything that
// counts steps counts optimizer steps: TrainOptions::steps, checkpointEvery, the warm-up, the log's
// "step" and the report; schedules still step per epoch. The run stops (steps, a signal) and
// writes checkpoints only at a group's end, so a checkpoint never holds a partial sum and
// --resume continues at the next group bit-exactly. Micro-batch m > 0 of step k gets the dropout
// seed mix64(mix64(mix64(s) ^ k) + m). Weightings: fixed, uniform and dwa (sema refuses the
// others); a data-parallel job refuses N > 1.
//
// Log (`--log FILE`): JSON lines, one per optimizer step
//   {"step": 1, "epoch": 1, "loss": <total>, "tasks": {"<task>": {"loss": <L_i>, "weight": <w_i>}}}
// and, after each epoch when there is a test source,
//   {"epoch": 1, "test": {"<task>": {"loss": <L>, "<metric>": <value>, ...}}}
// (a metric that does not apply is null). With `accumulate N`, a step's "loss" and task losses are
// the means over its group's batches (each a batch mean), its weights the last batch's.
//
// Train metrics in the report are running values over the last epoch (as Keras shows them): the
// parameters change while they are gathered. They use the outputs that trainStep writes to
// mtlc_args::outputs; if a trainStep leaves them untouched, only the loss is reported.
//
// Contract with the kernels: trainStep writes losses (T + 1: each task's batch mean, then the
// weighted total) and the whole grads arena; evalStep writes losses and outputs and touches
// neither params nor grads (it is given grads = nullptr). Every kernel call of a step gets the same
// dropout seed (rep_grads and train_step of mgda see the same masks). The logged total is computed
// by the runtime from the task losses, not read from losses[T].
#pragma once

#include "runtime/data/Dataset.h"
#include "spec/ModelSpec.h"

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

namespace mtlc::rt {

class Communicator;  // Distributed.h
class ThreadPool;

struct TrainOptions {
  int64_t epochs = -1;          // -1: spec.train.epochs
  int64_t steps = -1;           // stop after this many optimizer steps in all (-1: no limit)
  std::string initPath, savePath, logPath;
  std::string saveBestPath;     // --save-best: the best validation epoch's checkpoint (atomically)
  std::string resumePath;       // continue the run a checkpoint of savePath stopped at
  int64_t checkpointEvery = 0;  // > 0: also write savePath after every this many steps
  std::optional<uint64_t> seed; // overrides spec.train.seed
  std::map<std::string, std::string> dataOverrides;  // "train"/"test" -> path (sourceFromPath)
  bool quiet = false;           // no progress display
  // Data-parallel training (Distributed.h): the job's ranks, or null for one process. Every rank
  // calls train() with the same options except that only rank 0 has the files to write (log,
  // save), progress and a real `out`; the trainer itself skips evaluation on the other ranks.
  Communicator* comm = nullptr;
  int64_t scheduleEpochs = -1;  // cosine's default t_max (-1: the run's epochs)
  int threads = 0;              // threads the kernels split across (0: every CPU this process may use;
                                // 1 per rank in a data-parallel job)
  bool flushDenormals = true;   // train with denormals flushed to zero (FloatMode.h)
  // In-memory data (the Python module): when trainData is set, it is trained on in place of the
  // program's "train" source, and testData (null: no test evaluation) is evaluated in place of its
  // "test" source. Both are validated by the caller and must outlive train().
  const Dataset* trainData = nullptr;
  const Dataset* testData = nullptr;
  // Called with each JSON line the log gets (one per step, one per epoch with a test source), with
  // or without a log file.
  std::function<void(const std::string&)> onLogLine;
};

struct TaskResult {
  std::string task;
  std::map<std::string, double> metrics;  // "loss", "accuracy", "auc", "mse", "mae"
};

struct TrainReport {
  int64_t steps = 0;             // optimizer steps taken (by the resumed run too, with --resume)
  int interruptedBy = 0;         // SIGINT or SIGTERM when one stopped the run early, else 0
  double seconds = 0;            // time in the training loop (without loading and evaluation)
  double samplesPerSec = 0;
  std::vector<TaskResult> test;  // after the last epoch; empty without a test source
  std::vector<TaskResult> train; // running values over the last epoch
  // Validation (`val SOURCE` / `validation F`): the last epoch's metrics, the best epoch by the
  // selected value (1-based; 0: none yet) and its test metrics when this process evaluated them.
  std::vector<TaskResult> val;
  int64_t bestEpoch = 0;
  double bestValue = 0;
  std::vector<TaskResult> bestTest;
  bool earlyStopped = false;     // patience ran out
};

TrainReport train(const ModelSpec& spec, const TrainOptions& options, std::ostream& out);

// Runs spec.evalStep over the whole dataset in file order, in batches of spec.maxBatch, its kernels
// split across `pool` (nullptr: on the calling thread).
std::vector<TaskResult> evaluate(const ModelSpec& spec, const float* params, const Dataset& data,
                                 ThreadPool* pool = nullptr);

// Loads the "train", "val" or "test" source of spec.data (or the override path for it), binds it and
// checks its labels against the tasks; the buffers are in model input / task order. `progress`:
// as loadSource's (off for -q).
Dataset loadSplit(const ModelSpec& spec, const std::string& split,
                  const std::map<std::string, std::string>& overrides = {}, bool progress = true);

// The loss weights a plain train_step starts from: fixed and pcgrad → TaskSpec::weight,
// uniform and mgda → 1/T, uncertainty → ½, dwa and gradnorm → 1 (Weighting.h changes them as it
// trains). Used for evaluation (where they only affect losses[T]) and by the benchmark.
std::vector<float> lossWeights(const ModelSpec& spec);

}  // namespace mtlc::rt
