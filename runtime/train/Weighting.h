// Loss weighting (`train { weighting ... }`): how the tasks' losses and gradients are combined into
// the one gradient the model's optimizer applies, step by step. Each strategy is a `Weighting`;
// the trainer asks it, once per batch, to run the kernels it needs (through `StepKernels`) and to
// leave the model gradient in the grads arena; it logs the weights the strategy reports as
// `tasks.<t>.weight` (the effective weight of L_t in that step's gradient) and its total as "loss".
//
//   fixed         w_i = the `weight` lines. One train_step.
//   uniform       w_i = 1/T. One train_step.
//   uncertainty   Kendall et al. 2018. Learnable s_i = log σ_i² (initially 0); the objective is
//                 Σ_i ½·(exp(−s_i)·L_i + s_i). train_step runs with w_i = ½·exp(−s_i) (logged),
//                 the logged loss is the whole objective, and s takes one step of its own optimizer
//                 (the model's kind and hyperparameters, no weight decay) with
//                 ∂/∂s_i = ½·(1 − exp(−s_i)·L_i) (0 for a task with no label in the batch).
//                 State: mtl.log_var [T].
//   dwa(τ)        Liu et al. 2019. w_i = T·softmax(r/τ)_i, r_i = L̄_i(e−1) / L̄_i(e−2), from the
//                 epoch-mean training losses of the last two complete epochs; w_i = 1 until two
//                 epochs are complete (r_i = 1 for a task whose mean is missing or not positive).
//                 One train_step. State: mtl.loss_history [2, T] (older row first), mtl.epochs [1].
//   gradnorm(α)   Chen et al. 2018. Learnable w (initially 1). task_grads gives ∇L_i; with W the
//                 last parameter whose name ends in ".weight" (table order) that EVERY task's loss
//                 reaches (ParamSpec::tasks; create() fails when there is none, since a task that
//                 does not reach W has G_i = 0 and its weight would only rise), describe() names it,
//                 G_i = w_i·‖∇_W L_i‖, L̃_i = L_i / L_i(0) (L_i(0): the task's first nonzero loss),
//                 r_i = L̃_i / mean(L̃), target_i = mean(G)·r_i^α (a constant). The model gradient is
//                 Σ_i w_i·∇L_i with this step's w (logged); then w takes one step of its own optimizer
//                 (as uncertainty's) on ∂Σ|G_i − target_i|/∂w_i = sign(G_i − target_i)·‖∇_W L_i‖,
//                 is clamped to ≥ 1e-4 and renormalised to Σ w_i = T.
//                 State: mtl.weights [T], mtl.initial_loss [T] (NaN until seen).
//   pcgrad        Yu et al. 2020. task_grads gives g_i; on the trainable shared parameters
//                 (ParamSpec::shared(): reached by two or more tasks' losses, so not a task's own
//                 MMoE/CGC/PLE gate; and not frozen) each g_i is projected, visiting the other
//                 tasks j in a random order, away from every ORIGINAL g_j it conflicts with:
//                 if g_i'·g_j < 0, g_i' −= (g_i'·g_j)/‖g_j‖²·g_j. Shared gradient = Σ_i w_i·g_i',
//                 every other parameter Σ_i w_i·g_i; w = the `weight` lines (logged). The orders of
//                 step k come from pcgradOrders(seed, k, T) below.
//   mgda          Sener & Koltun 2018, MGDA-UB. With a rep_grads entry point: the per-task
//                 gradients with respect to the shared representation (flattened over the batch)
//                 give the min-norm convex combination α (minNormWeights below), then train_step
//                 runs with loss weights α. Without one: task_grads, α from the gradients of the
//                 trainable shared parameters (as pcgrad's: gates excluded), model gradient
//                 Σ_i α_i·g_i. α is logged.
//   ---- gradB (#26): runtime/train/SolverMethods.cpp, solvers in SolverMethods.h ----
//   The four Gram methods below: task_grads gives g_t; G_ij = g_i·g_j over the trainable shared
//   parameters (as mgda's: gates and frozen excluded), or with `rep_grad=true` over the gradients
//   at the shared representation (rep_grads, flattened over the batch, as mgda's). Weights w come
//   from G; the model gradient is Σ_t w_t·g_t over every parameter (one task_grads call), or with
//   rep_grad one train_step with loss weights w (rep_grads + train_step). w is logged.
//   upgrad(norm_eps=1e-4, reg_eps=1e-4, rep_grad=false)   Quinton & Rey 2024 (UPGrad, as torchjd
//                 and LibMTL): G ← G/trace(G) (0 when trace < norm_eps) + reg_eps·I; for each i,
//                 v⁽ⁱ⁾ = argmin_{v ≥ e_i/T} vᵀGv (the projection of g_i/T onto the dual cone of
//                 the g's; an exact active-set QP), w = Σ_i v⁽ⁱ⁾. No state.
//   aligned_mtl(rep_grad=false)   Senushkin et al. 2023 (LibMTL's form): G = V·diag(λ)·Vᵀ (Jacobi),
//                 eigenpairs with λ > λ_max·T·2⁻²³ kept; B = √λ_min·V·diag(λ^−½)·Vᵀ (λ_min the
//                 smallest kept), w_j = Σ_i B_ij; 1/T when every gradient is zero. No state.
//   nash_mtl(update_weights_every=1, max_norm=1.0, rep_grad=false)   Navon et al. 2022: the
//                 bargaining solution α > 0 of G·α = 1/α (exact: Newton on ½αᵀGα − Σ log α_i; a task
//                 with a zero gradient gets α = 0). LibMTL's optim_niter bounds its approximate
//                 solver and has no counterpart. Then the shared parameters' gradient is clipped as
//                 torch's clip_grad_norm_(max_norm) (× max_norm/(‖g‖ + 1e-6) when below 1; 0: off);
//                 logged: α (the heads' coefficients; the shared ones are α × that factor). With
//                 update_weights_every = N > 1, steps k with (k − 1) mod N ≠ 0 reuse the last α in
//                 one train_step. State (N > 1): mtl.weights [T], mtl.solved [1].
//   fairgrad(alpha=1.0)   Ban & Ji 2024: w > 0 with G·w = w^(−1/α) (the α-fair allocation; LibMTL
//                 solves it with least_squares from 1/T, here exact: Newton on the convex
//                 ½wᵀGw − Σ h(w_i), h' = w^(−1/α)); w = 0 for a task with a zero gradient. No state.
//   excess_mtl(robust_step_size=0.01)   He et al. 2024: task_grads; per task an AdaGrad-like
//                 diagonal Hessian H_t = √(S_t + 1e-7), S_t += g_t² (elementwise, shared
//                 parameters); excess risk e_t = Σ g_t²/H_t. A task's first e_t > 0 is its e_t(0)
//                 and changes nothing; afterwards w_t ← w_t·exp(robust_step_size·e_t/e_t(0)), then
//                 w ← T·w/Σw (so w = 1 on step 1). Model gradient Σ_t w_t·g_t with the updated w
//                 (logged); one task_grads call. State: mtl.weights [T], mtl.initial_excess [T]
//                 (NaN until seen), mtl.grad_sq_sum [T, shared elements].
//   Cost: each is one task_grads call a step (rep_grad: one rep_grads and one train_step), as
//   pcgrad's; nash_mtl with update_weights_every N: one train_step on the steps in between.
//
// The loss-level methods (LossMethods.cpp) need no task gradients. The weights of gls, stch and
// famo depend on the step's own losses, which only a kernel call yields: they first measure them
// by a measureStep (weights 1; batchnorm's running statistics left alone, so they still move once
// per step), then run train_step with the weights.
//   rlw           Lin et al. 2022, LibMTL's form (the normal distribution). w = softmax(z),
//                 z_t ~ N(0, 1) drawn afresh each step: rlwWeights(seed, k, T) below. One
//                 train_step. A task without a label in the batch keeps its drawn w_t (its L_t and
//                 gradient are 0).
//   gls           Chennupati et al. 2019. Minimises G = (Π_{i∈P} L_i)^(1/|P|), P the tasks with a
//                 label in the batch and L_i > 0 (the others get w_i = 0: one zero loss would zero
//                 the product, LibMTL takes every task): w_i = ∂G/∂L_i = G/(|P|·L_i) (LibMTL
//                 returns L_i/(T·Π L) instead, not the derivative). Logged total: G (= Σ w_i·L_i).
//                 One measureStep + one train_step.
//   stch(μ, W)    Lin et al. 2024, LibMTL's form (μ = mu = 1, W = warmup_epochs = 4). Epochs 1…W+1
//                 (LibMTL's 0-based epoch ≤ W) minimise Σ_{i∈P} log(L_i + 1e-20), so
//                 w_i = 1/(L_i + 1e-20); epoch W+1 also sums the nadir point n_i = the mean of
//                 L_i over that epoch's steps where i was in P (1 if none). Later epochs minimise
//                 T·μ·log Σ_{i∈P} exp(u_i/μ), u_i = log(L_i/n_i + 1e-20):
//                 w_i = T·softmax_P(u/μ)_i / (L_i + 1e-20·n_i). P as gls's. Logged total: the
//                 objective (LibMTL's value plus T·max_i u_i, the constant it subtracts).
//                 State: mtl.epochs [1], mtl.nadir_sum [T], mtl.nadir_steps [T]. One measureStep
//                 + one train_step.
//   famo(lr, λ)   Liu et al. 2023, LibMTL's form (lr = 0.025, λ = weight_decay = 1e-3, minimum
//                 losses 0). Logits ξ (initially 0), z = softmax(ξ), D_i = L_i + 1e-8; the model
//                 gradient is that of Σ_{i∈P} z_i·log D_i / c with c = Σ_{j∈P} z_j/D_j held
//                 constant: w_i = (z_i/D_i)/c, P the tasks with a label (0 for the others, whose
//                 D = 1e-8 would swamp c). After the optimizer's update and the step's log,
//                 afterUpdate reruns the same batch by a measureStep: L'_i; δ_i = log D_i −
//                 log(L'_i + 1e-8) (0 outside P), and ξ takes one Adam step (lr, L2 decay λ, betas
//                 0.9/0.999, eps 1e-8: torch.optim.Adam) on ∂(zᵀδ)/∂ξ_j = z_j·(δ_j − zᵀδ). The
//                 rerun sees the step's dropout masks and leaves batchnorm's running statistics
//                 alone (LibMTL reruns in train mode: fresh masks, the statistics move twice); its
//                 outputs do not enter the train metrics. Logged total Σ w_i·L_i.
//                 State: mtl.logits [T] and its Adam state (mtl.optim.*). Two measureSteps + one
//                 train_step.
//
// The logged total is Σ_i w_i·L_i with the logged weights (uncertainty: its objective; gls, stch
// theirs).
//   ---- gradient methods (issue #26; runtime/train/GradientMethods.cpp). Each runs task_grads
//   once (imtl and cagrad with rep_grad=true: rep_grads, then one train_step), acts on the
//   trainable shared parameters as pcgrad does, and gives every other parameter Σ_t w_t·g_t with
//   the logged w (db_mtl: the log-loss gradient, see there). A task without labels in the batch
//   (L_t = 0, g_t = 0) is left out of every solver and update below.
//   imtl          Liu et al. 2021, IMTL-H: IMTL-L and IMTL-G together. Learnt loss scales s
//                 (initially 0), the losses e^{s_t}·L_t − s_t; IMTL-G on their gradients
//                 g'_t = e^{s_t}·g_t: α_{2..T} = g'_1·Uᵀ·(D·Uᵀ)⁻¹, D rows g'_1 − g'_t, U rows
//                 u_1 − u_t (u = g/‖g‖), α_1 = 1 − Σ α_{2..T} (imtlWeights), so that the combined
//                 gradient projects equally on every unit u_t. Gradient Σ_t α_t·e^{s_t}·g_t; logged
//                 w_t = α_t·e^{s_t}. Then s takes one step of its own optimizer (as uncertainty's)
//                 with ∂/∂s_t = e^{s_t}·L_t − 1. rep_grad=true: α from the gradients at the shared
//                 representation (flattened over the batch, as mgda), then train_step with w.
//                 State: mtl.loss_scale [T] and its optimizer's. One task_grads a step.
//   cagrad(c=0.4) Liu et al. 2021 (the paper's c; LibMTL's calpha 0.5, rescale=1). G = the Gram
//                 matrix of the g_t, g0 = mean g_t, c' = c·‖g0‖; w = argmin over the simplex of
//                 w·G·(1/T) + c'·√(wᵀGw) (cagradDual: exact, over every face), λ = c'/‖g_w‖,
//                 gradient (g0 + λ·g_w)/(1 + c²) = Σ_t w'_t·g_t, logged w'_t = (1/T + λ·w_t)/(1+c²).
//                 rep_grad=true as imtl's. No state. One task_grads a step.
//   gradvac(beta=0.5) Wang et al. 2021 (LibMTL's beta, whole-model granularity). Targets φ̂_ij
//                 (initially 0). For each task i, g_i' = g_i; the others j in pcgradOrders(seed,
//                 k, T)[i] (pcgrad's draw): φ = g_i'·g_j/(‖g_i'‖·‖g_j‖ + 1e-8); if φ < φ̂_ij,
//                 g_i' += ‖g_i'‖·(φ̂·√(1−φ²) − φ·√(1−φ̂²))/(‖g_j‖·√(1−φ̂²) + 1e-8)·g_j; then
//                 φ̂_ij ← (1−β)·φ̂_ij + β·φ. Shared gradient Σ_i g_i'; w = 1 (logged).
//                 State: mtl.rho [T, T]. One task_grads a step.
//   graddrop      Chen et al. 2020, leak 0 (`leak=` as LibMTL's). On every shared coordinate:
//                 P = ½·(1 + Σ_t g_t/Σ_t|g_t|) (½ when all are 0), U from graddropUniforms(seed,
//                 k, dim) below (coordinates in arena order); task t's g_t is kept when P > U and
//                 g_t > 0, or P < U and g_t < 0, else scaled by the leak. Shared gradient Σ_t of the
//                 kept; w = 1 (logged). LibMTL drops on the representation's gradient (rep_grad
//                 only); mtlc has no backward from a given representation gradient, so it drops on
//                 the shared parameters' gradients, the paper's "any layer". One task_grads a step.
//   db_mtl        Lin et al. 2023 (LibMTL's beta=0.9, beta_sigma=0). Losses log(L_t + 1e-8): their
//                 gradients h_t = g_t/(L_t + 1e-8); heads and every other parameter get Σ_t h_t.
//                 ĝ_t ← h_t + β_k·(ĝ_t − h_t), β_k = β/k^beta_sigma (ĝ_t initially 0, kept while
//                 task t has no label); α_t = max_s‖ĝ_s‖/(‖ĝ_t‖ + 1e-8) (0 for ĝ_t = 0); shared
//                 gradient Σ_t α_t·ĝ_t; logged w_t = α_t. State: mtl.grad_buffer [T, dim],
//                 mtl.alpha [T]. One task_grads a step.
//   moco          Fernando et al. 2023 (LibMTL's beta=0.5, beta_sigma=0.5, gamma=0.1,
//                 gamma_sigma=0.5, rho=0). Tracked y_t (initially 0, kept while task t has no
//                 label): y_t ← y_t − β_k·(y_t − L_t·g_t/(‖g_t‖ + 1e-8)), β_k = β/k^beta_sigma;
//                 λ ← softmax(λ − γ_k·(Y·Yᵀ + ρ·I)·λ), γ_k = γ/k^gamma_sigma, λ initially 1/T;
//                 shared gradient Yᵀ·λ, every other parameter Σ_t λ_t·g_t; logged w = λ.
//                 State: mtl.y [T, dim], mtl.lambda [T]. One task_grads a step.
//   (k is the 1-based step. gradvac, graddrop, db_mtl and moco are not linear in the g_t, so they
//   have no rep_grad form. tests/pytorch/weighting_grada.py checks each against its paper.)
//
// The logged total is Σ_i w_i·L_i with the logged weights (uncertainty: its objective).
// Task i's L_i is 0 in a batch without any of its labels (the kernels mask absent labels).
// Every strategy is checked end to end, step by step, against a PyTorch implementation of its
// paper by tests/pytorch/weighting_parity.py (losses and weights within 2e-4 relative).
#pragma once

