#!/usr/bin/python3
"""Data-parallel scaling: samples/s of `mtlc train` on 1 process and under `mpirun -np N`.

    /usr/bin/python3 bench/data_parallel.py [--build DIR] [--ranks 1,2] [--batch 256] [--steps 60]
                                            [--reps 3] [--threads 1] [--btl vader,tcp] [--sum shared,mpi]
                                            [--model FILE.mtl] [--json] [--cost-model]
    /usr/bin/python3 bench/data_parallel.py --allreduce-sweep [--reps 3] [--json]

Trains the MLP of bench/models/mlp.mtl (784 → 256 → 128, a 10-way and a binary head, sgd with
momentum) on Fashion-MNIST at the given GLOBAL batch (a copy of the program with `batch` replaced),
`--steps` optimizer steps per run, and reads the throughput `mtlc train` reports for its training
loop (data loading, compilation and MPI start-up excluded; on N ranks every sample of the global
batch is counted once), and on more than one rank the time rank 0 spent in collectives (the
transfers and waiting for the other ranks). "1 process" is plain `mtlc train`; "N ranks" is
`mpirun --oversubscribe --bind-to none -np N mtlc train`. Each number is the median of --reps
runs; every process runs its kernels on --threads threads (default 1: ranks × 1 thread against one
process on 1 thread). --sum compares the gradient sums on several ranks (MTLC_GRADIENT_SUM: shared,
mtlc's default on one machine, or mpi); --btl compares Open MPI transports (`--mca btl self,X` for
each X: the MPI sum's and every rank's small collectives'); --model
trains another program (the flagship: examples/fashion.mtl). The 1-minute load average before each
run is printed with it, since on a shared machine the ranks compete with whatever else runs. The
configurations alternate run by run (every configuration once per repetition).

--cost-model adds what bench/dp_model.py needs (one process at half the batch, two such processes
side by side, the parameter count, bench/allreduce_time per transport and bench/shared_sum_time);
with --json the output is the file dp_model.py reads.
--allreduce-sweep times bench/allreduce_time under the Open MPI configurations of SWEEP instead
(docs/data-parallel.md, Transport).
"""
import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_once(cmd, cwd):
    p = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if p.returncode != 0:
        sys.exit(f"data_parallel.py: {' '.join(cmd)} failed (exit {p.returncode}):\n{p.stderr}{p.stdout}")
    return parse_run(cmd, p.stdout)


def parse_run(cmd, out):
    m = re.search(r"trained (\d+) steps? in [\d.]+s \((\d+) samples/s\)", out)
    if not m:
        sys.exit(f"data_parallel.py: no throughput in the output of {' '.join(cmd)}:\n{out}")
    c = re.search(r"data-parallel: ([\d.]+) ms/step \((\d+)%\) in collectives", out)
    return int(m.group(2)), (float(c.group(1)), int(c.group(2))) if c else None


