#!/usr/bin/python3
"""Independent reference numbers for tests/runtime/test_weighting.cpp.

Written from the papers' formulas with numpy (float64) and torch 1.13 (autograd and torch.optim for
the learnable weights); run with Debian's /usr/bin/python3 and paste the printed numbers into the
test. Nothing here imports mtlc.

    /usr/bin/python3 tests/runtime/weighting_reference.py
"""
import itertools

import numpy as np
import torch


def fmt(xs):
    return ", ".join("%.9g" % float(x) for x in np.asarray(xs).ravel())


# ---- MGDA (Sener & Koltun 2018): min-norm point of the convex hull --------------------------------

def mgda_two(g1, g2):
    """The closed form of the paper's Algorithm 1 for two tasks."""
    d = g1 - g2
    den = d @ d
    if den <= 0:
        return np.array([0.5, 0.5])
    a = np.clip(((g2 - g1) @ g2) / den, 0.0, 1.0)
    return np.array([a, 1 - a])


def mgda_exact(G):
    """Exact min over the simplex of a^T G a, by enumerating supports (KKT on each face)."""
    T = len(G)
    best = None
    for k in range(1, T + 1):
        for S in itertools.combinations(range(T), k):
            S = list(S)
            GS = G[np.ix_(S, S)]
            try:
                x = np.linalg.solve(GS, np.ones(k))
            except np.linalg.LinAlgError:
                continue
            if x.sum() == 0:
                continue
            a = np.zeros(T)
            a[S] = x / x.sum()
            if (a < -1e-12).any():
                continue
            v = a @ G @ a
            if best is None or v < best[1] - 1e-15:
                best = (a, v)
    return best[0]


def mgda_fw(G, iters=250, tol=1e-6):
    """Best pair by the closed form, then Frank-Wolfe with exact line search (as in
    Sener's MinNormSolver.find_min_norm_element_FW, without its 0.999/0.001 clamps)."""
    T = len(G)

    def pair(aa, ab, bb):
        den = aa + bb - 2 * ab
        if den <= 0:
            return 0.5
        return min(max((bb - ab) / den, 0.0), 1.0)

    best = np.inf
    a = None
    for i in range(T):
        for j in range(i + 1, T):
            c = pair(G[i, i], G[i, j], G[j, j])
            cost = c * c * G[i, i] + 2 * c * (1 - c) * G[i, j] + (1 - c) ** 2 * G[j, j]
            if cost < best:
                best = cost
                a = np.zeros(T)
                a[i], a[j] = c, 1 - c
    for _ in range(iters):
        Ga = G @ a
        t = int(np.argmin(Ga))
        vv, vt, tt = a @ Ga, Ga[t], G[t, t]
        if vt >= vv:
            g = 1.0
        elif vt >= tt:
            g = 0.0
        else:
            g = (tt - vt) / (vv + tt - 2 * vt)
        nxt = g * a
        nxt[t] += 1 - g
        change = np.abs(nxt - a).sum()
        a = nxt
        if change < tol:
            break
    return a


print("== MGDA")
g1 = np.array([1.0, 0.5, -0.25])
g2 = np.array([-0.5, 1.0, 0.75])
print("two tasks alpha:", fmt(mgda_two(g1, g2)), " exact:", fmt(mgda_exact(np.array([[g1 @ g1, g1 @ g2], [g1 @ g2, g2 @ g2]]))))
h1, h2 = np.array([1.0, 0.0]), np.array([2.0, 0.1])
print("two tasks, clamped alpha:", fmt(mgda_two(h1, h2)))
V3 = np.array([[1.0, 0.2, -0.5, 0.3], [-0.4, 0.9, 0.1, -0.2], [0.3, -0.6, 0.8, 0.5]])
G3 = V3 @ V3.T
print("three tasks FW alpha:", fmt(mgda_fw(G3)), " exact:", fmt(mgda_exact(G3)))
V4 = np.array([[1.0, 0.2, -0.5, 0.3, 0.0], [-0.4, 0.9, 0.1, -0.2, 0.6], [0.3, -0.6, 0.8, 0.5, -0.1],
               [2.0, 1.5, 1.0, 1.2, 1.1]])