#include "spec/ModelSpec.h"
#include "runtime/train/Optimizer.h"

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace mtlc::rt {

// What a strategy may ask of the compiled kernels during one step, over the current batch. The
// trainer implements it (checking every loss it gets for NaN/inf); tests implement it with fixed
// numbers. After a call, losses() holds the T per-task batch-mean losses of that call.
class StepKernels {
 public:
  virtual ~StepKernels() = default;
  // train_step with these T loss weights: writes losses() and the model gradient grads().
  virtual void trainStep(const float* lossWeights) = 0;
  // task_grads: writes losses() and taskGrad(t) for every t (paramCount floats each).
  virtual void taskGrads(const float* lossWeights) = 0;
  // rep_grads: writes losses() and repGrad(t) for every t (n·repWidth floats each).
  virtual void repGrads(const float* lossWeights) = 0;
  // A train_step that leaves batchnorm's running statistics as they were: a second run of the
  // training forward within one step (losses measured before the weights are known, famo's rerun
  // after the update), so that they move once per step whatever the strategy. Same dropout masks
  // as the step's other calls (the step's seed).
  virtual void measureStep(const float* lossWeights) { trainStep(lossWeights); }
  virtual const float* losses() const = 0;
  virtual float* grads() = 0;                      // the model gradient the optimizer applies
  virtual const float* taskGrad(int64_t t) const = 0;
  virtual const float* repGrad(int64_t t) const = 0;
  virtual int64_t n() const = 0;                   // samples in the batch
  virtual int64_t present(int64_t t) const = 0;    // task t's label values present in the batch
  // From now on trainStep tells `ready(ctx, begin, end)` when grads()[begin, end) is final, while it
  // still runs (mtlc_args::grads_ready); null stops it. Kernels that cannot tell ignore it.
  virtual void reportGradsReady(void (*ready)(void*, int64_t, int64_t), void* ctx) {}
};

// A named tensor of a strategy's state, saved under `mtl.` in checkpoints.
struct WeightingState {
  std::string name;
  std::vector<int64_t> shape;
  float* data;
  int64_t size() const;
};

struct StepResult {
  std::vector<float> weights;  // the effective weight of each L_t in this step's gradient
  double total = 0;            // what the log reports as "loss"
};

class Weighting {
 public:
  virtual ~Weighting() = default;
  // The strategy of spec.train.weighting; an Error when the model lacks an entry point it needs. `seed` is the run's seed (pcgrad's orders).
  static std::unique_ptr<Weighting> create(const ModelSpec& spec, uint64_t seed);

  virtual std::string describe() const = 0;  // "uncertainty", "dwa(temperature=2)"
  virtual bool needsTaskGrads() const { return false; }
  virtual bool needsRepGrads() const { return false; }

  // One step (1-based `step`): runs the kernels, leaves the model gradient in k.grads(), updates
  // the strategy's own state.
  virtual StepResult step(StepKernels& k, int64_t step) = 0;
  // After the optimizer applied this step's gradient and the step was logged, on the same batch: a
  // strategy that learns from the loss change the update made (famo) reruns the kernels here.
  virtual void afterUpdate(StepKernels& k, int64_t step) {}
  // After each complete epoch: each task's epoch-mean training loss (NaN when it had no label).
  virtual void endEpoch(const std::vector<double>& meanLosses) {}
  // The loss weights the next step starts from (what a plain train_step would be given).
  virtual std::vector<float> currentWeights() const = 0;
  // State for checkpoints (names start with `mtl.`); the pointers live as long as the strategy.
  virtual std::vector<WeightingState> state() { return {}; }
  // Called after the tensors of state() were overwritten from a checkpoint.
  virtual void stateLoaded() {}
};

// ---- the maths, exposed for tests ---------------------------------------------------------------

// Min-norm point of the convex hull of T vectors given by their Gram matrix G (T×T, row-major):
// the α ≥ 0, Σα = 1 minimising αᵀGα. T = 1: {1}. T = 2: closed form
// α_1 = clamp((G22 − G12)/(G11 + G22 − 2·G12), 0, 1) (½ when the vectors coincide). T > 2: the
// best pair by the closed form, then Frank–Wolfe with exact line search: vertex t = argmin (Gα)_t,
// γ = argmin over [0, 1] of ‖γ·v + (1 − γ)·e_t‖² (v the current point), α ← γ·α + (1 − γ)·e_t,
// until Σ|Δα| < 1e-6 or 250 iterations.
std::vector<double> minNormWeights(const std::vector<double>& gram, int64_t T);

// PCGrad on explicit orders: g holds T vectors of `dim` floats (task t's at t·dim); orders[i] is
// the order in which task i visits the others (a permutation of {0..T−1} \ {i}). Returns the
// projected vectors, same layout (double arithmetic for dot products).
std::vector<float> pcgradProject(const float* g, int64_t T, int64_t dim,
                                 const std::vector<std::vector<int64_t>>& orders);

// The orders pcgrad uses at step k: an mt19937_64 seeded with mix64(mix64(seed) ^ k) ^ 0x5043
// ("PC"); the tasks i are visited in the Fisher–Yates order of {0..T−1} (Batcher.h's draw), and
// for each in turn the others' order is another Fisher–Yates draw of {0..T−1} \ {i} from the same
// stream. Returns orders indexed by task i.
std::vector<std::vector<int64_t>> pcgradOrders(uint64_t seed, int64_t step, int64_t T);

// RLW's weights at step k: an mt19937_64 seeded with mix64(mix64(seed) ^ k) ^ 0x524C ("RL")
// draws z_0, …, z_{T−1} in task order, each by Rng.h's standardNormal (Box–Muller, cosine
// branch: u1 = 1 − uniform01, u2 = uniform01, z = sqrt(−2·ln u1)·cos(2π·u2)); returns softmax(z).
std::vector<double> rlwWeights(uint64_t seed, int64_t step, int64_t T);

// DWA's weights from the two previous epochs' mean losses (older, newer).
std::vector<double> dwaWeights(const std::vector<double>& older, const std::vector<double>& newer,
                               double temperature);

}  // namespace mtlc::rt
