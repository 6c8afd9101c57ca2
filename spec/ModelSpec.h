// What the runtime knows about a compiled model: the contract between the compiler (which fills it
// in from the checked program and the memory plan) and the trainer (which only reads it).
// Nothing here depends on LLVM or ANTLR, so embedded programs can use it too.
#pragma once

#include "spec/Init.h"
#include "spec/Vocabulary.h"
#include "spec/abi.h"

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace mtlc::rt {

struct ParamSpec {
  std::string name;            // checkpoint name: "<pipeline>.<layer index>.<weight|bias>"
  std::vector<int64_t> shape;  // PyTorch layout: dense [out, in], conv [oc, ic, kh, kw]
  int64_t offset = 0;          // element offset into the params (and grads) arena
  int64_t size = 0;            // element count
  Init init = Init::UniformFanIn;
  int64_t fanIn = 1;           // for UniformFanIn
  double bound = 0;            // for Uniform
  std::string block;           // the shared block or task that owns it (for summaries)
  // The tasks whose loss reaches this tensor in the graph (indices into ModelSpec::tasks,
  // ascending): the compiler walks each task's loss back to the parameters it reads. A shared
  // block is reached by every task that reads it, directly or through later blocks; inside an
  // expert block a task's own gate (and a PLE top-level task expert, a cross-stitch last-stage
  // column) only by that task. docs/mtl-methods.md lists the cases.
  std::vector<int> tasks;
  bool frozen = false;         // `freeze BLOCK`: the optimizer leaves it unchanged
  // Batchnorm's running statistics (PyTorch's buffers): state in the params arena that the
  // train_step kernels update in place; no gradient, the optimizer leaves it alone, checkpoints
  // save and load it with the parameters. `integer`: saved as I64 (num_batches_tracked).
  bool state = false;
  bool integer = false;
  bool learnable() const { return !frozen && !state; }
  // Reached by two or more tasks' losses: what gradient surgery (pcgrad, mgda) acts on. A
  // task's own gate is task-specific, however shared the block that holds it.
  bool shared() const { return tasks.size() >= 2; }
  // Reached by every one of the model's `taskCount` tasks (gradnorm measures on such a weight).
  bool reachedByAll(int64_t taskCount) const { return int64_t(tasks.size()) == taskCount; }
};

struct InputSpec {
  std::string name;
  std::vector<int64_t> shape;  // per sample
  int64_t size = 0;            // per-sample element count
  int64_t categories = 0;      // > 0: values are class indices in [0, categories) (embeddings);
                               // the runtime checks them before training
};

// The vocabulary's enums (spec/Vocabulary.def has the rows, their names and arguments).
using vocab::LossKind;
using vocab::Metric;
using vocab::OptimizerKind;
using vocab::ScheduleKind;
using vocab::WeightingKind;

struct TaskSpec {
  std::string name;
  LossKind loss = LossKind::MSE;
  std::vector<Metric> metrics;
  double weight = 1.0;      // the `weight` line
  int64_t outWidth = 1;     // head output width per sample
  int64_t labelWidth = 1;   // label floats per sample (1 for class index / binary; H·W for a
                            // dense cross_entropy head, a class index per pixel)
  int64_t pixels = 1;       // positions per sample: H·W of a [C, H, W] head, else 1; the head's
                            // channels are outWidth / pixels (cross_entropy's classes, cosine's
                            // vector)
};

// ---- Data binding -------------------------------------------------------------------------------

// A data source named in `data { train ...; test ... }`.
struct SourceSpec {
  std::string kind;                 // "fashion_mnist" | "idx" | "csv" (more later)
  std::vector<std::string> args;    // string arguments, paths already resolved against the .mtl dir
  std::map<std::string, double> options;  // named numeric arguments (e.g. synthetic generators)
  bool present() const { return !kind.empty(); }
};

// A field selection of a source: a named field, or (csv) a list / range of columns.
struct FieldRef {
  std::string field;                  // "pixels", "label", a csv column name; empty if columns used
  std::vector<std::string> columns;   // csv columns("a", "b")
  int64_t colFirst = -1, colLast = -1;  // csv columns(3..10), inclusive, 0-based
};

// A binding expression: FIELD [transform]. Produces float per-sample vectors.
struct BindExpr {
  enum class Op { Field, Div, Mul, Add, Sub, In, Eq, Ne, Gt, Ge, Lt, Le };
  Op op = Op::Field;
  FieldRef ref;                 // the field it reads (Field and every transform read one field)
  double value = 0;             // the constant of Div/Mul/Add/Sub/Eq/Ne/Gt/Ge/Lt/Le
  std::vector<double> set;      // In {a, b, c}
};

struct Binding {
  std::string target;   // input or task name
  BindExpr expr;
  int64_t width = 1;    // floats per sample the target expects
};

struct DataSpec {
  SourceSpec train, test;
  SourceSpec val;  // `val SOURCE`: the validation set (absent: none, or `train { validation F }`)
  std::vector<Binding> inputs;  // in model input order
  std::vector<Binding> labels;  // in task order
};

// ---- Training settings ----------------------------------------------------------------------------

struct OptimizerSpec {
  OptimizerKind kind = OptimizerKind::Adam;
  double lr = 1e-3, momentum = 0, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weightDecay = 0;
  double alpha = 0.99;  // rmsprop's smoothing constant
  double nesterov = 0;  // sgd: 1 for Nesterov momentum (a true/false argument; the fields are numbers)
  // The field an optimizer argument of the vocabulary table sets ("lr", "weight_decay"); null
  // for a name that has none (a new argument's row needs its field here).
  double *setting(const std::string &arg) {
    if (arg == "lr") return &lr;
    if (arg == "momentum") return &momentum;
    if (arg == "beta1") return &beta1;
    if (arg == "beta2") return &beta2;
    if (arg == "eps") return &eps;
    if (arg == "weight_decay") return &weightDecay;
    if (arg == "alpha") return &alpha;
    if (arg == "nesterov") return &nesterov;
    return nullptr;
  }
  const double *setting(const std::string &arg) const { return const_cast<OptimizerSpec *>(this)->setting(arg); }
  bool operator==(const OptimizerSpec &) const = default;
};

// `schedule S`: the learning rate of each epoch (runtime/train/Schedule.h has the rules).
struct ScheduleSpec {
  ScheduleKind kind = ScheduleKind::Step;
  double every = 1, gamma = 0.1, etaMin = 0;
  double tMax = 0;              // cosine: 0 for the run's epochs (the argument's derived default)
  std::vector<int64_t> at;      // multistep: the epochs after which the rate drops, increasing
  // The number field an argument of the vocabulary table sets (`at` is the list); null for none.
  double *setting(const std::string &arg) {
    if (arg == "every") return &every;
    if (arg == "gamma") return &gamma;
    if (arg == "eta_min") return &etaMin;
    if (arg == "t_max") return &tMax;
    return nullptr;
  }
  const double *setting(const std::string &arg) const { return const_cast<ScheduleSpec *>(this)->setting(arg); }
  bool operator==(const ScheduleSpec &) const = default;
};

// `precision fp32|bf16`: the arithmetic of the products (matmuls, convolutions, their gradients).
// bf16 rounds their operands to bfloat16 and accumulates in fp32 where the CPU has AVX-512 BF16
// (else fp32, with a note); weights, optimizer state and every other op stay fp32.
enum class Precision { Fp32, Bf16 };

struct TrainSpec {
  OptimizerSpec optimizer;
  Precision precision = Precision::Fp32;
  int64_t batch = 32;
  int64_t epochs = 1;
  uint64_t seed = 0;
  bool shuffle = true;
  // `weightingParam` is the strategy's one argument where it has one (dwa's temperature,
  // gradnorm's alpha; the defaults are the table's).
  WeightingKind weighting = WeightingKind::Fixed;
  double weightingParam = 0;
  // Every argument of the strategy, in its vocabulary row's order, defaults filled in (a true/false
  // argument as 1/0). A spec built without sema may leave it empty: the strategy then takes the
  // row's defaults (rt::weightingArg).
  std::vector<double> weightingArgs;
  // The strategy works on each task's gradient with respect to the shared representation (the
  // `rep_grads` entry point) instead of the shared parameters': mgda when the model has one shared
  // boundary, and a method given `rep_grad=true`.
  bool repGrad = false;
  std::vector<std::string> freeze;  // blocks (shared or task names) whose parameters stay fixed
  // `lr_scale BLOCK=F, ...`: the parameters of each block train at F times the step's learning
  // rate (torch param groups with lr·F; the schedule and warm-up scale every group alike).
  std::vector<std::pair<std::string, double>> lrScale;
  // > 0: `clip_grad_norm X` scales the gradient by X / (‖g‖ + 1e-6) when its L2 norm over the
  // trainable parameters exceeds X, as torch.nn.utils.clip_grad_norm_ does.
  double clipGradNorm = 0;
  std::optional<ScheduleSpec> schedule;  // none: the optimizer's lr throughout
  int64_t warmup = 0;  // > 0: optimizer steps s = 1..warmup train at lr·s/warmup
  // `validation F` (0 < F < 1): the last ceil(F·rows) rows of the training set, in file order, are
  // the validation set and never trained on (0: none, or the data block's `val SOURCE`).
  double validation = 0;
  // `select TASK.METRIC`: what the best epoch and early stopping go by (empty task: the total
  // validation loss, Σ over tasks of weight · loss, lower is better).
  std::string selectTask, selectMetric;
  int64_t patience = 0;  // > 0: stop after this many epochs without a better selected value
  // `accumulate N`: one optimizer step per N consecutive batches of an epoch, on the sum of their
  // gradients each scaled by 1/N; an epoch's last group may be shorter and keeps the 1/N
  // (runtime/train/Trainer.h). Steps, schedules, warm-up and the log count optimizer steps.
  int64_t accumulate = 1;
};

// ---- The compiled model -----------------------------------------------------------------------------

struct ModelSpec {
  std::string name;
  std::vector<InputSpec> inputs;
  std::vector<TaskSpec> tasks;
  std::vector<ParamSpec> params;
  int64_t paramCount = 0;      // elements in the params arena (= grads arena)
  int64_t actsFloats = 0;      // elements in the activation arena, for batches up to maxBatch
  int64_t maxBatch = 1;        // largest n the kernels accept
  TrainSpec train;
  DataSpec data;
  double flopsPerSample = 0;   // forward multiply-adds * 2, for summaries
  // Entry points (null where not generated).
  mtlc_entry_fn trainStep = nullptr;  // forward + losses + backward: writes grads, losses
  mtlc_entry_fn evalStep = nullptr;   // forward + losses: writes losses and outputs
  mtlc_entry_fn predict = nullptr;    // forward only: writes outputs
  // Per-task gradients, for the weightings that need them (gradnorm, pcgrad, mgda): forward,
  // losses, then each task's own unweighted backward. `grads` must hold T * paramCount floats:
  // task t's gradient of L_t with respect to every parameter at t * paramCount + offset.
  mtlc_entry_fn taskGradsStep = nullptr;
  // MGDA-UB: forward, losses, then each task's unweighted gradient with respect to the shared
  // representation Z that every task reads (the "shared boundary"), written to outputs[T + t] as
  // [n, repWidth]; heads to outputs[t] as usual. Null (and repWidth 0) when the tasks do not all
  // read one shared tensor.
  mtlc_entry_fn repGradsStep = nullptr;
  int64_t repWidth = 0;
  // After a step produced NaN or Inf: runs the named entry point ("train_step", "task_grads",
  // "rep_grads") again on the same arguments with every node's values checked, and says which
  // tensor first held a non-finite value. Set by the compiler's driver (NonFiniteLocator.h); may
  // be empty (embedded programs, tests), and is only called when training is about to fail.
  std::function<std::string(const char* entry, const mtlc_args& args)> locateNonFinite;
};

}  // namespace mtlc::rt
