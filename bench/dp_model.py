#!/usr/bin/python3
"""The data-parallel cost model of docs/data-parallel.md, from what bench/data_parallel.py measured.

    /usr/bin/python3 bench/dp_model.py [--fit median|min] RUN.json [RUN.json ...]
                                  (one file per model, written by data_parallel.py --cost-model --json)

The model: one optimizer step on N ranks at global batch B costs

    step(N) = fixed + per_sample · B/N + allreduce(G, N) + gather

- fixed + per_sample · b: the step of one process at batch b (kernels, optimizer, data); measured
  at B and B/2 on one process, so fixed = 2·t(B/2) − t(B), per_sample = (t(B) − t(B/2)) / (B/2);
- allreduce(G, N) of G gradient bytes, ring algorithm: 2(N−1)·α + 2(N−1)/N · G/β_bw, with α the
  per-message latency and β_bw the bandwidth. On 2 ranks this is 2α + G/β_bw: β_bw is the inverse
  slope of a least-squares line through bench/allreduce_time's times (Iallreduce + Wait, 4 KiB to
  4 MiB) per transport, α half the median time left over at 4–16 KiB;
- the shared-memory sum of ranks on one machine (mtlc's default there): a + G·s, the least-squares
  line through bench/shared_sum_time's times (4 KiB to 4 MiB, 2 ranks);
- gather (ring allgather, one per head): (N−1)·α per head + (N−1)/N · B · outputs · 4 bytes / β_bw,
  over MPI whatever sums the gradient (vader's terms for the shared sum);
- ranks on one machine share its caches and memory bandwidth: the 2-rank prediction is given twice,
  with the compute of B/2 rows measured alone (fixed + per_sample · B/2) and measured with two such
  processes side by side (data_parallel.py's "2 processes side by side"), the error on the latter;
- no credit for overlap: the prediction is the step as if the gradient sum waited for the backward
  pass (the overlap can only make the measured step shorter; what it hides is the difference).

It prints, per model: the fitted terms, the predicted 2-rank step against the measured one per
transport, and projections to 8–64 machines on 25 and 100 Gbit/s networks with α of 5 and 20 µs
(assumptions, stated in the table), with the speed-up over one machine and where it stops paying.
"""
import argparse
import json
import sys


def fit_line(points):
    """Least-squares a + b·x through [(x, y)]."""
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    b = sum((x - mx) * (y - my) for x, y in points) / sxx if sxx else 0.0
    return my - b * mx, b


