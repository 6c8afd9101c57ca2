"""Cross-check: mtlc and PyTorch train the same three-head tabular model from the same
safetensors init on the same batches, and must agree per step and in the final weights.

usage: parity.py MTLC_BINARY WORK_DIR
Exit 0 = agree, 1 = disagree, 77 = skipped (no torch for this python).
Tolerances (issue #2): per-step total and task losses within 2e-4 relative over 24 steps;
final weights within 1e-4 absolute.
"""
import json
import math
import os
import random
import subprocess
import sys

try:
    import torch
    import torch.nn as nn
except ImportError:
    print("SKIP: torch is not installed for", sys.executable)
    sys.exit(77)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_io  # noqa: E402

STEPS, BATCH, ROWS = 24, 25, 600
WEIGHTS = {"cls": 1.0, "flag": 0.5, "target": 0.3}

MODEL = """
model parity
input x : f32[8]
shared trunk = x -> dense(32) -> relu -> dense(16) -> tanh
task cls    {{ trunk -> dense(3)  loss cross_entropy  weight 1.0  metric accuracy }}
task flag   {{ trunk -> dense(1)  loss bce            weight 0.5  metric accuracy, auc }}
task target {{ trunk -> dense(8) -> sigmoid -> dense(1)  loss mse  weight 0.3  metric mae }}
train {{
  optimizer {optimizer}
  batch     {batch}
  epochs    1
  shuffle   false
  seed      7
}}
data {{
  train  csv("data.csv")
  x      = columns(0..7)
  cls    = cls
  flag   = flag
  target = target
}}
"""

OPTIMIZERS = {
    "sgd": ("sgd(lr=0.1)", lambda p: torch.optim.SGD(p, lr=0.1)),
    "sgd_momentum": ("sgd(lr=0.05, momentum=0.9)", lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9)),
    "adam": ("adam(lr=0.01)", lambda p: torch.optim.Adam(p, lr=0.01)),
    # L2 decay added to the gradient before the moments, as torch.optim.Adam (not AdamW).
    "adam_decay": ("adam(lr=0.01, weight_decay=0.1)",
                   lambda p: torch.optim.Adam(p, lr=0.01, weight_decay=0.1)),
}


def make_data(path, count=ROWS):
    rng = random.Random(1234)
    rows = []
    for _ in range(count):
        f = [rng.uniform(-2, 2) for _ in range(8)]
        s = f[0] + 0.5 * f[1] - f[2]
        cls = 0 if s < -0.7 else (1 if s < 0.7 else 2)
        flag = 1 if f[3] * f[4] > 0 else 0
        target = math.sin(f[5]) + 0.3 * f[6] ** 2 - 0.2 * f[7]
        rows.append(f + [cls, flag, target])
    with open(path, "w") as out:
        out.write(",".join([f"f{i}" for i in range(8)] + ["cls", "flag", "target"]) + "\n")
        for r in rows:
            out.write(",".join(repr(float(v)) if i < 8 or i == 10 else str(int(v)) for i, v in enumerate(r)) + "\n")
    return rows


class Parity(nn.Module):
    def __init__(self):
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 16), nn.Tanh())
        self.cls = nn.Sequential(nn.Linear(16, 3))
        self.flag = nn.Sequential(nn.Linear(16, 1))
        self.target = nn.Sequential(nn.Linear(16, 8), nn.Sigmoid(), nn.Linear(8, 1))

    def forward(self, x):
        h = self.trunk(x)
        return self.cls(h), self.flag(h), self.target(h)


def batch_loss(model, b):
    """The weighted total and each task's loss (tensors) of the rows `b` of make_data's table."""
    x, cls, flag, target = b[:, :8], b[:, 8].long(), b[:, 9:10], b[:, 10:11]
    oc, of, ot = model(x)
    l = {"cls": nn.CrossEntropyLoss()(oc, cls), "flag": nn.BCEWithLogitsLoss()(of, flag),
         "target": nn.MSELoss()(ot, target)}
    return sum(WEIGHTS[k] * v for k, v in l.items()), l


def torch_run(rows, init, make_opt):
    torch.manual_seed(0)
    model = Parity()
    model.load_state_dict({k: v for k, v in init.items()})
    opt = make_opt(model.parameters())
    data = torch.tensor(rows, dtype=torch.float32)
    losses = []
    for step in range(STEPS):
        total, l = batch_loss(model, data[step * BATCH:(step + 1) * BATCH])
        opt.zero_grad()
        total.backward()
        opt.step()
        losses.append((total.item(), {k: v.item() for k, v in l.items()}))
    return losses, {k: v.detach() for k, v in model.state_dict().items()}


def rel(a, b):
    return abs(a - b) / max(abs(b), 1e-6)


def main():
    mtlc, work = sys.argv[1], sys.argv[2]
    os.makedirs(work, exist_ok=True)
    rows = make_data(os.path.join(work, "data.csv"))
    torch.manual_seed(42)
    init = {k: v.clone() for k, v in Parity().state_dict().items()}
    init_path = os.path.join(work, "init.safetensors")
    safetensors_io.save(init_path, init)

    failures = 0
    for name, (spelling, make_opt) in OPTIMIZERS.items():
        program = os.path.join(work, f"parity_{name}.mtl")
        with open(program, "w") as f:
            f.write(MODEL.format(optimizer=spelling, batch=BATCH))
        log, final = os.path.join(work, f"{name}.jsonl"), os.path.join(work, f"{name}.safetensors")
        cmd = [mtlc, "train", program, "--init", init_path, "--steps", str(STEPS), "--save", final,
               "--log", log, "--quiet"]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            print(f"{name}: mtlc failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
            failures += 1
            continue
        steps = [json.loads(line) for line in open(log) if '"step"' in line]
        ref_losses, ref_weights = torch_run(rows, init, make_opt)
        worst_loss = 0.0
        if len(steps) != STEPS:
            print(f"{name}: mtlc logged {len(steps)} steps, expected {STEPS}")
            failures += 1
            continue
        for s, (ref_total, ref_tasks) in zip(steps, ref_losses):
            worst_loss = max(worst_loss, rel(s["loss"], ref_total))
            for t, v in ref_tasks.items():
                worst_loss = max(worst_loss, rel(s["tasks"][t]["loss"], v))
        got = safetensors_io.load(final)
        worst_weight = max((got[k] - v).abs().max().item() for k, v in ref_weights.items())
        ok = worst_loss <= 2e-4 and worst_weight <= 1e-4
        print(f"{name:13s} steps {STEPS}  max rel loss diff {worst_loss:.2e} (<= 2e-4)  "
              f"max abs weight diff {worst_weight:.2e} (<= 1e-4)  "
              f"first/last loss {steps[0]['loss']:.5f}/{steps[-1]['loss']:.5f}  {'ok' if ok else 'FAIL'}")
        failures += 0 if ok else 1
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
