#!/usr/bin/python3
"""The PyTorch side of the benchmark: the same models as bench/models/*.mtl and examples/*.mtl.

    /usr/bin/python3 bench/peers.py MODEL [--batch N] [--steps N] [--warmup N] [--reps N]
                                          [--threads N] [--json]
    MODEL: mlp | cnn | mmoe | resnet | dense
      cnn: examples/fashion.mtl; resnet: examples/resnet_fashion.mtl; dense: examples/dense_fashion.mtl
    /usr/bin/python3 bench/peers.py --check MTLC_BINARY
      every peer against its program: the same learnable-parameter count as `mtlc MODEL` prints,
      and one finite training step (exit 1 otherwise, 77 without torch; a CTest test). The count
      catches a missing or extra layer, bias or shortcut and a wrong width, not a wrong stride

Runs with Debian's python3-torch (1.13) on `--threads` threads (default 1: torch.set_num_threads(1),
one inter-op thread). Image models train on the real Fashion-MNIST train split, read from the IDX
.gz files with gzip + numpy (pixels / 255, as mtlc's fashion_mnist source); the MMoE trains on the
MMoE paper's synthetic regression pair (same generator as mtlc's synthetic_mmoe, numpy's random
numbers); the dense U-Net trains on multi_fashion_dense as the contract defines it (two items on a
36x36 canvas, resized bilinearly to 28x28; its first DENSE_ROWS samples, with numpy's permutation
for the second item: the step's cost does not depend on which rows it draws). A step is exactly what a PyTorch training loop does per batch, and what mtlc's trainer
does: gather the batch's rows of a shuffled epoch order (index_select from the in-memory tensors),
zero_grad, forward, the task losses, the weighted sum, backward, optimizer step. Only full batches
are used. After --warmup steps, --reps blocks of --steps steps are timed and the median block is
reported; peak RSS is getrusage's ru_maxrss of this process (torch itself included, as mtlc's
includes LLVM).

Where PyTorch offers a faster idiom for the same math, the peer uses it: zero_grad(set_to_none=True),
the 8 MMoE experts as one Linear(100, 8·16) viewed as [B, 8, 16], no per-step loss read-back.
"""
import argparse
import gzip
import json
import math
import os
import resource
import statistics
import sys
import time

# BLAS and OpenMP pools follow --threads (read before torch loads them); set_num_threads below.
def _threads_arg():
    for i, a in enumerate(sys.argv):
        if a == "--threads" and i + 1 < len(sys.argv):
            return sys.argv[i + 1]
        if a.startswith("--threads="):
            return a.split("=", 1)[1]
    return "1"


for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = _threads_arg()

try:
    import numpy as np  # noqa: E402
    import torch  # noqa: E402
    import torch.nn as nn  # noqa: E402
    import torch.nn.functional as F  # noqa: E402
except ImportError as e:  # no torch for this python: nothing to compare with (CTest: skipped)
    print(f"peers.py: {e}", file=sys.stderr)
    sys.exit(77)

FASHION_DIR = os.environ.get("MTLC_FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist")


def openblas_core():
    """The kernel the OpenBLAS inside this process chose (torch links Debian's libopenblas)."""
    try:
        import ctypes
        lib = ctypes.CDLL("libopenblas.so.0")
        lib.openblas_get_corename.restype = ctypes.c_char_p
        return lib.openblas_get_corename().decode()
    except (OSError, AttributeError):
        return None


def read_idx_gz(path, header):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        return np.frombuffer(f.read(), dtype=np.uint8, offset=header)


def fashion_train():
    """pixels [60000, 784] float32 in [0, 1], labels [60000] int64."""
    def find(stem):
        for name in (stem + ".gz", stem):
            p = os.path.join(FASHION_DIR, name)
            if os.path.exists(p):
                return p
        sys.exit(f"peers.py: {stem}(.gz) not found in {FASHION_DIR}")
    pixels = read_idx_gz(find("train-images-idx3-ubyte"), 16).reshape(-1, 784).astype(np.float32) / 255.0
    labels = read_idx_gz(find("train-labels-idx1-ubyte"), 8).astype(np.int64)
    return torch.from_numpy(pixels), torch.from_numpy(labels)