def run_side_by_side(cmd, cwd, n):
    """n copies of one command at once (the cores as N ranks of one machine load them, without
    MPI): the mean of their samples/s."""
    procs = [subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(n)]
    rates = []
    for p in procs:
        out, err = p.communicate()
        if p.returncode != 0:
            sys.exit(f"data_parallel.py: {' '.join(cmd)} failed (exit {p.returncode}):\n{err}{out}")
        rates.append(parse_run(cmd, out)[0])
    return int(statistics.mean(rates)), None


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
    ap.add_argument("--sum", default="",
                    help="gradient sums to compare on several ranks, e.g. shared,mpi: each rank count runs once per "
                         "sum with MTLC_GRADIENT_SUM=X (shared: mtlc's default on one machine; mpi: MPI_Iallreduce "
                         "over the transport of --btl; default shared, with --cost-model shared,mpi)")
    ap.add_argument("--model", default=os.path.join(ROOT, "bench", "models", "mlp.mtl"),
                    help="the program to train (its `batch` is replaced; default bench/models/mlp.mtl)")
    ap.add_argument("--threads", type=int, default=1, help="kernel threads of every process (default 1)")
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    ap.add_argument("--cost-model", action="store_true",
                    help="also measure what bench/dp_model.py needs: one process at half the batch, the model's "
                         "parameter count, and bench/allreduce_time on 2 ranks per --btl transport (default "
                         "vader,tcp); with --json, the file dp_model.py reads")
    ap.add_argument("--allreduce-sweep", action="store_true",
                    help="instead of training: bench/allreduce_time on 2 ranks under each Open MPI configuration "
                         "of SWEEP (transports, vader's protocol limits, libnbc's and tuned's algorithms), the "
                         "configurations alternating --reps times; a table of the median over reps of each "
                         "configuration's median and minimum time per message size")
    a = ap.parse_args()
    # A SIGTERM (`timeout`) still removes the temporary programs beside the model (the finally below).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if a.allreduce_sweep:
        return allreduce_sweep(a)
    if a.cost_model and not a.btl:
        a.btl = "vader,tcp"
    if not a.sum:
        a.sum = "shared,mpi" if a.cost_model else "shared"
    mtlc = os.path.abspath(os.path.join(a.build, "mtlc"))
    if not os.path.exists(mtlc):
        sys.exit(f"data_parallel.py: {mtlc} not found (build first, or pass --build DIR)")
    # Open MPI refuses to start as root without these.
    os.environ.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    with open(a.model) as f:
        source = f.read()
    results, extra = [], {}
    # Beside the original, so that paths in it (relative to the program's folder) still resolve.
    folder = os.path.dirname(os.path.abspath(a.model))
    paths = {b: os.path.join(folder, f".data_parallel_bench_{b}.mtl") for b in {a.batch, a.batch // 2}}
    with tempfile.TemporaryDirectory() as tmp:
        try:
            for b, path in paths.items():
                with open(path, "w") as f:
                    f.write(re.sub(r"(?m)^(\s*batch\s+)\d+", rf"\g<1>{b}", source))
            run_configs(a, mtlc, paths, tmp, results)
            if a.cost_model:
                extra = model_terms(a, mtlc, paths[a.batch], tmp)
        finally:
            for path in paths.values():
                os.remove(path)
    report(a, results, extra)


def model_terms(a, mtlc, path, tmp):
    """What bench/dp_model.py needs beyond the runs: the gradient's size, the heads' output width,
    and the allreduce time against message size per transport on 2 ranks."""
    p = subprocess.run([mtlc, path], cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    params = re.search(r"learnable total\s+(\d+)", p.stdout)
    # A head's width: the last dense(K) of its task block (what the gather moves per row).
    with open(path) as f:
        heads = [int(re.findall(r"dense\((\d+)", block)[-1])
                 for block in re.findall(r"(?ms)^task \w+ \{(.*?)^\}", f.read())]
    if not params:
        sys.exit(f"data_parallel.py: no parameter count in the summary of {path}:\n{p.stdout}")
    tool = os.path.join(a.build, "bench", "allreduce_time")
    allreduce = {}
    for btl in a.btl.split(","):
        cmd = ["mpirun", "--oversubscribe", "--bind-to", "none", "-np", "2", "--mca", "btl", "self," + btl, tool]
        out = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=True).stdout
        allreduce[btl] = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        print(f"  allreduce_time, {btl}: {len(allreduce[btl])} sizes", file=sys.stderr, flush=True)
    if "shared" in a.sum.split(","):
        tool = os.path.join(a.build, "bench", "shared_sum_time")
        cmd = ["mpirun", "--oversubscribe", "--bind-to", "none", "-np", "2", tool]
        out = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=True).stdout
        allreduce["shared"] = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        print(f"  shared_sum_time: {len(allreduce['shared'])} sizes", file=sys.stderr, flush=True)
    return {"model": os.path.relpath(a.model, ROOT), "batch": a.batch, "params": int(params.group(1)),
            "output_floats": sum(heads), "heads": len(heads), "allreduce": allreduce}


# The configurations of --allreduce-sweep: a name and the mpirun arguments it adds. mtlc sets
# coll_libnbc_iallreduce_algorithm 1 (ring) itself; "libnbc default" is Open MPI's own choice.
SWEEP = [
    ("vader, libnbc default", "--mca btl self,vader --mca coll_libnbc_iallreduce_algorithm 0"),
    ("vader, libnbc ring (mtlc)", "--mca btl self,vader --mca coll_libnbc_iallreduce_algorithm 1"),
    ("vader, libnbc rabenseifner", "--mca btl self,vader --mca coll_libnbc_iallreduce_algorithm 3"),
    ("vader without single-copy", "--mca btl self,vader --mca btl_vader_single_copy_mechanism none"),
    ("vader, eager 32 KiB, send 256 KiB",
     "--mca btl self,vader --mca btl_vader_eager_limit 32768 --mca btl_vader_max_send_size 262144"),
    ("vader, tuned ring", "--mca btl self,vader --mca coll_tuned_use_dynamic_rules 1 "
                          "--mca coll_tuned_allreduce_algorithm 4"),
    ("tcp, libnbc default", "--mca btl self,tcp --mca coll_libnbc_iallreduce_algorithm 0"),
    ("tcp, libnbc ring (mtlc)", "--mca btl self,tcp --mca coll_libnbc_iallreduce_algorithm 1"),
]


def allreduce_sweep(a):
    tool = os.path.join(os.path.abspath(a.build), "bench", "allreduce_time")
    if not os.path.exists(tool):
        sys.exit(f"data_parallel.py: {tool} not found (build first, or pass --build DIR)")
    os.environ.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    lines = {name: [] for name, _ in SWEEP}
    loads = []
    for rep in range(a.reps):
        for name, mca in SWEEP:
            loads.append(os.getloadavg()[0])
            cmd = ["mpirun", "--oversubscribe", "--bind-to", "none", "-np", "2"] + mca.split() + [tool]
            out = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=True).stdout
            lines[name] += [json.loads(l) for l in out.splitlines() if l.startswith("{")]
            print(f"  {name}: rep {rep + 1}", file=sys.stderr, flush=True)
    if a.json:
        print(json.dumps({"cpus": os.cpu_count(), "load_before": loads, "sweep": lines}, indent=2))
        return
    sizes = sorted({l["bytes"] for ls in lines.values() for l in ls})
    print(f"allreduce of floats on 2 ranks, µs: median over {a.reps} runs of each run's median (min); "
          f"{os.cpu_count()} CPUs, load average {min(loads):.1f}–{max(loads):.1f}\n")
    for mode in ("blocking", "nonblocking"):
        print(f"{'MPI_Allreduce' if mode == 'blocking' else 'MPI_Iallreduce + MPI_Wait'}:\n")
        print("| configuration | " + " | ".join(f"{b >> 10} KiB" for b in sizes) + " |")
        print("| --- |" + " ---: |" * len(sizes))
        for name, _ in SWEEP:
            cells = []
            for b in sizes:
                pick = [l for l in lines[name] if l["bytes"] == b and l["mode"] == mode]
                cells.append(f"{statistics.median(l['median_us'] for l in pick):.0f} "
                             f"({statistics.median(l['min_us'] for l in pick):.0f})")
            print(f"| {name} | " + " | ".join(cells) + " |")
        print()


