#!/usr/bin/env bash
# Peak memory of training from a 2 GB npz archive (issue 30): the archive's f32 array is stored
# (np.savez) and trained in place, each batch's rows read from the file (pread, so the archive's
# pages stay in the page cache, not in the process), against the same array stored big-endian,
# which the reader converts once into memory. Prints /usr/bin/time -v's maximum resident set size
# and the peak anonymous and file-backed parts of it (sampled from /proc/PID/status every 50 ms).
#
#   bench/npz/large.sh MTLC [WORK_DIR]      (needs /usr/bin/python3 with numpy, ~4.2 GB of disk)
set -euo pipefail
mtlc=$(realpath "$1")
work=${2:-/tmp/mtlc-npz-large}
mkdir -p "$work"
cd "$work"
rows=1000000 width=512  # 2.05 GB of f32
if [[ ! -f le.npz || ! -f be.npz ]]; then
  /usr/bin/python3 - "$rows" "$width" <<'PY'
import sys
import numpy as np
rows, width = int(sys.argv[1]), int(sys.argv[2])
rng = np.random.default_rng(0)
x = np.empty((rows, width), dtype="<f4")
for i in range(0, rows, 100000):
    x[i:i + 100000] = rng.standard_normal((min(100000, rows - i), width), dtype=np.float32)
label = (x[:, 0] > 0).astype(np.int64) + 2 * (x[:, 1] > 0)
np.savez("le.npz", x=x, label=label)
np.savez("be.npz", x=x.astype(">f4"), label=label)
PY
fi
for archive in le be; do
  cat > "$archive.mtl" <<MTL
model large
input x : f32[$width]
shared trunk = x -> dense(16) -> relu
task cls { trunk -> dense(4) loss cross_entropy metric accuracy }
train {
  optimizer adam(lr=0.001)
  batch 256
  epochs 1
}
data {
  train npz("$archive.npz")
  x   = x
  cls = label
}
MTL
  /usr/bin/time -v "$mtlc" train "$archive.mtl" -q 2> "$archive.time" > "$archive.out" &
  pid=$!
  anon=0 file=0
  while kill -0 "$pid" 2>/dev/null; do
    for child in $(pgrep -P "$pid" || true); do
      read -r a f < <(awk '/RssAnon/ {a=$2} /RssFile/ {f=$2} END {print a+0, f+0}' "/proc/$child/status" 2>/dev/null || echo "0 0")
      (( a > anon )) && anon=$a
      (( f > file )) && file=$f
    done
    sleep 0.05
  done
  wait "$pid"
  size=$(stat -c %s "$archive.npz")
  maxrss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$archive.time")
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$archive.time")
  echo "$archive.npz ($((size / 1048576)) MiB): max RSS $((maxrss / 1024)) MiB (peak anonymous $((anon / 1024)) MiB, file-backed $((file / 1024)) MiB), wall $wall"
  tail -1 "$archive.out"
done
