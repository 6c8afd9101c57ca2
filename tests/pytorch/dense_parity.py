"""Cross-check of the per-pixel (dense) losses and metrics against PyTorch: a small dense model
(a shared conv2d -> relu trunk on [1, 8, 8] images, four conv2d heads to [C, 8, 8]) trained by
mtlc and by the same network in torch.nn from the same safetensors init on the same batches of an
npz archive this script writes with numpy.

usage: dense_parity.py MTLC_BINARY WORK_DIR
Exit 0 = agree, 1 = disagree, 77 = skipped (no torch or numpy for this python).

The reference is written from the torch documentation, in float64:
  seg     cross_entropy on [3, H, W], label [H, W] with −1 unlabelled:
          F.cross_entropy(out, seg, ignore_index=-1) (its mean over the batch's labelled pixels)
  depth   l1 on [1, H, W], NaN labels left out: (out[mask] − t[mask]).abs().mean()
  recon   mse on [1, H, W], NaN labels left out: ((out[mask] − t[mask])²).mean()
  normal  cosine on [3, H, W]: (1 − F.cosine_similarity(out, t, dim=1))[valid].mean(), valid the
          pixels whose label vector is non-zero
and the metrics over the test set, from the trained checkpoint of mtlc loaded into the torch
modules: pixel_accuracy and miou (the whole set's confusion matrix; a class neither predicted nor
labelled left out), abs_err, rel_err (non-zero targets), angle_err (degrees, F.normalize'd).

Checks: per-step task losses within 2e-4 relative over 12 adam steps; final parameters within 1e-4
absolute; the test record's metrics and losses within 1e-5 of the reference's. Then each reference
is run again with a planted error (a plausible bug of each loss and metric) and must FAIL its
check, so the checks can see such a bug.
"""
import json
import math
import os
import subprocess
import sys

try:
    import numpy as np
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError:
    print("SKIP: torch or numpy is not installed for", sys.executable)
    sys.exit(77)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_io  # noqa: E402

TRAIN, TEST, BATCH, HW = 48, 24, 4, 8
STEPS = TRAIN // BATCH
TASKS = ["seg", "depth", "recon", "normal"]

PROGRAM = """
model dense_parity
input image : f32[1, 8, 8]
shared trunk = image -> conv2d(8, kernel=3, padding=1) -> relu
task seg    { trunk -> conv2d(3, kernel=3, padding=1)  loss cross_entropy  metric pixel_accuracy, miou }
task depth  { trunk -> conv2d(1, kernel=3, padding=1)  loss l1             metric abs_err, rel_err }
task recon  { trunk -> conv2d(1, kernel=3, padding=1)  loss mse            metric abs_err }
task normal { trunk -> conv2d(3, kernel=3, padding=1)  loss cosine         metric angle_err }
train {
  optimizer adam(lr=0.01)
  batch     4
  epochs    1
  shuffle   false
  seed      3
}
data {
  train  npz("dense_train.npz")
  test   npz("dense_test.npz")
  image  = image
  seg    = seg
  depth  = depth
  recon  = recon
  normal = normal
}
"""


def make_data(path, count, seed):
    """Images and four per-pixel labels, with unlabelled pixels of each kind."""
    r = np.random.default_rng(seed)
    x = r.random((count, 1, HW, HW), dtype=np.float32)
    seg = np.digitize(x[:, 0], [0.33, 0.66]).astype(np.int64)
    seg[r.random(seg.shape) < 0.1] = -1
    depth = (2 * x + 0.5 * r.random(x.shape)).astype(np.float32)
    depth[r.random(x.shape) < 0.1] = np.nan
    depth[r.random(x.shape) < 0.05] = 0  # rel_err leaves zero targets out
    recon = x.copy()
    recon[r.random(x.shape) < 0.05] = np.nan
    normal = np.concatenate([x, 1 - x, r.random(x.shape, dtype=np.float32) - 0.5], axis=1)
    normal[np.broadcast_to(r.random((count, 1, HW, HW)) < 0.1, normal.shape)] = 0  # unlabelled pixels
    np.savez(path, image=x, seg=seg.astype(np.int32), depth=depth, recon=recon, normal=normal.astype(np.float32))
    return {k: torch.from_numpy(np.asarray(v)) for k, v in
            dict(image=x, seg=seg, depth=depth, recon=recon, normal=normal).items()}