def transport_terms(lines, statistic, mode="nonblocking"):
    """α (s) and bandwidth (bytes/s) of a transport from allreduce_time's 2-rank lines: the
    bandwidth from the slope over all sizes, α from the small messages' time left over."""
    pts = [(l["bytes"], l[statistic + "_us"] * 1e-6) for l in lines if l["ranks"] == 2 and l["mode"] == mode]
    _, slope = fit_line(pts)
    bandwidth = 1.0 / slope if slope > 0 else float("inf")
    small = sorted((t - x / bandwidth) / 2 for x, t in pts if x <= 16384)
    return max(small[len(small) // 2], 0.0), bandwidth


def allreduce_s(grad_bytes, n, alpha, bandwidth):
    if n <= 1:
        return 0.0
    return 2 * (n - 1) * alpha + 2 * (n - 1) / n * grad_bytes / bandwidth


def gather_s(m, n, alpha, bandwidth):
    return (n - 1) * m["heads"] * alpha + (n - 1) / n * m["batch"] * m["output_floats"] * 4 / bandwidth


def step_s(m, n, alpha, bandwidth, compute=None):
    """One step on n ranks over a network of (alpha, bandwidth); `compute` replaces the compute term."""
    if compute is None:
        compute = m["fixed_s"] + m["per_sample_s"] * m["batch"] / n
    return compute + allreduce_s(m["grad_bytes"], n, alpha, bandwidth) + gather_s(m, n, alpha, bandwidth)


def shared_step_s(m, lines, statistic, mpi_alpha, mpi_bandwidth, compute=None):
    """One step on 2 ranks of one machine with the shared-memory sum (a + G·s) and MPI's gather."""
    a, slope = fit_line([(l["bytes"], l[statistic + "_us"] * 1e-6) for l in lines if l["ranks"] == 2])
    if compute is None:
        compute = m["fixed_s"] + m["per_sample_s"] * m["batch"] / 2
    return compute + a + slope * m["grad_bytes"] + gather_s(m, 2, mpi_alpha, mpi_bandwidth), a, slope


def compute_terms(run):
    """fixed and per-sample seconds from the 1-process runs at B and B/2."""
    b = run["batch"]
    full = next(r for r in run["results"] if r["ranks"] == 1 and r["batch"] == b and r["config"] == "1 process")
    half = next(r for r in run["results"] if r["ranks"] == 1 and r["batch"] == b // 2 and r.get("btl") != "side by side")
    busy = next((r for r in run["results"] if r.get("btl") == "side by side"), None)
    t_full, t_half = b / full["samples_per_s"], (b // 2) / half["samples_per_s"]
    fixed = 2 * t_half - t_full
    per_sample = (t_full - t_half) / (b - b // 2)
    if fixed < 0:  # noise made half the batch cost more than half: all of t(B) is per sample
        fixed, per_sample = 0.0, t_full / b
    return {"batch": b, "fixed_s": fixed, "per_sample_s": per_sample,
            "one_process_step_s": t_full, "grad_bytes": 4 * run["params"], "output_floats": run["output_floats"],
            "heads": run["heads"], "busy_half_step_s": (b // 2) / busy["samples_per_s"] if busy else None}


def report(run, statistic):
    m = compute_terms(run)
    print(f"## {run['model']} (global batch {m['batch']}, {run['params']:,} parameters = "
          f"{m['grad_bytes'] / 1e6:.2f} MB of gradients)\n")
    print(f"compute: fixed {m['fixed_s'] * 1e3:.3f} ms/step + {m['per_sample_s'] * 1e6:.2f} µs/sample "
          f"(one process: {m['one_process_step_s'] * 1e3:.3f} ms/step at batch {m['batch']})\n")
    busy = m["busy_half_step_s"]
    if busy:
        print(f"compute of {m['batch'] // 2} rows with two processes side by side: {busy * 1e3:.3f} ms/step "
              f"(alone: {(m['fixed_s'] + m['per_sample_s'] * m['batch'] / 2) * 1e3:.3f})\n")
    print("| gradient sum | α or a (µs) | bandwidth (GB/s) | predicted 2-rank step, compute alone (ms) | "
          "predicted, cores busy (ms) | measured (ms) | error |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    terms = {t: transport_terms(lines, statistic) for t, lines in run.get("allreduce", {}).items() if t != "shared"}
    for transport, lines in sorted(run.get("allreduce", {}).items()):
        if transport == "shared":
            mpi_alpha, mpi_bw = terms.get("vader", next(iter(terms.values()), (0.0, float("inf"))))
            pred, alpha, slope = shared_step_s(m, lines, statistic, mpi_alpha, mpi_bw)
            pred_busy = shared_step_s(m, lines, statistic, mpi_alpha, mpi_bw, busy)[0] if busy else None
            bw = 1 / slope if slope > 0 else float("inf")
            label = "shared memory"
        else:
            alpha, bw = terms[transport]
            pred = step_s(m, 2, alpha, bw)
            pred_busy = step_s(m, 2, alpha, bw, busy) if busy else None
            label = f"MPI, {transport}"
        meas = [r for r in run["results"] if r["ranks"] == 2 and r.get("btl") == transport]
        ref = pred_busy if pred_busy is not None else pred
        if meas:
            t = m["batch"] / meas[0]["samples_per_s"]
            err = f"{100 * (ref - t) / t:+.0f}%"
            meas_text = f"{t * 1e3:.3f}"
        else:
            meas_text, err = "-", "-"
        busy_text = f"{pred_busy * 1e3:.3f}" if pred_busy is not None else "-"
        print(f"| {label} | {alpha * 1e6:.1f} | {bw / 1e9:.2f} | {pred * 1e3:.3f} | {busy_text} | {meas_text} | "
              f"{err} |")
    print("\nProjection, one rank per machine (fixed + per-sample terms as above, α and bandwidth assumed; "
          "speed-up against the model's one machine):\n")
    nets = [(25, 5e-6), (25, 20e-6), (100, 5e-6), (100, 20e-6)]
    print("| machines | " + " | ".join(f"{g} Gbit/s, α {a * 1e6:.0f} µs" for g, a in nets) + " |")
    print("| ---: |" + " ---: |" * len(nets))
    machines = (1, 2, 4, 8, 16, 32, 64)
    for n in machines:
        cells = []
        for gbit, alpha in nets:
            t = step_s(m, n, alpha, gbit * 1e9 / 8)
            cells.append(f"{t * 1e3:.2f} ms ({step_s(m, 1, alpha, 1.0) / t:.1f}×)")
        print(f"| {n} | " + " | ".join(cells) + " |")
    print()
    for gbit, alpha in nets:
        # Where it stops paying: the machine count past which one more doubling gains under 10%.
        times = [step_s(m, n, alpha, gbit * 1e9 / 8) for n in machines]
        stop = next((machines[i] for i in range(1, len(machines)) if times[i] > 0.9 * times[i - 1]), None)
        best = min(range(len(machines)), key=lambda i: times[i])
        print(f"- {gbit} Gbit/s, α {alpha * 1e6:.0f} µs: best {times[0] / times[best]:.1f}× at "
              f"{machines[best]} machines; " +
              (f"doubling to {stop} machines gains under 10%" if stop else "still gaining at 64 machines"))
    print()


def main():
    ap = argparse.ArgumentParser(description="the data-parallel cost model (see the module docstring)")
    ap.add_argument("runs", nargs="+", help="JSON files of data_parallel.py --cost-model --json")
    ap.add_argument("--fit", choices=["median", "min"], default="median",
                    help="which allreduce_time statistic α and bandwidth are fitted to (default median; min on "
                         "a loaded machine, where the median measures descheduling)")
    a = ap.parse_args()
    for path in a.runs:
        with open(path) as f:
            report(json.load(f), a.fit)


if __name__ == "__main__":
    main()
