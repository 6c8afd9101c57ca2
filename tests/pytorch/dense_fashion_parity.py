"""Cross-check of examples/dense_fashion.mtl (a U-Net on multi_fashion_dense: conv2d + batchnorm +
relu encoder, max pooling, conv_transpose2d up, concat skips; per-pixel cross_entropy and l1 heads,
two classification heads from the bottleneck) against the same network written with torch.nn from
the program's meaning: same safetensors init, same batches in file order, adam and sgd.

usage: dense_fashion_parity.py MTLC_BINARY WORK_DIR [--plant skip_order]
Exit 0 = agree, 1 = disagree, 77 = skipped (no torch for this python, no Fashion-MNIST files).

The batches are made here from the Fashion-MNIST files as the contract defines multi_fashion_dense
(../shared/LANGUAGE.md, runtime/data/Synthetic.cpp): item i at the top-left and item π(i) at the
bottom-right of a 36x36 canvas (offset 8), the max where they overlap, resized to 28x28 by
F.interpolate(mode="bilinear", align_corners=False); π the Fisher-Yates permutation of mt19937_64(1)
(mtlc_rng.py); left_pixels / right_pixels each item alone on its canvas, resized the same way;
segment 0 where both are below 0.1, else 1 where the top-left item's value is the brighter (ties
included), 2 where the bottom-right's is.

Checks (issue #24): per-step task losses within 2e-4 relative; final parameters and running
statistics within 1e-4 absolute; eval-mode predictions of mtlc's trained checkpoint, made by the
`mtlc build` bundle through the embedded C API, against the checkpoint loaded into the torch.nn
modules (model.eval()), within 1e-4. The reference runs in float64 (the torch modules after
.double()), so it adds no rounding of its own.

--plant skip_order gives the reference's skips the other channel order (torch.cat([enc, up]) where
the program says concat(up, enc)), a plausible U-Net bug: the run must then FAIL the loss check,
and the script exits 0 only when it does.
"""
import os
import sys

try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError:
    print("SKIP: torch is not installed for", sys.executable)
    sys.exit(77)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mtlc_rng  # noqa: E402
import safetensors_io  # noqa: E402
from resnet_parity import (FASHION, build_predictor, load_checkpoint, mtlc_predict, mtlc_train,  # noqa: E402
                           program, read_idx, save_init, state_errors, worst_loss_error)

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLE = os.path.join(HERE, "..", "..", "examples", "dense_fashion.mtl")
STEPS, BATCH, PREDICT_ROWS = 20, 16, 48
TRAIN_ROWS = 60000
TASKS = ["segment", "left_pixels", "right_pixels", "left", "right"]
OUT_SIZES = [3 * 784, 784, 784, 10, 10]  # each head's output per sample, in the program's task order
OPTIMIZERS = {
    "adam": ("adam(lr=0.0001)", lambda p: torch.optim.Adam(p, lr=0.0001)),
    "sgd": ("sgd(lr=0.003, momentum=0.9)", lambda p: torch.optim.SGD(p, lr=0.003, momentum=0.9)),
}


def block(cin, cout):
    """conv2d(cout, kernel=3, padding=1, bias=false) -> batchnorm -> relu"""
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]


class DenseFashion(nn.Module):
    """examples/dense_fashion.mtl as torch.nn modules, named as mtlc names its parameters."""

    def __init__(self, skip_order="up_first"):
        super().__init__()
        self.skip_order = skip_order
        self.enc1 = nn.Sequential(*block(1, 16))                                  # [16, 28, 28]
        self.enc2 = nn.Sequential(nn.MaxPool2d(2), *block(16, 32))                # [32, 14, 14]
        self.bottleneck = nn.Sequential(nn.MaxPool2d(2), *block(32, 64))          # [64, 7, 7]
        self.up2 = nn.Sequential(nn.ConvTranspose2d(64, 32, 2, stride=2))         # [32, 14, 14]
        self.dec2 = nn.Sequential(*block(64, 32))                                 # [32, 14, 14]
        self.up1 = nn.Sequential(nn.ConvTranspose2d(32, 16, 2, stride=2))         # [16, 28, 28]
        self.dec1 = nn.Sequential(*block(32, 16))                                 # [16, 28, 28]
        self.segment = nn.Sequential(nn.Conv2d(16, 3, 1))
        self.left_pixels = nn.Sequential(nn.Conv2d(16, 1, 1))
        self.right_pixels = nn.Sequential(nn.Conv2d(16, 1, 1))
        self.left = nn.Sequential(nn.Flatten(), nn.Linear(64 * 7 * 7, 64), nn.ReLU(), nn.Linear(64, 10))
        self.right = nn.Sequential(nn.Flatten(), nn.Linear(64 * 7 * 7, 64), nn.ReLU(), nn.Linear(64, 10))

    def skip(self, up, enc):
        return torch.cat([up, enc] if self.skip_order == "up_first" else [enc, up], dim=1)

    def forward(self, x):
        e1 = self.enc1(x)
        e2 = self.enc2(e1)
        b = self.bottleneck(e2)
        d2 = self.dec2(self.skip(self.up2(b), e2))
        d1 = self.dec1(self.skip(self.up1(d2), e1))
        return {"segment": self.segment(d1), "left_pixels": self.left_pixels(d1),
                "right_pixels": self.right_pixels(d1), "left": self.left(b), "right": self.right(b)}


