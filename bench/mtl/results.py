#!/usr/bin/python3
"""The results table of docs/mtl-results.md: every weighting method mtlc has x N seeds on
multi_fashion (examples/multi_fashion.mtl: LeNet-style trunk, two 10-way heads) and on
synthetic_mmoe at correlation 0.5 (examples/mmoe_synthetic.mtl: MMoE, two regression towers),
with single-task baselines; per task test accuracy / mse, Delta m against single-task, time per
epoch, each as mean +- sample std (n-1) over the seeds.

The methods are those the mtlc binary knows at run time: the list its own diagnostic gives for an
unknown `weighting` line (the vocabulary's rows), so methods added later appear without an edit
here. Each runs with its defaults. Per dataset:
  - `fixed` runs as `mtlc train --seeds N --single-task`: its own metrics and, per seed, the
    single-task baselines (each task alone, same settings and seed; SingleTask.h);
  - every other method as `mtlc train --seeds N`; its test metrics are the last test record of
    each seed's log (run.seedS.jsonl), its training time the run's "trained ... in Xs" line.
Delta m (LibMTL's definition, as --single-task prints it) is computed here per seed against the
baselines of the same seed, then averaged: (1/T) sum_t (-1)^l (M_t - B_t) / B_t, l = 1 for mse.
Time per epoch: the samples of one epoch over the run's training speed (samples/s of the training
loop, without compilation, loading and evaluation), so --steps runs give it too.

  python3 bench/mtl/results.py --mtlc build/mtlc [--epochs 10 | --epochs multi_fashion=2,synthetic_mmoe=100
      | --steps 20] [--seeds 3] [--threads 1] [--methods fixed,rlw,...]
      [--datasets multi_fashion,synthetic_mmoe] [--keep DIR] [--out FILE]

Runs go one at a time with --threads kernel threads (default 1), so the time column is one core's
time per epoch; the 1-minute load average at the start and the end is printed with the table
because on a shared machine it is what that time was measured under.

Plain python3, no third-party packages. A method that fails is listed with its error.
"""
import argparse
import json
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLES = os.path.join(HERE, "..", "..", "examples")
# name: (example program, train samples per epoch, test metric per task in task order)
DATASETS = {
    "multi_fashion": ("multi_fashion.mtl", 60000, ["accuracy", "accuracy"]),
    "synthetic_mmoe": ("mmoe_synthetic.mtl", 12000, ["mse", "mse"]),
}
LOWER_IS_BETTER = {"loss", "mse", "mae"}


def known_methods(mtlc, work):
    """The weighting names mtlc accepts: its diagnostic for an unknown one lists them all."""
    src = open(os.path.join(EXAMPLES, "mmoe_synthetic.mtl")).read()
    path = os.path.join(work, "probe.mtl")
    with open(path, "w") as f:
        f.write(set_weighting(src, "zzzz_no_such_method"))
    p = subprocess.run([mtlc, path], capture_output=True, text=True)
    m = re.search(r"the strategies are ([^\n]*)", p.stderr)
    if not m:
        sys.exit(f"cannot read the weighting names from mtlc's diagnostic:\n{p.stderr}")
    words = re.split(r",\s*|\s+and\s+", m.group(1).strip())
    return [w.strip().strip("'`") for w in words if w.strip()]


def set_weighting(src, method):
    return re.sub(r"^(\s*weighting\s+).*$", lambda m: m.group(1) + method, src, count=1, flags=re.M)


def run(mtlc, program, args, cwd):
    p = subprocess.run([mtlc, "train", program, "-q"] + args, capture_output=True, text=True, cwd=cwd)
    if p.returncode != 0:
        lines = [l for l in p.stderr.splitlines() if "error" in l] or p.stderr.splitlines() or ["?"]
        return None, lines[0][:160]
    return p.stdout, None


def last_test(log):
    last = None
    for line in open(log):
        r = json.loads(line)
        if "test" in r and "epoch" in r:
            last = r["test"]
    return last


def rates(stdout):
    """The samples/s of each run's 'trained N steps in Xs (R samples/s)' line, in order (the
    baselines print another form)."""
    return [float(r) for r in re.findall(r"^trained \d+ steps? in [0-9.]+s \(([0-9.]+) samples/s\)", stdout, re.M)]


