"""Cross-check of the gradient methods imtl, cagrad, gradvac, graddrop, db_mtl and moco (#26): mtlc
and PyTorch train the same three-task model from the same safetensors init on the same batches
(weighting_parity.py's model, data and comparison), 40 steps over 5 epochs, and must agree at
every step on each task's loss and each task's weight `tasks.<t>.weight` (2e-4 relative).

usage: weighting_grada.py MTLC_BINARY WORK_DIR
Exit 0 = agree, 1 = disagree, 77 = skipped (no torch for this python).

Each method is written here from its paper, autograd giving every task's gradient; from mtlc only
the conventions Weighting.h documents are taken (what is logged, the heads' gradient, the seeded
draws). The shared vector is the trainable shared parameters' gradients, concatenated in mtlc's
arena order (the order of the tensors in the file `--save` writes), each tensor row-major.
  imtl      Liu et al. 2021, IMTL-L + IMTL-G: losses e^s*L - s (s learnt by its own Adam), alpha from
            D U^T; the weight logged is alpha_t*e^{s_t}, every parameter gets sum of it times g_t
  cagrad    Liu et al. 2021: the dual min_w g_w.g0 + c|g0||g_w| over the simplex (here L-BFGS on a
            softmax parametrisation, float64), d = (g0 + c|g0|/|g_w| g_w) / (1 + c^2)
  gradvac   Wang et al. 2021: targets phi_ij (EMA beta of the cosine similarity), the other tasks
            visited in pcgrad's seeded order (Weighting.h pcgradOrders)
  graddrop  Chen et al. 2020: sign purity P, a coordinate keeps the sign that beats a uniform U
            (Weighting.h graddropUniforms, replayed with mtlc_rng.py)
  db_mtl    Lin et al. 2023: EMA (beta) of the gradients of log L, scaled to the largest norm
  moco      Fernando et al. 2023: tracked gradients y (normalised gradient times loss), lambda by
            a softmax step on (Y Y^T + rho I) lambda
Each method is also run with a planted mistake that must disagree beyond the tolerance, and on
the partial-reach architectures of weighting_parity.py (a chain whose second block only two tasks
read; an MMoE whose gates are each one task's own, and must not be treated as shared).
"""
import json
import math
import os
import struct
import sys

try:
    import torch
    import torch.nn.functional as F
except ImportError:
    print("SKIP: torch is not installed for", sys.executable)
    sys.exit(77)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mtlc_rng  # noqa: E402
import parity  # noqa: E402
import safetensors_io  # noqa: E402
import weighting_parity as wp  # noqa: E402  (model text, data, orders, mtlc runner, comparison)

T = len(wp.TASKS)
ROWS, BATCH, EPOCHS, LR, SEED, REL_TOL = wp.ROWS, wp.BATCH, wp.EPOCHS, wp.LR, wp.SEED, wp.REL_TOL

# name -> (spelling, reference arguments, planted arguments: a wrong hyper-parameter or sign)
METHODS = {
    "imtl": ("imtl", {}, {"learn_scale": False}),
    "imtl_rep": ("imtl(rep_grad=true)", {"rep": True}, {"rep": False}),
    "cagrad": ("cagrad(c=0.4)", {"c": 0.4}, {"c": 0.5}),
    "cagrad_rep": ("cagrad(c=0.4, rep_grad=true)", {"c": 0.4, "rep": True}, {"c": 0.4, "rescale": False, "rep": True}),
    "gradvac": ("gradvac(beta=0.5)", {"beta": 0.5}, {"beta": 0.25}),
    "graddrop": ("graddrop", {}, {"flip": True}),
    "db_mtl": ("db_mtl", {"beta": 0.9, "beta_sigma": 0.0}, {"beta": 0.5, "beta_sigma": 0.0}),
    "moco": ("moco", {"beta": 0.5, "beta_sigma": 0.5, "gamma": 0.1, "gamma_sigma": 0.5, "rho": 0.0},
             {"beta": 0.5, "beta_sigma": 0.5, "gamma": 0.2, "gamma_sigma": 0.5, "rho": 0.0}),
}
PARTIAL = [("chain", "imtl"), ("chain", "gradvac"), ("mmoe", "cagrad"), ("mmoe", "graddrop"),
           ("mmoe", "db_mtl"), ("mmoe", "moco")]