G4 = V4 @ V4.T
print("four tasks FW alpha:", fmt(mgda_fw(G4)), " exact:", fmt(mgda_exact(G4)))

# ---- PCGrad (Yu et al. 2020, Algorithm 1): project onto the normal plane of conflicting ORIGINAL g_j

def pcgrad(g, orders):
    out = g.copy()
    for i in range(len(g)):
        for j in orders[i]:
            d = out[i] @ g[j]
            if d < 0:
                out[i] = out[i] - d / (g[j] @ g[j]) * g[j]
    return out


print("== PCGrad")
P = np.array([[1.0, -2.0, 0.5, 1.0], [-1.5, 1.0, 1.0, -0.5], [0.5, 1.5, -1.0, -2.0]])
A = pcgrad(P, [[1, 2], [0, 2], [0, 1]])
B = pcgrad(P, [[2, 1], [2, 0], [1, 0]])
print("orders A:", fmt(A))
print("orders B:", fmt(B))
print("weights 1, 0.5, 2; sum A:", fmt(np.array([1, 0.5, 2]) @ A))

# ---- DWA (Liu et al. 2019): w = K softmax(r / T), r_i = L_i(e-1) / L_i(e-2) ----------------------

print("== DWA")
older = np.array([1.0, 2.0, 0.5])
newer = np.array([0.8, 1.9, 0.55])
r = newer / older
w = 3 * np.exp(r / 2.0) / np.exp(r / 2.0).sum()
print("tau 2:", fmt(w))
w = 3 * np.exp(r / 0.5) / np.exp(r / 0.5).sum()
print("tau 0.5:", fmt(w))

# ---- Uncertainty (Kendall et al. 2018): sum 1/2 (exp(-s) L + s), s learnt by torch.optim.Adam ---------

print("== uncertainty (adam lr 0.1)")
s = torch.nn.Parameter(torch.zeros(2))
opt = torch.optim.Adam([s], lr=0.1)
for L in ([0.9, 2.5], [0.7, 2.0], [0.65, 1.5]):
    L = torch.tensor(L)
    w = (0.5 * torch.exp(-s)).detach()
    obj = (0.5 * (torch.exp(-s) * L + s)).sum()
    opt.zero_grad()
    obj.backward()
    print("  weights", fmt(w), " objective", fmt([obj.item()]), " ds", fmt(s.grad), end="")
    opt.step()
    print("  s after", fmt(s.detach()))

# ---- GradNorm (Chen et al. 2018) ------------------------------------------------------------------
# Parameters (offsets): trunk.0.weight [2, 2] @0 (shared; W), trunk.0.bias [2] @4 (shared),
# then one head weight [1, 2] per task @6, @8, @10. Three tasks, alpha 1.5.

print("== GradNorm (3 tasks, alpha 1.5)")
steps = [
    (np.array([1.2, 0.8, 2.0]),
     np.array([[0.3, -0.1, 0.2, 0.4, 0.1, -0.2, 0.5, 0.25, 0, 0, 0, 0],
               [-0.05, 0.1, 0.0, 0.05, 0.02, 0.01, 0, 0, -0.3, 0.1, 0, 0],
               [0.6, 0.4, -0.5, 0.3, -0.2, 0.3, 0, 0, 0, 0, 0.2, -0.4]])),
    (np.array([1.0, 0.75, 1.2]),
     np.array([[0.25, -0.05, 0.1, 0.3, 0.05, -0.1, 0.4, 0.2, 0, 0, 0, 0],
               [-0.04, 0.12, 0.01, 0.04, 0.01, 0.02, 0, 0, -0.25, 0.05, 0, 0],
               [0.4, 0.3, -0.3, 0.2, -0.1, 0.2, 0, 0, 0, 0, 0.1, -0.3]])),
]


