#!/usr/bin/env python3
"""Writes examples/tabular.csv (2000 rows, training) and examples/tabular_test.csv (500 rows) for
examples/tabular.mtl, and examples/tabular_partial.csv (2000 rows with missing labels) for
examples/tabular_partial.mtl. Deterministic (fixed seeds, plain Python, no numpy); rerunning
rewrites the same bytes.

Columns: f0..f7 (features, uniform in [-1, 1]) then three labels:
  cls    3 classes from a linear rule:   s = f0 + f1 - 0.5*f2;  0 if s < -0.4, 1 if s < 0.4, else 2
  flag   0/1:                            1 if f3 * f4 > 0 (needs the hidden layer: an XOR of signs)
  target a real number:                  sin(2*f5) + 0.5*f6 - 0.3*f7
In tabular_partial.csv each label cell is left empty with its own probability (cls 30%, flag 50%,
target 80%), independently, as when each task's labels come from a different source.
"""
import math
import os
import random

HERE = os.path.dirname(os.path.abspath(__file__))


def row(rng):
    f = [rng.uniform(-1.0, 1.0) for _ in range(8)]
    s = f[0] + f[1] - 0.5 * f[2]
    cls = 0 if s < -0.4 else (1 if s < 0.4 else 2)
    flag = 1 if f[3] * f[4] > 0 else 0
    target = math.sin(2 * f[5]) + 0.5 * f[6] - 0.3 * f[7]
    return ["%.6f" % v for v in f] + [str(cls), str(flag), "%.6f" % target]


def write(path, rows, rng):
    with open(path, "w", newline="\n") as out:
        out.write(",".join(["f%d" % i for i in range(8)] + ["cls", "flag", "target"]) + "\n")
        for _ in range(rows):
            out.write(",".join(row(rng)) + "\n")


MISSING = {"cls": 0.3, "flag": 0.5, "target": 0.8}


def write_partial(path, rows, rng, blank):
    with open(path, "w", newline="\n") as out:
        out.write(",".join(["f%d" % i for i in range(8)] + list(MISSING)) + "\n")
        for _ in range(rows):
            cells = row(rng)
            for k, p in enumerate(MISSING.values()):
                if blank.random() < p:
                    cells[8 + k] = ""
            out.write(",".join(cells) + "\n")


def main():
    rng = random.Random(20240611)
    write(os.path.join(HERE, "tabular.csv"), 2000, rng)
    write(os.path.join(HERE, "tabular_test.csv"), 500, rng)
    write_partial(os.path.join(HERE, "tabular_partial.csv"), 2000, random.Random(20261201), random.Random(77))


if __name__ == "__main__":
    main()