def run_configs(a, mtlc, paths, tmp, results):
    def train(batch):
        return [mtlc, "train", paths[batch], "--steps", str(a.steps), "-q", "--threads", str(a.threads)]
    configs = [("1 process", 1, a.batch, "", train(a.batch))]
    if a.cost_model:
        configs.append((f"1 process, batch {a.batch // 2}", 1, a.batch // 2, "", train(a.batch // 2)))
        configs.append((f"2 processes side by side, batch {a.batch // 2}", 1, a.batch // 2, "side by side",
                        train(a.batch // 2)))
    for n in [int(x) for x in a.ranks.split(",")]:
        for path in a.sum.split(",") if n > 1 else ["shared"]:
            for btl in a.btl.split(",") if a.btl else [""]:
                if n > 1 and path == "shared" and btl == "tcp":
                    continue  # the shared sum does not use the transport: one run is enough
                mca = ["--mca", "btl", "self," + btl] if btl else []
                label = f"{n} rank{'s' if n > 1 else ''} (mpirun{', ' + btl if btl else ''}" + \
                    (f", {path} sum)" if n > 1 else ")")
                configs.append((label, n, a.batch, btl if n == 1 or path == "mpi" else "shared",
                                ["mpirun", "--oversubscribe", "--bind-to", "none", "-np", str(n), "-x",
                                 f"MTLC_GRADIENT_SUM={path}"] + mca + train(a.batch)))
    # Repetition by repetition, every configuration in turn: a change of the machine's load hits all alike.
    runs = {label: ([], [], []) for label, *_ in configs}
    for _ in range(a.reps):
        for label, n, batch, btl, cmd in configs:
            rates, loads, comm = runs[label]
            loads.append(os.getloadavg()[0])
            rate, c = run_side_by_side(cmd, tmp, 2) if btl == "side by side" else run_once(cmd, tmp)
            rates.append(rate)
            if c:
                comm.append(c)
            print(f"  {label}: {rate} samples/s, load {loads[-1]:.1f}", file=sys.stderr, flush=True)
    for label, n, batch, btl, _ in configs:
        rates, loads, comm = runs[label]
        results.append({"config": label, "ranks": n, "batch": batch, "btl": btl, "steps": a.steps,
                        "samples_per_s": statistics.median(rates), "runs": rates, "load_before": loads,
                        "collective_ms_per_step": [c[0] for c in comm],
                        "collective_share_percent": [c[1] for c in comm]})


def report(a, results, extra):
    if a.json:
        print(json.dumps({"cpus": os.cpu_count(), "threads": a.threads, "results": results, **extra}, indent=2))
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
