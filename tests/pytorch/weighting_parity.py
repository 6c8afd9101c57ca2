"""Cross-check of every loss weighting: mtlc and PyTorch train the same three-task model (one
dense trunk; cross_entropy, bce and mse heads) from the same safetensors init on the same batches
(file order), once per strategy, and must agree at every step on each task's loss, the logged
total and each task's weight `tasks.<t>.weight`.

usage: weighting_parity.py MTLC_BINARY WORK_DIR
Exit 0 = agree, 1 = disagree, 77 = skipped (no torch for this python).

Each strategy is written here from its paper, with torch autograd doing the differentiation;
nothing is taken from mtlc but its documented conventions (Weighting.h):
  fixed        the `weight` lines;  uniform  1/T
  uncertainty  Kendall et al. 2018: s = log sigma^2 (init 0) learnt with the model's optimizer,
               objective sum 0.5*(exp(-s)*L + s); logged weight 0.5*exp(-s), logged loss the objective
  dwa          Liu et al. 2019: w = T*softmax(r/tau), r = epoch means L(e-1)/L(e-2), w = 1 for two epochs
  gradnorm     Chen et al. 2018: learnable w (init 1, renormalised to sum T, clamped >= 1e-4);
               G_i = |grad_W w_i L_i| on the last shared layer's weight W; target mean(G)*r^alpha held
               constant, r from L_i(t)/L_i(0); the loss sum |G_i - target_i| updates only w
  pcgrad       Yu et al. 2020: per-task gradients of the shared parameters; g_i is projected away
               from each ORIGINAL g_j it conflicts with, the j in mtlc's seeded order (mtlc_rng.py
               reproduces Weighting.h pcgradOrders from its documented RNG)
  mgda         Sener & Koltun 2018, MGDA-UB: the min-norm convex combination of the per-task
               gradients with respect to the shared representation (over the whole batch), here the
               exact minimiser over the simplex (KKT on every face), then one step on sum a_i L_i
Then the partial-reach cases (issue #22): gradnorm on a chain whose second shared block only two
tasks read and on an MMoE, pcgrad and mgda on the MMoE; gradnorm's W is the last weight every
task's loss reaches (found with autograd), the MMoE gates are task-specific. Each is also compared
with a planted mistake (W = the last weight of a shared block; gates counted as shared), which
must disagree beyond the tolerance, and gradnorm's training header must name the reference's W.
Tolerance (issue #4): 2e-4 relative per step on losses and weights; final parameters are also
compared (1e-4 absolute). Prints the worst relative difference per strategy.
"""
import itertools
import json
import os
import subprocess
import sys

try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError:
    print("SKIP: torch is not installed for", sys.executable)
    sys.exit(77)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mtlc_rng  # noqa: E402
import parity  # noqa: E402  (the model, data and relative difference of the optimizer cross-check)
from parity import rel  # noqa: E402
import safetensors_io  # noqa: E402

ROWS, BATCH, EPOCHS, LR, SEED = 200, 25, 5, 0.01, 7   # 8 steps an epoch, 40 steps
TASKS = ["cls", "flag", "target"]
WEIGHTS = [parity.WEIGHTS[t] for t in TASKS]
DWA_TEMPERATURE, GRADNORM_ALPHA = 2.0, 1.5
REL_TOL, PARAM_TOL = 2e-4, 1e-4

MODEL = """
model weighting_parity
input x : f32[8]
shared trunk = x -> dense(32) -> relu -> dense(16) -> tanh
task cls    {{ trunk -> dense(3)  loss cross_entropy  weight 1.0 }}
task flag   {{ trunk -> dense(1)  loss bce            weight 0.5 }}
task target {{ trunk -> dense(8) -> sigmoid -> dense(1)  loss mse  weight 0.3 }}
train {{
  optimizer adam(lr={lr})
  batch     {batch}
  epochs    {epochs}
  shuffle   false
  weighting {weighting}
  seed      {seed}
}}
data {{
  train  csv("data.csv")
  x      = columns(0..7)
  cls    = cls
  flag   = flag
  target = target
}}
"""

