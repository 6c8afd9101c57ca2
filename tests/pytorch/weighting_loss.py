"""Cross-check of the loss-level weightings from LibMTL (issue #26): rlw, gls, stch, famo. mtlc and
PyTorch train the same three-task models from the same safetensors init on the same batches (file
order) and must agree at every step on each task's loss, the logged total and each task's weight
`tasks.<t>.weight` (the effective coefficient of L_t in the step's gradient, d objective / d L_t).

usage: weighting_loss.py MTLC_BINARY WORK_DIR
Exit 0 = agree, 1 = disagree, 77 = skipped (no torch for this python).

Each method is written here from its paper (and LibMTL's defaults), the objective built in torch
and differentiated by autograd; the logged weights are autograd's d objective / d L_i. Nothing is
taken from mtlc but its documented conventions (Weighting.h): the RLW draw, and which tasks take
part in a step (P: a label in the batch; for gls and stch also L_i > 0).
  rlw   Lin et al. 2022: w = softmax(z), z ~ N(0, 1) per task per step (the draw replayed from
        Weighting.h rlwWeights: mt19937_64, mix64, Box-Muller cosine branch), objective sum w_i L_i
  gls   Chennupati et al. 2019: objective (prod_P L_i)^(1/|P|)
  stch  Lin et al. 2024 (LibMTL's form): sum_P log L_i for epochs 1..W+1, the nadir point the mean
        of the losses over epoch W+1, then T*mu*logsumexp(log(L_i/nadir_i)/mu)
  famo  Liu et al. 2023 (LibMTL's form): logits xi, z = softmax(xi), objective
        sum z_i log(L_i + 1e-8) / c, c = sum z_i/(L_i + 1e-8) constant; after the model's step the
        losses on the same batch give delta = log L - log L', and xi takes an Adam step (lr, L2
        weight decay) on the gradient of z(xi).delta. The models have neither dropout nor
        batchnorm, so the rerun's masks and running statistics (Weighting.h: the step's masks,
        the statistics left alone) do not enter here; tests/runtime covers them.
Cases: every method on the one-trunk model, on a chain whose second shared block one task skips
and on an MMoE (weighting_parity.py's architectures), and on the one-trunk model with partial labels
(a third of the cls labels missing, and one batch with no target label at all). Each reference is
also run with a planted mistake (below, PLANTED), which must disagree beyond the tolerance.
Tolerance: 2e-4 relative per step on losses, totals and weights; final parameters 1e-4 absolute.
"""
import math
import os
import sys

try:
    import torch
    import torch.nn.functional as F
except ImportError:
    print("SKIP: torch is not installed for", sys.executable)
    sys.exit(77)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import loss_rng  # noqa: E402
import mtlc_rng  # noqa: E402
import parity  # noqa: E402
import safetensors_io  # noqa: E402
import weighting_parity as wp  # noqa: E402  (the models, the mtlc runner and the comparison)

STCH_MU, STCH_WARMUP = 0.5, 1      # not LibMTL's (1, 4): 5 epochs then cover every phase
FAMO_LR, FAMO_DECAY = 0.025, 1e-3  # LibMTL's defaults
STRATEGIES = {
    "rlw": "rlw",
    "gls": "gls",
    "stch": f"stch(mu={STCH_MU:g}, warmup_epochs={STCH_WARMUP})",
    "famo": "famo",
}
# The planted mistakes: rlw draws the next step's weights; gls weights 1/(|P| L_i) (the mean of the
# log losses); stch takes the nadir point from the first epoch; famo raises the logits of the tasks
# whose loss fell (delta with the wrong sign).
PLANTED = {"rlw": "the next step's draw", "gls": "w_i = 1/(|P| L_i)", "stch": "nadir from epoch 1",
           "famo": "delta sign flipped"}


def rlw_weights(seed, step, T):
    """Weighting.h rlwWeights: the documented draw (loss_rng.py), then softmax."""
    return torch.softmax(torch.tensor(loss_rng.rlw_draw(seed, step, T), dtype=torch.float64), 0).float()


