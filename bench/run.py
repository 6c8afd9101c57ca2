#!/usr/bin/python3
"""One command for the whole benchmark: mtlc against PyTorch (and its matmul against OpenBLAS).

    /usr/bin/python3 bench/run.py [--build DIR] [--quick] [--reps N] [--no-profile] [--denormals] [--out FILE]

Needs `mtlc`, `mtlc_bench` and `sgemm_openblas` built in DIR (default: build-bench, else build):
    cmake -S . -B build-bench -G Ninja -DCMAKE_BUILD_TYPE=Release
    cmake --build build-bench --target mtlc mtlc_bench sgemm_openblas

In one run it measures, each configuration in its own process (so peak RSS is that run's):
  - training throughput, 1 thread, of the MLP (batch 1, 64, 256), the flagship CNN
    examples/fashion.mtl (batch 64), the MMoE (batch 256), examples/resnet_fashion.mtl (batch 64)
    and the U-Net examples/dense_fashion.mtl (batch 32): mtlc's bare step (bench/mtlc_bench), mtlc
    as a user runs it (`mtlc train --steps N --threads 1`: gather, step, metrics, progress, epoch
    lines and the JSONL log; the training loop's seconds from its closing line, a long run less a
    short one, so the first steps' warm-up cancels, and start-up and compiling are not in it; the
    program's test source is left out), and the same model in PyTorch (bench/peers.py) in its strongest
    one-core configuration (tcmalloc preloaded: with glibc malloc its large activations are
    returned to the OS and faulted back every step; OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE
    removed, so OpenBLAS picks its own kernel; mkldnn convolutions, its default; warm-up steps
    first) and, for reference, as this environment starts it (glibc malloc, the environment's
    OPENBLAS_*); each peer names the OpenBLAS kernel it got; compile time (.mtl → JIT ready) and
    peak RSS; --denormals adds the MLP at batch 1 with denormals flushed by both and kept by both;
  - mtlc's matmul kernel alone against OpenBLAS's cblas_sgemm (1 thread), n = 64 … 1024, with
    OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE removed from that command's environment, naming the
    OpenBLAS kernel that ran; each size runs mtlc and then OpenBLAS, so the two sides of a ratio
    are measured seconds apart;
  - 1 against 2 threads on the MLP at batch 256, the flagship, the ResNet and the U-Net: for mtlc
    the medians of three alternating 1- and 2-thread runs (the VM's speed drifts over minutes),
    with the load average around them (other processes on the machine make the 2-thread number
    unreliable); PyTorch its 1-thread run of the model table and one 2-thread run;
  - where the flagship's training step goes: each train_step kernel timed in place.
Every number is the median of --reps (default 5) timed repetitions after warm-up steps. Prints
markdown tables; writes every raw result to --out (default DIR/bench-results.json).
--quick: a few steps per repetition, 3 repetitions, a smoke test of the harness, not a measurement.
"""
import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = "/usr/bin/python3"

