"""Cross-check of the `mtan` block (MTAN: Liu, Johns & Davison, "End-to-End Multi-Task Learning
with Attention", CVPR 2019) against a torch.nn module written from the paper: same safetensors
init, same batches in file order, three tasks (one with partial labels), adam and sgd, and one run
under pcgrad.

usage: mtan_parity.py MTLC_BINARY WORK_DIR
Exit 0 = agree (and every planted mistake caught), 1 = not, 77 = skipped (no torch for this
python, no Fashion-MNIST files).

The reference follows the paper's equations with the choices docs/mtl-architectures.md ("MTAN")
states, and takes nothing else from mtlc:
  p_j        the output of shared stage j (the stages run once; every task reads them)
  a_t^j      = h_t^j(g_t^j(p_1))                for j = 1,
               h_t^j(g_t^j([p_j ; f_t^{j-1}]))  for j > 1 (channel concatenation, p_j first)
             with g = conv1x1 (-> C_j, no bias) -> BN -> ReLU and h = conv1x1 (-> C_j, no bias) ->
             BN -> sigmoid
  â_t^j      = a_t^j * p_j (elementwise)
  f_t^j      = conv3x3 (padding 1, -> C_{j+1}, no bias) -> BN -> ReLU (task t's own), then a 2x2
               max-pool when stage j+1 halves the size
  column(B)  = â_t^J
Parameters are named as this module's state_dict names them: B.stages.j.k, B.attention.<t>.j.k,
B.down.<t>.j.k (k the index in the Sequential). Losses are batch means over the present labels
(NaN: absent), the total sum_t w_t L_t. pcgrad (Yu et al. 2020) projects the per-task gradients
of the shared parameters (those two or more tasks' losses reach, found here with autograd) in
mtlc's seeded order (weighting_parity.py's reference).

Checks: per-step task losses within 2e-4 relative; final parameters and batchnorm running
statistics within 1e-4 absolute. The reference runs in float64 (the module after .double()). Adam
runs at lr 1e-4: it divides each gradient by its own running size, so float32 rounding in a
gradient that is small and noisy (a batchnorm's input conv, a sigmoid's saturated channels) becomes
a full-size step; at lr 1e-3 mtlc and the float64 reference agree to 1e-6 for six steps and then
drift apart by rounding alone (resnet_parity.py explains the same floor for its ResNet). Sgd runs
at lr 3e-4 with momentum 0.9: at lr 1e-3 the two agree to 1e-7 for ten steps, then one
pre-activation within float32 rounding of zero falls on the other side of a relu (a jump of 1e-5
at step 11) and the difference grows to 4e-3 by step 24.
Planted mistakes in the reference (the attention without its sigmoid; [f ; p] in place of
[p ; f]) must each exceed the loss tolerance.
"""
import os
import sys

try:
    import numpy as np
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError:
    print("SKIP: torch is not installed for", sys.executable)
    sys.exit(77)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from resnet_parity import fashion_setup, load_checkpoint, mtlc_train, save_init, state_errors, worst_loss_error  # noqa: E402
from weighting_parity import pcgrad_backward, pcgrad_orders  # noqa: E402

STEPS, BATCH, SEED = 24, 32, 7
REL_TOL, PARAM_TOL = 2e-4, 1e-4
TASKS = ["category", "footwear", "ink"]
WEIGHTS = {"category": 1.0, "footwear": 0.5, "ink": 2.0}
OPTIMIZERS = {
    "adam": ("adam(lr=0.0001)", lambda p: torch.optim.Adam(p, lr=0.0001)),
    "sgd": ("sgd(lr=0.0003, momentum=0.9)", lambda p: torch.optim.SGD(p, lr=0.0003, momentum=0.9)),
}

# Stage outputs [6, 16, 16], [8, 8, 8] (halved), [8, 8, 8] (same size); a layer before the block.
# A conv2d before a batchnorm has no bias: the normalisation cancels it, its gradient is rounding
# noise, and adam would turn that noise into steps of size lr in either implementation.
PROGRAM = """model mtan_parity
input image : f32[1, 16, 16]
shared trunk = image -> conv2d(4, kernel=3, padding=1) -> relu -> mtan {
    conv2d(6, kernel=3, padding=1, bias=false) -> batchnorm -> relu ;
    maxpool(2) -> conv2d(8, kernel=3, padding=1) -> relu ;
    conv2d(8, kernel=3, padding=1, bias=false) -> batchnorm -> relu
  }
task category { column(trunk) -> maxpool(2) -> flatten -> dense(10)  loss cross_entropy }
task footwear { column(trunk) -> global_avgpool -> dense(1)  loss bce  weight 0.5 }
task ink { column(trunk) -> flatten -> dense(1)  loss mse  weight 2 }
train {
  optimizer OPTIMIZER
  batch BATCH
  epochs 1
  weighting WEIGHTING
  shuffle false
  seed SEED
}
data {
  train npz("mtan_data.npz")
  image = x
  category = category
  footwear = footwear
  ink = ink
}
"""


