#!/usr/bin/python3
"""Data-parallel scaling: samples/s of `mtlc train` on 1 process and under `mpirun -np N`.

    /usr/bin/python3 bench/data_parallel.py [--build DIR] [--ranks 1,2] [--batch 256] [--steps 60]
                                            [--reps 3] [--threads 1] [--btl vader,tcp]
                                            [--model FILE.mtl] [--json]

Trains the MLP of bench/models/mlp.mtl (784 → 256 → 128, a 10-way and a binary head, sgd with
momentum) on Fashion-MNIST at the given GLOBAL batch (a copy of the program with `batch` replaced),
`--steps` optimizer steps per run, and reads the throughput `mtlc train` reports for its training
loop (data loading, compilation and MPI start-up excluded; on N ranks every sample of the global
batch is counted once), and on more than one rank the time rank 0 spent in collectives (the
transfers and waiting for the other ranks). "1 process" is plain `mtlc train`; "N ranks" is
`mpirun --oversubscribe --bind-to none -np N mtlc train`. Each number is the median of --reps
runs; every process runs its kernels on --threads threads (default 1: ranks × 1 thread against one
process on 1 thread). --btl compares Open MPI transports (`--mca btl self,X` for each X); --model
trains another program (the flagship: examples/fashion.mtl). The 1-minute load average before each
run is printed with it, since on a shared machine the ranks compete with whatever else runs.
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_once(cmd, cwd):
    p = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if p.returncode != 0:
        sys.exit(f"data_parallel.py: {' '.join(cmd)} failed (exit {p.returncode}):\n{p.stderr}{p.stdout}")
    m = re.search(r"trained (\d+) steps? in [\d.]+s \((\d+) samples/s\)", p.stdout)
    if not m:
        sys.exit(f"data_parallel.py: no throughput in the output of {' '.join(cmd)}:\n{p.stdout}")
    c = re.search(r"data-parallel: ([\d.]+) ms/step \((\d+)%\) in collectives", p.stdout)
    return int(m.group(2)), (float(c.group(1)), int(c.group(2))) if c else None


def main():
    ap = argparse.ArgumentParser(description="mtlc data-parallel scaling (see the module docstring)")
    ap.add_argument("--build", default=os.path.join(ROOT, "build"), help="build directory (default: build)")
    ap.add_argument("--ranks", default="1,2", help="rank counts to run under mpirun (default 1,2)")
    ap.add_argument("--batch", type=int, default=256, help="global batch (default 256)")
    ap.add_argument("--steps", type=int, default=60, help="optimizer steps per run (default 60)")
    ap.add_argument("--reps", type=int, default=3, help="runs per configuration (default 3)")
    ap.add_argument("--btl", default="",
                    help="Open MPI transports to compare, e.g. vader,tcp: each rank count runs once per "
                         "transport with `--mca btl self,X` (default: Open MPI's own choice)")
    ap.add_argument("--model", default=os.path.join(ROOT, "bench", "models", "mlp.mtl"),
                    help="the program to train (its `batch` is replaced; default bench/models/mlp.mtl)")
    ap.add_argument("--threads", type=int, default=1, help="kernel threads of every process (default 1)")
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    a = ap.parse_args()
    mtlc = os.path.abspath(os.path.join(a.build, "mtlc"))
    if not os.path.exists(mtlc):
        sys.exit(f"data_parallel.py: {mtlc} not found (build first, or pass --build DIR)")
    # Open MPI refuses to start as root without these.
    os.environ.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    with open(a.model) as f:
        program = re.sub(r"(?m)^(\s*batch\s+)\d+", rf"\g<1>{a.batch}", f.read())
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        # Beside the original, so that paths in it (relative to the program's folder) still resolve.
        path = os.path.join(os.path.dirname(os.path.abspath(a.model)), ".data_parallel_bench.mtl")
        with open(path, "w") as f:
            f.write(program)
        try:
            run_configs(a, mtlc, path, tmp, results)
        finally:
            os.remove(path)
    report(a, results)


def run_configs(a, mtlc, path, tmp, results):
    train = [mtlc, "train", path, "--steps", str(a.steps), "-q", "--threads", str(a.threads)]
    configs = [("1 process", 1, train)]
    for n in [int(x) for x in a.ranks.split(",")]:
        for btl in a.btl.split(",") if a.btl else [""]:
            mca = ["--mca", "btl", "self," + btl] if btl else []
            configs.append((f"{n} rank{'s' if n > 1 else ''} (mpirun{', ' + btl if btl else ''})", n,
                            ["mpirun", "--oversubscribe", "--bind-to", "none", "-np", str(n)] + mca + train))
    for label, n, cmd in configs:
        rates, loads, comm = [], [], []
        for _ in range(a.reps):
            loads.append(os.getloadavg()[0])
            rate, c = run_once(cmd, tmp)
            rates.append(rate)
            if c:
                comm.append(c)
        results.append({"config": label, "ranks": n, "batch": a.batch, "steps": a.steps,
                        "samples_per_s": statistics.median(rates), "runs": rates, "load_before": loads,
                        "collective_ms_per_step": [c[0] for c in comm],
                        "collective_share_percent": [c[1] for c in comm]})
        print(f"  {label}: {rates} samples/s, load {loads}", file=sys.stderr, flush=True)


def report(a, results):
    if a.json:
        print(json.dumps({"cpus": os.cpu_count(), "results": results}, indent=2))
        return
    base = results[0]["samples_per_s"]
    print(f"{os.path.relpath(a.model, ROOT)}, global batch {a.batch}, {a.steps} steps per run, median of {a.reps}; "
          f"{os.cpu_count()} CPUs\n")
    print("| configuration | samples/s | vs 1 process | rank 0 in collectives, ms/step (share) | "
          "load average before the runs |")
    print("| --- | ---: | ---: | --- | --- |")
    for r in results:
        comm = ", ".join(f"{m:.2f} ({p}%)" for m, p in zip(r["collective_ms_per_step"], r["collective_share_percent"]))
        print(f"| {r['config']} | {r['samples_per_s']:,.0f} | {r['samples_per_s'] / base:.2f}× | {comm or '-'} | "
              f"{', '.join(f'{x:.1f}' for x in r['load_before'])} |")


if __name__ == "__main__":
    main()
