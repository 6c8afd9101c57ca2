#!/usr/bin/python3
"""Each weighting method's cost per step against `fixed` on the flagship (examples/fashion.mtl,
batch 64): the training speed `mtlc train` reports (samples/s of its training loop: compile,
loading and evaluation excluded) for --steps optimizer steps on one thread, the median of --reps
runs per method, in one run of this script so that every method meets the same machine.

  python3 bench/mtl/method_cost.py --mtlc build/mtlc [--steps 200] [--reps 3] [--methods a,b]

The methods are those mtlc knows (results.py reads them from its own diagnostic); each runs with
its defaults. Prints a markdown table: ms per step, and the ratio to `fixed`.
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from results import known_methods, set_weighting  # noqa: E402

FLAGSHIP = os.path.join(HERE, "..", "..", "examples", "fashion.mtl")
BATCH = 64


def ms_per_step(mtlc, path, steps):
    p = subprocess.run([mtlc, "train", path, "--steps", str(steps), "--threads", "1", "-q"],
                       capture_output=True, text=True)
    m = re.search(r"trained \d+ steps? in [\d.]+s \((\d+) samples/s\)", p.stdout)
    if p.returncode != 0 or not m:
        return None, (p.stderr.strip().splitlines() or ["no output"])[-1]
    return 1000.0 * BATCH / int(m.group(1)), None


def main():
    ap = argparse.ArgumentParser(description="cost per step of each weighting on the flagship")
    ap.add_argument("--mtlc", required=True)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--methods", default="")
    a = ap.parse_args()
    mtlc = os.path.abspath(a.mtlc)
    src = open(FLAGSHIP).read()
    with tempfile.TemporaryDirectory() as work:
        methods = a.methods.split(",") if a.methods else known_methods(mtlc, work)
        rows = []
        for method in methods:
            path = os.path.join(work, f"{method}.mtl")
            with open(path, "w") as f:
                f.write(set_weighting(src, method))
            times, error = [], None
            for _ in range(a.reps):
                t, error = ms_per_step(mtlc, path, a.steps)
                if t is None:
                    break
                times.append(t)
            rows.append((method, statistics.median(times) if times else None, error))
            print(f"  {method}: {times or error}", file=sys.stderr, flush=True)
    base = next((t for m, t, _ in rows if m == "fixed"), None)
    print(f"flagship (examples/fashion.mtl), batch {BATCH}, {a.steps} steps, 1 thread, median of {a.reps}\n")
    print("| weighting | ms/step | vs fixed |")
    print("| --- | ---: | ---: |")
    for m, t, err in rows:
        if t is None:
            print(f"| {m} | failed: {err} | |")
        else:
            print(f"| {m} | {t:.2f} | {t / base:.2f}× |" if base else f"| {m} | {t:.2f} | |")


if __name__ == "__main__":
    main()