def arena_order(path):
    """The tensor names of a safetensors file in the order of their data (mtlc's arena order)."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
    header.pop("__metadata__", None)
    return sorted(header, key=lambda k: header[k]["data_offsets"][0])


# ---- the methods, each from its paper --------------------------------------------------------

def imtl_alpha(g):
    """IMTL-G: g [T, D] float64; alpha with the combined gradient's projections on every unit g_t
    equal: alpha_{2..T} = g_1 U^T (D U^T)^-1, alpha_1 = 1 - sum."""
    u = g / g.norm(dim=1, keepdim=True)
    D = g[0:1] - g[1:]
    U = u[0:1] - u[1:]
    rest = g[0] @ U.t() @ torch.linalg.inv(D @ U.t())
    return torch.cat([(1 - rest.sum()).reshape(1), rest])


def cagrad_dual(G, c_prime):
    """argmin over the simplex of w.(G b) + c'*sqrt(w G w), b = 1/T: L-BFGS (strong Wolfe) on
    w = softmax(z), float64, restarted until it stops moving."""
    b = torch.full((T,), 1.0 / T, dtype=torch.float64)
    z = torch.zeros(T, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([z], lr=1, max_iter=200, tolerance_grad=1e-13, tolerance_change=1e-16,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        w = torch.softmax(z, 0)
        f = w @ G @ b + c_prime * torch.sqrt(w @ G @ w)
        f.backward()
        return f
    for _ in range(5):
        before = z.detach().clone()
        opt.step(closure)
        if torch.equal(before, z.detach()):
            break
    return torch.softmax(z, 0).detach()


def graddrop_uniforms(step, count):
    rng = mtlc_rng.MT19937_64(mtlc_rng.mix64(mtlc_rng.mix64(SEED) ^ step) ^ 0x4744)
    return torch.tensor([(rng() >> 11) * 2.0 ** -53 for _ in range(count)], dtype=torch.float64)


class Reference:
    """One method's state and step. step() gets the losses L [T] (a graph to autograd), the
    parameters, the shared names in arena order and a `rep` tensor (or None); it sets every
    parameter's .grad and returns the logged weights."""

    def __init__(self, method, args, params):
        self.method, self.args = method.replace("_rep", ""), args
        self.s = torch.zeros(T, requires_grad=True)                 # imtl's loss scales
        self.scale_opt = torch.optim.Adam([self.s], lr=LR)
        self.phi = torch.zeros(T, T, dtype=torch.float64)           # gradvac
        self.buf = self.y = None                                    # db_mtl, moco
        self.lam = torch.full((T,), 1.0 / T, dtype=torch.float64)   # moco

    def step(self, L, params, shared, rep, k):
        names = list(params)
        if self.method == "db_mtl":
            L_used = torch.log(L + 1e-8)
        elif self.method == "imtl":
            L_used = torch.exp(self.s) * L - self.s
        else:
            L_used = L
        per_task = wp.task_gradients(L_used, params)
        flat = torch.stack([torch.cat([per_task[t][names.index(n)].reshape(-1) for n in shared]).double()
                            for t in range(T)])
        heads, shared_grad, w = getattr(self, self.method)(L, flat, rep, L_used)
        at = 0
        for i, (name, p) in enumerate(params.items()):
            p.grad = sum(float(heads[t]) * per_task[t][i] for t in range(T))
        if shared_grad is not None:
            for name in shared:
                p = params[name]
                p.grad = shared_grad[at:at + p.numel()].reshape(p.shape).float().clone()
                at += p.numel()
        return torch.as_tensor(w, dtype=torch.float32)

    def rep_or_flat(self, flat, rep, L_used):
        if not self.args.get("rep"):
            return flat
        z = [torch.autograd.grad(L_used[t], rep, retain_graph=True)[0].reshape(-1).double() for t in range(T)]
        return torch.stack(z)

    def imtl(self, L, flat, rep, L_used):
        # per_task are already gradients of e^s*L - s, i.e. e^{s_t} g_t
        g = self.rep_or_flat(flat, rep, L_used)
        alpha = imtl_alpha(g)
        e = torch.exp(self.s.detach()).double()
        coef = alpha  # of the scaled gradients; of g_t: alpha_t * e^{s_t}
        if self.args.get("learn_scale", True):
            self.scale_opt.zero_grad()
            self.s.grad = torch.autograd.grad(L_used.sum(), self.s, retain_graph=True)[0]
            self.scale_opt.step()
        return coef, None, (alpha * e).tolist()

    def cagrad(self, L, flat, rep, L_used):
        g = self.rep_or_flat(flat, rep, L_used)
        c = self.args["c"]
        G = g @ g.t()
        g0 = g.mean(0)
        c_prime = c * g0.norm().item()
        w = cagrad_dual(G, c_prime)
        gw = w @ g
        lam = c_prime / gw.norm()
        coef = (1.0 / T + lam * w) / ((1 + c * c) if self.args.get("rescale", True) else 1)
        return coef, None, coef.tolist()

    def gradvac(self, L, flat, rep, L_used):
        beta = self.args["beta"]
        orders = wp.pcgrad_orders(SEED, self.k, T)
        out = flat.clone()
        for i in range(T):
            for j in orders[i]:
                gi, gj = out[i], flat[j]
                phi = torch.dot(gi, gj) / (gi.norm() * gj.norm())
                target = self.phi[i, j]
                if phi < target:
                    out[i] = gi + gi.norm() * (target * torch.sqrt(1 - phi ** 2) - phi * torch.sqrt(1 - target ** 2)) / \
                        (gj.norm() * torch.sqrt(1 - target ** 2)) * gj
                self.phi[i, j] = (1 - beta) * target + beta * phi
        return torch.ones(T), out.sum(0), [1.0] * T

    def graddrop(self, L, flat, rep, L_used):
        P = 0.5 * (1 + flat.sum(0) / flat.abs().sum(0))
        U = graddrop_uniforms(self.k, flat.shape[1])
        keep_pos, keep_neg = (P > U, P < U) if not self.args.get("flip") else (P < U, P > U)
        M = keep_pos.unsqueeze(0) * (flat > 0) + keep_neg.unsqueeze(0) * (flat < 0)
        return torch.ones(T), (M * flat).sum(0), [1.0] * T

    def db_mtl(self, L, flat, rep, L_used):
        b = self.args["beta"] / self.k ** self.args["beta_sigma"]
        self.buf = (1 - b) * flat if self.buf is None else b * self.buf + (1 - b) * flat
        norms = self.buf.norm(dim=1)
        alpha = norms.max() / norms
        return torch.ones(T), (alpha.unsqueeze(1) * self.buf).sum(0), alpha.tolist()

    def moco(self, L, flat, rep, L_used):
        a = self.args
        bk, gk = a["beta"] / self.k ** a["beta_sigma"], a["gamma"] / self.k ** a["gamma_sigma"]
        target = flat / flat.norm(dim=1, keepdim=True) * L.detach().double().unsqueeze(1)
        self.y = target * bk if self.y is None else self.y - bk * (self.y - target)
        self.lam = torch.softmax(self.lam - gk * (self.y @ self.y.t() + a["rho"] * torch.eye(T, dtype=torch.float64))
                                 @ self.lam, 0)
        return self.lam, self.y.t() @ self.lam, self.lam.tolist()