STRATEGIES = {
    "fixed": "fixed",
    "uniform": "uniform",
    "uncertainty": "uncertainty",
    "dwa": f"dwa(temperature={DWA_TEMPERATURE:g})",
    "gradnorm": f"gradnorm(alpha={GRADNORM_ALPHA:g})",
    "pcgrad": "pcgrad",
    "mgda": "mgda",
}


# ---- the strategies' own pieces -----------------------------------------------------------------

def pcgrad_orders(seed, step, T):
    """Weighting.h pcgradOrders: orders[i] = the order in which task i visits the others."""
    rng = mtlc_rng.MT19937_64(mtlc_rng.mix64(mtlc_rng.mix64(seed) ^ step) ^ 0x5043)
    visit = list(range(T))
    mtlc_rng.shuffle(rng, visit)
    orders = [None] * T
    for i in visit:
        others = [j for j in range(T) if j != i]
        mtlc_rng.shuffle(rng, others)
        orders[i] = others
    return orders


def reversed_orders(seed, step, T):
    """Each task visits the others in the reverse of mtlc's order (to show the order matters)."""
    return [list(reversed(o)) for o in pcgrad_orders(seed, step, T)]


def pcgrad_project(g, orders, counts):
    """Yu et al. 2020, Algorithm 1, on float64 copies of the task gradients g[i] (1-D).
    counts["projections"] counts projections, counts["order_matters"] the tasks projected twice."""
    out = []
    for i, gi in enumerate(g):
        pc = gi.clone()
        projected = 0
        for j in orders[i]:
            dot = torch.dot(pc, g[j])
            if dot < 0:
                pc = pc - dot / torch.dot(g[j], g[j]) * g[j]
                projected += 1
        counts["projections"] += projected
        counts["order_matters"] += projected > 1
        out.append(pc)
    return out


def min_norm_exact(G):
    """argmin over the simplex of a^T G a: on every face S, the KKT point G_S a = lambda*1 (if it
    is inside the face), best value wins. Exact up to the linear solves (float64)."""
    T = G.shape[0]
    best, best_value = None, None
    for k in range(1, T + 1):
        for S in itertools.combinations(range(T), k):
            GS = G[list(S)][:, list(S)]
            try:
                x = torch.linalg.solve(GS, torch.ones(k, dtype=G.dtype))
            except RuntimeError:  # singular face
                continue
            if x.sum() <= 0 or (x < -1e-12).any():
                continue
            a = torch.zeros(T, dtype=G.dtype)
            a[list(S)] = x / x.sum()
            value = a @ G @ a
            if best is None or value < best_value - 1e-15:
                best, best_value = a, value
    return best


def gradnorm_step(L, W, gn_w, own_opt, initial_loss):
    """Chen et al. 2018, one step on the task losses L (a tensor of T) measured on the weight W:
    the model's .grad gets the gradient of sum w_i L_i with this step's w; then own_opt takes one
    step on sum |G_i - target_i| over w, G_i = |grad_W w_i L_i| (0 where L_i does not reach W),
    target = mean(G) * r^alpha held constant, r from L_i / L_i(0); w is clamped to >= 1e-4 and
    renormalised to sum T. Returns (the w used, the total, L(0))."""
    T = len(L)
    grads = [torch.autograd.grad(L[i], W, retain_graph=True, allow_unused=True)[0] for i in range(T)]
    norms = torch.stack([torch.zeros(()) if g is None else g.norm() for g in grads])
    if initial_loss is None:
        initial_loss = L.detach().clone()
    w = gn_w.detach().clone()
    G = gn_w * norms                           # |grad_W (w_i L_i)|, differentiable in w
    ratio = L.detach() / initial_loss
    target_g = (G.mean() * (ratio / ratio.mean()) ** GRADNORM_ALPHA).detach()
    gn_loss = (G - target_g).abs().sum()
    own_opt.zero_grad()
    gn_w.grad = torch.autograd.grad(gn_loss, gn_w)[0]
    total = (w * L).sum()
    total.backward()
    own_opt.step()
    with torch.no_grad():
        gn_w.clamp_(min=1e-4)
        gn_w.mul_(T / gn_w.sum())
    return w, total, initial_loss


