"""Cross-check of the optimizers and learning-rate schedules against torch.optim and
torch.optim.lr_scheduler: mtlc and PyTorch train the same three-head tabular model from the same
safetensors init on the same batches (file order, 3 epochs, a partial last batch each epoch).

usage: optim_parity.py MTLC_BINARY WORK_DIR [CASE...]
Exit 0 = agree, 1 = disagree, 77 = skipped (no torch for this python).
Tolerances (issue #25): per-step total and task losses within 2e-4 relative; final parameters and
optimizer state (momentum buffers, moments, square averages, step count) within 1e-4 absolute;
each step's logged "lr" within 1e-12 (relative to the optimizer's lr) of the learning rate the
torch optimizer's group had for that step (torch's scheduler's, or the warm-up's).

The reference is torch.optim itself. A schedule is torch's scheduler stepped at the end of every
epoch; the warm-up (steps s = 1..N train at lr·s/N) is applied by setting the group's learning
rate for those steps and putting the scheduler's value back after each, so the scheduler's own
arithmetic is never disturbed.
"""
import json
import os
import subprocess
import sys

try:
    import torch
except ImportError:
    print("SKIP: torch is not installed for", sys.executable)
    sys.exit(77)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_io  # noqa: E402
import parity  # noqa: E402
from parity import Parity as Net, batch_loss, make_data, rel  # noqa: E402  the same data and model as parity.py

BATCH, ROWS, EPOCHS = 25, 110, 3          # 5 batches an epoch, the last of 10 rows
# parity.py's program, for several epochs and with more train settings (`extra`).
MODEL = parity.MODEL.replace("epochs    1", "epochs    {epochs}").replace("seed      7", "seed      7{extra}")

O = torch.optim
S = torch.optim.lr_scheduler

# name: (mtlc spelling, torch optimizer, {mtlc state name: torch state key})
OPTIMIZERS = {
    "sgd": ("sgd(lr=0.1)", lambda p: O.SGD(p, lr=0.1), {}),
    "sgd_decay": ("sgd(lr=0.05, momentum=0.9, weight_decay=0.01)",
                  lambda p: O.SGD(p, lr=0.05, momentum=0.9, weight_decay=0.01),
                  {"optim.momentum": "momentum_buffer"}),
    "sgd_nesterov": ("sgd(lr=0.05, momentum=0.9, nesterov=true)",
                     lambda p: O.SGD(p, lr=0.05, momentum=0.9, nesterov=True),
                     {"optim.momentum": "momentum_buffer"}),
    "sgd_nesterov_decay": ("sgd(lr=0.05, momentum=0.9, nesterov=true, weight_decay=0.01)",
                           lambda p: O.SGD(p, lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01),
                           {"optim.momentum": "momentum_buffer"}),
    "adam": ("adam(lr=0.01)", lambda p: O.Adam(p, lr=0.01), {"optim.m": "exp_avg", "optim.v": "exp_avg_sq"}),
    # L2: added to the gradient before the moments.
    "adam_decay": ("adam(lr=0.01, weight_decay=0.1)", lambda p: O.Adam(p, lr=0.01, weight_decay=0.1),
                   {"optim.m": "exp_avg", "optim.v": "exp_avg_sq"}),
    "adamw": ("adamw(lr=0.01, weight_decay=0)", lambda p: O.AdamW(p, lr=0.01, weight_decay=0),
              {"optim.m": "exp_avg", "optim.v": "exp_avg_sq"}),
    # Decoupled: the parameter shrinks by lr·wd, the moments never see the decay. A large decay, so
    # that applying it as L2 instead is far outside the tolerances.
    "adamw_decay": ("adamw(lr=0.01, weight_decay=0.5)", lambda p: O.AdamW(p, lr=0.01, weight_decay=0.5),
                    {"optim.m": "exp_avg", "optim.v": "exp_avg_sq"}),
    "adamw_default": ("adamw(lr=0.01)", lambda p: O.AdamW(p, lr=0.01),
                      {"optim.m": "exp_avg", "optim.v": "exp_avg_sq"}),
    "rmsprop": ("rmsprop(lr=0.002)", lambda p: O.RMSprop(p, lr=0.002), {"optim.square_avg": "square_avg"}),
    "rmsprop_decay": ("rmsprop(lr=0.002, alpha=0.9, momentum=0.5, weight_decay=0.01)",
                      lambda p: O.RMSprop(p, lr=0.002, alpha=0.9, momentum=0.5, weight_decay=0.01),
                      {"optim.square_avg": "square_avg", "optim.momentum": "momentum_buffer"}),
}