def baselines(stdout, tasks):
    """Per seed (in run order): task -> metric -> the single-task column of --single-task's table."""
    out = []
    for chunk in re.split(r"^seed \d+ \(run \d+ of \d+\)$", stdout, flags=re.M)[1:]:
        b = {}
        for line in chunk.splitlines():
            cells = line.split()
            if len(cells) == 5 and cells[0] in tasks and (cells[4].endswith("%") or cells[4] == "undefined"):
                b.setdefault(cells[0], {})[cells[1]] = float(cells[3])
        out.append(b)
    return out


def delta_m(metrics, base, wanted):
    terms = []
    for task, metric in wanted:
        m, b = metrics[task][metric], base[task][metric]
        sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
        terms.append(sign * (m - b) / b if b else float("nan"))
    return sum(terms) / len(terms)


def ms(values, digits=4, scale=1.0):
    v = [x * scale for x in values if x is not None and math.isfinite(x)]
    if not v:
        return "-"
    sd = statistics.stdev(v) if len(v) > 1 else 0.0
    return f"{statistics.mean(v):.{digits}f} ± {sd:.{digits}f}"


def bench_dataset(a, mtlc, work, name, methods, progress):
    program_file, samples, metric_list = DATASETS[name]
    src = open(os.path.join(EXAMPLES, program_file)).read()
    tasks = re.findall(r"^task\s+(\w+)", src, re.M)
    wanted = list(zip(tasks, metric_list))
    budget, _ = budget_of(a, name)
    seeds = ["--seed", str(a.seed), "--seeds", str(a.seeds), "--threads", str(a.threads)]
    rows, base = [], None
    for method in methods:
        tag = re.sub(r"\W", "_", method)
        path = os.path.join(work, f"{name}_{tag}.mtl")
        with open(path, "w") as f:
            f.write(set_weighting(src, method))
        extra = ["--single-task"] if method == "fixed" else []
        t0 = time.time()
        stdout, error = run(mtlc, path, budget + seeds + extra + ["--log", f"{name}_{tag}.jsonl"], work)
        print(f"# {name} {method}: {'failed: ' + error if error else 'ok'} ({time.time() - t0:.0f} s)",
              file=sys.stderr)
        if error:
            rows.append((method, None, error))
            progress(wanted, rows, base)
            continue
        per_seed = []
        speeds = rates(stdout)
        for i in range(a.seeds):
            test = last_test(os.path.join(work, f"{name}_{tag}.seed{a.seed + i}.jsonl"))
            per_seed.append({t: test[t] for t in tasks} if test else None)
        if method == "fixed":
            base = baselines(stdout, tasks)
        per_epoch = [samples / r if r > 0 else float("nan") for r in speeds]
        rows.append((method, (per_seed, per_epoch), None))
        progress(wanted, rows, base)
    return wanted, rows, base


def epochs_per_dataset(text, names):
    """`10` (every dataset) or `multi_fashion=2,synthetic_mmoe=100`; every dataset run must be
    named, so the table always states its budget. A fraction (`multi_fashion=0.5`) trains that
    share of an epoch's steps, rounded up."""
    number = r"\d+(?:\.\d*)?"
    if re.fullmatch(number, text):
        return {n: float(text) for n in names}
    out = {}
    for item in text.split(","):
        m = re.fullmatch(rf"(\w+)=({number})", item.strip())
        if not m or m.group(1) not in DATASETS or float(m.group(2)) <= 0:
            sys.exit(f"--epochs: '{item}' is not N or DATASET=N, N > 0 (datasets: {', '.join(DATASETS)})")
        out[m.group(1)] = float(m.group(2))
    missing = [n for n in names if n not in out]
    if missing:
        sys.exit(f"--epochs: no epochs given for {', '.join(missing)}")
    return out


def budget_of(a, name):
    """mtlc's arguments for the dataset's training length, and the table's words for it."""
    if a.steps:
        return ["--steps", str(a.steps)], f"--steps {a.steps}"
    epochs = a.epochs[name]
    if epochs == int(epochs):
        return ["--epochs", str(int(epochs))], f"{int(epochs)} epoch{'' if epochs == 1 else 's'}"
    program_file, samples, _ = DATASETS[name]
    batch = int(re.search(r"^\s*batch\s+(\d+)", open(os.path.join(EXAMPLES, program_file)).read(), re.M).group(1))
    steps = math.ceil(epochs * samples / batch)
    return ["--steps", str(steps)], f"{epochs:g} epoch = {steps} steps of {batch}"