class MtanBlock(nn.Module):
    """The paper's network: shared stages, per task an attention module per stage and f between."""

    def __init__(self, tasks, stages, channels, halves, plant=None):
        super().__init__()
        self.plant = plant
        self.stages = nn.ModuleList(stages)
        self.halves = halves  # halves[j]: stage j+1 has half stage j's height and width

        def attention(cin, c):
            squash = nn.Identity() if plant == "no_sigmoid" else nn.Sigmoid()
            return nn.Sequential(nn.Conv2d(cin, c, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU(),
                                 nn.Conv2d(c, c, 1, bias=False), nn.BatchNorm2d(c), squash)

        def down(c, cnext, halve):
            layers = [nn.Conv2d(c, cnext, 3, padding=1, bias=False), nn.BatchNorm2d(cnext), nn.ReLU()]
            return nn.Sequential(*(layers + [nn.MaxPool2d(2)] if halve else layers))

        self.attention = nn.ModuleDict({t: nn.ModuleList(
            [attention(c if j == 0 else 2 * c, c) for j, c in enumerate(channels)]) for t in tasks})
        self.down = nn.ModuleDict({t: nn.ModuleList(
            [down(channels[j], channels[j + 1], halves[j]) for j in range(len(channels) - 1)]) for t in tasks})

    def forward(self, x):
        p = []
        for stage in self.stages:
            x = stage(x)
            p.append(x)
        out = {}
        for t in self.attention:
            f = None
            for j, pj in enumerate(p):
                if f is None:
                    g_in = pj
                else:
                    g_in = torch.cat([f, pj] if self.plant == "concat_order" else [pj, f], dim=1)
                attended = self.attention[t][j](g_in) * pj
                if j + 1 < len(p):
                    f = self.down[t][j](attended)
            out[t] = attended
        return out


class MtanParity(nn.Module):
    """PROGRAM as torch.nn modules, named as mtlc names its parameters."""

    def __init__(self, plant=None):
        super().__init__()
        stages = [nn.Sequential(nn.Conv2d(4, 6, 3, padding=1, bias=False), nn.BatchNorm2d(6), nn.ReLU()),
                  nn.Sequential(nn.MaxPool2d(2), nn.Conv2d(6, 8, 3, padding=1), nn.ReLU()),
                  nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU())]
        self.trunk = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(),
                                   MtanBlock(TASKS, stages, [6, 8, 8], [True, False], plant))
        self.category = nn.Sequential(nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8 * 4 * 4, 10))
        self.footwear = nn.Sequential(nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()), nn.Linear(8, 1))
        self.ink = nn.Sequential(nn.Flatten(), nn.Linear(8 * 8 * 8, 1))

    def forward(self, x):
        cols = self.trunk(x)
        return {t: getattr(self, t)(cols[t]) for t in TASKS}


def make_data(work):
    """The first STEPS*BATCH Fashion-MNIST images cropped to 16x16; `footwear` absent (NaN) for
    every third sample; `ink` the crop's mean pixel. Written as the program's npz source."""
    images, labels = fashion_setup(work, STEPS * BATCH)
    x = images[:, :, 6:22, 6:22].contiguous()
    foot = ((labels == 5) | (labels == 7) | (labels == 9)).float().unsqueeze(1)
    foot[1::3] = float("nan")
    ink = x.mean(dim=(1, 2, 3)).unsqueeze(1)
    np.savez(os.path.join(work, "mtan_data.npz"), x=x.numpy(), category=labels.numpy().astype(np.int64),
             footwear=foot.numpy(), ink=ink.numpy())
    return x, labels, foot, ink


def batch_losses(model, x, labels, foot, ink):
    out = model(x)
    present = ~torch.isnan(foot[:, 0])
    bce = (F.binary_cross_entropy_with_logits(out["footwear"][present], foot[present]) if present.any()
           else out["footwear"].sum() * 0)
    return {"category": F.cross_entropy(out["category"], labels), "footwear": bce,
            "ink": F.mse_loss(out["ink"], ink)}