def gradnorm_run(make_opt, alpha=1.5):
    w = torch.nn.Parameter(torch.ones(3))
    opt = make_opt([w])
    L0 = None
    for k, (L, g) in enumerate(steps):
        L = torch.tensor(L)
        g = torch.tensor(g, dtype=torch.float32)
        if L0 is None:
            L0 = L.clone()
        gW = g[:, 0:4]
        norms = gW.norm(dim=1)
        G = w * norms                              # ||grad_W w_i L_i||
        Lt = L / L0
        r = Lt / Lt.mean()
        target = (G.mean() * r ** alpha).detach()  # held constant
        Lgrad = (G - target).abs().sum()
        opt.zero_grad()
        Lgrad.backward()
        model_grad = (w.detach()[:, None] * g).sum(0)  # with this step's weights
        logged = w.detach().clone()
        total = (logged * L).sum()
        opt.step()
        with torch.no_grad():
            w.clamp_(min=1e-4)
            w.mul_(3 / w.sum())
        print("  step %d: weights %s  total %s  dL/dw %s  w after %s" % (k + 1, fmt(logged), fmt([total]), fmt(w.grad), fmt(w.detach())))
        print("          model grad %s" % fmt(model_grad))


print(" sgd lr 0.1")
gradnorm_run(lambda p: torch.optim.SGD(p, lr=0.1))
print(" adam lr 0.05")
gradnorm_run(lambda p: torch.optim.Adam(p, lr=0.05))

# ---- GradNorm where a shared block is read by one task only --------------------------------------
# The chain `shared a = x -> dense -> relu; shared b = a -> dense -> relu; task p reads b; task q
# reads a`. The paper's W is the last layer whose weights every task's loss passes through: a's
# (q never reaches b). Parameters (offsets): a.0.weight [2, 2] @0, a.0.bias [2] @4,
# b.0.weight [2, 2] @6, b.0.bias [2] @10, p.0.weight [1, 2] @12, q.0.weight [1, 2] @14; q's
# gradient is zero on b and p. q's loss falls fastest, so its weight must fall.

chain_grads = np.array([[0.2, -0.1, 0.3, 0.05, 0.1, -0.05, 0.4, 0.2, -0.3, 0.1, 0.05, 0.1, 0.5, -0.2, 0, 0],
                        [-0.3, 0.25, 0.1, 0.2, 0.15, 0.1, 0, 0, 0, 0, 0, 0, 0, 0, 0.3, 0.6]])
chain_losses = [np.array([1.0, 1.0]), np.array([0.95, 0.6]), np.array([0.9, 0.3])]


def gradnorm_chain(W, alpha=1.5, lr=0.1):
    """GradNorm with SGD on w over the three steps, measuring on the columns W of chain_grads."""
    w = torch.nn.Parameter(torch.ones(2))
    opt = torch.optim.SGD([w], lr=lr)
    g = torch.tensor(chain_grads, dtype=torch.float32)
    L0 = None
    for k, L in enumerate(chain_losses):
        L = torch.tensor(L)
        if L0 is None:
            L0 = L.clone()
        norms = g[:, W].norm(dim=1)
        G = w * norms
        Lt = L / L0
        target = (G.mean() * (Lt / Lt.mean()) ** alpha).detach()
        opt.zero_grad()
        (G - target).abs().sum().backward()
        logged = w.detach().clone()
        model_grad = (logged[:, None] * g).sum(0)
        opt.step()
        with torch.no_grad():
            w.clamp_(min=1e-4)
            w.mul_(2 / w.sum())
        print("  step %d: weights %s  G %s  w after %s" % (k + 1, fmt(logged), fmt(G.detach()), fmt(w.detach())))
        if k == 0:
            print("          model grad %s" % fmt(model_grad))


print("== GradNorm on a chain (sgd lr 0.1, alpha 1.5)")
print(" W = a.0.weight (every task reaches it)")
gradnorm_chain(slice(0, 4))
print(" W = b.0.weight (q never reaches it: G_q = 0, w_q only rises)")
gradnorm_chain(slice(6, 10))