def task_gradients(L, params):
    """Each task's own gradient of every parameter (zeros where its loss does not reach it)."""
    out = []
    for i in range(len(L)):
        gs = torch.autograd.grad(L[i], list(params.values()), retain_graph=True, allow_unused=True)
        out.append([torch.zeros_like(p) if g is None else g for g, p in zip(gs, params.values())])
    return out


def pcgrad_backward(L, params, shared, w, orders, counts):
    """Yu et al. 2020: sets every parameter's .grad (in the parameters' dtype); the parameters named
    in `shared` get sum_i w_i g_i' with the g_i projected together (one vector per task, in float64),
    the others sum_i w_i g_i."""
    T = len(L)
    per_task = task_gradients(L, params)
    names = list(params)
    flat = [torch.cat([gs[k].reshape(-1) for k, n in enumerate(names) if n in shared]).double() for gs in per_task]
    projected = pcgrad_project(flat, orders, counts)
    shared_grad = sum(w[i].double() * projected[i] for i in range(T)).to(next(iter(params.values())).dtype)
    at = 0
    for k, (name, p) in enumerate(params.items()):
        if name in shared:
            p.grad = shared_grad[at:at + p.numel()].reshape(p.shape).clone()
            at += p.numel()
        else:
            p.grad = sum(w[i] * per_task[i][k] for i in range(T))


def mgda_shared_weights(L, params, shared):
    """Sener & Koltun 2018 (MGDA on the shared parameters, no representation boundary): the
    min-norm convex combination of the tasks' gradients of the parameters named in `shared`."""
    per_task = task_gradients(L, params)
    names = list(params)
    flat = [torch.cat([gs[k].reshape(-1) for k, n in enumerate(names) if n in shared]).double() for gs in per_task]
    gram = torch.stack([torch.stack([torch.dot(a, b) for b in flat]) for a in flat])
    return min_norm_exact(gram).float()


# ---- the PyTorch run ----------------------------------------------------------------------------

def batch_losses(model, x, cls, flag, target, rep=None):
    h = model.trunk(x) if rep is None else rep
    oc, of, ot = model.cls(h), model.flag(h), model.target(h)
    return torch.stack([F.cross_entropy(oc, cls), F.binary_cross_entropy_with_logits(of, flag),
                        F.mse_loss(ot, target)])