class Dense(nn.Module):
    def __init__(self):
        super().__init__()
        self.trunk = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU())
        self.seg = nn.Sequential(nn.Conv2d(8, 3, 3, padding=1))
        self.depth = nn.Sequential(nn.Conv2d(8, 1, 3, padding=1))
        self.recon = nn.Sequential(nn.Conv2d(8, 1, 3, padding=1))
        self.normal = nn.Sequential(nn.Conv2d(8, 3, 3, padding=1))

    def forward(self, x):
        h = self.trunk(x)
        return {t: getattr(self, t)(h) for t in TASKS}


def masked(out, t, plant):
    """Prediction and label at the present (not NaN) label elements."""
    if plant == "nan_as_zero":
        return out.flatten(), torch.nan_to_num(t, nan=0.0).flatten()
    mask = ~torch.isnan(t)
    return out[mask], t[mask]


def losses(out, b, plant=None):
    """Each task's loss on batch `b`, as documented above; `plant` one of PLANTS' loss bugs."""
    seg = b["seg"].long()
    if plant == "ce_all_pixels":  # the sum over labelled pixels divided by every pixel
        ce = F.cross_entropy(out["seg"], seg, ignore_index=-1, reduction="sum") / seg.numel()
    else:
        ce = F.cross_entropy(out["seg"], seg, ignore_index=-1)
    p, t = masked(out["depth"], b["depth"].double(), plant if plant == "nan_as_zero" else None)
    l1 = (p - t).abs().mean()
    p, t = masked(out["recon"], b["recon"].double(), None)
    mse = ((p - t) ** 2).mean()
    tn = b["normal"].double()
    valid = (tn * tn).sum(1) > 0
    cos = 1 - F.cosine_similarity(out["normal"], tn, dim=1)
    cosine = cos.mean() if plant == "cosine_all_pixels" else cos[valid].mean()
    return {"seg": ce, "depth": l1, "recon": mse, "normal": cosine}


def train(data, init, plant=None):
    model = Dense().double()
    model.load_state_dict({k: v.double() for k, v in init.items()})
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    per_step = []
    for s in range(STEPS):
        b = {k: v[s * BATCH:(s + 1) * BATCH] for k, v in data.items()}
        l = losses(model(b["image"].double()), b, plant)
        opt.zero_grad()
        sum(l.values()).backward()
        opt.step()
        per_step.append({k: v.item() for k, v in l.items()})
    return per_step, {k: v.detach() for k, v in model.state_dict().items()}


def metrics(model, data, plant=None):
    """The test-set metrics and losses, from the torch modules, as mtlc's epoch record names them."""
    with torch.no_grad():
        out = model(data["image"].double())
        l = losses(out, data)  # one batch: the means over the whole set, as mtlc's weighted average
        seg = data["seg"].long()
        pred = out["seg"].argmax(1)
        lab = seg >= 0
        if plant == "pixel_accuracy_unlabelled":
            pixel_acc = ((pred == seg) & lab).sum().item() / seg.numel()
        else:
            pixel_acc = (pred[lab] == seg[lab]).double().mean().item()
        if plant == "miou_unlabelled_pixels":  # unlabelled pixels' predictions counted as false positives
            m = miou(pred.flatten(), seg.flatten(), 3)
        else:
            m = miou(pred[lab], seg[lab], 3)
        r = {"seg": {"loss": l["seg"].item(), "pixel_accuracy": pixel_acc, "miou": m}}
        for t in ["depth", "recon"]:
            p, y = masked(out[t], data[t].double(), "nan_as_zero" if plant == "abs_err_nan_as_zero" else None)
            r[t] = {"loss": l[t].item(), "abs_err": (p - y).abs().mean().item()}
            if t == "depth":
                nz = y != 0
                if plant == "rel_err_zero_targets":
                    r[t]["rel_err"] = ((p - y).abs() / y.abs().clamp_min(1e-6)).mean().item()
                else:
                    r[t]["rel_err"] = ((p[nz] - y[nz]).abs() / y[nz].abs()).mean().item()
        tn = data["normal"].double()
        valid = (tn * tn).sum(1) > 0
        c = (F.normalize(out["normal"], dim=1) * F.normalize(tn, dim=1)).sum(1).clamp(-1, 1)
        deg = torch.rad2deg(torch.acos(c))
        r["normal"] = {"loss": l["normal"].item(),
                       "angle_err": (deg.mean() if plant == "angle_all_pixels" else deg[valid].mean()).item()}
        return r


