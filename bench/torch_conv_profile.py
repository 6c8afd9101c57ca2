#!/usr/bin/python3
"""PyTorch's time per convolution of a bench/peers.py peer, from torch.autograd.profiler.

    LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4 OPENBLAS_NUM_THREADS=1 \\
        /usr/bin/python3 bench/torch_conv_profile.py [resnet|dense] [--batch N] [--steps N]

The peer runs as bench/run.py runs it at its strongest (tcmalloc preloaded by the command above,
1 thread, its default mkldnn convolutions), warm-up steps first, then --steps profiled training
steps on consecutive batches. Prints, per convolution shape, the forward (aten::mkldnn_convolution)
and the backward (aten::convolution_backward: data and filter gradient together) in µs per step,
the number of such layers, and the profiled steps' CPU time per step. The profiler's own cost is
in every op; compare shapes against each other and with mtlc_bench --profile-step, not with an
unprofiled step. Output: one line per (op, shapes).
"""
import argparse
import collections
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peers  # noqa: E402 (after the path)
import torch  # noqa: E402

OPS = ("aten::mkldnn_convolution", "aten::convolution_backward")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model", nargs="?", default="resnet", choices=("resnet", "dense"))
    ap.add_argument("--batch", type=int, default=0, help="default: the program's (resnet 64, dense 32)")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=5)
    a = ap.parse_args()
    batch = a.batch or {"resnet": 64, "dense": 32}[a.model]
    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    torch.manual_seed(42)
    model, opt, inputs, targets, loss_fn, _ = peers.setup(a.model)
    model.train()

    def step(i):
        idx = torch.arange(i * batch, (i + 1) * batch)
        opt.zero_grad(set_to_none=True)
        loss_fn(model(inputs.index_select(0, idx)), [t.index_select(0, idx) for t in targets]).backward()
        opt.step()

    for i in range(a.warmup):
        step(i)
    with torch.autograd.profiler.profile(record_shapes=True) as prof:
        for i in range(a.steps):
            step(a.warmup + i)
    us, calls = collections.defaultdict(float), collections.Counter()
    for e in prof.function_events:
        if e.name in OPS:
            key = (e.name, str(e.input_shapes[:2]))
            us[key] += e.cpu_time_total
            calls[key] += 1
    total = sum(e.self_cpu_time_total for e in prof.function_events)
    print(f"{a.model} batch {batch}: {total / a.steps:.0f} µs per profiled step (all ops' self time)")
    for (name, shapes), t in sorted(us.items()):
        print(f"{t / a.steps:10.1f} µs/step  x{calls[(name, shapes)] // a.steps}  {name} {shapes}")


if __name__ == "__main__":
    main()