def table(name, wanted, rows, base, budget):
    head = " | ".join(f"{t} {m}" for t, m in wanted)
    lines = [f"### {name} ({budget})", "", f"| method | {head} | Δm % | s / epoch |",
             "| --- | " + " | ".join("---" for _ in wanted) + " | --- | --- |"]
    if base:
        cells = [ms([b[t][m] for b in base]) for t, m in wanted]
        lines.append(f"| single-task | {' | '.join(cells)} | 0 | - |")
    for method, result, error in rows:
        if error:
            lines.append(f"| {method} | " + " | ".join("-" for _ in wanted) + f" | failed: {error} | - |")
            continue
        per_seed, per_epoch = result
        cells = [ms([s[t][m] if s else None for s in per_seed]) for t, m in wanted]
        dms = [delta_m(s, b, wanted) if s and b else None for s, b in zip(per_seed, base or [])]
        lines.append(f"| {method} | {' | '.join(cells)} | {ms(dms, 2, 100.0)} | {ms(per_epoch, 2)} |")
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mtlc", default="build/mtlc")
    ap.add_argument("--epochs", default="10",
                    help="N for every dataset, or per dataset: multi_fashion=2,synthetic_mmoe=100 "
                         "(a fraction trains that share of an epoch's steps)")
    ap.add_argument("--steps", type=int, help="train this many steps instead of whole epochs")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1, help="the first seed")
    ap.add_argument("--threads", type=int, default=1, help="mtlc's --threads for every run")
    ap.add_argument("--methods", help="comma-separated (default: every method mtlc knows)")
    ap.add_argument("--datasets", default="multi_fashion,synthetic_mmoe")
    ap.add_argument("--keep", help="write the programs and logs here instead of a temp dir")
    ap.add_argument("--out", help="also write the table (markdown) to this file")
    a = ap.parse_args()
    names = a.datasets.split(",")
    for n in names:
        if n not in DATASETS:
            sys.exit(f"--datasets: unknown '{n}' (datasets: {', '.join(DATASETS)})")
    a.epochs = epochs_per_dataset(a.epochs, names)
    mtlc = os.path.abspath(a.mtlc)
    work = os.path.abspath(a.keep or tempfile.mkdtemp(prefix="mtl_results_"))
    os.makedirs(work, exist_ok=True)
    methods = a.methods.split(",") if a.methods else known_methods(mtlc, work)
    if "fixed" in methods:  # first: its --single-task run gives the baselines
        methods = ["fixed"] + [m for m in methods if m != "fixed"]
    else:
        methods = ["fixed"] + methods
    t0 = time.time()
    load0 = os.getloadavg()[0]
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    text = [f"seeds {a.seed}…{a.seed + a.seeds - 1}, --threads {a.threads}, one run at a time; test "
            f"metrics, Δm against single-task (positive: better) and training time per epoch, "
            f"mean ± sample std (n−1).\n"]
    for name in names:
        _, budget = budget_of(a, name)

        def progress(wanted, rows, base):  # --out holds the rows so far while the run goes on
            if a.out:
                with open(a.out, "w") as f:
                    f.write("\n".join(text + [table(name, wanted, rows, base, budget),
                                              f"(unfinished: {len(rows)} of {len(methods)} methods of "
                                              f"{name}, {time.time() - t0:.0f} s so far)\n"]))

        wanted, rows, base = bench_dataset(a, mtlc, work, name, methods, progress)
        text.append(table(name, wanted, rows, base, budget))
    text.append(f"({len(methods)} methods, started {started}, {time.time() - t0:.0f} s; 1-minute load "
                f"average {load0:.2f} at the start, {os.getloadavg()[0]:.2f} at the end; programs and "
                f"logs in {work})\n")
    out = "\n".join(text)
    print(out)
    if a.out:
        with open(a.out, "w") as f:
            f.write(out)


if __name__ == "__main__":
    main()
