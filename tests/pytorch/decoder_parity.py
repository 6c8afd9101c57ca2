"""Cross-check of the decoder layers against torch.nn: conv_transpose2d (nn.ConvTranspose2d: stride 2,
kernel 2; kernel 3 with padding and output_padding; bias=false) and a U-Net skip, the channel
concatenation `concat(up, enc1)` of a decoder stage with encoder features (torch.cat(dim=1)), in a
two-task model (classification and per-pixel reconstruction): same safetensors init, same
Fashion-MNIST batches in file order, adam and sgd.

usage: decoder_parity.py MTLC_BINARY WORK_DIR
Exit 0 = agree, 1 = disagree, 77 = skipped (no torch for this python, no Fashion-MNIST files).

Checks: per-step task losses within 2e-4 relative, final parameters within 1e-4 absolute. The
reference runs in float64 (the torch modules after .double()), so it adds no rounding of its own.
"""
import gzip
import json
import os
import struct
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

FASHION = "/usr/share/datasets/fashion-mnist"
STEPS, BATCH = 20, 32
WEIGHTS = {"category": 1.0, "recon": 2.0}
OPTIMIZERS = {
    "adam": ("adam(lr=0.001)", lambda p: torch.optim.Adam(p, lr=0.001)),
    "sgd": ("sgd(lr=0.01, momentum=0.9)", lambda p: torch.optim.SGD(p, lr=0.01, momentum=0.9)),
}

PROGRAM = """model decoder_parity
input image : f32[1, 28, 28]
shared enc1 = image -> conv2d(4, kernel=3, padding=1) -> relu
shared enc2 = enc1 -> maxpool(2) -> conv2d(8, kernel=3, padding=1) -> relu
shared up = enc2 -> conv_transpose2d(4, kernel=2, stride=2) -> relu
shared dec = concat(up, enc1) -> conv2d(4, kernel=3, padding=1) -> relu
  -> conv_transpose2d(3, kernel=3, stride=2, padding=1, output_padding=1, bias=false) -> relu
task category { dec -> avgpool(4) -> flatten -> dense(10)  loss cross_entropy  weight 1 }
task recon { dec -> conv2d(1, kernel=2, stride=2) -> flatten  loss mse  weight 2 }
train {
  optimizer OPTIMIZER
  batch BATCH
  epochs 1
  weighting fixed
  shuffle false
  seed 7
}
data {
  train fashion_mnist("train")
  image = pixels
  category = label
  recon = pixels
}
"""


class Decoder(nn.Module):
    """The program above as torch.nn modules, named as mtlc names its parameters."""

    def __init__(self):
        super().__init__()
        self.enc1 = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU())                   # [4, 28, 28]
        self.enc2 = nn.Sequential(nn.MaxPool2d(2), nn.Conv2d(4, 8, 3, padding=1), nn.ReLU())  # [8, 14, 14]
        self.up = nn.Sequential(nn.ConvTranspose2d(8, 4, 2, stride=2), nn.ReLU())            # [4, 28, 28]
        self.dec = nn.Sequential(nn.Conv2d(8, 4, 3, padding=1), nn.ReLU(),
                                 nn.ConvTranspose2d(4, 3, 3, stride=2, padding=1, output_padding=1, bias=False),
                                 nn.ReLU())                                                   # [3, 56, 56]
        self.category = nn.Sequential(nn.AvgPool2d(4), nn.Flatten(), nn.Linear(3 * 14 * 14, 10))
        self.recon = nn.Sequential(nn.Conv2d(3, 1, 2, stride=2), nn.Flatten())

    def forward(self, x):
        e1 = self.enc1(x)
        d = self.dec(torch.cat([self.up(self.enc2(e1)), e1], dim=1))
        return self.category(d), self.recon(d)


def read_idx(name, count):
    with gzip.open(os.path.join(FASHION, name), "rb") as f:
        raw = f.read()
    dims = raw[3]
    shape = struct.unpack(">" + "I" * dims, raw[4:4 + 4 * dims])
    per = 1
    for d in shape[1:]:
        per *= d
    data = torch.frombuffer(bytearray(raw[4 + 4 * dims:4 + 4 * dims + count * per]), dtype=torch.uint8)
    return data.reshape((count,) + tuple(shape[1:]))


