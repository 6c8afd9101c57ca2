"""Cross-check of the solver-based gradient methods (issue #26, Weighting.h "gradB"): upgrad,
aligned_mtl, nash_mtl, fairgrad and excess_mtl. mtlc and PyTorch train weighting_parity's model
and data (three tasks, 40 steps over 5 epochs) from the same init on the same batches; per-step
task losses, the logged total and each task's weight must agree within 2e-4 relative.

usage: weighting_gradb.py MTLC_BINARY WORK_DIR
Exit 0 = agree, 1 = disagree, 77 = skipped (no torch for this python).

Each method is written here from its paper, in float64 for the solvers, with different solution
methods from mtlc's where one is needed:
  upgrad       Quinton & Rey 2024: G normalised by its trace (+ 1e-4 I); g_i/T projected onto the
               dual cone of the g's, as its weights argmin_{v >= e_i/T} v'Gv (Proposition 1),
               found by enumerating every face's KKT point; w = the sum of the projections
  aligned_mtl  Senushkin et al. 2023: torch.linalg.eigh of G, eigenvalues above lambda_max*T*eps32
               kept, B = sqrt(lambda_min) V diag(lambda^-1/2) V', w = column sums of B
  nash_mtl     Navon et al. 2022: G alpha = 1/alpha by Newton on the residual (autograd Jacobian),
               then torch.nn.utils.clip_grad_norm_(shared parameters, max_norm=1); also once with
               SGD, since Adam hardly sees the clipping's scale (the planted max_norm=2 shows there)
  fairgrad     Ban & Ji 2024: G w = w^(-1/alpha), the same residual Newton
  excess_mtl   He et al. 2024: AdaGrad-like H_t = sqrt(sum g_t^2 + 1e-7), e_t = g_t'(g_t/H_t),
               w <- w*exp(0.01*e_t/e_t(0)), renormalised to sum T; w = 1 on the first step
The gradient each method applies is sum_t w_t g_t, i.e. one backward of sum_t w_t L_t with w
constant (Nash-MTL's then clipped on the shared parameters). rep_grad=true (upgrad, aligned_mtl,
nash_mtl): G from each task's gradient at the trunk's output, flattened over the batch.
Partial reach: the chain (task target reads only the first shared block) and the MMoE (gates
are task-specific) of weighting_parity.py. Every reference is also run with a planted error,
which must disagree beyond the tolerance. Prints the worst relative difference per method.
"""
import itertools
import os
import sys

try:
    import torch
except ImportError:
    print("SKIP: torch is not installed for", sys.executable)
    sys.exit(77)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import parity  # noqa: E402
import safetensors_io  # noqa: E402
import weighting_parity as wp  # noqa: E402  (its model, data, partial-reach models and comparison)

F32_EPS = 2.0 ** -23
SGD_LR = 0.1

# name: (the .mtl weighting, the reference's method, its arguments, the planted error's arguments)
METHODS = {
    "upgrad": ("upgrad", "upgrad", {"reg_eps": 1e-4}, {"reg_eps": 1e-2}),
    "aligned_mtl": ("aligned_mtl", "aligned", {"scale": "min"}, {"scale": "max"}),
    "nash_mtl": ("nash_mtl", "nash", {"max_norm": 1.0}, {"max_norm": 1.0, "gram": "frobenius"}),
    # Adam is blind to the clipping's scale: with SGD the planted max_norm shows
    "nash_mtl_sgd": ("nash_mtl", "nash", {"max_norm": 1.0, "sgd": True}, {"max_norm": 2.0, "sgd": True}),
    "fairgrad": ("fairgrad(alpha=1.0)", "fair", {"alpha": 1.0}, {"alpha": 2.0}),
    "fairgrad_a2": ("fairgrad(alpha=2)", "fair", {"alpha": 2.0}, {"alpha": 1.0}),
    "excess_mtl": ("excess_mtl", "excess", {"step": 0.01}, {"step": 0.02}),
    # rep_grad: the planted error is LibMTL's batch-summed representation gradient
    "upgrad_rep": ("upgrad(rep_grad=true)", "upgrad", {"reg_eps": 1e-4, "rep": True},
                   {"reg_eps": 1e-4, "rep": "sum"}),
    "aligned_mtl_rep": ("aligned_mtl(rep_grad=true)", "aligned", {"scale": "min", "rep": True},
                        {"scale": "min", "rep": "sum"}),
    "nash_mtl_rep": ("nash_mtl(rep_grad=true)", "nash", {"max_norm": 1.0, "rep": True},
                     {"max_norm": 1.0, "rep": "sum"}),
}
PARTIAL_CASES = [("chain", "upgrad"), ("chain", "aligned_mtl"), ("mmoe", "nash_mtl"), ("mmoe", "fairgrad"),
                 ("mmoe", "excess_mtl")]