def masked_losses(outs, cls, flag, target):
    """Each task's mean loss over its present labels (NaN = missing), 0 when none is present;
    and whether each task had a label."""
    oc, of, ot = outs
    keep_c, keep_f, keep_t = ~torch.isnan(cls), ~torch.isnan(flag[:, 0]), ~torch.isnan(target[:, 0])
    L, present = [], []
    for keep, loss in ((keep_c, lambda k: F.cross_entropy(oc[k], cls[k].long())),
                       (keep_f, lambda k: F.binary_cross_entropy_with_logits(of[k], flag[k])),
                       (keep_t, lambda k: F.mse_loss(ot[k], target[k]))):
        present.append(bool(keep.any()))
        L.append(loss(keep) if keep.any() else oc.sum() * 0.0)
    return torch.stack(L), present


class Famo:
    """Liu et al. 2023 as LibMTL runs it; `planted` flips the sign of the loss decrease."""

    def __init__(self, T, planted):
        self.xi = torch.zeros(T, requires_grad=True)
        self.opt = torch.optim.Adam([self.xi], lr=FAMO_LR, weight_decay=FAMO_DECAY)
        self.planted = planted

    def objective(self, L, P):
        z = torch.softmax(self.xi, 0).detach()
        D = L + 1e-8
        c = sum(z[i] / D[i] for i in P).detach()
        self.prev, self.P = L.detach().clone(), P
        return sum(z[i] * torch.log(D[i]) for i in P) / c

    def update(self, new_L):
        delta = torch.zeros_like(new_L)
        for i in self.P:
            delta[i] = torch.log(self.prev[i] + 1e-8) - torch.log(new_L[i] + 1e-8)
        if self.planted:
            delta = -delta
        self.opt.zero_grad()
        with torch.enable_grad():
            self.xi.grad = torch.autograd.grad(torch.softmax(self.xi, 0), self.xi, grad_outputs=delta)[0]
        self.opt.step()


def torch_run(strategy, model, data, planted=False):
    """The per-step log [(total, [L_i], [w_i])] and the final state dict."""
    params = dict(model.named_parameters())
    opt = torch.optim.Adam(params.values(), lr=wp.LR)
    T = len(wp.TASKS)
    famo = Famo(T, planted) if strategy == "famo" else None
    nadir_sum, nadir_count, nadir = torch.zeros(T), torch.zeros(T), None
    log, step = [], 0
    for epoch in range(wp.EPOCHS):
        for b in range(0, wp.ROWS, wp.BATCH):
            step += 1
            chunk = data[b:b + wp.BATCH]
            x, cls, flag, target = chunk[:, :8], chunk[:, 8], chunk[:, 9:10], chunk[:, 10:11]
            opt.zero_grad()
            L, present = masked_losses(model(x), cls, flag, target)
            P = [i for i in range(T) if present[i] and (strategy in ("rlw", "famo") or L[i].item() > 0)]
            if strategy == "rlw":
                objective = (rlw_weights(wp.SEED, step + 1 if planted else step, T) * L).sum()
            elif strategy == "gls":
                if planted:
                    objective = sum(torch.log(L[i]) for i in P) / len(P)
                else:
                    objective = torch.prod(torch.stack([L[i] for i in P])) ** (1.0 / len(P))
            elif strategy == "stch":
                if epoch <= STCH_WARMUP:
                    objective = sum(torch.log(L[i] + 1e-20) for i in P)
                    if epoch == (0 if planted else STCH_WARMUP):
                        for i in P:
                            nadir_sum[i] += L[i].item()
                            nadir_count[i] += 1
                else:
                    if nadir is None:
                        nadir = torch.where(nadir_count > 0, nadir_sum / nadir_count.clamp(min=1), torch.ones(T))
                    u = torch.stack([torch.log(L[i] / nadir[i] + 1e-20) for i in P])
                    objective = T * STCH_MU * torch.logsumexp(u / STCH_MU, 0)
            elif strategy == "famo":
                objective = famo.objective(L, P)
            else:
                raise ValueError(strategy)
            w = torch.autograd.grad(objective, L, retain_graph=True)[0]
            total = objective if strategy in ("gls", "stch") else (w * L).sum()
            objective.backward()
            opt.step()
            if famo:
                with torch.no_grad():
                    famo.update(masked_losses(model(x), cls, flag, target)[0])
            log.append((total.item(), L.tolist(), w.tolist()))
    return log, {k: v.detach() for k, v in model.state_dict().items()}