def torch_run(strategy, rows, init, orders=pcgrad_orders, counts=None):
    """Returns the per-step log [(total, [L_i], [w_i])] and the final state dict."""
    counts = {"projections": 0, "order_matters": 0} if counts is None else counts
    torch.manual_seed(0)
    model = parity.Parity()
    model.load_state_dict(init)
    params = dict(model.named_parameters())
    shared = {name for name in params if name.startswith("trunk.")}
    opt = torch.optim.Adam(params.values(), lr=LR)
    T = len(TASKS)
    log_var = torch.zeros(T, requires_grad=True)          # uncertainty
    gn_w = torch.ones(T, requires_grad=True)              # gradnorm
    own_opt = torch.optim.Adam([log_var if strategy == "uncertainty" else gn_w], lr=LR)
    initial_loss = None                                   # gradnorm's L_i(0)
    epoch_means = []                                      # dwa
    data = torch.tensor(rows, dtype=torch.float32)
    log, step = [], 0
    for epoch in range(EPOCHS):
        loss_sum, count = torch.zeros(T, dtype=torch.float64), 0
        for b in range(0, ROWS, BATCH):
            step += 1
            chunk = data[b:b + BATCH]
            x, cls, flag, target = chunk[:, :8], chunk[:, 8].long(), chunk[:, 9:10], chunk[:, 10:11]
            opt.zero_grad()
            if strategy in ("fixed", "uniform", "dwa"):
                if strategy == "fixed":
                    w = torch.tensor(WEIGHTS)
                elif strategy == "uniform":
                    w = torch.full((T,), 1.0 / T)
                elif epoch < 2:
                    w = torch.ones(T)
                else:
                    r = epoch_means[-1] / epoch_means[-2]
                    w = (T * torch.softmax(r / DWA_TEMPERATURE, dim=0)).float()
                L = batch_losses(model, x, cls, flag, target)
                total = (w * L).sum()
                total.backward()
            elif strategy == "uncertainty":
                L = batch_losses(model, x, cls, flag, target)
                w = (0.5 * torch.exp(-log_var)).detach()
                total = (0.5 * (torch.exp(-log_var) * L + log_var)).sum()
                own_opt.zero_grad()
                total.backward()
                own_opt.step()
            elif strategy == "gradnorm":
                L = batch_losses(model, x, cls, flag, target)
                W = model.trunk[2].weight                 # the last shared layer's weights
                w, total, initial_loss = gradnorm_step(L, W, gn_w, own_opt, initial_loss)
            elif strategy == "pcgrad":
                L = batch_losses(model, x, cls, flag, target)
                w = torch.tensor(WEIGHTS)
                pcgrad_backward(L, params, shared, w, orders(SEED, step, T), counts)
                total = (w * L).sum()
            elif strategy == "mgda":
                rep = model.trunk(x)
                L = batch_losses(model, x, cls, flag, target, rep)
                z = [torch.autograd.grad(L[i], rep, retain_graph=True)[0].reshape(-1).double() for i in range(T)]
                gram = torch.stack([torch.stack([torch.dot(a, b) for b in z]) for a in z])
                w = min_norm_exact(gram).float()
                total = (w * L).sum()
                total.backward()
            else:
                raise ValueError(strategy)
            opt.step()
            n = chunk.shape[0]
            loss_sum += L.detach().double() * n
            count += n
            log.append((total.item(), L.tolist(), w.tolist()))
        epoch_means.append(loss_sum / count)
    return log, {k: v.detach() for k, v in model.state_dict().items()}


# ---- partial reach: parameters that some tasks' losses never reach ------------------------------
# Two models on the same data: a chain whose second shared block only two tasks read, and an MMoE
# whose gates are each one task's own. The reference picks GradNorm's W as the paper defines it,
# the last layer weight (forward order) that every task's loss passes through, found with
# autograd; pcgrad and mgda act on the MMoE experts, the parameters the tasks share (each task's
# gate is task-specific: MMoE, Ma et al. 2018; LibMTL's MMoE keeps the gates out of the shared
# encoder). planted=True makes the old mistakes: W = the last weight of a shared block, and the
# gates counted as shared; mtlc must then disagree beyond the tolerance.

EXPERTS = 3
PARTIAL_MODELS = {
    "chain": """
shared a = x -> dense(16) -> tanh
shared b = a -> dense(16) -> tanh
task cls    {{ b -> dense(3)  loss cross_entropy  weight 1.0 }}
task flag   {{ b -> dense(1)  loss bce            weight 0.5 }}
task target {{ a -> dense(1)  loss mse            weight 0.3 }}
""",
    "mmoe": """
shared experts = x -> mixture(experts={experts}) {{ dense(8) -> relu }}
task cls    {{ gate(experts) -> dense(3)  loss cross_entropy  weight 1.0 }}
task flag   {{ gate(experts) -> dense(1)  loss bce            weight 0.5 }}
task target {{ gate(experts) -> dense(1)  loss mse            weight 0.3 }}
""",
}
PARTIAL_CASES = [("chain", "gradnorm"), ("mmoe", "gradnorm"), ("mmoe", "pcgrad"), ("mmoe", "mgda")]