# ---- the solvers --------------------------------------------------------------------------------

def upgrad_weights(G, reg_eps):
    T = G.shape[0]
    tr = G.diagonal().sum()
    G = (torch.zeros_like(G) if tr < 1e-4 else G / tr) + reg_eps * torch.eye(T, dtype=G.dtype)
    w = torch.zeros(T, dtype=G.dtype)
    for i in range(T):
        u = torch.zeros(T, dtype=G.dtype)
        u[i] = 1.0 / T
        w += dual_cone_kkt(G, u)
    return w


def dual_cone_kkt(G, u):
    """argmin_{v >= u} v'Gv: on each face (F free, the rest at u), G_FF v_F = -G_FB u_B; the KKT
    point has v_F >= u_F and (G v)_B >= 0 (the multipliers)."""
    T = G.shape[0]
    best, best_value = None, None
    for k in range(T + 1):
        for F in itertools.combinations(range(T), k):
            B = [j for j in range(T) if j not in F]
            v = u.clone()
            if F:
                v[list(F)] = torch.linalg.solve(G[list(F)][:, list(F)], -G[list(F)][:, B] @ u[B])
            if (v[list(F)] < u[list(F)] - 1e-12).any() or ((G @ v)[B] < -1e-12).any():
                continue
            value = v @ G @ v
            if best is None or value < best_value:
                best, best_value = v, value
    return best


def aligned_weights(G, scale):
    T = G.shape[0]
    lam, V = torch.linalg.eigh(G)
    keep = lam > lam.max() * T * F32_EPS
    if not keep.any():
        return torch.full((T,), 1.0 / T, dtype=G.dtype)
    lam, V = lam[keep], V[:, keep]
    s = lam.min() if scale == "min" else lam.max()
    B = s.sqrt() * (V @ torch.diag(lam.rsqrt()) @ V.T)
    return B.sum(0)


def fair_weights(G, alpha):
    """G w = w^(-1/alpha), w > 0 (tasks with a zero gradient: 0), by damped Newton on the
    residual with its autograd Jacobian."""
    T = G.shape[0]
    active = [i for i in range(T) if G[i, i] > 0]
    w = torch.zeros(T, dtype=G.dtype)
    if not active:
        return w
    A = G[active][:, active]

    def residual(x):
        return A @ x - x.pow(-1.0 / alpha)

    x = torch.full((len(active),), 1.0 / len(active), dtype=G.dtype)
    for _ in range(500):
        r = residual(x)
        if r.abs().max() < 1e-14 * max(1.0, x.abs().max().item()):
            break
        J = torch.autograd.functional.jacobian(residual, x)
        d = torch.linalg.solve(J, -r)
        t = 1.0
        while t > 1e-12 and ((x + t * d <= 0).any() or residual(x + t * d).norm() > (1 - 1e-4 * t) * r.norm()):
            t *= 0.5
        x = x + t * d
    w[active] = x
    return w