def resize(canvas):
    """[n, 36, 36] float32 canvases -> [n, 1, 28, 28] float32, bilinear with pixel centres aligned."""
    return F.interpolate(canvas.double().unsqueeze(1), size=(28, 28), mode="bilinear",
                         align_corners=False).float()


def multi_fashion_dense(rows):
    """The first `rows` samples of multi_fashion_dense("train"), as the contract defines them."""
    raw = read_idx("train-images-idx3-ubyte.gz", TRAIN_ROWS)
    labels = read_idx("train-labels-idx1-ubyte.gz", TRAIN_ROWS).long()
    images = raw.float() * torch.tensor(1.0 / 255.0, dtype=torch.float32)  # the IDX reader's scaling
    perm = list(range(TRAIN_ROWS))
    mtlc_rng.shuffle(mtlc_rng.MT19937_64(1), perm)
    perm = torch.tensor(perm[:rows])
    top = torch.zeros(rows, 36, 36)
    bottom = torch.zeros(rows, 36, 36)
    top[:, :28, :28] = images[:rows]
    bottom[:, 8:, 8:] = images[perm]
    left_pixels, right_pixels = resize(top), resize(bottom)
    segment = torch.where((left_pixels < 0.1) & (right_pixels < 0.1), 0,
                          torch.where(left_pixels >= right_pixels, 1, 2)).squeeze(1).long()
    return {"image": resize(torch.maximum(top, bottom)), "segment": segment, "left_pixels": left_pixels,
            "right_pixels": right_pixels, "left": labels[:rows], "right": labels[perm]}


def task_losses(out, b):
    """The program's losses: cross_entropy over the channels per pixel (the mean over the batch's
    pixels), l1 per pixel (the mean), cross_entropy per sample."""
    return {"segment": F.cross_entropy(out["segment"], b["segment"]),
            "left_pixels": (out["left_pixels"] - b["left_pixels"].double()).abs().mean(),
            "right_pixels": (out["right_pixels"] - b["right_pixels"].double()).abs().mean(),
            "left": F.cross_entropy(out["left"], b["left"]),
            "right": F.cross_entropy(out["right"], b["right"])}


def torch_train(data, init, make_opt, skip_order):
    model = DenseFashion(skip_order).double()
    model.load_state_dict(init)
    model.train()
    opt = make_opt(model.parameters())
    losses = []
    for step in range(STEPS):
        b = {k: v[step * BATCH:(step + 1) * BATCH] for k, v in data.items()}
        l = task_losses(model(b["image"].double()), b)
        opt.zero_grad()
        sum(l.values()).backward()  # weighting fixed, every weight 1
        opt.step()
        losses.append({k: v.item() for k, v in l.items()})
    return losses, {k: v.detach().clone() for k, v in model.state_dict().items()}


