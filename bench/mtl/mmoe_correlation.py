#!/usr/bin/python3
"""The MMoE paper's finding (Ma et al., KDD 2018, Fig. 4) on mtlc's synthetic_mmoe source.

Shared-bottom vs MMoE (8 experts of dense(16) -> relu, one softmax gate per task) at task
correlation 1.0, 0.5 and 0.0, several seeds each; both models have the same towers
(dense(8) -> relu -> dense(1)), mse loss, adam, batch 256 and the same number of epochs.
The shared-bottom width is chosen so that its total parameter count matches MMoE's as closely as
possible (the count printed by `mtlc` for each program is checked and reported).

Seed s sets both the data generator's seed (the task pair: u1, u2, alpha_i, beta_i; train and test
sources share it and draw their samples from separate streams) and the training seed (--seed s).

Plain python3, no third-party packages. Prints a markdown table of mean +- std test MSE,
averaged over the two tasks (std over seeds, sample std with n-1).

  python3 bench/mtl/mmoe_correlation.py --mtlc build/mtlc [--epochs 100] [--lr 0.001]
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

HEADER = """model {name}

input x : f32[{dim}]

shared {block} = x -> {bottom}
"""

TASK = """
task {t} {{
  {src} -> dense(8) -> relu -> dense(1)
  loss   mse
  metric mse
}}
"""

FOOTER = """
train {{
  optimizer adam(lr={lr})
  batch     256
  epochs    {epochs}
  weighting fixed
  seed      {seed}
}}

data {{
  train synthetic_mmoe(correlation={corr}, samples={samples}, dim={dim}, seed={seed})
  test  synthetic_mmoe(correlation={corr}, samples={test_samples}, dim={dim}, seed={seed})
  x  = x
  y1 = y1
  y2 = y2
}}
"""


def program(kind, corr, seed, a):
    if kind == "mmoe":
        block, bottom, src = "experts", "mixture(experts=8) { dense(16) -> relu }", "gate(experts)"
    else:
        block, bottom, src = "bottom", f"dense({a.width}) -> relu", "bottom"
    text = HEADER.format(name=f"{kind}_c{str(corr).replace('.', '_')}_s{seed}", dim=a.dim,
                         block=block, bottom=bottom)
    for t in ("y1", "y2"):
        text += TASK.format(t=t, src=src)
    text += FOOTER.format(lr=a.lr, epochs=a.epochs, seed=seed, corr=corr, samples=a.samples,
                          test_samples=a.test_samples, dim=a.dim)
    return text


def run(mtlc, path, log, seed, epochs):
    p = subprocess.run([mtlc, "train", path, "--log", log, "-q", "--seed", str(seed),
                        "--epochs", str(epochs)], capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"mtlc failed on {path} (exit {p.returncode}):\n{p.stderr}")
    m = re.search(r"\((\d+) parameters", p.stdout + p.stderr)
    params = int(m.group(1)) if m else None
    last = None
    with open(log) as f:
        for line in f:
            r = json.loads(line)
            if "test" in r and "epoch" in r:
                last = r
    if last is None:
        sys.exit(f"no test record in {log}")
    mse = [last["test"][t]["mse"] for t in ("y1", "y2")]
    return params, mse


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mtlc", default="build/mtlc")
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--lr", default="0.001")
    ap.add_argument("--width", type=int, default=126,
                    help="shared-bottom width (126 matches MMoE's parameter count)")
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--correlations", default="1.0,0.5,0.0")
    ap.add_argument("--samples", type=int, default=12000)
    ap.add_argument("--test-samples", type=int, default=2000)
    ap.add_argument("--dim", type=int, default=100)
    ap.add_argument("--keep", help="write the .mtl programs and logs here instead of a temp dir")
    a = ap.parse_args()
    mtlc = os.path.abspath(a.mtlc)
    seeds = [int(s) for s in a.seeds.split(",")]
    corrs = [float(c) for c in a.correlations.split(",")]
    kinds = ["shared_bottom", "mmoe"]

    tmp = a.keep or tempfile.mkdtemp(prefix="mtl_mmoe_")
    os.makedirs(tmp, exist_ok=True)
    res, params = {}, {}
    t0 = time.time()
    for corr in corrs:
        for kind in kinds:
            for seed in seeds:
                base = os.path.join(tmp, f"{kind}_c{corr}_s{seed}")
                with open(base + ".mtl", "w") as f:
                    f.write(program(kind, corr, seed, a))
                n, mse = run(mtlc, base + ".mtl", base + ".jsonl", seed, a.epochs)
                params[kind] = n
                res.setdefault((kind, corr), []).append(sum(mse) / 2)
                print(f"# {kind:13s} corr={corr} seed={seed}: y1 {mse[0]:.4f} y2 {mse[1]:.4f}",
                      file=sys.stderr)
    elapsed = time.time() - t0

    def ms(v):
        return f"{statistics.mean(v):.4f} ± {statistics.stdev(v) if len(v) > 1 else 0.0:.4f}"

    print(f"Test MSE (mean of the two tasks), mean ± std over seeds {a.seeds}; "
          f"{a.epochs} epochs, adam(lr={a.lr}), batch 256, {a.samples} train / "
          f"{a.test_samples} test samples, dim {a.dim}.")
    print(f"Parameters: shared-bottom (dense({a.width})) {params['shared_bottom']}, "
          f"MMoE (8 × dense(16)) {params['mmoe']}.\n")
    print("| correlation | shared-bottom | MMoE | MMoE − shared-bottom |")
    print("| --- | --- | --- | --- |")
    for corr in corrs:
        sb, mm = res[("shared_bottom", corr)], res[("mmoe", corr)]
        d = statistics.mean(mm) - statistics.mean(sb)
        print(f"| {corr} | {ms(sb)} | {ms(mm)} | {d:+.4f} |")
    print(f"\n({len(corrs) * len(kinds) * len(seeds)} runs in {elapsed:.0f} s; programs and logs in {tmp})")


if __name__ == "__main__":
    main()