def synthetic_mmoe(correlation=0.5, samples=12000, dim=100, seed=0):
    """Ma et al. (KDD 2018): y_k = w_kᵀx + Σ sin(α_i·w_kᵀx + β_i) + ε, as runtime/data/Synthetic.cpp."""
    rng = np.random.default_rng(seed)
    u1, u2 = rng.standard_normal(dim), rng.standard_normal(dim)
    u1 /= np.linalg.norm(u1)
    u2 -= u2 @ u1 * u1
    u2 /= np.linalg.norm(u2)
    w1, w2 = u1, correlation * u1 + math.sqrt(1 - correlation ** 2) * u2
    alpha, beta = rng.standard_normal(10), rng.standard_normal(10)
    x = rng.standard_normal((samples, dim))
    a, b = x @ w1, x @ w2
    y1 = a + np.sin(np.outer(a, alpha) + beta).sum(1) + rng.normal(0, 0.1, samples)
    y2 = b + np.sin(np.outer(b, alpha) + beta).sum(1) + rng.normal(0, 0.1, samples)
    f = lambda v: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32))
    return f(x), f(y1.reshape(-1, 1)), f(y2.reshape(-1, 1))


# ---- the models ------------------------------------------------------------------------------------

class TwoHeads(nn.Module):
    """trunk → category (cross_entropy, weight 1.0) and footwear (bce, weight 0.5)."""

    def __init__(self, trunk, category, footwear):
        super().__init__()
        self.trunk, self.category, self.footwear = trunk, category, footwear

    def forward(self, x):
        h = self.trunk(x)
        return self.category(h), self.footwear(h)


DENSE_ROWS = 12000


def multi_fashion_dense(rows=DENSE_ROWS, chunk=2000):
    """image [rows, 1, 28, 28], segment [rows, 28, 28] int64, left/right_pixels [rows, 1, 28, 28],
    left/right [rows] int64: item i at the top-left of a 36x36 canvas, item perm(i) at offset 8, the
    max where they overlap, each canvas resized to 28x28 (bilinear, pixel centres aligned)."""
    pixels, labels = fashion_train()
    items = pixels.view(-1, 28, 28)
    perm = torch.from_numpy(np.random.default_rng(1).permutation(items.shape[0])[:rows])
    resize = lambda c: F.interpolate(c.unsqueeze(1), size=(28, 28), mode="bilinear", align_corners=False)
    out = {k: [] for k in ("image", "segment", "left_pixels", "right_pixels")}
    for i in range(0, rows, chunk):  # in chunks: the 36x36 canvases of every row at once are large
        n = min(chunk, rows - i)
        top, bottom = torch.zeros(n, 36, 36), torch.zeros(n, 36, 36)
        top[:, :28, :28] = items[i:i + n]
        bottom[:, 8:, 8:] = items[perm[i:i + n]]
        lp, rp = resize(top), resize(bottom)
        out["image"].append(resize(torch.maximum(top, bottom)))
        out["left_pixels"].append(lp)
        out["right_pixels"].append(rp)
        out["segment"].append(torch.where((lp < 0.1) & (rp < 0.1), 0, torch.where(lp >= rp, 1, 2)).squeeze(1).long())
    data = {k: torch.cat(v) for k, v in out.items()}
    data["left"], data["right"] = labels[:rows], labels[perm]
    return data


def mlp():  # bench/models/mlp.mtl
    return TwoHeads(nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU()),
                    nn.Linear(128, 10), nn.Linear(128, 1))


def cnn():  # examples/fashion.mtl
    trunk = nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten())
    return TwoHeads(trunk, nn.Sequential(nn.Linear(5408, 64), nn.ReLU(), nn.Linear(64, 10)),
                    nn.Sequential(nn.Linear(5408, 64), nn.ReLU(), nn.Linear(64, 1)))


class MMoE(nn.Module):  # bench/models/mmoe.mtl
    def __init__(self, dim=100, experts=8, width=16, tasks=2):
        super().__init__()
        self.experts, self.width = experts, width
        self.expert = nn.Linear(dim, experts * width)  # the 8 dense(16) experts, side by side
        self.gates = nn.ModuleList(nn.Linear(dim, experts) for _ in range(tasks))
        self.towers = nn.ModuleList(nn.Sequential(nn.Linear(width, 8), nn.ReLU(), nn.Linear(8, 1))
                                    for _ in range(tasks))

    def forward(self, x):
        e = F.relu(self.expert(x)).view(-1, self.experts, self.width)          # [B, E, H]
        outs = []
        for gate, tower in zip(self.gates, self.towers):
            g = torch.softmax(gate(x), dim=1).unsqueeze(1)                      # [B, 1, E]
            outs.append(tower(torch.bmm(g, e).squeeze(1)))                      # [B, 1]
        return outs


