"""Reads and writes the safetensors format (F32 tensors, and I64 ones such as batchnorm's
num_batches_tracked) for the PyTorch cross-checks.

Debian 12 packages no `safetensors` module; the format is an 8-byte little-endian header length,
a JSON header {name: {dtype, shape, data_offsets}}, then the raw little-endian data.
"""
import json
import struct

import torch


def save(path, tensors):
    header, blobs, offset = {}, [], 0
    for name, t in tensors.items():
        i64 = t.dtype == torch.int64
        data = t.detach().to(torch.int64 if i64 else torch.float32).contiguous().numpy().tobytes()
        header[name] = {"dtype": "I64" if i64 else "F32", "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


def load(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] in ("F32", "I64"), (name, info["dtype"])
        a, b = info["data_offsets"]
        dtype = torch.int64 if info["dtype"] == "I64" else torch.float32
        t = torch.frombuffer(bytearray(raw[8 + n + a:8 + n + b]), dtype=dtype)
        out[name] = t.reshape(info["shape"]).clone()
    return out