def reference_run(method, args, model, init, rows, shared, rep_of=None):
    """Trains `model` from `init` with the method; the per-step log [(total, [L], [w])]."""
    torch.manual_seed(0)
    model.load_state_dict(init)
    params = dict(model.named_parameters())
    opt = torch.optim.Adam(params.values(), lr=LR)
    ref = Reference(method, args, params)
    data = torch.tensor(rows, dtype=torch.float32)
    log, k = [], 0
    for _ in range(EPOCHS):
        for b in range(0, ROWS, BATCH):
            k += 1
            ref.k = k
            chunk = data[b:b + BATCH]
            x, cls, flag, target = chunk[:, :8], chunk[:, 8].long(), chunk[:, 9:10], chunk[:, 10:11]
            opt.zero_grad()
            rep = rep_of(model, x) if rep_of else None
            oc, of, ot = model(x) if rep is None else (model.cls(rep), model.flag(rep), model.target(rep))
            L = torch.stack([F.cross_entropy(oc, cls), F.binary_cross_entropy_with_logits(of, flag),
                             F.mse_loss(ot, target)])
            w = ref.step(L, params, shared, rep, k)
            opt.step()
            log.append(((w * L.detach()).sum().item(), L.tolist(), w.tolist()))
    return log


def program(arch, spelling):
    text = wp.MODEL.format(lr=LR, batch=BATCH, epochs=EPOCHS, weighting=spelling, seed=SEED)
    if arch is None:
        return text
    head, rest = text.split("shared trunk", 1)
    body = wp.PARTIAL_MODELS[arch].format(experts=wp.EXPERTS)
    return head.replace("model weighting_parity", f"model grada_{arch}") + body.lstrip("\n") + rest[rest.index("train {"):]


