#!/usr/bin/python3
"""The same training from an npz archive and from the equivalent IDX or CSV files must log the
same bytes: every step record (losses, weights) and every epoch record but its timings.

    npz_training.py MTLC SOURCE_DIR WORK

1. IDX: random 6x6 u8 images and class labels 0..3 as IDX files; the npz holds `pixels` [N, 36]
   f32 (k * (1/255) in f32, as the IDX reader scales u8) and `label` [N] u8, written by
   np.savez_compressed (deflate) and by np.savez (stored: the pixels are read from the file). One program trains from idx(...) and, with
   `--data train=d.npz --data test=d.npz`, from the archive.
2. CSV with missing labels: examples/tabular_partial.mtl on its csv files, against the same program
   reading npz files written from them (np.savez: stored) where an empty cls cell is -1 (int64), an
   empty flag or target cell NaN (float32), the features float64: -1 and NaN must be left out of
   every loss and metric exactly as an empty cell is.
3. examples/npz/fashion_npz.mtl trains (2 steps) from the archives examples/make_fashion_npz.py
   writes, when the Fashion-MNIST files are installed (dataset-fashion-mnist).
Exit 77 (skipped) when numpy is missing.
"""
import csv
import json
import os
import shutil
import struct
import subprocess
import sys

try:
    import numpy as np
except ImportError:
    print("npz_training.py: numpy is not installed for", sys.executable)
    sys.exit(77)

MTLC, SOURCE, WORK = (os.path.abspath(a) for a in sys.argv[1:4])
failures = []

IDX_PROGRAM = """model small_images
input image : f32[36]
shared trunk = image -> dense(16) -> relu
task category {
  trunk -> dense(4)
  loss cross_entropy
  metric accuracy
}
task odd {
  trunk -> dense(1)
  loss bce
  metric accuracy, auc
}
train {
  optimizer adam(lr=0.01)
  batch 16
  epochs 3
  seed 3
}
data {
  train idx("img.idx", "lab.idx")
  test  idx("img.idx", "lab.idx")
  image    = pixels
  category = label
  odd      = label in {1, 3}
}
"""


def train(program, log, extra=()):
    cmd = [MTLC, "train", program, "--log", log, "-q"] + list(extra)
    r = subprocess.run(cmd, cwd=WORK, capture_output=True, text=True)
    if r.returncode != 0:
        failures.append("{} failed ({}):\n{}{}".format(" ".join(cmd), r.returncode, r.stdout, r.stderr))
        return []
    return [line for line in open(os.path.join(WORK, log)).read().splitlines()]


def without_timings(line):
    record = json.loads(line)
    if "step" in record:
        return line  # step records: compared byte for byte
    for key in [k for k in record if "sec" in k or "time" in k]:
        del record[key]
    return json.dumps(record, sort_keys=True)


def compare(name, a, b):
    if not a or not b:
        failures.append("{}: no log records".format(name))
        return
    steps = sum(1 for line in a if '"step"' in line)
    if [without_timings(x) for x in a] != [without_timings(x) for x in b]:
        for i, (x, y) in enumerate(zip(a, b)):
            if without_timings(x) != without_timings(y):
                failures.append("{}: record {} differs:\n  {}\n  {}".format(name, i + 1, x, y))
                break
        else:
            failures.append("{}: {} records against {}".format(name, len(a), len(b)))
    else:
        print("{}: {} records the same ({} steps)".format(name, len(a), steps))