def miou(pred, lab, classes):
    """Mean over classes predicted or labelled of TP / (TP + FP + FN)."""
    ious = []
    for c in range(classes):
        tp = ((pred == c) & (lab == c)).sum().item()
        union = ((pred == c) | (lab == c)).sum().item()
        if union:
            ious.append(tp / union)
    return sum(ious) / len(ious)


def rel(a, b):
    return abs(a - b) / max(abs(b), 1e-6)


def loss_diff(steps, ref):
    return max(rel(s["tasks"][t]["loss"], v) for s, r in zip(steps, ref) for t, v in r.items())


def metric_diff(record, ref):
    return max(abs(record[t][m] - v) for t, ms in ref.items() for m, v in ms.items())


LOSS_PLANTS = ["ce_all_pixels", "nan_as_zero", "cosine_all_pixels"]
METRIC_PLANTS = ["pixel_accuracy_unlabelled", "miou_unlabelled_pixels", "abs_err_nan_as_zero", "rel_err_zero_targets",
                 "angle_all_pixels"]


def main():
    mtlc, work = sys.argv[1], sys.argv[2]
    os.makedirs(work, exist_ok=True)
    train_data = make_data(os.path.join(work, "dense_train.npz"), TRAIN, 1)
    test_data = make_data(os.path.join(work, "dense_test.npz"), TEST, 2)
    torch.manual_seed(42)
    init = {k: v.clone() for k, v in Dense().state_dict().items()}
    init_path = os.path.join(work, "init.safetensors")
    safetensors_io.save(init_path, init)
    prog = os.path.join(work, "dense_parity.mtl")
    with open(prog, "w") as f:
        f.write(PROGRAM)
    log, final = os.path.join(work, "dense.jsonl"), os.path.join(work, "dense.safetensors")
    r = subprocess.run([mtlc, "train", prog, "--init", init_path, "--save", final, "--log", log, "--quiet"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        print(f"mtlc failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
        sys.exit(1)
    records = [json.loads(line) for line in open(log)]
    steps = [x for x in records if "step" in x]
    tested = [x for x in records if "test" in x]
    if len(steps) != STEPS or not tested:
        print(f"mtlc logged {len(steps)} steps (expected {STEPS}) and {len(tested)} test records")
        sys.exit(1)
    record = tested[-1]["test"]

    ref_losses, ref_state = train(train_data, init)
    worst_loss = loss_diff(steps, ref_losses)
    got = safetensors_io.load(final)
    worst_param = max((got[k].double() - v).abs().max().item() for k, v in ref_state.items())
    model = Dense().double()
    model.load_state_dict({k: got[k].double() for k in ref_state})
    ref_metrics = metrics(model, test_data)
    worst_metric = metric_diff(record, ref_metrics)
    ok = worst_loss <= 2e-4 and worst_param <= 1e-4 and worst_metric <= 1e-5
    print(f"dense: {STEPS} adam steps  task losses max rel {worst_loss:.2e} (<= 2e-4)  params max abs "
          f"{worst_param:.2e} (<= 1e-4)  test metrics and losses max abs {worst_metric:.2e} (<= 1e-5)  "
          f"{'ok' if ok else 'FAIL'}")
    print("  test: " + "  ".join(f"{t}.{m} {v:.6f}" for t, ms in record.items() for m, v in ms.items()))

    caught = True
    for plant in LOSS_PLANTS:
        planted, _ = train(train_data, init, plant)
        d = loss_diff(steps, planted)
        print(f"  planted {plant}: task losses max rel {d:.2e} -> {'caught' if d > 2e-4 else 'NOT CAUGHT'}")
        caught = caught and d > 2e-4
    for plant in METRIC_PLANTS:
        d = metric_diff(record, metrics(model, test_data, plant))
        print(f"  planted {plant}: metrics max abs {d:.2e} -> {'caught' if d > 1e-5 else 'NOT CAUGHT'}")
        caught = caught and d > 1e-5
    sys.exit(0 if ok and caught else 1)


if __name__ == "__main__":
    main()