# (label, mtlc program, peers.py model, batch, steps per repetition, warm-up steps, denormals)
# denormals: None = each framework's default (mtlc flushes them, PyTorch does not), "flush" = both
# flush (peers.py --ftz), "keep" = neither does (mtlc_bench --keep-denormals); those two rows run
# with --denormals only.
MODELS = [
    ("MLP", "bench/models/mlp.mtl", "mlp", 1, 1000, 200, None),
    ("MLP, denormals flushed (both)", "bench/models/mlp.mtl", "mlp", 1, 1000, 200, "flush"),
    ("MLP, denormals kept (both)", "bench/models/mlp.mtl", "mlp", 1, 1000, 200, "keep"),
    ("MLP", "bench/models/mlp.mtl", "mlp", 64, 200, 20, None),
    ("MLP", "bench/models/mlp.mtl", "mlp", 256, 60, 10, None),
    ("CNN (examples/fashion.mtl)", "examples/fashion.mtl", "cnn", 64, 20, 3, None),
    ("MMoE", "bench/models/mmoe.mtl", "mmoe", 256, 200, 20, None),
    ("ResNet (examples/resnet_fashion.mtl)", "examples/resnet_fashion.mtl", "resnet", 64, 3, 2, None),
    ("U-Net (examples/dense_fashion.mtl)", "examples/dense_fashion.mtl", "dense", 32, 6, 2, None),
]
# 1 against 2 threads on these (program, peers.py model, batch, steps per repetition, warm-up).
THREAD_MODELS = [
    ("bench/models/mlp.mtl", "mlp", 256, 60, 10),
    ("examples/fashion.mtl", "cnn", 64, 20, 3),
    ("examples/resnet_fashion.mtl", "resnet", 64, 3, 2),
    ("examples/dense_fashion.mtl", "dense", 32, 6, 2),
]
# The peer's allocator in its strongest configuration (Debian's libtcmalloc-minimal4, which ./run
# installs), as PyTorch's CPU performance guide recommends.
TCMALLOC = "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4"
# `mtlc train` is timed over at least this many seconds of steps (the difference of two runs).
TRAIN_SECONDS = 2.0
# OpenBLAS cores with AVX-512 sgemm kernels (0.3.21's names).
AVX512_CORES = {"SkylakeX", "Cooperlake", "SapphireRapids"}
MATMUL_SIZES = [64, 128, 256, 512, 1024]


def run_json(cmd, env=None, allow_fail=False):
    """Runs cmd, returns its stdout parsed as JSON (None if it failed and allow_fail)."""
    t0 = time.perf_counter()
    p = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    secs = time.perf_counter() - t0
    print(f"  [{secs:6.1f}s] {' '.join(os.path.relpath(c, ROOT) if c.startswith(ROOT) else c for c in cmd)}"
          f"{'' if p.returncode == 0 else f'  (exit {p.returncode})'}", file=sys.stderr, flush=True)
    try:
        out = json.loads(p.stdout) if p.stdout.strip() else None
    except json.JSONDecodeError:
        out = None
    if p.returncode != 0 and not allow_fail:
        sys.exit(f"run.py: {' '.join(cmd)} failed (exit {p.returncode}):\n{p.stderr}{p.stdout}")
    if out is None and not allow_fail:
        sys.exit(f"run.py: {' '.join(cmd)} printed no JSON:\n{p.stderr}{p.stdout}")
    if out is not None and p.returncode != 0:
        out.setdefault("error", p.stderr.strip())
    return out


def run_mtlc_train(mtlc, program, steps, batch, keep_denormals):
    """`mtlc train PROGRAM --steps N` as a user runs it, 1 thread, with a JSONL log: (wall seconds,
    seconds of its training loop from its closing line "trained N steps in Xs (R samples/s)", which
    leave out start-up, loading, compiling and the test evaluation)."""
    import re
    log = program + ".jsonl"
    cmd = [mtlc, "train", program, "--steps", str(steps), "--epochs", "100000", "--threads", "1", "--log", log] \
        + (["--keep-denormals"] if keep_denormals else [])
    t0 = time.perf_counter()
    p = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    secs = time.perf_counter() - t0
    print(f"  [{secs:6.1f}s] mtlc train {os.path.basename(program)} --steps {steps}"
          f"{'' if p.returncode == 0 else f'  (exit {p.returncode})'}", file=sys.stderr, flush=True)
    if p.returncode != 0:
        sys.exit(f"run.py: {' '.join(cmd)} failed (exit {p.returncode}):\n{p.stderr}{p.stdout}")
    m = re.search(r"^trained (\d+) steps? in [\d.]+s \((\d+) samples/s\)", p.stdout, re.M)
    if not m or int(m.group(1)) != steps or int(m.group(2)) == 0:
        sys.exit(f"run.py: {' '.join(cmd)}: no closing line \"trained {steps} steps in ...\":\n{p.stdout}")
    # The rate has 3 to 7 significant digits here: the loop's seconds to about 0.1%.
    return secs, steps * batch / int(m.group(2))


