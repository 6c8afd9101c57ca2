#!/usr/bin/env bash
# Runs one of the fuzz harnesses for a bounded time from its seed corpus.
#   run_fuzz.sh HARNESS SECONDS CORPUS_DIR ARTIFACT_DIR [extra libFuzzer flags, e.g. -fork=1]
# CORPUS_DIR receives the inputs that found new coverage (kept between runs); the seeds go to
# CORPUS_DIR.seeds:
#   mtlc_fuzz (front end): the repository's .mtl files (examples, malformed programs, syntax
#     tests), dictionary tests/fuzz/mtl.dict, inputs up to 4 KiB;
#   mtlc_fuzz_embed_load, mtlc_fuzz_checkpoint (loaders): the checkpoints `mtlc train` wrote into
#     seeds/ next to the harness at build time, dictionary tests/fuzz/safetensors.dict, inputs up
#     to 16 KiB (the seeds are 3-10 KiB).
# Exits non-zero on any crash, sanitizer report, hang (10 s), leak or out-of-memory (2 GiB).
set -euo pipefail
fuzz=$1 seconds=$2 corpus=$3 artifacts=$4
shift 4
src=$(cd "$(dirname "$0")/../.." && pwd)
seeds="$corpus.seeds"
mkdir -p "$corpus" "$artifacts" "$seeds"
case "$(basename "$fuzz")" in
  mtlc_fuzz)
    cp "$src"/examples/*.mtl "$src"/tests/diagnostics/*.mtl "$src"/tests/syntax/*.mtl "$seeds"/
    # .mtl programs are small (the examples are under 2 KiB); longer inputs only slow the search
    # down (the size limits have their own tests).
    limits=(-max_len=4096 -dict="$src/tests/fuzz/mtl.dict") ;;
  mtlc_fuzz_embed_load|mtlc_fuzz_checkpoint)
    built="$(dirname "$fuzz")/seeds"
    ls "$built"/*.safetensors >/dev/null 2>&1 || { echo "run_fuzz.sh: no seed checkpoints in $built" >&2; exit 2; }
    cp "$built"/*.safetensors "$seeds"/
    limits=(-max_len=16384 -dict="$src/tests/fuzz/safetensors.dict") ;;
  mtlc_fuzz_npz)
    # NumPy files: the regression inputs (archives stored and deflated, each broken one) and the
    # diagnostics' small archives (renamed: some share a regression input's name).
    cp "$src"/tests/fuzz/regressions/npz/* "$seeds"/
    for f in "$src"/tests/diagnostics/*.npz; do cp "$f" "$seeds/diagnostics_$(basename "$f")"; done
    limits=(-max_len=16384) ;;
  *) echo "run_fuzz.sh: unknown harness $fuzz" >&2; exit 2 ;;
esac
# Cheaper ASan bookkeeping (unless the caller sets ASAN_OPTIONS): the fake stacks of
# use-after-return detection are collected on every exception the parser throws internally, and
# a large quarantine mostly costs page faults; leaks stay on.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:detect_stack_use_after_return=0:quarantine_size_mb=32:malloc_context_size=10}
exec "$fuzz" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 "${limits[@]}" \
  -artifact_prefix="$artifacts/" -print_final_stats=1 "$@" "$corpus" "$seeds"