# name: (optimizer case, mtlc train lines, torch scheduler or None, warm-up steps)
SCHEDULES = {
    "step_warmup": ("sgd_decay", ["schedule step(every=1, gamma=0.5)", "warmup 7"],
                    lambda o: S.StepLR(o, step_size=1, gamma=0.5), 7),
    "multistep_warmup": ("adam", ["schedule multistep(at={1, 2}, gamma=0.3)", "warmup 4"],
                         lambda o: S.MultiStepLR(o, milestones=[1, 2], gamma=0.3), 4),
    "exponential_warmup": ("rmsprop_decay", ["schedule exponential(gamma=0.7)", "warmup 3"],
                           lambda o: S.ExponentialLR(o, gamma=0.7), 3),
    "cosine_warmup": ("adamw_decay", ["schedule cosine(t_max=3, eta_min=0.001)", "warmup 6"],
                      lambda o: S.CosineAnnealingLR(o, T_max=3, eta_min=0.001), 6),
    "cosine": ("sgd", ["schedule cosine(t_max=2)"], lambda o: S.CosineAnnealingLR(o, T_max=2), 0),
    "warmup_only": ("adam_decay", ["warmup 5"], None, 5),
}

# Gradient accumulation: name: (optimizer case, mtlc train lines, torch scheduler or None, warm-up
# steps, N). 5 batches an epoch make a group of 3 and a short group of 2 (the partial batch last),
# which still scales each loss by 1/3: PyTorch's `(loss / N).backward()` with `step()` when
# `(i + 1) % N == 0 or i == last`. Steps, warm-up and the log count optimizer steps (6 in all); a
# step's logged losses are the means over its group's batches.
ACCUMULATE = {
    "accumulate3": ("sgd_decay", ["accumulate 3"], None, 0, 3),
    "accumulate3_cosine_warmup": ("adamw_decay", ["accumulate 3", "schedule cosine(t_max=3, eta_min=0.001)",
                                                  "warmup 2"],
                                  lambda o: S.CosineAnnealingLR(o, T_max=3, eta_min=0.001), 2, 3),
}

# Per-block learning rates: name: (optimizer case, mtlc train lines, torch scheduler or None,
# warm-up steps, {block: factor}). torch: one param group per factor (the parameters named
# BLOCK.*) with lr·factor; the scheduler and the warm-up scale every group alike (cosine with
# eta_min 0: a multiple of the base rate). Factor 0: the block's parameters stay, their state moves.
LR_SCALE = {
    "lr_scale_cosine_warmup": ("adamw_decay", ["lr_scale trunk=0.1", "schedule cosine(t_max=3)", "warmup 6"],
                               lambda o: S.CosineAnnealingLR(o, T_max=3), 6, {"trunk": 0.1}),
    "lr_scale_zero": ("sgd_decay", ["lr_scale trunk=0, flag=2"], None, 0, {"trunk": 0.0, "flag": 2.0}),
}


def param_groups(model, lr_scale):
    """The model's parameters, or torch param groups by block (the name's first part) with "scale"."""
    if not lr_scale:
        return model.parameters()
    groups = {}
    for name, p in model.named_parameters():
        f = lr_scale.get(name.split(".")[0], 1.0)
        groups.setdefault(f, []).append(p)
    return [{"params": ps, "scale": f} for f, ps in groups.items()]