# ---- the runs -----------------------------------------------------------------------------------

def flat_task_grads(L, params, shared):
    """Each task's gradient of the shared parameters, one float64 vector per task."""
    per_task = wp.task_gradients(L, params)
    names = list(params)
    return [torch.cat([gs[k].reshape(-1) for k, n in enumerate(names) if n in shared]).double() for gs in per_task]


class Excess:
    """He et al. 2024 (ExcessMTL), its state across steps."""

    def __init__(self, T, step):
        self.w, self.step, self.sum_sq, self.e0 = torch.ones(T), step, None, [None] * T

    def weights(self, grads):
        if self.sum_sq is None:
            self.sum_sq = [torch.zeros_like(g, dtype=torch.float32) for g in grads]
        ratio = torch.zeros(len(grads), dtype=torch.float64)
        for t, g in enumerate(grads):
            g32 = g.float()
            self.sum_sq[t] += g32 * g32
            e = (g * g / (self.sum_sq[t].double() + 1e-7).sqrt()).sum().item()
            if self.e0[t] is not None:
                ratio[t] = e / self.e0[t]
            elif e > 0:
                self.e0[t] = float(torch.tensor(e, dtype=torch.float32))
        w = self.w.double() * torch.exp(self.step * ratio)
        self.w = (w / w.sum() * len(grads)).float()
        return self.w


def method_weights(method, args, state, grads):
    """The weights of `method` from the task gradient vectors `grads` (float64)."""
    if method == "excess":
        return state.weights(grads)
    G = torch.stack([torch.stack([a @ b for b in grads]) for a in grads])
    if method == "upgrad":
        w = upgrad_weights(G, args["reg_eps"])
    elif method == "aligned":
        w = aligned_weights(G, args["scale"])
    elif method == "nash":  # planted: G / |G|_F, LibMTL's normalised Gram taken for G
        w = fair_weights(G / G.norm() if args.get("gram") == "frobenius" else G, 1.0)
    else:
        w = fair_weights(G, args["alpha"])
    return w.float()


def run(method, args, arch, rows, init):
    """(per-step log [(total, [L_i], [w_i])], final parameters) of the reference."""
    torch.manual_seed(0)
    model = parity.Parity() if arch == "trunk" else wp.PARTIAL_ARCHS[arch]()
    model.load_state_dict(init)
    params = dict(model.named_parameters())
    shared = {n for n in params if n.startswith("trunk.")} if arch == "trunk" else model.shared(False)
    opt = torch.optim.SGD(params.values(), lr=SGD_LR) if args.get("sgd") else \
        torch.optim.Adam(params.values(), lr=wp.LR)
    T, rep = len(wp.TASKS), args.get("rep")
    state = Excess(T, args.get("step", 0.0))
    data = torch.tensor(rows, dtype=torch.float32)
    log = []
    for _ in range(wp.EPOCHS):
        for b in range(0, wp.ROWS, wp.BATCH):
            chunk = data[b:b + wp.BATCH]
            x, cls, flag, target = chunk[:, :8], chunk[:, 8].long(), chunk[:, 9:10], chunk[:, 10:11]
            opt.zero_grad()
            if arch == "trunk":
                h = model.trunk(x)
                L = wp.batch_losses(model, x, cls, flag, target, h)
            else:
                oc, of, ot = model(x)
                L = torch.stack([torch.nn.functional.cross_entropy(oc, cls),
                                 torch.nn.functional.binary_cross_entropy_with_logits(of, flag),
                                 torch.nn.functional.mse_loss(ot, target)])
            if rep:
                z = [torch.autograd.grad(L[i], h, retain_graph=True)[0].double() for i in range(T)]
                grads = [g.sum(0) if rep == "sum" else g.reshape(-1) for g in z]
            else:
                grads = flat_task_grads(L, params, shared)
            w = method_weights(method, args, state, grads)
            total = (w * L).sum()
            total.backward()
            if method == "nash":
                torch.nn.utils.clip_grad_norm_([params[n] for n in params if n in shared], args["max_norm"])
            opt.step()
            log.append((total.item(), L.tolist(), w.tolist()))
    return log, {k: v.detach() for k, v in model.state_dict().items()}


