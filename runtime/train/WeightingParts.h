// The parts the weighting strategies share (runtime/train/Weighting*.cpp): the shared parameters
// gradient methods act on, combinations of task gradients, a strategy's own optimizer and its
// checkpoint state, its arguments. Internal to the trainer; tests reach them through Weighting.h.
#pragma once

#include "runtime/train/Weighting.h"

#include <memory>
#include <utility>
#include <vector>

namespace mtlc::rt {

using Span = std::pair<int64_t, int64_t>;  // [begin, end) element range in the parameter arena

// The trainable shared parameters: what gradient surgery acts on. Shared = reached by two or more
// tasks' losses (a task's own gate is not, as in LibMTL) and not frozen. In the table's order.
std::vector<Span> sharedSpans(const ModelSpec& spec);

// Σ a[k]·b[k] over the spans, in double.
double dotOver(const std::vector<Span>& spans, const float* a, const float* b);

// The T×T Gram matrix (row-major) of the task gradients a gradient method combines: runs rep_grads
// when `rep` (the gradients at the shared representation, over the whole batch), else task_grads
// (those of the `shared` parameter spans), with these loss weights.
std::vector<double> taskGram(StepKernels& k, const ModelSpec& spec, const std::vector<Span>& shared, bool rep,
                             const float* lossWeights);

// k.grads() = Σ_t w_t·taskGrad(t) over the whole arena of P parameters.
void combineTaskGrads(StepKernels& k, const std::vector<float>& w, int64_t P);

// Σ_t w_t·L_t.
double weightedTotal(const std::vector<float>& w, const float* losses);

// The optimizer of a strategy's own few numbers: the model's kind and hyperparameters, no decay.
OptimizerSpec ownOptimizer(const ModelSpec& spec);

// Its state in checkpoints, `mtl.optim.step`, `mtl.optim.m`, ...; and after loading, the step
// count restored from `optim.step`.
void appendOptimizerState(std::vector<WeightingState>& out, Optimizer& opt);
void restoreSteps(Optimizer& opt);

// Whether a method with a `rep_grad` argument works at the shared representation: false without
// rep_grad=true; true when the model has the rep_grads entry point (every head reads one shared
// tensor); an error otherwise, for every such method alike (sema reports it at the argument first;
// this catches specs built without sema). mgda, which has no argument and falls back by design,
// does not use it.
bool repGradRequested(const ModelSpec& spec, const char* method);

// The strategy's argument `name` (a row argument of spec.train.weighting): as the program gave it,
// else the row's default. A true/false argument is 1 or 0.
double weightingArg(const ModelSpec& spec, const char* name);

// A measureStep (batchnorm's running statistics left alone) with loss weights 1 to learn this
// step's losses before the weights that depend on them are known (its gradient is overwritten by
// the next call). Returns, per task, whether it is
// present: a label in the batch and, when `positive`, L_t > 0 (so that a log of it is finite).
std::vector<bool> measureLosses(StepKernels& k, int64_t T, bool positive);

// The loss-level methods of runtime/train/LossMethods.cpp (rlw, gls, stch, famo).
std::unique_ptr<Weighting> createLossMethod(const ModelSpec& spec, uint64_t seed);
// ---- gradA (#26): runtime/train/GradientMethods.cpp ---------------------------------------------

// imtl, cagrad, gradvac, graddrop, db_mtl or moco (spec.train.weighting); `seed` is the run's.
std::unique_ptr<Weighting> createGradientMethod(const ModelSpec& spec, uint64_t seed);

// IMTL-G (Liu et al. 2021): from the Gram matrix G (T×T) of the task gradients g_t, over the tasks
// with in[t] (the others get 0): α_{2..m} = g_1·Uᵀ·(D·Uᵀ)⁻¹ with D rows g_1 − g_t, U rows u_1 − u_t
// (u = g/‖g‖), α_1 = 1 − Σ α_{2..m}; one task: 1; a singular D·Uᵀ: 1/m each.
std::vector<double> imtlWeights(const std::vector<double>& gram, int64_t T, const std::vector<bool>& in);

// CAGrad's dual (Liu et al. 2021): the w on the simplex of the tasks with in[t] minimising
// F(w) = wᵀ·G·b + c'·√(wᵀ·G·w), b = 1/T. Exact: every vertex, and on every face S of two or more
// tasks the stationary points a_S + c'·G_S·w/√(wᵀGw) = μ·1 (w = v/Σv, v = G_S⁻¹(μ·1 − a_S)/c'
// with vᵀG_S v = 1, a quadratic in μ), the feasible candidate of least F wins. 2^T faces.
std::vector<double> cagradDual(const std::vector<double>& gram, int64_t T, const std::vector<bool>& in,
                               double cPrime);
// The coefficients of d = (g0 + λ·g_w)/(1 + c²) = Σ_t coef_t·g_t: c' = c·‖g0‖, λ = c'/‖g_w‖ (0
// when g_w = 0), coef_t = (1/T + λ·w_t)/(1 + c²).
std::vector<double> cagradCoefficients(const std::vector<double>& gram, int64_t T, const std::vector<bool>& in,
                                       double c);

// GradDrop's uniforms at step k: an mt19937_64 seeded with mix64(mix64(seed) ^ k) ^ 0x4744 ("GD"),
// one U = (draw >> 11)·2⁻⁵³ per shared coordinate in arena order.
std::vector<double> graddropUniforms(uint64_t seed, int64_t step, int64_t count);
// gradB (#26, SolverMethods.cpp): upgrad, aligned_mtl, nash_mtl, fairgrad, excess_mtl; null for
// another kind.
std::unique_ptr<Weighting> createSolverMethod(const ModelSpec& spec, uint64_t seed);

}  // namespace mtlc::rt