def partial_program(arch, strategy):
    """The whole .mtl text: MODEL's input, train and data sections around the architecture."""
    full = MODEL.format(lr=LR, batch=BATCH, epochs=EPOCHS, weighting=STRATEGIES[strategy], seed=SEED)
    head, rest = full.split("shared trunk", 1)
    body = PARTIAL_MODELS[arch].format(experts=EXPERTS)
    return head.replace("model weighting_parity", f"model weighting_{arch}") + body.lstrip("\n") + \
        rest[rest.index("train {"):]


class Chain(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Sequential(nn.Linear(8, 16), nn.Tanh())
        self.b = nn.Sequential(nn.Linear(16, 16), nn.Tanh())
        self.cls, self.flag, self.target = nn.Sequential(nn.Linear(16, 3)), nn.Sequential(nn.Linear(16, 1)), \
            nn.Sequential(nn.Linear(16, 1))

    def forward(self, x):
        a = self.a(x)
        b = self.b(a)
        return self.cls(b), self.flag(b), self.target(a)

    def shared(self, planted):
        return {n for n, _ in self.named_parameters() if n.startswith(("a.", "b."))}


class Mmoe(nn.Module):
    """Ma et al. 2018: E experts on x; task k's output is its tower applied to
    sum_e softmax(gate_k(x))_e * expert_e(x) (the gates with a bias, as mtlc's dense)."""

    def __init__(self):
        super().__init__()
        block = nn.Module()                        # parameter names as mtlc's: experts.0.<e>.0.weight,
        for e in range(EXPERTS):                   # experts.0.gate.<task>.weight
            block.add_module(str(e), nn.Sequential(nn.Linear(8, 8), nn.ReLU()))
        block.gate = nn.ModuleDict({t: nn.Linear(8, EXPERTS) for t in TASKS})
        self.experts = nn.ModuleList([block])
        self.cls, self.flag, self.target = nn.Sequential(nn.Linear(8, 3)), nn.Sequential(nn.Linear(8, 1)), \
            nn.Sequential(nn.Linear(8, 1))

    def forward(self, x):
        block = self.experts[0]
        outs = torch.stack([getattr(block, str(e))(x) for e in range(EXPERTS)], dim=1)   # [n, E, 8]
        heads = []
        for t in TASKS:
            g = torch.softmax(block.gate[t](x), dim=1)                                  # [n, E]
            heads.append(getattr(self, t)((g.unsqueeze(2) * outs).sum(1)))
        return heads

    def shared(self, planted):
        names = {n for n, _ in self.named_parameters() if n.startswith("experts.")}
        return names if planted else {n for n in names if ".gate." not in n}


PARTIAL_ARCHS = {"chain": Chain, "mmoe": Mmoe}


def gradnorm_layer(model, losses, planted):
    """The last `.weight` in forward (registration) order that every task's loss reaches, by
    autograd (from each loss tensor itself: a stacked L[i] would reach everything through the
    stack); planted: the last weight of a shared block, reached or not."""
    weights = [(n, p) for n, p in model.named_parameters() if n.endswith(".weight")]
    if planted:
        return [n for n, _ in weights if n in model.shared(True)][-1]
    reached = [n for n, p in weights
               if all(torch.autograd.grad(loss, p, retain_graph=True, allow_unused=True)[0] is not None
                      for loss in losses)]
    return reached[-1]


def torch_run_partial(arch, strategy, rows, init, planted=False):
    """As torch_run, on a PARTIAL_MODELS architecture; returns (log, final state, gradnorm's W)."""
    torch.manual_seed(0)
    model = PARTIAL_ARCHS[arch]()
    model.load_state_dict(init)
    params = dict(model.named_parameters())
    shared = model.shared(planted)
    opt = torch.optim.Adam(params.values(), lr=LR)
    T = len(TASKS)
    gn_w = torch.ones(T, requires_grad=True)
    own_opt = torch.optim.Adam([gn_w], lr=LR)
    initial_loss, W_name = None, None
    data = torch.tensor(rows, dtype=torch.float32)
    log, step = [], 0
    for _ in range(EPOCHS):
        for b in range(0, ROWS, BATCH):
            step += 1
            chunk = data[b:b + BATCH]
            x, cls, flag, target = chunk[:, :8], chunk[:, 8].long(), chunk[:, 9:10], chunk[:, 10:11]
            opt.zero_grad()
            oc, of, ot = model(x)
            losses = [F.cross_entropy(oc, cls), F.binary_cross_entropy_with_logits(of, flag), F.mse_loss(ot, target)]
            L = torch.stack(losses)
            if strategy == "gradnorm":
                W_name = W_name or gradnorm_layer(model, losses, planted)
                w, total, initial_loss = gradnorm_step(L, params[W_name], gn_w, own_opt, initial_loss)
            elif strategy == "pcgrad":
                w = torch.tensor(WEIGHTS)
                pcgrad_backward(L, params, shared, w, pcgrad_orders(SEED, step, T),
                                {"projections": 0, "order_matters": 0})
                total = (w * L).sum()
            elif strategy == "mgda":
                w = mgda_shared_weights(L, params, shared)
                total = (w * L).sum()
                total.backward()
            else:
                raise ValueError(strategy)
            opt.step()
            log.append((total.item(), L.tolist(), w.tolist()))
    return log, {k: v.detach() for k, v in model.state_dict().items()}, W_name


# ---- comparison ---------------------------------------------------------------------------------

def max_loss_diff(a, b):
    return max(rel(x, y) for (_, la, _), (_, lb, _) in zip(a, b) for x, y in zip(la, lb))


def run_mtlc(mtlc, work, name, text, init_path):
    """Trains `text` with mtlc; returns ((per-step log records, final tensors, stdout), None) or
    (None, the error)."""
    program = os.path.join(work, f"weighting_{name}.mtl")
    with open(program, "w") as f:
        f.write(text)
    log, final = os.path.join(work, f"{name}.jsonl"), os.path.join(work, f"{name}.safetensors")
    r = subprocess.run([mtlc, "train", program, "--init", init_path, "--save", final, "--log", log, "--quiet"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        return None, f"mtlc failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
    steps = [json.loads(line) for line in open(log) if '"step"' in line]
    return (steps, safetensors_io.load(final), r.stdout), None


def step_diffs(steps, ref):
    """Worst relative differences of mtlc's log against a reference log: (losses and totals,
    weights, (step, task) of the worst weight)."""
    worst_loss = worst_weight = 0.0
    worst_at = (0, "")
    for s, (total, losses, weights) in zip(steps, ref):
        worst_loss = max(worst_loss, rel(s["loss"], total))
        for t, task in enumerate(TASKS):
            worst_loss = max(worst_loss, rel(s["tasks"][task]["loss"], losses[t]))
            d = rel(s["tasks"][task]["weight"], weights[t])
            if d > worst_weight:
                worst_weight, worst_at = d, (s["step"], task)
    return worst_loss, worst_weight, worst_at


def report(label, steps, ref, final, ref_params):
    """Prints the comparison of one run; True when within the tolerances."""
    worst_loss, worst_weight, worst_at = step_diffs(steps, ref)
    worst_param = max((final[k] - v).abs().max().item() for k, v in ref_params.items())
    ok = worst_loss <= REL_TOL and worst_weight <= REL_TOL and worst_param <= PARAM_TOL
    at = f" (step {worst_at[0]}, {worst_at[1]})" if worst_weight > 0 else ""
    print(f"{label:12s} {len(steps)} steps  max rel diff: losses {worst_loss:.2e}, weights {worst_weight:.2e}{at}"
          f" (<= {REL_TOL:g}); max abs param diff {worst_param:.2e} (<= {PARAM_TOL:g})  {'ok' if ok else 'FAIL'}")
    return ok


def check_strategies(mtlc, work, rows, init_path, init):
    """Every strategy on the one-trunk model; returns the number of failures."""
    torch_fixed, _ = torch_run("fixed", rows, init)
    failures = 0
    expected_steps = EPOCHS * ((ROWS + BATCH - 1) // BATCH)
    for name in STRATEGIES:
        text = MODEL.format(lr=LR, batch=BATCH, epochs=EPOCHS, weighting=STRATEGIES[name], seed=SEED)
        got, error = run_mtlc(mtlc, work, name, text, init_path)
        if error:
            print(f"{name}: {error}")
            failures += 1
            continue
        steps, final, _ = got
        ref, ref_params = torch_run(name, rows, init)
        if len(steps) != expected_steps or len(ref) != expected_steps:
            print(f"{name}: mtlc logged {len(steps)} steps, torch ran {len(ref)}, expected {expected_steps}")
            failures += 1
            continue
        ok = report(name, steps, ref, final, ref_params)
        # What makes the check meaningful: how far the strategy is from plain fixed weights.
        moved = max(abs(s["tasks"][t]["weight"] - steps[0]["tasks"][t]["weight"]) for s in steps for t in TASKS)
        if name != "fixed":
            vs_fixed = max_loss_diff(ref, torch_fixed)
            print(f"{'':12s} weights moved by up to {moved:.4f}; losses differ from fixed's by up to {vs_fixed:.2e}")
        if name == "pcgrad":
            counts = {"projections": 0, "order_matters": 0}
            torch_run(name, rows, init, counts=counts)
            other_order, _ = torch_run(name, rows, init, orders=reversed_orders)
            print(f"{'':12s} {counts['projections']} projections, {counts['order_matters']} of them order-dependent "
                  f"(a task conflicting with both others); the reversed order changes losses by up to "
                  f"{max_loss_diff(other_order, ref):.2e}")
        failures += 0 if ok else 1
    return failures


def check_partial_reach(mtlc, work, rows):
    """PARTIAL_CASES against their references, and against the planted mistakes, which must
    disagree beyond the tolerance; gradnorm's header line must name the reference's W."""
    failures = 0
    for arch, strategy in PARTIAL_CASES:
        label = f"{arch}/{strategy}"
        torch.manual_seed(43)
        init = {k: v.clone() for k, v in PARTIAL_ARCHS[arch]().state_dict().items()}
        init_path = os.path.join(work, f"init_{arch}.safetensors")
        safetensors_io.save(init_path, init)
        got, error = run_mtlc(mtlc, work, f"{arch}_{strategy}", partial_program(arch, strategy), init_path)
        if error:
            print(f"{label}: {error}")
            failures += 1
            continue
        steps, final, stdout = got
        ref, ref_params, W = torch_run_partial(arch, strategy, rows, init)
        ok = len(steps) == len(ref) and report(label, steps, ref, final, ref_params)
        if W is not None:
            header = f"weighting: {STRATEGIES[strategy]} on {W}\n"
            named = header in stdout
            said = [line for line in stdout.splitlines() if line.startswith("weighting:")]
            print(f"{'':12s} W = {W}; mtlc's header {'names it' if named else 'does NOT name it: ' + repr(said)}")
            ok = ok and named
        planted, _, planted_W = torch_run_partial(arch, strategy, rows, init, planted=True)
        worst_loss, worst_weight, _ = step_diffs(steps, planted)
        caught = max(worst_loss, worst_weight) > REL_TOL
        what = f"W = {planted_W}" if planted_W else "gates counted as shared"
        print(f"{'':12s} planted mistake ({what}): max rel diff losses {worst_loss:.2e}, weights {worst_weight:.2e}"
              f"  {'told apart' if caught else 'NOT told apart'}")
        failures += 0 if ok and caught else 1
    return failures


def main():
    mtlc, work = sys.argv[1], sys.argv[2]
    os.makedirs(work, exist_ok=True)
    mtlc_rng.self_check()
    rows = parity.make_data(os.path.join(work, "data.csv"), ROWS)
    torch.manual_seed(42)
    init = {k: v.clone() for k, v in parity.Parity().state_dict().items()}
    init_path = os.path.join(work, "init.safetensors")
    safetensors_io.save(init_path, init)
    failures = check_strategies(mtlc, work, rows, init_path, init)
    failures += check_partial_reach(mtlc, work, rows)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