def program(arch, weighting, sgd=False):
    text = wp.MODEL.format(lr=wp.LR, batch=wp.BATCH, epochs=wp.EPOCHS, weighting=weighting, seed=wp.SEED)
    if sgd:
        text = text.replace(f"optimizer adam(lr={wp.LR})", f"optimizer sgd(lr={SGD_LR})")
    if arch == "trunk":
        return text
    head, rest = text.split("shared trunk", 1)
    body = wp.PARTIAL_MODELS[arch].format(experts=wp.EXPERTS)
    return head.replace("model weighting_parity", f"model gradb_{arch}") + body.lstrip("\n") + \
        rest[rest.index("train {"):]


def check(mtlc, work, rows, label, arch, name, init, init_path, worst):
    """One case against its reference and its planted error; returns 0 when both behave."""
    weighting, method, args, planted_args = METHODS[name]
    got, error = wp.run_mtlc(mtlc, work, f"{arch}_{name}", program(arch, weighting, args.get("sgd")), init_path)
    if error:
        print(f"{label}: {error}")
        return 1
    steps, final, _ = got
    ref, ref_params = run(method, args, arch, rows, init)
    expected = wp.EPOCHS * ((wp.ROWS + wp.BATCH - 1) // wp.BATCH)
    if len(steps) != expected or len(ref) != expected:
        print(f"{label}: mtlc logged {len(steps)} steps, torch ran {len(ref)}, expected {expected}")
        return 1
    ok = wp.report(label, steps, ref, final, ref_params)
    worst_loss, worst_weight, _ = wp.step_diffs(steps, ref)
    moved = max(abs(s["tasks"][t]["weight"] - steps[0]["tasks"][t]["weight"]) for s in steps for t in wp.TASKS)
    planted, _ = run(method, planted_args, arch, rows, init)
    p_loss, p_weight, _ = wp.step_diffs(steps, planted)
    caught = max(p_loss, p_weight) > wp.REL_TOL
    print(f"{'':12s} weights moved by up to {moved:.4f}; planted error {planted_args}: max rel diff losses "
          f"{p_loss:.2e}, weights {p_weight:.2e}  {'told apart' if caught else 'NOT told apart'}")
    worst.append((label, max(worst_loss, worst_weight), max(p_loss, p_weight)))
    return 0 if ok and caught else 1


def main():
    mtlc, work = sys.argv[1], sys.argv[2]
    os.makedirs(work, exist_ok=True)
    rows = parity.make_data(os.path.join(work, "data.csv"), wp.ROWS)
    torch.manual_seed(42)
    init = {k: v.clone() for k, v in parity.Parity().state_dict().items()}
    init_path = os.path.join(work, "init.safetensors")
    safetensors_io.save(init_path, init)
    failures, worst = 0, []
    only = set(sys.argv[3:])
    for name in METHODS:
        if not only or name in only:
            failures += check(mtlc, work, rows, name, "trunk", name, init, init_path, worst)
    for arch, name in PARTIAL_CASES:
        if only and name not in only:
            continue
        torch.manual_seed(43)
        pinit = {k: v.clone() for k, v in wp.PARTIAL_ARCHS[arch]().state_dict().items()}
        pinit_path = os.path.join(work, f"init_{arch}.safetensors")
        safetensors_io.save(pinit_path, pinit)
        failures += check(mtlc, work, rows, f"{arch}/{name}", arch, name, pinit, pinit_path, worst)
    print("worst relative difference per case (losses and weights; the planted error's):")
    for label, d, p in worst:
        print(f"  {label:22s} {d:.2e}   planted {p:.2e}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
