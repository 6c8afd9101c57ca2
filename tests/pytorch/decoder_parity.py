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
import os
import sys

try:
    import torch
    import torch.nn as nn
except ImportError:
    print("SKIP: torch is not installed for", sys.executable)
    sys.exit(77)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_io  # noqa: E402
from resnet_parity import fashion_setup, load_checkpoint, mtlc_train, save_init, worst_loss_error  # noqa: E402

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


def compare(name, spelling, make_opt, mtlc, work, init_path, init, images, labels):
    prog = os.path.join(work, f"{name}.mtl")
    with open(prog, "w") as f:
        f.write(PROGRAM.replace("OPTIMIZER", spelling).replace("BATCH", str(BATCH)))
    steps, final = mtlc_train(name, mtlc, prog, work, init_path, STEPS)
    ref_losses, ref_state = torch_train(images, labels, init, make_opt)
    worst_loss = worst_loss_error(steps, ref_losses)
    got = load_checkpoint(name, final, ref_state)
    worst_param = max((got[k].double() - ref_state[k]).abs().max().item() for k in ref_state)
    ok = worst_loss <= 2e-4 and worst_param <= 1e-4
    print(f"{name:5s} steps {STEPS}  task losses max rel {worst_loss:.2e} (<= 2e-4)  params max abs "
          f"{worst_param:.2e} (<= 1e-4)  recon loss {steps[0]['tasks']['recon']['loss']:.4f} -> "
          f"{steps[-1]['tasks']['recon']['loss']:.4f}, category {steps[0]['tasks']['category']['loss']:.4f} -> "
          f"{steps[-1]['tasks']['category']['loss']:.4f}  {'ok' if ok else 'FAIL'}")
    return ok


def main():
    mtlc, work = sys.argv[1], sys.argv[2]
    images, labels = fashion_setup(work, STEPS * BATCH)
    init, init_path = save_init(work, Decoder)
    failures = 0
    for name, (spelling, make_opt) in OPTIMIZERS.items():
        failures += 0 if compare(name, spelling, make_opt, mtlc, work, init_path, init, images, labels) else 1
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