def torch_train(images, labels, init, make_opt):
    model = Decoder().double()
    model.load_state_dict(init)
    opt = make_opt(model.parameters())
    ce, mse = nn.CrossEntropyLoss(), nn.MSELoss()
    losses = []
    for step in range(STEPS):
        x = images[step * BATCH:(step + 1) * BATCH].double()
        y = labels[step * BATCH:(step + 1) * BATCH]
        oc, orec = model(x)
        l = {"category": ce(oc, y), "recon": mse(orec, x.flatten(1))}
        total = sum(WEIGHTS[k] * v for k, v in l.items())
        opt.zero_grad()
        total.backward()
        opt.step()
        losses.append({k: v.item() for k, v in l.items()})
    return losses, {k: v.detach().clone() for k, v in model.state_dict().items()}


def rel(a, b):
    return abs(a - b) / max(abs(b), 1e-6)


def compare(name, spelling, make_opt, mtlc, work, init_path, init, images, labels):
    prog = os.path.join(work, f"{name}.mtl")
    with open(prog, "w") as f:
        f.write(PROGRAM.replace("OPTIMIZER", spelling).replace("BATCH", str(BATCH)))
    log, final = os.path.join(work, f"{name}.jsonl"), os.path.join(work, f"{name}.safetensors")
    r = subprocess.run([mtlc, "train", prog, "--init", init_path, "--steps", str(STEPS), "--save", final,
                        "--log", log, "--quiet"], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{name}: mtlc failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    steps = [json.loads(line) for line in open(log) if '"step"' in line]
    if len(steps) != STEPS:
        raise RuntimeError(f"{name}: mtlc logged {len(steps)} steps, expected {STEPS}")
    ref_losses, ref_state = torch_train(images, labels, init, make_opt)
    worst_loss = max(rel(s["tasks"][t]["loss"], v) for s, ref in zip(steps, ref_losses) for t, v in ref.items())
    got = safetensors_io.load(final)
    missing = sorted(set(ref_state) - set(got))
    if missing:
        raise RuntimeError(f"{name}: the checkpoint lacks {missing[:4]}")
    worst_param = max((got[k].double() - ref_state[k]).abs().max().item() for k in ref_state)
    ok = worst_loss <= 2e-4 and worst_param <= 1e-4
    print(f"{name:5s} steps {STEPS}  task losses max rel {worst_loss:.2e} (<= 2e-4)  params max abs "
          f"{worst_param:.2e} (<= 1e-4)  recon loss {steps[0]['tasks']['recon']['loss']:.4f} -> "
          f"{steps[-1]['tasks']['recon']['loss']:.4f}, category {steps[0]['tasks']['category']['loss']:.4f} -> "
          f"{steps[-1]['tasks']['category']['loss']:.4f}  {'ok' if ok else 'FAIL'}")
    return ok


def main():
    mtlc, work = sys.argv[1], sys.argv[2]
    if not os.path.exists(os.path.join(FASHION, "train-images-idx3-ubyte.gz")):
        print("SKIP: no Fashion-MNIST files in", FASHION)
        sys.exit(77)
    torch.set_num_threads(1)
    os.makedirs(work, exist_ok=True)
    images = read_idx("train-images-idx3-ubyte.gz", STEPS * BATCH).float().div(255).unsqueeze(1)
    labels = read_idx("train-labels-idx1-ubyte.gz", STEPS * BATCH).long()
    torch.manual_seed(42)
    init = {k: v.clone() for k, v in Decoder().state_dict().items()}
    init_path = os.path.join(work, "init.safetensors")
    safetensors_io.save(init_path, init)
    failures = 0
    for name, (spelling, make_opt) in OPTIMIZERS.items():
        failures += 0 if compare(name, spelling, make_opt, mtlc, work, init_path, init, images, labels) else 1
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
