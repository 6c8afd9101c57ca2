#!/usr/bin/env python3
"""Writes examples/recsys.csv (3000 rows, training) and examples/recsys_test.csv (1000 rows) for
examples/recsys.mtl. Deterministic (fixed seed, plain Python, no numpy); rerunning rewrites the
same bytes.

A toy recommendation log: each row is one impression.
  n0..n5     numeric features (uniform in [-1, 1])
  user_group an integer category in 0..19 (each group has its own taste)
  item_cat   an integer category in 0..49 (each category has its own appeal)
  click      0/1: Bernoulli(sigmoid(1.5*n0 - n1 + taste[user_group] + appeal[item_cat]))
  buy        0/1 where observed: Bernoulli(sigmoid(2*n2 + n0 + 1.5*appeal[item_cat] - 0.5));
             about 40% of the cells are empty (no purchase record): partial labels, masked out of
             the buy task's loss and metrics
"""
import math
import os
import random

HERE = os.path.dirname(os.path.abspath(__file__))
GROUPS, CATEGORIES = 20, 50


def sigmoid(z):
    return 1.0 / (1.0 + math.exp(-z))


def row(rng, taste, appeal):
    n = [rng.uniform(-1.0, 1.0) for _ in range(6)]
    g = rng.randrange(GROUPS)
    c = rng.randrange(CATEGORIES)
    click = 1 if rng.random() < sigmoid(1.5 * n[0] - n[1] + taste[g] + appeal[c]) else 0
    buy = 1 if rng.random() < sigmoid(2 * n[2] + n[0] + 1.5 * appeal[c] - 0.5) else 0
    observed = rng.random() >= 0.4
    return ["%.5f" % v for v in n] + [str(g), str(c), str(click), str(buy) if observed else ""]


def write(path, rows, rng, taste, appeal):
    with open(path, "w", newline="\n") as out:
        out.write(",".join(["n%d" % i for i in range(6)] +
                           ["user_group", "item_cat", "click", "buy"]) + "\n")
        for _ in range(rows):
            out.write(",".join(row(rng, taste, appeal)) + "\n")


def main():
    rng = random.Random(20261128)
    taste = [rng.gauss(0.0, 1.0) for _ in range(GROUPS)]
    appeal = [rng.gauss(0.0, 1.0) for _ in range(CATEGORIES)]
    write(os.path.join(HERE, "recsys.csv"), 3000, rng, taste, appeal)
    write(os.path.join(HERE, "recsys_test.csv"), 1000, rng, taste, appeal)


if __name__ == "__main__":
    main()
