"""The cost of training through `import mtlc` rather than `mtlc train` (issue 28: under 2%).

usage: PYTHONPATH=build/python /usr/bin/python3 bench/python_overhead.py build/mtlc
           [--model examples/fashion.mtl] [--steps 300] [--reps 11] [--threads 1]

Both sides train the same program for the same steps on the same thread count from its own data
(loading it, training, the test evaluation at the end), each in a fresh process.

- fit: the call alone, timed inside a fresh interpreter (the model compiled before it).
- mtlc train: `mtlc train MODEL --steps S --threads T -q` less a compile-only run of the same
  program (`mtlc MODEL`, held to one CPU so that LLVM compiles on one thread, as `--threads 1`
  does): what is left is the same work as fit's, without the process's start, compile and exit.

Wall-clock and CPU time (user + system, every thread) are both taken: on a shared machine the CPU
time is the steadier. Runs alternate, and the minimum of each side is compared (the least
disturbed run); the median of each run's own ratio is printed too. The fit side also writes the
trainer's state (what the next fit continues from) and returns the log's records: both are in its
time.
"""
import argparse
import os
import resource
import statistics
import subprocess
import sys
import time

FIT = """
import resource, sys, time
import mtlc
model, steps, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
m = mtlc.compile(model, threads=threads, quiet=True)
cpu = lambda: sum(resource.getrusage(resource.RUSAGE_SELF)[:2])
t0, c0 = time.perf_counter(), cpu()
m.fit(steps=steps)
print(time.perf_counter() - t0, cpu() - c0)
"""


def children_cpu():
    return sum(resource.getrusage(resource.RUSAGE_CHILDREN)[:2])


def process_run(argv):
    """(wall, CPU) seconds of a process."""
    t0, c0 = time.perf_counter(), children_cpu()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0, children_cpu() - c0


def fit_run(model, steps, threads):
    """(wall, CPU) seconds of the fit call, in a fresh interpreter."""
    r = subprocess.run([sys.executable, "-c", FIT, model, str(steps), str(threads)], check=True,
                       capture_output=True, text=True)
    wall, cpu = r.stdout.split()[-2:]
    return float(wall), float(cpu)


def measure(a):
    """Alternating runs: {side: [(wall, cpu), ...]}."""
    train = [a.mtlc, "train", a.model, "--steps", str(a.steps), "--threads", str(a.threads), "-q"]
    runs = {"train": [], "compile": [], "fit": []}
    for rep in range(a.reps):
        runs["train"].append(process_run(train))
        runs["compile"].append(process_run(["taskset", "-c", "0", a.mtlc, a.model]))
        runs["fit"].append(fit_run(a.model, a.steps, a.threads))
        print(f"rep {rep + 1}: " + ", ".join(f"{side} {r[-1][0]:.3f} s (CPU {r[-1][1]:.3f} s)"
                                             for side, r in runs.items()), flush=True)
    return runs


def report(runs, k, what):
    side = {s: [r[k] for r in rs] for s, rs in runs.items()}
    cli = [t - min(side["compile"]) for t in side["train"]]
    fit = side["fit"]
    print(f"{what}: mtlc train {min(side['train']):.3f} s less compile-only {min(side['compile']):.3f} s: "
          f"{min(cli):.3f} s (median {statistics.median(cli):.3f}); fit {min(fit):.3f} s "
          f"(median {statistics.median(fit):.3f})")
    # Each run's own three processes ran within seconds of each other: a slow phase hits all three.
    paired = [f / (t - c) for f, t, c in zip(fit, side["train"], side["compile"])]
    print(f"  overhead of fit: {100 * (min(fit) / min(cli) - 1):+.2f}% (minima), "
          f"{100 * (statistics.median(fit) / statistics.median(cli) - 1):+.2f}% (medians), "
          f"{100 * (statistics.median(paired) - 1):+.2f}% (median of each run's own ratio)")


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser()
    ap.add_argument("mtlc")
    ap.add_argument("--model", default=os.path.join(root, "examples", "fashion.mtl"))
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--reps", type=int, default=11)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    load = os.getloadavg()[0]
    runs = measure(a)
    print(f"{os.path.basename(a.model)}, {a.steps} steps, {a.threads} thread(s), {a.reps} runs each; "
          f"1-minute load average {load:.1f} before, {os.getloadavg()[0]:.1f} after")
    report(runs, 0, "wall")
    report(runs, 1, "CPU")


if __name__ == "__main__":
    sys.exit(main())