def torch_run(rows, init, make_opt, make_sched=None, warmup=0, epochs=EPOCHS, steps=None, accumulate=1,
              lr_scale=None):
    """Per-step (total, task losses, lr), the final state dict and the optimizer with its state."""
    model = Net()
    model.load_state_dict(init)
    opt = make_opt(param_groups(model, lr_scale))
    for g in opt.param_groups:
        g["lr"] = g["lr"] * g.get("scale", 1.0)
    sched = make_sched(opt) if make_sched else None
    group = next(g for g in opt.param_groups if g.get("scale", 1.0) == 1.0)  # the logged rate's
    bases = [g["lr"] for g in opt.param_groups]
    data = torch.tensor(rows, dtype=torch.float32)
    starts = list(range(0, len(rows), BATCH))
    out, s = [], 0
    for _ in range(epochs):
        micro = []  # the group's (total, task losses)
        for i, start in enumerate(starts):
            if steps is not None and s == steps:
                break
            total, l = batch_loss(model, data[start:start + BATCH])
            if not micro:
                opt.zero_grad()  # a new group (arena_offsets reads the gradients after the run)
            (total / accumulate if accumulate > 1 else total).backward()
            micro.append((total.item(), {k: v.item() for k, v in l.items()}))
            if (i + 1) % accumulate != 0 and i != len(starts) - 1:
                continue
            s += 1
            scheduled = [g["lr"] for g in opt.param_groups]
            if s <= warmup:
                for g, base in zip(opt.param_groups, bases):
                    g["lr"] = base * s / warmup
            lr = group["lr"]
            opt.step()
            for g, rate in zip(opt.param_groups, scheduled):
                g["lr"] = rate
            mean_tasks = {k: sum(m[1][k] for m in micro) / len(micro) for k in micro[0][1]}
            out.append((sum(m[0] for m in micro) / len(micro), mean_tasks, lr))
            micro = []
        if sched:
            sched.step()
    return out, {k: v.detach().clone() for k, v in model.state_dict().items()}, model, opt


def run_mtlc(mtlc, work, name, spelling, extra=(), epochs=EPOCHS, flags=()):
    program = os.path.join(work, f"{name}.mtl")
    lines = "".join(f"\n  {line}" for line in extra)
    with open(program, "w") as f:
        f.write(MODEL.format(optimizer=spelling, batch=BATCH, epochs=epochs, extra=lines))
    log, final = os.path.join(work, f"{name}.jsonl"), os.path.join(work, f"{name}.safetensors")
    cmd = [mtlc, "train", program, "--init", os.path.join(work, "init.safetensors"), "--save", final,
           "--log", log, "--quiet", *flags]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{name}: mtlc failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    steps = [json.loads(line) for line in open(log) if '"step"' in line]
    return steps, safetensors_io.load(final)


def arena_offsets(mtlc, work, rows, init):
    """Where each parameter lies in mtlc's flat optimizer-state tensors, found without knowing the
    layout: after one sgd step with momentum the buffer is the first gradient, which torch gives."""
    _, ckpt = run_mtlc(mtlc, work, "probe", "sgd(lr=0.1, momentum=0.5)", epochs=1, flags=["--steps", "1"])
    _, _, model, _ = torch_run(rows, init, lambda p: O.SGD(p, lr=0.1, momentum=0.5), epochs=1, steps=1)
    buf = ckpt["optim.momentum"]
    offsets, end = {}, 0
    # The arena holds the parameters in declaration order (with padding between them): a small
    # tensor's values may recur, so each is the first match after the one before.
    for name, p in model.named_parameters():
        g = p.grad.flatten()
        windows = buf.unfold(0, g.numel(), 1)
        hits = [h for h in ((windows - g).abs().max(dim=1).values <= 1e-6).nonzero().flatten().tolist() if h >= end]
        if not hits:
            raise RuntimeError(f"probe: {name}'s gradient is not in optim.momentum after offset {end}")
        offsets[name], end = hits[0], hits[0] + g.numel()
    return offsets