def torch_train(data, init, make_opt, weighting, plant=None):
    x_all, labels_all, foot_all, ink_all = data
    model = MtanParity(plant).double()
    model.load_state_dict(init)
    model.train()
    params = dict(model.named_parameters())
    opt = make_opt(params.values())
    shared = None
    losses = []
    for step in range(STEPS):
        rows = slice(step * BATCH, (step + 1) * BATCH)
        l = batch_losses(model, x_all[rows].double(), labels_all[rows], foot_all[rows].double(),
                         ink_all[rows].double())
        L = [l[t] for t in TASKS]
        w = torch.tensor([WEIGHTS[t] for t in TASKS], dtype=torch.float64)
        opt.zero_grad()
        if weighting == "pcgrad":
            if shared is None:  # the parameters two or more tasks' losses reach
                reach = {n: 0 for n in params}
                for Li in L:
                    gs = torch.autograd.grad(Li, list(params.values()), retain_graph=True, allow_unused=True)
                    for n, g in zip(params, gs):
                        reach[n] += g is not None
                shared = {n for n, r in reach.items() if r >= 2}
            pcgrad_backward(L, params, shared, w, pcgrad_orders(SEED, step + 1, len(TASKS)),
                            {"projections": 0, "order_matters": 0})
        else:
            sum(w[i] * L[i] for i in range(len(TASKS))).backward()
        opt.step()
        losses.append({t: v.item() for t, v in l.items()})
    return losses, {k: v.detach().clone() for k, v in model.state_dict().items()}, shared


def write_program(work, name, spelling, weighting):
    prog = os.path.join(work, f"{name}.mtl")
    with open(prog, "w") as f:
        f.write(PROGRAM.replace("OPTIMIZER", spelling).replace("BATCH", str(BATCH))
                .replace("WEIGHTING", weighting).replace("SEED", str(SEED)))
    return prog


def compare(name, mtlc, work, init_path, init, data, spelling, make_opt, weighting):
    prog = write_program(work, name, spelling, weighting)
    steps, final = mtlc_train(name, mtlc, prog, work, init_path, STEPS)
    ref_losses, ref_state, shared = torch_train(data, init, make_opt, weighting)
    worst_loss = worst_loss_error(steps, ref_losses)
    worst_param, worst_stat = state_errors(load_checkpoint(name, final, ref_state), ref_state)
    ok = worst_loss <= REL_TOL and worst_param <= PARAM_TOL and worst_stat <= PARAM_TOL
    print(f"{name:6s} steps {STEPS}  task losses max rel {worst_loss:.2e} (<= {REL_TOL:g})  params max abs "
          f"{worst_param:.2e}  running stats {worst_stat:.2e} (<= {PARAM_TOL:g})  "
          + "  ".join(f"{t} {steps[0]['tasks'][t]['loss']:.4f} -> {steps[-1]['tasks'][t]['loss']:.4f}" for t in TASKS)
          + (f"  shared tensors {len(shared)}" if shared else "") + f"  {'ok' if ok else 'FAIL'}")
    return ok, steps


def check_planted(steps, data, init, plant):
    """The reference with a planted mistake must disagree with mtlc's adam run beyond the tolerance."""
    spelling, make_opt = OPTIMIZERS["adam"]
    ref_losses, _, _ = torch_train(data, init, make_opt, "fixed", plant)
    worst = worst_loss_error(steps, ref_losses)
    caught = worst > REL_TOL
    print(f"planted reference mistake '{plant}': task losses max rel {worst:.2e}  "
          f"{'caught' if caught else 'NOT caught'}")
    return caught


def main():
    mtlc, work = sys.argv[1], sys.argv[2]
    data = make_data(work)
    init, init_path = save_init(work, MtanParity)
    failures = 0
    adam_steps = None
    for name, (spelling, make_opt) in OPTIMIZERS.items():
        ok, steps = compare(name, mtlc, work, init_path, init, data, spelling, make_opt, "fixed")
        failures += 0 if ok else 1
        adam_steps = adam_steps or steps
    spelling, make_opt = OPTIMIZERS["adam"]
    ok, _ = compare("pcgrad", mtlc, work, init_path, init, data, spelling, make_opt, "pcgrad")
    failures += 0 if ok else 1
    for plant in ["no_sigmoid", "concat_order"]:
        failures += 0 if check_planted(adam_steps, data, init, plant) else 1
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