def idx_case():
    rng = np.random.default_rng(5)
    n = 100
    images = rng.integers(0, 256, size=(n, 6, 6), dtype=np.uint8)
    labels = rng.integers(0, 4, size=n, dtype=np.uint8)
    with open(os.path.join(WORK, "img.idx"), "wb") as f:
        f.write(bytes([0, 0, 0x08, 3]) + struct.pack(">III", n, 6, 6) + images.tobytes())
    with open(os.path.join(WORK, "lab.idx"), "wb") as f:
        f.write(bytes([0, 0, 0x08, 1]) + struct.pack(">I", n) + labels.tobytes())
    scale = np.float32(1) / np.float32(255)
    pixels = images.reshape(n, 36).astype(np.float32) * scale
    np.savez_compressed(os.path.join(WORK, "d.npz"), pixels=pixels, label=labels)
    np.savez(os.path.join(WORK, "stored.npz"), pixels=pixels, label=labels)  # pixels read in place
    open(os.path.join(WORK, "small.mtl"), "w").write(IDX_PROGRAM)
    a = train("small.mtl", "idx.jsonl")
    b = train("small.mtl", "npz.jsonl", ["--data", "train=d.npz", "--data", "test=d.npz"])
    compare("idx vs npz", a, b)
    c = train("small.mtl", "stored.jsonl", ["--data", "train=stored.npz", "--data", "test=stored.npz"])
    compare("idx vs stored npz (rows read from the file)", a, c)


def csv_to_npz(csv_path, npz_path):
    rows = list(csv.DictReader(open(csv_path)))
    features = np.array([[float(r["f{}".format(i)]) for i in range(8)] for r in rows], dtype=np.float64)
    cls = np.array([int(r["cls"]) if r["cls"].strip() else -1 for r in rows], dtype=np.int64)

    def real(key):
        return np.array([float(r[key]) if r[key].strip() else np.nan for r in rows], dtype=np.float64).astype(np.float32)

    np.savez(npz_path, features=features, cls=cls, flag=real("flag"), target=real("target"))
    return int((cls == -1).sum())


def csv_case():
    examples = os.path.join(SOURCE, "examples")
    for name in ("tabular_partial.mtl", "tabular_partial.csv", "tabular_test.csv"):
        shutil.copy(os.path.join(examples, name), WORK)
    missing = csv_to_npz(os.path.join(WORK, "tabular_partial.csv"), os.path.join(WORK, "partial.npz"))
    csv_to_npz(os.path.join(WORK, "tabular_test.csv"), os.path.join(WORK, "test.npz"))
    if missing == 0:
        failures.append("tabular_partial.csv has no missing cls label: the case tests nothing")
    program = open(os.path.join(WORK, "tabular_partial.mtl")).read()
    data = program[program.index("data {"):]
    npz_data = """data {
  train    npz("partial.npz")
  test     npz("test.npz")
  features = features
  cls      = cls
  flag     = flag
  target   = target
}
"""
    open(os.path.join(WORK, "partial_npz.mtl"), "w").write(program.replace(data, npz_data))
    a = train("tabular_partial.mtl", "csv.jsonl", ["--epochs", "2"])
    b = train("partial_npz.mtl", "partial_npz.jsonl", ["--epochs", "2"])
    compare("csv vs npz (missing labels)", a, b)


def fashion_case():
    source = os.environ.get("MTLC_FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist")
    if not any(os.path.exists(os.path.join(source, "train-images-idx3-ubyte" + gz)) for gz in ("", ".gz")):
        print("examples/npz: skipped, no Fashion-MNIST files in", source)
        return
    r = subprocess.run(["/usr/bin/python3", os.path.join(SOURCE, "examples", "make_fashion_npz.py"), WORK],
                       capture_output=True, text=True)
    if r.returncode != 0:
        failures.append("make_fashion_npz.py failed:\n" + r.stdout + r.stderr)
        return
    program = os.path.join(SOURCE, "examples", "npz", "fashion_npz.mtl")
    cmd = [MTLC, "train", program, "--steps", "2", "-q", "--data", "train=fashion_train.npz",
           "--data", "test=fashion_test.npz"]
    r = subprocess.run(cmd, cwd=WORK, capture_output=True, text=True)
    if r.returncode != 0 or "trained 2 steps" not in r.stdout:
        failures.append("{} ({}):\n{}{}".format(" ".join(cmd), r.returncode, r.stdout, r.stderr))
    else:
        print("examples/npz/fashion_npz.mtl: trained 2 steps")


if __name__ == "__main__":
    os.makedirs(WORK, exist_ok=True)
    idx_case()
    csv_case()
    fashion_case()
    for f in failures:
        print("FAIL:", f)
    sys.exit(1 if failures else 0)