def compare(name, steps, got, ref_steps, ref_weights, opt, model, state_names, offsets):
    problems = []
    if len(steps) != len(ref_steps):
        return [f"mtlc logged {len(steps)} steps, expected {len(ref_steps)}"]
    worst_loss = worst_state = worst_lr = 0.0
    for s, (ref_total, ref_tasks, ref_lr) in zip(steps, ref_steps):
        worst_loss = max(worst_loss, rel(s["loss"], ref_total))
        for t, v in ref_tasks.items():
            worst_loss = max(worst_loss, rel(s["tasks"][t]["loss"], v))
        if "lr" not in s:
            problems.append(f"step {s['step']} has no \"lr\"")
            break
        worst_lr = max(worst_lr, abs(s["lr"] - ref_lr) / opt.defaults["lr"])
    worst_weight = max((got[k] - v).abs().max().item() for k, v in ref_weights.items())
    for ours, theirs in state_names.items():
        if ours not in got:
            problems.append(f"the checkpoint has no {ours}")
            continue
        for pname, p in model.named_parameters():
            ref = opt.state[p][theirs].flatten()
            at = offsets[pname]
            worst_state = max(worst_state, (got[ours][at:at + ref.numel()] - ref).abs().max().item())
    if got["optim.step"].item() != len(ref_steps):
        problems.append(f"optim.step is {got['optim.step'].item()}, expected {len(ref_steps)}")
    if worst_loss > 2e-4:
        problems.append(f"loss differs by {worst_loss:.2e} relative (> 2e-4)")
    if worst_weight > 1e-4 or worst_state > 1e-4:
        problems.append(f"weights differ by {worst_weight:.2e}, state by {worst_state:.2e} (> 1e-4)")
    if worst_lr > 1e-12:
        problems.append(f"lr differs by {worst_lr:.2e} relative (> 1e-12)")
    print(f"{name:25s} steps {len(steps)}  loss {worst_loss:.2e}  weights {worst_weight:.2e}  "
          f"state {worst_state:.2e}  lr {worst_lr:.1e}  first/last loss "
          f"{steps[0]['loss']:.5f}/{steps[-1]['loss']:.5f}  {'FAIL' if problems else 'ok'}")
    return problems


def main():
    mtlc, work = sys.argv[1], sys.argv[2]
    only = set(sys.argv[3:])
    os.makedirs(work, exist_ok=True)
    rows = make_data(os.path.join(work, "data.csv"), ROWS)
    torch.manual_seed(42)
    init = {k: v.clone() for k, v in Net().state_dict().items()}
    safetensors_io.save(os.path.join(work, "init.safetensors"), init)
    offsets = arena_offsets(mtlc, work, rows, init)

    cases = [(n, spelling, make_opt, names, [], None, 0, 1, None)
             for n, (spelling, make_opt, names) in OPTIMIZERS.items()]
    for n, (opt_case, lines, make_sched, warmup) in SCHEDULES.items():
        spelling, make_opt, names = OPTIMIZERS[opt_case]
        cases.append((n, spelling, make_opt, names, lines, make_sched, warmup, 1, None))
    for n, (opt_case, lines, make_sched, warmup, accumulate) in ACCUMULATE.items():
        spelling, make_opt, names = OPTIMIZERS[opt_case]
        cases.append((n, spelling, make_opt, names, lines, make_sched, warmup, accumulate, None))
    for n, (opt_case, lines, make_sched, warmup, lr_scale) in LR_SCALE.items():
        spelling, make_opt, names = OPTIMIZERS[opt_case]
        cases.append((n, spelling, make_opt, names, lines, make_sched, warmup, 1, lr_scale))
    failures = 0
    for name, spelling, make_opt, names, lines, make_sched, warmup, accumulate, lr_scale in cases:
        if only and name not in only:
            continue
        try:
            steps, got = run_mtlc(mtlc, work, name, spelling, lines)
        except RuntimeError as e:
            print(e)
            failures += 1
            continue
        ref_steps, ref_weights, model, opt = torch_run(rows, init, make_opt, make_sched, warmup,
                                                       accumulate=accumulate, lr_scale=lr_scale)
        problems = compare(name, steps, got, ref_steps, ref_weights, opt, model, names, offsets)
        for p in problems:
            print(f"  {name}: {p}")
        failures += 1 if problems else 0
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