PREDICT_C = r"""
#include "dense_fashion.h"
#include <stdio.h>
#include <stdlib.h>
/* predict CHECKPOINT IMAGES.f32 ROWS OUT.f32: eval-mode heads, per row segment [3,28,28],
   left_pixels [1,28,28], right_pixels [1,28,28], left [10], right [10]. */
enum { SEG = 3 * 784, PIX = 784, CLS = 10, ROW = SEG + 2 * PIX + 2 * CLS, B = DENSE_FASHION_MAX_BATCH };
static float seg[B * SEG], lp[B * PIX], rp[B * PIX], lc[B * CLS], rc[B * CLS];
int main(int argc, char **argv) {
  long rows = atol(argv[3]), done = 0;
  float *x = malloc(sizeof(float) * rows * 784), *out = malloc(sizeof(float) * rows * ROW);
  FILE *f = fopen(argv[2], "rb");
  dense_fashion_ctx *ctx = dense_fashion_create();
  if (argc != 5 || !f || fread(x, sizeof(float), rows * 784, f) != (size_t)(rows * 784)) return 2;
  fclose(f);
  if (dense_fashion_load(ctx, argv[1]) != DENSE_FASHION_OK) return fprintf(stderr, "%s\n", dense_fashion_last_error(ctx)), 3;
  while (done < rows) {
    long n = rows - done < B ? rows - done : B, i, k;
    if (dense_fashion_predict(ctx, n, x + done * 784, n * 784, seg, n * SEG, lp, n * PIX, rp, n * PIX, lc, n * CLS,
                              rc, n * CLS) != DENSE_FASHION_OK)
      return fprintf(stderr, "%s\n", dense_fashion_last_error(ctx)), 4;
    for (i = 0; i < n; ++i) {
      float *o = out + (done + i) * ROW;
      for (k = 0; k < SEG; ++k) *o++ = seg[i * SEG + k];
      for (k = 0; k < PIX; ++k) *o++ = lp[i * PIX + k];
      for (k = 0; k < PIX; ++k) *o++ = rp[i * PIX + k];
      for (k = 0; k < CLS; ++k) *o++ = lc[i * CLS + k];
      for (k = 0; k < CLS; ++k) *o++ = rc[i * CLS + k];
    }
    done += n;
  }
  f = fopen(argv[4], "wb");
  if (!f || fwrite(out, sizeof(float), rows * ROW, f) != (size_t)(rows * ROW)) return 5;
  return fclose(f) != 0;
}
"""


def torch_predict(checkpoint, images):
    model = DenseFashion().double()
    saved = safetensors_io.load(checkpoint)
    model.load_state_dict({k: saved[k] for k in model.state_dict()})  # not optim.*, train.*
    model.eval()
    with torch.no_grad():
        out = model(images.double())
    return torch.cat([out[t].flatten(1) for t in TASKS], dim=1).float()


def compare(name, mtlc, prog, work, init_path, init, data, make_opt, skip_order, predictor):
    """Trains both sides; returns (losses ok, state ok, predictions ok)."""
    steps, final = mtlc_train(name, mtlc, prog, work, init_path, STEPS)
    ref_losses, ref_state = torch_train(data, init, make_opt, skip_order)
    worst_loss = worst_loss_error(steps, ref_losses)
    got = load_checkpoint(name, final, ref_state)
    worst_param, worst_stat = state_errors(got, ref_state)
    held_out = data["image"][STEPS * BATCH:]  # rows the training never saw
    ours = mtlc_predict(predictor, final, held_out, work, sum(OUT_SIZES))
    worst_pred = (ours - torch_predict(final, held_out)).abs().max().item()
    ok = (worst_loss <= 2e-4, worst_param <= 1e-4 and worst_stat <= 1e-4, worst_pred <= 1e-4)
    first, last = steps[0]["tasks"], steps[-1]["tasks"]
    print(f"{name:5s} steps {STEPS}  task losses max rel {worst_loss:.2e} (<= 2e-4)  params max abs "
          f"{worst_param:.2e}  running stats {worst_stat:.2e} (<= 1e-4)  eval predictions of the checkpoint "
          f"in torch {worst_pred:.2e} (<= 1e-4)  {'ok' if all(ok) else 'FAIL'}")
    print("      losses first -> last step: " + "  ".join(
        f"{t} {first[t]['loss']:.4f} -> {last[t]['loss']:.4f}" for t in TASKS))
    return ok


def main():
    mtlc, work = sys.argv[1], sys.argv[2]
    plant = len(sys.argv) > 4 and sys.argv[3] == "--plant" and sys.argv[4] == "skip_order"
    if not os.path.exists(os.path.join(FASHION, "train-images-idx3-ubyte.gz")):
        print("SKIP: no Fashion-MNIST files in", FASHION)
        sys.exit(77)
    torch.set_num_threads(1)
    os.makedirs(work, exist_ok=True)
    mtlc_rng.self_check()
    data = multi_fashion_dense(STEPS * BATCH + PREDICT_ROWS)
    init, init_path = save_init(work, DenseFashion)

    failures = 0
    optimizers = {"adam": OPTIMIZERS["adam"]} if plant else OPTIMIZERS
    predictor = None
    for name, (spelling, make_opt) in optimizers.items():
        prog = program(work, spelling, EXAMPLE, BATCH, "multi_fashion_dense")
        predictor = predictor or build_predictor(mtlc, prog, work, PREDICT_C, "dense_fashion")
        losses_ok, state_ok, pred_ok = compare(name, mtlc, prog, work, init_path, init, data, make_opt,
                                               "enc_first" if plant else "up_first", predictor)
        if plant:
            caught = not losses_ok
            print(f"planted reference bug (skip channels in the other order): {'caught' if caught else 'NOT caught'}")
            failures += 0 if caught else 1
        else:
            failures += 0 if (losses_ok and state_ok and pred_ok) else 1
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