def compare(label, steps, ref, planted):
    worst_loss, worst_weight, at = wp.step_diffs(steps, ref)
    p_loss, p_weight, _ = wp.step_diffs(steps, planted)
    ok = len(steps) == len(ref) == EPOCHS * ROWS // BATCH and max(worst_loss, worst_weight) <= REL_TOL
    caught = max(p_loss, p_weight) > REL_TOL
    moved = max(abs(s["tasks"][t]["weight"] - steps[0]["tasks"][t]["weight"]) for s in steps for t in wp.TASKS)
    print(f"{label:16s} {len(steps)} steps  worst rel diff: losses {worst_loss:.2e}, weights {worst_weight:.2e}"
          f" (<= {REL_TOL:g}) {'ok' if ok else 'FAIL'}; weights moved {moved:.4f}; planted mistake: "
          f"{max(p_loss, p_weight):.2e} {'told apart' if caught else 'NOT told apart'}")
    return ok and caught


def run_case(mtlc, work, rows, arch, method):
    spelling, args, planted_args = METHODS[method]
    label = method if arch is None else f"{arch}/{method}"
    if arch is None:
        make, init = parity.Parity, wp_init["trunk"]
    else:
        make = wp.PARTIAL_ARCHS[arch]
        torch.manual_seed(43)
        init = wp_init.setdefault(arch, {k: v.clone() for k, v in make().state_dict().items()})
    init_path = os.path.join(work, f"init_{arch or 'trunk'}.safetensors")
    safetensors_io.save(init_path, init)
    got, error = wp.run_mtlc(mtlc, work, f"grada_{arch or 'trunk'}_{method}", program(arch, spelling), init_path)
    if error:
        print(f"{label}: {error}")
        return False
    steps, _, _ = got
    order = arena_order(os.path.join(work, f"grada_{arch or 'trunk'}_{method}.safetensors"))
    model = make()
    shared_set = {n for n in dict(model.named_parameters()) if n.startswith("trunk.")} if arch is None \
        else model.shared(False)
    shared = [n for n in order if n in shared_set]
    rep_of = (lambda m, x: m.trunk(x)) if args.get("rep") else None
    ref = reference_run(method, args, model, init, rows, shared, rep_of)
    if arch == "mmoe" and method != "graddrop":  # the partial case's planted mistake: gates as shared
        # (graddrop keeps a coordinate only one task reaches whatever its draw: there the gates
        # change nothing, and its own planted mistake stands in)
        planted_shared = [n for n in order if n in model.shared(True)]
        planted = reference_run(method, args, make(), init, rows, planted_shared)
    else:
        planted_rep = (lambda m, x: m.trunk(x)) if planted_args.get("rep") else None
        planted = reference_run(method, planted_args, make(), init, rows, shared, planted_rep)
    return compare(label, steps, ref, planted)


wp_init = {}


def main():
    mtlc, work, only = sys.argv[1], sys.argv[2], sys.argv[3:]   # only: some cases, by label
    mtlc_rng.self_check()                                        # graddrop replays mtlc's draws
    torch.manual_seed(42)                                        # weighting_parity's init
    wp_init["trunk"] = {k: v.clone() for k, v in parity.Parity().state_dict().items()}
    os.makedirs(work, exist_ok=True)
    rows = parity.make_data(os.path.join(work, "data.csv"), ROWS)
    failures = 0
    for method in METHODS:
        if not only or method in only:
            failures += not run_case(mtlc, work, rows, None, method)
    for arch, method in PARTIAL:
        if not only or f"{arch}/{method}" in only:
            failures += not run_case(mtlc, work, rows, arch, method)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