# ---- the cases ----------------------------------------------------------------------------------

def partial_label_rows(rows):
    """The rows with a third of the cls labels missing and no target label in the fourth batch."""
    out = []
    for r, row in enumerate(rows):
        row = list(row)
        if r % 3 == 0:
            row[8] = float("nan")
        if 3 * wp.BATCH <= r < 4 * wp.BATCH:
            row[10] = float("nan")
        out.append(row)
    return out


def write_csv(path, rows):
    with open(path, "w") as f:
        f.write(",".join([f"f{i}" for i in range(8)] + ["cls", "flag", "target"]) + "\n")
        for row in rows:
            cells = []
            for i, v in enumerate(row):
                if math.isnan(v):
                    cells.append("")
                else:
                    cells.append(str(int(v)) if i in (8, 9) else repr(float(v)))
            f.write(",".join(cells) + "\n")


def program(case, strategy):
    """(.mtl text, model class, init seed, data file) of a case."""
    text = wp.MODEL.format(lr=wp.LR, batch=wp.BATCH, epochs=wp.EPOCHS, weighting=STRATEGIES[strategy], seed=wp.SEED)
    if case == "trunk":
        return text, parity.Parity, 42, "data.csv"
    if case == "labels":
        return text.replace('csv("data.csv")', 'csv("data_partial.csv")'), parity.Parity, 42, "data_partial.csv"
    text = wp.partial_program(case, "fixed").replace("weighting fixed", f"weighting {STRATEGIES[strategy]}")
    return text, wp.PARTIAL_ARCHS[case], 43, "data.csv"


def check(mtlc, work, case, strategy, tables):
    """One case: mtlc against the reference and against the planted reference; True when it agrees
    with the first within the tolerances and disagrees with the second beyond them."""
    label = f"{case}/{strategy}"
    text, model_class, init_seed, data_file = program(case, strategy)
    torch.manual_seed(init_seed)
    init = {k: v.clone() for k, v in model_class().state_dict().items()}
    init_path = os.path.join(work, f"init_{case}.safetensors")
    safetensors_io.save(init_path, init)
    got, error = wp.run_mtlc(mtlc, work, f"{case}_{strategy}", text, init_path)
    if error:
        print(f"{label}: {error}")
        return False
    steps, final, _ = got
    data = torch.tensor(tables[data_file], dtype=torch.float32)

    def reference(planted):
        model = model_class()
        model.load_state_dict(init)
        return torch_run(strategy, model, data, planted)

    ref, ref_params = reference(False)
    expected = wp.EPOCHS * ((wp.ROWS + wp.BATCH - 1) // wp.BATCH)
    ok = len(steps) == expected == len(ref) and wp.report(label, steps, ref, final, ref_params)
    moved = max(abs(s["tasks"][t]["weight"] - steps[0]["tasks"][t]["weight"]) for s in steps for t in wp.TASKS)
    planted, _ = reference(True)
    worst_loss, worst_weight, _ = wp.step_diffs(steps, planted)
    caught = max(worst_loss, worst_weight) > wp.REL_TOL
    print(f"{'':12s} weights moved by up to {moved:.4f}; planted mistake ({PLANTED[strategy]}): max rel diff "
          f"losses {worst_loss:.2e}, weights {worst_weight:.2e}  {'told apart' if caught else 'NOT told apart'}")
    if case == "labels":
        zero = sum(1 for s in steps for t in wp.TASKS if s["tasks"][t]["weight"] == 0)
        print(f"{'':12s} {zero} (step, task) weights are 0: a task without a label in the batch")
        ok = ok and (zero > 0 or strategy == "rlw")
    return ok and caught


def main():
    mtlc, work = sys.argv[1], sys.argv[2]
    os.makedirs(work, exist_ok=True)
    mtlc_rng.self_check()
    rows = parity.make_data(os.path.join(work, "data.csv"), wp.ROWS)
    partial = partial_label_rows(rows)
    write_csv(os.path.join(work, "data_partial.csv"), partial)
    tables = {"data.csv": rows, "data_partial.csv": partial}
    failures = 0
    for case in ("trunk", "chain", "mmoe", "labels"):
        for strategy in STRATEGIES:
            failures += 0 if check(mtlc, work, case, strategy, tables) else 1
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
