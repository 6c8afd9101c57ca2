# %% [markdown]
# # mtlc from Python: a numpy dataset, a compiled multi-task model, PyTorch and back
#
# Run it as a script (`PYTHONPATH=build/python /usr/bin/python3 examples/python/notebook.py`) or
# cell by cell (`# %%` marks the cells for Jupyter, VS Code and Spyder). It needs numpy and torch,
# nothing else: no pandas, no files.

# %%
import numpy as np
import torch
from torch import nn

import mtlc

# %% [markdown]
# ## A dataset in numpy
# 16 features per sample; two tasks read them: `kind`, one of four classes (the signs of two
# projections), and `score`, a smooth real-valued target. A fifth of the `score` labels are missing
# (NaN): they are left out of that task's loss and metrics.

# %%
rng = np.random.default_rng(0)
w_a, w_b = rng.normal(size=(2, 16))


def make(n):
    x = rng.normal(size=(n, 16)).astype(np.float32)
    kind = 2 * (x @ w_a > 0) + (x @ w_b > 0)
    score = np.tanh(x @ (w_a - w_b) / 4).astype(np.float32)
    score[rng.random(n) < 0.2] = np.nan
    return {"x": x, "kind": kind, "score": score}


train, test = make(4000), make(1000)

# %% [markdown]
# ## The model, compiled to native code
# The program needs no `data` block: `fit` takes the arrays.

# %%
PROGRAM = """
model toy
input x : f32[16]
shared trunk = x -> dense(64) -> relu -> dense(32) -> relu
task kind {
  trunk -> dense(4)
  loss   cross_entropy
  metric accuracy
}
task score {
  trunk -> dense(1)
  loss   mse
  weight 0.5
  metric mae
}
train {
  optimizer adam(lr=0.003)
  batch     64
  epochs    4
  seed      1
  weighting uncertainty
}
"""
model = mtlc.compile(source=PROGRAM, quiet=True)
print(model)

# %%
history = model.fit(train, test=test)  # 4 epochs, as the program says; test metrics after each
for record in history["epochs"]:
    print("epoch", record["epoch"], record["test"])
print("steps:", len(history["steps"]), "last step's task weights:",
      {t: round(v["weight"], 3) for t, v in history["steps"][-1]["tasks"].items()})
accuracy = model.evaluate(test)["kind"]["accuracy"]
assert accuracy > 0.8, accuracy

# %% [markdown]
# ## Into PyTorch
# The state dict has PyTorch's names and layouts (`trunk.0.weight` is `[64, 16]`, as nn.Linear
# keeps it); torch.from_numpy takes its arrays without copying.

# %%
net = nn.ModuleDict({
    "trunk": nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU()),
    "kind": nn.Sequential(nn.Linear(32, 4)),
    "score": nn.Sequential(nn.Linear(32, 1)),
})
net.load_state_dict({name: torch.from_numpy(a) for name, a in model.state_dict().items()})

predicted = model.predict({"x": test["x"]})
with torch.no_grad():
    z = net["trunk"](torch.from_numpy(test["x"]))
    for task in ("kind", "score"):
        gap = np.abs(net[task](z).numpy() - predicted[task]).max()
        print(f"{task}: PyTorch and mtlc outputs differ by at most {gap:.2e}")
        assert gap < 1e-4

# %% [markdown]
# ## Fine-tune the `kind` head in PyTorch, then back into mtlc

# %%
opt = torch.optim.SGD(net["kind"].parameters(), lr=0.05)
x, y = torch.from_numpy(train["x"]), torch.from_numpy(train["kind"])
for _ in range(20):
    opt.zero_grad()
    loss = nn.functional.cross_entropy(net["kind"](net["trunk"](x).detach()), y)
    loss.backward()
    opt.step()
model.load_state_dict(net.state_dict())  # torch tensors go in as they are
with torch.no_grad():
    torch_kind = net["kind"](net["trunk"](torch.from_numpy(test["x"]))).numpy()
gap = np.abs(model.predict({"x": test["x"]})["kind"] - torch_kind).max()
print(f"after fine-tuning in PyTorch: mtlc reproduces its outputs within {gap:.2e}")
assert gap < 1e-4
print("test after the round trip:", model.evaluate(test))