def time_mtlc_train(mtlc, program, batch, bare_us, warmup, reps, keep_denormals, workdir, quick, bare_cmd=None):
    """µs per step of `mtlc train` on `program` at `batch`: the median over `reps` pairs of runs of
    (loop(warm-up + n steps) − loop(warm-up steps)) / n, loop = the seconds of the training loop by
    mtlc's own report, with n steps lasting TRAIN_SECONDS at the bare step's speed, so the first
    steps' warm-up cancels. The wall-clock difference of the same runs (start-up, loading and
    compiling cancel too, up to their noise) is kept as a cross-check. With `bare_cmd` (mtlc_bench,
    one repetition, --json) a bare step is timed just before each pair, and `over` is the median of
    the pairs' train / bare − 1: this VM's speed drifts over minutes, so a bare step timed minutes
    earlier would put the drift into the comparison."""
    import re
    text = open(os.path.join(ROOT, program)).read()
    text, count = re.subn(r"(\n\s*batch\s+)\d+", lambda m: m.group(1) + str(batch), text, count=1)
    if count != 1:
        sys.exit(f"run.py: no `batch N` line in {program}")
    # No test source: its evaluation is not a step (the loop's seconds leave it out), and for the
    # ResNet and the U-Net it would take longer than the timed steps.
    text = re.sub(r"\n[ \t]*test[ \t]+[^\n]*", "", text)
    path = os.path.join(workdir, f"{os.path.splitext(os.path.basename(program))[0]}_b{batch}.mtl")
    open(path, "w").write(text)
    n = max(4, int((0.2 if quick else TRAIN_SECONDS) * 1e6 / max(bare_us, 1)))
    diffs, wall_diffs, bares = [], [], []
    for _ in range(reps):
        if bare_cmd:
            bares.append(run_json(bare_cmd)["us_per_step"])
        short_wall, short_loop = run_mtlc_train(mtlc, path, warmup, batch, keep_denormals)
        long_wall, long_loop = run_mtlc_train(mtlc, path, warmup + n, batch, keep_denormals)
        diffs.append((long_loop - short_loop) * 1e6 / n)
        wall_diffs.append((long_wall - short_wall) * 1e6 / n)
    us = sorted(diffs)[len(diffs) // 2]
    overs = sorted(d / b - 1 for d, b in zip(diffs, bares))
    return {"us_per_step": us, "samples_per_s": batch * 1e6 / us, "batch": batch, "steps": n,
            "rep_us_per_step": diffs, "wall_us_per_step": sorted(wall_diffs)[len(wall_diffs) // 2],
            "rep_wall_us_per_step": wall_diffs, "rep_bare_us_per_step": bares,
            "over": overs[len(overs) // 2] if overs else None}


def fmt_rate(r):
    """samples/s for batches > 1, µs/step at batch 1 (as issue #3 asks)."""
    if r is None:
        return "-"
    if r["batch"] == 1:
        return f"{r['us_per_step']:.1f} µs/step"
    return f"{r['samples_per_s']:,.0f}"


def ratio(mtlc, torch, batch):
    # > 1 means mtlc is faster, at every batch size (throughput ratio = inverse time ratio).
    return f"{torch['us_per_step'] / mtlc['us_per_step']:.2f}×"


def first_line(s):
    return (s or "").strip().splitlines()[0] if (s or "").strip() else ""


def main():
    ap = argparse.ArgumentParser(description="mtlc vs PyTorch benchmark (see the module docstring)")
    ap.add_argument("--build", help="build directory with mtlc_bench and sgemm_openblas")
    ap.add_argument("--quick", action="store_true", help="few steps: a smoke test, not a measurement")
    ap.add_argument("--reps", type=int, default=0, help="timed repetitions per measurement (default 5; quick 3)")
    ap.add_argument("--no-profile", action="store_true", help="skip the per-kernel profile of the flagship")
    ap.add_argument("--denormals", action="store_true",
                    help="also the MLP at batch 1 with denormals flushed by both and kept by both")
    ap.add_argument("--out", help="raw results as JSON (default BUILD/bench-results.json)")
    ap.add_argument("--torch-coretype", default="auto",
                    help="OPENBLAS_CORETYPE for the strongest PyTorch runs: auto (OpenBLAS's own detection, "
                         "or SkylakeX when the CPU has AVX-512 and OpenBLAS does not pick an AVX-512 kernel "
                         "by itself), default (OpenBLAS's own detection), or a core name")
    a = ap.parse_args()

    build = a.build or next((os.path.join(ROOT, d) for d in ("build-bench", "build")
                             if os.path.exists(os.path.join(ROOT, d, "bench", "mtlc_bench"))), None)
    if build is None:
        sys.exit("run.py: no build with bench/mtlc_bench found; build it first:\n"
                 "  cmake -S . -B build-bench -G Ninja -DCMAKE_BUILD_TYPE=Release\n"
                 "  cmake --build build-bench --target mtlc_bench sgemm_openblas")
    build = os.path.abspath(build)
    bench = os.path.join(build, "bench", "mtlc_bench")
    sgemm = os.path.join(build, "bench", "sgemm_openblas")
    if not os.path.exists(bench):
        sys.exit(f"run.py: {bench} does not exist (cmake --build {build} --target mtlc_bench)")
    reps = a.reps or (3 if a.quick else 5)
    scale = (lambda steps: max(2, steps // 40)) if a.quick else (lambda steps: steps)
    warm = (lambda w: 1) if a.quick else (lambda w: w)

    results = {"loadavg_start": os.getloadavg()[0], "date": datetime.date.today().isoformat(), "host": platform.node(), "cpu": cpu_name(),
               "quick": a.quick, "reps": reps, "models": [], "matmul": {}, "threads": None, "profile": None}
    try:
        results["git"] = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT, text=True,
                                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL).stdout.strip()
    except OSError:
        results["git"] = "?"
    print(f"bench: {results['cpu']}, {os.cpu_count()} cores, reps {reps}{', QUICK' if a.quick else ''}",
          file=sys.stderr)

    # ---- which OpenBLAS kernel runs by itself, and which one PyTorch gets
    blas_env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    blas_env["OPENBLAS_NUM_THREADS"] = "1"
    detected = None
    if os.path.exists(sgemm):
        detected = run_json([sgemm, "--reps", "1", "64"], env=blas_env)["corename"]
    avx512 = "avx512f" in cpu_flags()
    if a.torch_coretype == "auto":
        # never the environment's OPENBLAS_CORETYPE: the strongest runs are without it
        torch_core = "SkylakeX" if avx512 and detected and detected not in AVX512_CORES else None
    else:
        torch_core = None if a.torch_coretype == "default" else a.torch_coretype
    if not os.path.exists(TCMALLOC):
        sys.exit(f"run.py: {TCMALLOC} is missing (apt-get install libtcmalloc-minimal4; ./run installs it)")
    # The strongest configuration: tcmalloc, the chosen OpenBLAS kernel, no L2 size override.
    torch_env = dict(blas_env)
    torch_env["LD_PRELOAD"] = TCMALLOC
    if torch_core:
        torch_env["OPENBLAS_CORETYPE"] = torch_core
    default_env = dict(os.environ)  # as this environment starts it: glibc malloc, its OPENBLAS_*
    results["openblas_detected"] = detected
    results["torch_coretype"] = torch_core
    results["default_env"] = {k: v for k, v in default_env.items() if k.startswith("OPENBLAS") or k == "LD_PRELOAD"}
    mtlc_bin = os.path.join(build, "mtlc")
    workdir = os.path.join(build, "bench-work")
    os.makedirs(workdir, exist_ok=True)

    # ---- models
    for label, program, peer, batch, steps, warmup, ftz in MODELS:
        if ftz and not a.denormals:
            continue
        s, w = scale(steps), warm(warmup)
        common = ["--batch", str(batch), "--steps", str(s), "--warmup", str(w), "--reps", str(reps), "--json"]
        m = run_json([bench, os.path.join(ROOT, program)] + common
                     + (["--keep-denormals"] if ftz == "keep" else [])
                     + (["--compile-reps", "1"] if a.quick or ftz else []), allow_fail=True)
        peer_cmd = [PY, os.path.join(ROOT, "bench", "peers.py"), peer] + common + (["--ftz"] if ftz == "flush" else [])
        t = run_json(peer_cmd, env=torch_env)
        t_default = run_json(peer_cmd, env=default_env)
        train = None
        if m and m.get("supported", False) and os.path.exists(mtlc_bin):
            bare_once = [bench, os.path.join(ROOT, program), "--batch", str(batch), "--steps", str(s), "--warmup", str(w),
                         "--reps", "1", "--compile-reps", "1", "--json"] + (["--keep-denormals"] if ftz == "keep" else [])
            train = time_mtlc_train(mtlc_bin, program, batch, m["us_per_step"], w, 1 if a.quick else 3,
                                    ftz == "keep", workdir, a.quick, bare_once)
        results["models"].append({"label": label, "program": program, "batch": batch, "ftz": ftz,
                                  "mtlc": m, "mtlc_train": train, "torch": t, "torch_default": t_default})

    # ---- threads: mtlc's 1- and 2-thread runs alternate, the same settings each, and the ratio is
    # of the medians: this VM's speed drifts by 10% over minutes, which a 1-thread number taken
    # minutes earlier (the model table's) would put into the ratio. PyTorch: the model table's
    # 1-thread run and one 2-thread run.
    results["threads"] = []
    load_before = os.getloadavg()[0]
    for program, peer, batch, steps, warmup in THREAD_MODELS:
        common = ["--batch", str(batch), "--steps", str(scale(steps)), "--warmup", str(warm(warmup)),
                  "--reps", str(reps), "--json"]
        runs = {1: [], 2: []}
        for _ in range(1 if a.quick else 3):
            for threads in (1, 2):
                r = run_json([bench, os.path.join(ROOT, program), "--threads", str(threads), "--compile-reps", "1"]
                             + common, allow_fail=True)
                if r and r.get("supported", False) and r.get("threads_supported", True):
                    runs[threads].append(r)
        if not runs[1] or not runs[2]:
            continue
        peer_cmd = [PY, os.path.join(ROOT, "bench", "peers.py"), peer] + common
        t1 = next((r["torch"] for r in results["models"] if r["program"] == program and r["batch"] == batch
                   and not r["ftz"]), None) or run_json(peer_cmd + ["--threads", "1"], env=torch_env)
        t2 = run_json(peer_cmd + ["--threads", "2"], env=torch_env)
        results["threads"].append({"program": program, "batch": batch, "mtlc1": median_run(runs[1]),
                                   "mtlc2": median_run(runs[2]), "torch1": t1, "torch2": t2,
                                   "mtlc_pairs": [[r1["samples_per_s"], r2["samples_per_s"]]
                                                  for r1, r2 in zip(runs[1], runs[2])]})
    results["threads_loadavg"] = [load_before, os.getloadavg()[0]]

    # ---- compile time of the flagship on one thread and on every CPU (jit/ParallelCompile.h)
    results["compile"] = []
    for threads in (1, 0):
        c = run_json([bench, os.path.join(ROOT, "examples/fashion.mtl"), "--steps", "1", "--warmup", "0",
                      "--reps", "1", "--compile-reps", "1" if a.quick else "5", "--compile-threads", str(threads),
                      "--json"], allow_fail=True)
        if c:
            results["compile"].append(dict(c, threads_requested=threads or os.cpu_count()))

    # ---- can the cores run two vector loops at once? Two one-thread matmuls side by side, each
    # against its speed alone: about 1.0 on separate cores, about 0.5 on the two hyperthreads of one.
    if (os.cpu_count() or 1) >= 2:
        cmd = [bench, "--matmul", "512", "--reps", str(max(reps, 5)), "--json"]
        alone = run_json(cmd)
        procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) for _ in range(2)]
        pair = [json.loads(p.communicate()[0]) for p in procs]
        results["side_by_side"] = {"alone": alone["gflops"], "pair": [x["gflops"] for x in pair]}

    # ---- matmul: per size, mtlc then OpenBLAS right after it (and its forced AVX-512 kernel), so a
    # noisy neighbour's minutes hit both sides of a ratio rather than one library's whole sweep
    mm = []
    runs = {"openblas": None, "openblas_avx512": None}
    envs = {"openblas": blas_env}
    if avx512 and detected not in AVX512_CORES:
        envs["openblas_avx512"] = dict(blas_env, OPENBLAS_CORETYPE="SkylakeX")
    for n in MATMUL_SIZES:
        mm.append(run_json([bench, "--matmul", str(n), "--reps", str(reps), "--json"]))
        if not os.path.exists(sgemm):
            continue
        for key, env in envs.items():
            r = run_json([sgemm, "--reps", str(reps), str(n)], env=env)
            if runs[key] is None:
                runs[key] = dict(r, results=[])
            runs[key]["results"] += r["results"]
    results["matmul"]["mtlc"] = mm
    results["matmul"].update(runs)

    # ---- where the flagship's step goes
    if not a.no_profile:
        p = run_json([bench, os.path.join(ROOT, "examples/fashion.mtl"), "--batch", "64", "--steps", str(scale(5)),
                      "--warmup", "1", "--reps", str(reps), "--compile-reps", "1", "--profile-step", "--json"],
                     allow_fail=True)
        results["profile"] = p.get("step_profile") if p else None

    results["loadavg_end"] = os.getloadavg()[0]
    out = a.out or os.path.join(build, "bench-results.json")
    with open(out, "w") as f:
        json.dump(results, f, indent=2)
    print(report(results))
    print(f"raw results: {out}", file=sys.stderr)


def median_run(rs):
    return sorted(rs, key=lambda r: r["samples_per_s"])[len(rs) // 2]


def cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def report(res):
    L = []
    torch_ver = next((r["torch"]["framework"] for r in res["models"] if r["torch"]), "torch")
    core = res.get("torch_coretype")
    det = res.get("openblas_detected")
    L.append(f"Measured on {res['date']} (mtlc {res.get('git', '?')}), {res['cpu']}, 1 thread; each number is the median of "
             f"{res['reps']} timed repetitions after warm-up steps"
             f"{' (QUICK: a smoke test, not a measurement)' if res['quick'] else ''}; 1-minute load average "
             f"{res.get('loadavg_start', float('nan')):.1f} at the start, {res.get('loadavg_end', float('nan')):.1f} at the end.")
    denv = res.get("default_env") or {}
    got = sorted({r["torch"].get("openblas_core") or "?" for r in res["models"] if r["torch"]})
    got_default = sorted({r["torch_default"].get("openblas_core") or "?" for r in res["models"] if r.get("torch_default")})
    L.append(f"PyTorch: {torch_ver} at its strongest on one core: tcmalloc preloaded, OpenBLAS kernel `{core or det or '?'}`"
             + (f" (OPENBLAS_CORETYPE={core}: by itself OpenBLAS picks `{det}` on this CPU)" if core and det and core != det else "")
             + f" (the peers report `{'`, `'.join(got)}`), mkldnn convolutions (its default), warm-up steps first. "
             "\"As started\": the same runs with glibc malloc and the environment's "
             + (", ".join(f"{k}={v}" for k, v in sorted(denv.items())) or "settings (no OPENBLAS_* set, no LD_PRELOAD)")
             + f", for reference (OpenBLAS kernel `{'`, `'.join(got_default)}`). "
             "`mtlc train`: the step as a user runs it (gather, step, metrics, progress, epoch lines, the JSONL log), "
             "from the training-loop seconds of its closing line, a long run less a short one; bare: "
             "mtlc_bench's step in-process. Train / bare: the median over the train runs' pairs of their step against "
             "a bare step timed just before the pair (the VM drifts over minutes). "
             "Ratio = mtlc speed / PyTorch speed (> 1: mtlc is faster); batch 1 in µs/step. "
             "CPU = CPU time / wall time of the timed steps (mtlc / PyTorch): below 1 another process took the core.")
    L.append("")
    L.append("| model | batch | `mtlc train` | mtlc bare | train / bare | PyTorch | `mtlc train` / PyTorch "
             "| bare / PyTorch | PyTorch as started | mtlc compile (cold / median) | peak RSS mtlc / PyTorch | CPU |")
    L.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in res["models"]:
        m, t = r["mtlc"], r["torch"]
        if m is None or not m.get("supported", False):
            why = first_line((m or {}).get("error", "")) if m else "mtlc_bench failed"
            why = why.split(": error: ", 1)[-1]  # the first diagnostic, without its location
            note = f"not supported yet (mtlc: {why})" if why else "not supported yet"
            L.append(f"| {r['label']} | {r['batch']} | {note} | - | - | {fmt_rate(t)} | - | - "
                     f"| {fmt_rate(r.get('torch_default'))} | - | - / {t['peak_rss_mib']:.0f} MiB | - / {t['cpu_util']:.2f} |")
            continue
        compile_ms = f"{m['compile_ms']:.0f} / {m['compile_ms_median']:.0f} ms" if len(m["compile_ms_all"]) > 1 \
            else f"{m['compile_ms']:.0f} ms"
        tr = r.get("mtlc_train")
        over = "-" if not tr else f"{100 * tr['over']:+.1f}%" if tr.get("over") is not None \
            else f"{100 * (tr['us_per_step'] / m['us_per_step'] - 1):+.1f}%"
        L.append(f"| {r['label']} | {r['batch']} | {fmt_rate(tr)} | {fmt_rate(m)} | {over} | {fmt_rate(t)} "
                 f"| {ratio(tr, t, r['batch']) if tr else '-'} | {ratio(m, t, r['batch'])} "
                 f"| {fmt_rate(r.get('torch_default'))} | {compile_ms} | {m['peak_rss_mib']:.0f} / {t['peak_rss_mib']:.0f} MiB "
                 f"| {m['cpu_util']:.2f} / {t['cpu_util']:.2f} |")
    L.append("")

    mm = res["matmul"].get("mtlc") or []
    ob, ob512 = res["matmul"].get("openblas"), res["matmul"].get("openblas_avx512")
    L.append("Matmul C = A·B, [n,n]·[n,n] f32, 1 thread, GFLOP/s. OpenBLAS as it runs with OPENBLAS_CORETYPE and "
             f"OPENBLAS_L2_SIZE unset: kernel `{ob['corename'] if ob else 'n/a'}`"
             + (f" ({ob['config'].strip()})" if ob else "")
             + (f"; and its AVX-512 kernel `{ob512['corename']}` forced with OPENBLAS_CORETYPE=SkylakeX." if ob512 else "."))
    L.append("")
    head = "| n | mtlc | OpenBLAS " + (f"`{ob['corename']}`" if ob else "") + " | mtlc / OpenBLAS |"
    rule = "| ---: | ---: | ---: | ---: |"
    if ob512:
        head += f" OpenBLAS `{ob512['corename']}` | mtlc / `{ob512['corename']}` |"
        rule += " ---: | ---: |"
    L.append(head)
    L.append(rule)
    obn = {x["n"]: x["gflops"] for x in (ob["results"] if ob else [])}
    ob5 = {x["n"]: x["gflops"] for x in (ob512["results"] if ob512 else [])}
    for x in mm:
        row = f"| {x['n']} | {x['gflops']:.1f} "
        o = obn.get(x["n"])
        row += f"| {o:.1f} | {100 * x['gflops'] / o:.0f}% |" if o else "| - | - |"
        if ob512:
            o = ob5.get(x["n"])
            row += f" {o:.1f} | {100 * x['gflops'] / o:.0f}% |" if o else " - | - |"
        L.append(row)
    L.append("")

    ths = res.get("threads") or []
    if ths:
        la = res.get("threads_loadavg") or [float("nan")] * 2
        L.append(f"Threads (samples/s; 1-minute load average {la[0]:.1f} before, {la[1]:.1f} after these runs, on "
                 f"{os.cpu_count()} cores). mtlc: mtlc_bench's step, the medians of alternating 1- and 2-thread runs "
                 "(each pair's ratio in the pairs column); PyTorch (strongest): the 1-thread run of the table above "
                 "and one 2-thread run:")
        L.append("")
        L.append("| model | batch | mtlc 1 thread | mtlc 2 threads | mtlc 2 / 1 | (pairs) "
                 "| PyTorch 1 | PyTorch 2 | PyTorch 2 / 1 |")
        L.append("| --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: |")
        for th in ths:
            m1, m2, t1, t2 = (th[k]["samples_per_s"] for k in ("mtlc1", "mtlc2", "torch1", "torch2"))
            pairs = ", ".join(f"{y / x:.2f}×" for x, y in th["mtlc_pairs"])
            L.append(f"| `{th['program']}` | {th['batch']} | {m1:,.0f} | {m2:,.0f} | {m2 / m1:.2f}× | {pairs} "
                     f"| {t1:,.0f} | {t2:,.0f} | {t2 / t1:.2f}× |")
    else:
        L.append("Threads: no 2-thread measurement (mtlc_bench ran none of the models on 2 threads).")
    L.append("")

    comp = res.get("compile") or []
    if comp:
        L.append("Compile time of examples/fashion.mtl (.mtl → JIT ready; the first compile in a fresh process, "
                 "and the median of the repeats):")
        L.append("")
        L.append("| LLVM threads | partitions | first | median |")
        L.append("| --- | ---: | ---: | ---: |")
        for c in comp:
            L.append(f"| {c['threads_requested']} | {c.get('compile_threads', '?')} "
                     f"| {c['compile_ms']:.0f} ms | {c['compile_ms_median']:.0f} ms |")
        L.append("")
    sbs = res.get("side_by_side")
    if sbs:
        L.append(f"Two one-thread 512×512 matmuls side by side: {sbs['pair'][0]:.1f} and {sbs['pair'][1]:.1f} "
                 f"GFLOP/s against {sbs['alone']:.1f} alone ({sum(sbs['pair']) / sbs['alone']:.2f}× the "
                 "throughput of one: what a second thread can add to the kernels at best).")
        L.append("")

    p = res.get("profile")
    if p:
        ph = p["phase_us"]
        L.append(f"Where the flagship's training step goes (batch {p['batch']}; `mtlc_bench --profile-step`: each "
                 f"train_step kernel timed in place, a fused kernel named by its members; a "
                 f"{p['step_us'] / 1000:.2f} ms step is {ph['gather'] / 1000:.2f} ms gather, "
                 f"{p['kernels_total_us'] / 1000:.2f} ms of kernels and {ph['optimizer'] / 1000:.2f} ms optimizer):")
        L.append("")
        L.append("| kernel | µs | share of the kernels |")
        L.append("| --- | ---: | ---: |")
        total = p["kernels_total_us"] or 1
        for k in p["kernels"][:10]:
            L.append(f"| `{k['kernel']}` | {k['us']:,.0f} | {100 * k['us'] / total:.1f}% |")
        L.append("")
    return "\n".join(L)


if __name__ == "__main__":
    main()
