#!/usr/bin/python3
"""examples/multi_fashion.mtl trained with different loss-weighting strategies.

Copies the example into a temp dir with its `weighting` line replaced (everything else as in the
example: LeNet-style trunk, two 10-way heads, adam(lr=0.001), batch 256), trains each copy with
`mtlc train --epochs N` (or `--steps N`), and prints a markdown table of per-task test accuracy
(the last epoch record of the log). Plain python3, no third-party packages.

  python3 bench/mtl/multi_fashion_weighting.py --mtlc build/mtlc [--epochs 1]
      [--strategies fixed,uncertainty,mgda,pcgrad] [--seeds 3]
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

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLE = os.path.join(HERE, "..", "..", "examples", "multi_fashion.mtl")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mtlc", default="build/mtlc")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--steps", type=int, help="train this many steps instead of whole epochs")
    ap.add_argument("--strategies", default="fixed,uncertainty,mgda,pcgrad")
    ap.add_argument("--seeds", default="3")
    ap.add_argument("--keep", help="write the .mtl programs and logs here instead of a temp dir")
    a = ap.parse_args()
    mtlc = os.path.abspath(a.mtlc)
    src = open(EXAMPLE).read()
    if not re.search(r"^\s*weighting\s+\S+", src, re.M):
        sys.exit("no weighting line in the example")
    tmp = a.keep or tempfile.mkdtemp(prefix="mtl_mf_")
    os.makedirs(tmp, exist_ok=True)
    strategies = a.strategies.split(",")
    seeds = [int(s) for s in a.seeds.split(",")]
    res = {}
    t0 = time.time()
    for w in strategies:
        text = re.sub(r"^(\s*weighting\s+).*$", lambda m: m.group(1) + w, src, count=1, flags=re.M)
        name = re.sub(r"\W", "_", w)
        path = os.path.join(tmp, f"multi_fashion_{name}.mtl")
        with open(path, "w") as f:
            f.write(text)
        for seed in seeds:
            log = os.path.join(tmp, f"multi_fashion_{name}_s{seed}.jsonl")
            cmd = [mtlc, "train", path, "--log", log, "-q", "--seed", str(seed)]
            cmd += ["--steps", str(a.steps)] if a.steps else ["--epochs", str(a.epochs)]
            t = time.time()
            p = subprocess.run(cmd, capture_output=True, text=True)
            if p.returncode != 0:
                sys.exit(f"mtlc failed for weighting {w} (exit {p.returncode}):\n{p.stderr}")
            last = None
            for line in open(log):
                r = json.loads(line)
                if "test" in r and "epoch" in r:
                    last = r
            if last is None:
                sys.exit(f"no test record in {log}")
            acc = (last["test"]["left"]["accuracy"], last["test"]["right"]["accuracy"])
            res.setdefault(w, []).append(acc)
            print(f"# {w:12s} seed={seed}: left {acc[0]:.4f} right {acc[1]:.4f}  ({time.time() - t:.0f} s)",
                  file=sys.stderr)
    elapsed = time.time() - t0

    def ms(v):
        m = statistics.mean(v)
        return f"{m:.4f} ± {statistics.stdev(v):.4f}" if len(v) > 1 else f"{m:.4f}"

    budget = f"--steps {a.steps}" if a.steps else f"{a.epochs} epoch(s)"
    print(f"multi_fashion test accuracy, {budget}, seed(s) {a.seeds}; adam(lr=0.001), batch 256.\n")
    print("| weighting | left | right | mean |")
    print("| --- | --- | --- | --- |")
    for w in strategies:
        v = res[w]
        print(f"| {w} | {ms([x[0] for x in v])} | {ms([x[1] for x in v])} | "
              f"{ms([(x[0] + x[1]) / 2 for x in v])} |")
    print(f"\n({len(strategies) * len(seeds)} runs in {elapsed:.0f} s; programs and logs in {tmp})")


if __name__ == "__main__":
    main()
