#!/usr/bin/python3
"""Writes fashion_train.npz and fashion_test.npz, Fashion-MNIST as NumPy arrays, for
examples/npz/fashion_npz.mtl. Run with Debian's python3 and python3-numpy:

    /usr/bin/python3 examples/make_fashion_npz.py [OUT_DIR]     (default: examples/npz/)

The IDX files are read from $MTLC_FASHION_MNIST_DIR, else /usr/share/datasets/fashion-mnist (Debian's
dataset-fashion-mnist), as fashion_mnist(...) reads them; gzipped or not. Each archive holds
  image  [N, 1, 28, 28] uint8   the pixels as stored (the program scales them: image = image / 255)
  label  [N]            int64   the class, 0..9
written with np.savez_compressed (deflate: about 30 MB for both; np.savez would store them).
"""
import gzip
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.environ.get("MTLC_FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist")


def read_idx(stem):
    """The array of IDX file SOURCE/stem(.gz): magic 0 0 dtype ndims, big-endian sizes, u8 data."""
    for name in (stem, stem + ".gz"):
        path = os.path.join(SOURCE, name)
        if os.path.exists(path):
            data = (gzip.open if name.endswith(".gz") else open)(path, "rb").read()
            if data[:3] != b"\0\0\x08":
                sys.exit("{}: not a u8 IDX file".format(path))
            ndims = data[3]
            shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndims))
            return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndims).reshape(shape)
    sys.exit("{}: no {} or {}.gz (install dataset-fashion-mnist or set MTLC_FASHION_MNIST_DIR)".format(
        SOURCE, stem, stem))


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "npz")
    os.makedirs(out, exist_ok=True)
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images = read_idx(prefix + "-images-idx3-ubyte")
        labels = read_idx(prefix + "-labels-idx1-ubyte").astype(np.int64)
        path = os.path.join(out, "fashion_{}.npz".format(split))
        np.savez_compressed(path, image=images.reshape(-1, 1, 28, 28), label=labels)
        print("{}: image {} uint8, label {} int64".format(path, images.reshape(-1, 1, 28, 28).shape, labels.shape))


if __name__ == "__main__":
    main()