class BasicBlock(nn.Module):  # residual { conv-bn-relu-conv-bn }, a 1x1 conv + bn shortcut on a change
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
                                  nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout))
        self.shortcut = nn.Identity() if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        return F.relu(self.body(x) + self.shortcut(x))


def resnet():  # examples/resnet_fashion.mtl: stem, 3 stages of 2 basic blocks, global average pool
    layers, cin = [nn.Conv2d(1, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU()], 16
    for cout, stride in ((16, 1), (16, 1), (32, 2), (32, 1), (64, 2), (64, 1)):
        layers.append(BasicBlock(cin, cout, stride))
        cin = cout
    trunk = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
    return TwoHeads(trunk, nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10)),
                    nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 1)))


def conv_bn_relu(cin, cout):
    return [nn.Conv2d(cin, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]


class DenseUNet(nn.Module):  # examples/dense_fashion.mtl
    def __init__(self):
        super().__init__()
        self.enc1 = nn.Sequential(*conv_bn_relu(1, 16))                       # [16, 28, 28]
        self.enc2 = nn.Sequential(nn.MaxPool2d(2), *conv_bn_relu(16, 32))     # [32, 14, 14]
        self.bottleneck = nn.Sequential(nn.MaxPool2d(2), *conv_bn_relu(32, 64))  # [64, 7, 7]
        self.up2 = nn.ConvTranspose2d(64, 32, 2, stride=2)
        self.dec2 = nn.Sequential(*conv_bn_relu(64, 32))
        self.up1 = nn.ConvTranspose2d(32, 16, 2, stride=2)
        self.dec1 = nn.Sequential(*conv_bn_relu(32, 16))
        self.pixel_heads = nn.ModuleList(nn.Conv2d(16, c, 1) for c in (3, 1, 1))  # segment, left/right_pixels
        self.class_heads = nn.ModuleList(nn.Sequential(nn.Flatten(), nn.Linear(64 * 7 * 7, 64), nn.ReLU(),
                                                       nn.Linear(64, 10)) for _ in range(2))  # left, right

    def forward(self, x):
        e1 = self.enc1(x)
        e2 = self.enc2(e1)
        b = self.bottleneck(e2)
        d2 = self.dec2(torch.cat([self.up2(b), e2], 1))   # concat(up2, enc2)
        d1 = self.dec1(torch.cat([self.up1(d2), e1], 1))  # concat(up1, enc1)
        return [h(d1) for h in self.pixel_heads] + [h(b) for h in self.class_heads]


# ---- one configuration -----------------------------------------------------------------------------

PROGRAMS = {"mlp": "bench/models/mlp.mtl", "cnn": "examples/fashion.mtl", "mmoe": "bench/models/mmoe.mtl",
            "resnet": "examples/resnet_fashion.mtl", "dense": "examples/dense_fashion.mtl"}


def check(mtlc):
    """Each peer against its program: learnable parameters as mtlc counts them (a layer too
    many, a missing shortcut or another width changes the count), and one finite step."""
    import re
    import subprocess
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    bad = 0
    for name, program in PROGRAMS.items():
        p = subprocess.run([mtlc, os.path.join(root, program)],  # compiles and prints a summary
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        m = re.search(r"^\s*learnable total\s+(\d+)", p.stdout, re.M)
        model, opt, inputs, targets, loss_fn, _ = setup(name)
        ours = sum(p.numel() for p in model.parameters())
        idx = torch.arange(4)
        opt.zero_grad()
        total = loss_fn(model(inputs.index_select(0, idx)), [t.index_select(0, idx) for t in targets])
        total.backward()
        opt.step()
        ok = m is not None and int(m.group(1)) == ours and math.isfinite(float(total))
        bad += not ok
        print(f"{name}: {program} {m.group(1) if m else '?'} learnable parameters, the peer {ours}; "
              f"loss {float(total):.4f}: {'ok' if ok else 'MISMATCH'}")
    return 1 if bad else 0


def setup(name):
    """model, optimizer, inputs tensor, label tensors, loss(outputs, labels) -> total."""
    t0 = time.perf_counter()
    if name in ("mlp", "cnn", "resnet"):
        pixels, labels = fashion_train()
        footwear = ((labels == 5) | (labels == 7) | (labels == 9)).to(torch.float32).unsqueeze(1)
        inputs = pixels if name == "mlp" else pixels.view(-1, 1, 28, 28)
        targets = [labels, footwear]
        model = {"mlp": mlp, "cnn": cnn, "resnet": resnet}[name]()

        def loss(outs, ys):
            return 1.0 * F.cross_entropy(outs[0], ys[0]) + 0.5 * F.binary_cross_entropy_with_logits(outs[1], ys[1])
    elif name == "mmoe":
        x, y1, y2 = synthetic_mmoe()
        inputs, targets, model = x, [y1, y2], MMoE()

        def loss(outs, ys):
            return 1.0 * F.mse_loss(outs[0], ys[0]) + 1.0 * F.mse_loss(outs[1], ys[1])
    elif name == "dense":
        d = multi_fashion_dense()
        inputs, model = d["image"], DenseUNet()
        targets = [d[k] for k in ("segment", "left_pixels", "right_pixels", "left", "right")]

        def loss(outs, ys):  # every weight 1: per-pixel cross_entropy and l1 (means), cross_entropy
            return (F.cross_entropy(outs[0], ys[0]) + F.l1_loss(outs[1], ys[1]) + F.l1_loss(outs[2], ys[2])
                    + F.cross_entropy(outs[3], ys[3]) + F.cross_entropy(outs[4], ys[4]))
    else:
        sys.exit(f"peers.py: unknown model {name!r} (mlp, cnn, mmoe, resnet, dense)")
    load_ms = (time.perf_counter() - t0) * 1000
    if name == "mlp":
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=0.001)
    return model, opt, inputs, targets, loss, load_ms


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model", nargs="?")
    ap.add_argument("--check", metavar="MTLC", help="check every peer against its program (see the top)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--ftz", action="store_true",
                    help="experiment: flush denormals to zero (torch.set_flush_denormal); not torch's default")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    if a.check:
        sys.exit(check(a.check))
    if not a.model:
        ap.error("a MODEL or --check MTLC")

    torch.set_num_threads(a.threads)
    torch.set_num_interop_threads(1)
    torch.manual_seed(a.seed)
    if a.ftz:
        torch.set_flush_denormal(True)
    model, opt, inputs, targets, loss_fn, load_ms = setup(a.model)
    model.train()
    rows, B = inputs.shape[0], a.batch
    full = rows // B
    gen = torch.Generator().manual_seed(a.seed)
    state = {"order": torch.randperm(rows, generator=gen), "b": 0, "loss": float("nan")}

    def step():
        if state["b"] == full:
            state["order"], state["b"] = torch.randperm(rows, generator=gen), 0
        idx = state["order"][state["b"] * B:(state["b"] + 1) * B]
        state["b"] += 1
        xb = inputs.index_select(0, idx)
        ys = [t.index_select(0, idx) for t in targets]
        opt.zero_grad(set_to_none=True)
        total = loss_fn(model(xb), ys)
        total.backward()
        opt.step()
        return total

    for _ in range(a.warmup):
        step()
    rep_us = []
    first_loss = float("nan")
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for r in range(max(1, a.reps)):
        t0 = time.perf_counter()
        for _ in range(a.steps):
            total = step()
        rep_us.append((time.perf_counter() - t0) * 1e6 / max(1, a.steps))
        if r == 0:
            first_loss = float(total)
    cpu_util = (time.process_time() - cpu0) / (time.perf_counter() - wall0)
    us = statistics.median(rep_us)
    out = {
        "model": a.model, "framework": f"torch {torch.__version__}", "batch": B,
        "threads": torch.get_num_threads(), "ftz": a.ftz, "cpu_util": cpu_util, "steps": a.steps, "warmup": a.warmup, "reps": len(rep_us),
        "rows": rows, "load_ms": load_ms, "params": sum(p.numel() for p in model.parameters()),
        "us_per_step": us, "samples_per_s": B * 1e6 / us, "rep_us_per_step": rep_us,
        "loss_after_first_rep": first_loss, "loss_last": float(total),
        "openblas_core": openblas_core(), "openblas_coretype_env": os.environ.get("OPENBLAS_CORETYPE", ""),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
    }
    if a.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"{a.model} (batch {B}, torch {torch.__version__}, {out['threads']} thread(s), "
              f"OpenBLAS {out['openblas_core']}): "
              f"{us:.1f} µs/step, {out['samples_per_s']:.0f} samples/s (median of {len(rep_us)} x {a.steps} steps "
              f"after {a.warmup} warm-up); peak RSS {out['peak_rss_mib']:.1f} MiB; "
              f"loss {first_loss:.4f} -> {float(total):.4f}")


if __name__ == "__main__":
    main()
