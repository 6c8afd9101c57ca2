#!/usr/bin/python3
"""Writes the NumPy files test_npz.cpp reads, with NumPy itself (Debian's python3-numpy).

    npz_fixtures.py OUT

OUT/good/: for every dtype (float16/32/64, int8..64, uint8..64, bool), byte order (< >), memory
order (C, Fortran) and compression (np.savez: stored, np.savez_compressed: deflate), an archive
NAME.npz with the arrays `x` [5, 3, 4] and `y` [5], and NAME.npy with `x` alone; next to each,
NAME.x.f32 and NAME.y.f32: what the reader must give, as NumPy converts the array to little-endian
float32 in C order (x.astype('<f4').tofile). The values reach each type's extremes that f32 holds
exactly (integers up to 2^24, and larger ones with few significant bits), float16 subnormals,
infinities and NaN.
OUT/bad/: one broken file per case test_npz.cpp names. Exit 77 when NumPy is missing.
"""
import io
import os
import sys
import zipfile

try:
    import numpy as np
except ImportError:
    print("npz_fixtures.py: numpy is not installed for", sys.executable)
    sys.exit(77)

DTYPES = ["f2", "f4", "f8", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "b1"]


def values(dtype, count):
    """`count` values of `dtype`, reaching what f32 holds exactly."""
    dt = np.dtype(dtype)
    if dt.kind == "b":
        return np.arange(count) % 3 == 1
    if dt.kind == "f":
        base = [0.0, -0.0, 1.5, -2.25, 1e-3, 3.14159265358979, np.inf, -np.inf, np.nan, 65504.0]
        if dt.itemsize == 2:
            base += [2.0**-24, -(2.0**-20), 6.1e-5]  # subnormal and the smallest normal
        else:
            base += [1e-30, -7.5e20, 2.0**-126]
        return np.resize(np.array(base, dtype=dt), count)
    info = np.iinfo(dt)
    base = [0, 1, info.max if info.max < 2**24 else 2**24, 7, 100]
    base += [info.min if info.min > -(2**24) else -(2**24)] if info.min < 0 else [info.max // 2 if info.max < 2**24 else 2**23]
    if dt.itemsize >= 4:
        base += [2**31 if dt.kind == "u" else 2**30, 3 << 28]  # big, few significant bits
    if dt.itemsize == 8:
        base += [2**62, 5 << 40]
    return np.resize(np.array(base, dtype=dt), count)


def write_good(out):
    os.makedirs(out, exist_ok=True)
    for name in DTYPES:
        for order in "<>":
            dtype = np.dtype(name).newbyteorder(order) if np.dtype(name).itemsize > 1 else np.dtype(name)
            for layout in "CF":
                x = np.asarray(values(dtype, 60).reshape(5, 3, 4), dtype=dtype, order=layout)
                x = np.asfortranarray(x) if layout == "F" else np.ascontiguousarray(x)
                y = np.asarray(values(dtype, 5), dtype=dtype)
                for compressed in (False, True):
                    stem = "{}_{}_{}_{}".format(name, "le" if order == "<" else "be", layout,
                                                "deflate" if compressed else "stored")
                    (np.savez_compressed if compressed else np.savez)(os.path.join(out, stem + ".npz"), x=x, y=y)
                    x.astype("<f4").tofile(os.path.join(out, stem + ".x.f32"))
                    y.astype("<f4").tofile(os.path.join(out, stem + ".y.f32"))
                stem = "{}_{}_{}".format(name, "le" if order == "<" else "be", layout)
                np.save(os.path.join(out, stem + ".npy"), x)
                x.astype("<f4").tofile(os.path.join(out, stem + ".data.f32"))


def npy_bytes(array, allow_pickle=False):
    buf = io.BytesIO()
    np.lib.format.write_array(buf, array, allow_pickle=allow_pickle)
    return buf.getvalue()


def write_zip(path, members, method=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", compression=method) as z:
        for name, data in members.items():
            z.writestr(name, data)


def write_bad(out):
    os.makedirs(out, exist_ok=True)
    x = np.arange(12, dtype="<f4").reshape(4, 3)
    good = os.path.join(out, "good.npz")
    np.savez(good, x=x, y=np.arange(4))
    whole = open(good, "rb").read()
    open(os.path.join(out, "truncated.npz"), "wb").write(whole[: len(whole) // 2])
    open(os.path.join(out, "empty.npz"), "wb").write(b"")
    open(os.path.join(out, "not_zip.npz"), "wb").write(b"this is a text file, not an archive\n" * 4)
    np.savez_compressed(os.path.join(out, "crc.npz"), x=np.arange(4000, dtype="<f4").reshape(1000, 4))
    data = bytearray(open(os.path.join(out, "crc.npz"), "rb").read())
    data[len(data) // 2] ^= 0x55  # inside the deflate stream: a corrupt stream or a CRC mismatch
    open(os.path.join(out, "crc.npz"), "wb").write(bytes(data))
    np.savez(os.path.join(out, "counts.npz"), x=x, y=np.arange(5))
    write_zip(os.path.join(out, "pickled.npz"),
              {"x.npy": npy_bytes(x), "names.npy": npy_bytes(np.array([{"a": 1}] * 4, dtype=object), True)})
    np.savez(os.path.join(out, "complex.npz"), x=x, z=np.zeros((4, 2), dtype="<c8"))
    np.savez(os.path.join(out, "structured.npz"), x=x, r=np.zeros(4, dtype=[("a", "<f4"), ("b", "<i4")]))
    np.savez(os.path.join(out, "strings.npz"), x=x, s=np.array(["a", "b", "c", "d"]))
    np.savez(os.path.join(out, "inexact.npz"), x=x, big=np.array([1, 2, 2**24 + 1, 4], dtype="<i8"))
    bad_magic = bytearray(npy_bytes(x))
    bad_magic[1:6] = b"NUMPX"
    write_zip(os.path.join(out, "magic.npz"), {"x.npy": bytes(bad_magic)})
    short = npy_bytes(x)
    write_zip(os.path.join(out, "short_member.npz"), {"x.npy": short[:-8]})
    write_zip(os.path.join(out, "not_npy.npz"), {"x.npy": npy_bytes(x), "readme.txt": b"hello"})
    write_zip(os.path.join(out, "bzip2.npz"), {"x.npy": npy_bytes(x)}, zipfile.ZIP_BZIP2)
    version = bytearray(npy_bytes(x))
    version[6] = 4
    write_zip(os.path.join(out, "version.npz"), {"x.npy": bytes(version)})
    np.savez(os.path.join(out, "scalars.npz"), lr=np.float32(0.1))
    np.save(os.path.join(out, "truncated.npy"), x)
    data = open(os.path.join(out, "truncated.npy"), "rb").read()
    open(os.path.join(out, "truncated.npy"), "wb").write(data[:-4])


if __name__ == "__main__":
    out = sys.argv[1]
    write_good(os.path.join(out, "good"))
    write_bad(os.path.join(out, "bad"))
