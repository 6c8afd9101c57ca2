#!/usr/bin/env bash
# Runs the front-end fuzzer for a bounded time from the seed corpus.
#   run_fuzz.sh MTLC_FUZZ SECONDS CORPUS_DIR ARTIFACT_DIR [extra libFuzzer flags, e.g. -fork=1]
# CORPUS_DIR receives the inputs that found new coverage (kept between runs); the seeds are the
# repository's .mtl files (examples, malformed programs, syntax tests), copied to CORPUS_DIR.seeds.
# Exits non-zero on any crash, sanitizer report, hang (10 s), leak or out-of-memory (2 GiB).
set -euo pipefail
fuzz=$1 seconds=$2 corpus=$3 artifacts=$4
shift 4
src=$(cd "$(dirname "$0")/../.." && pwd)
seeds="$corpus.seeds"
mkdir -p "$corpus" "$artifacts" "$seeds"
cp "$src"/examples/*.mtl "$src"/tests/diagnostics/*.mtl "$src"/tests/syntax/*.mtl "$seeds"/
# Cheaper ASan bookkeeping (unless the caller sets ASAN_OPTIONS): the fake stacks of
# use-after-return detection are collected on every exception the parser throws internally, and
# a large quarantine mostly costs page faults; leaks stay on.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:detect_stack_use_after_return=0:quarantine_size_mb=32:malloc_context_size=10}
# .mtl programs are small (the examples are under 2 KiB); longer inputs only slow the search down
# (the size limits have their own tests).
exec "$fuzz" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=4096 \
  -dict="$src/tests/fuzz/mtl.dict" -artifact_prefix="$artifacts/" -print_final_stats=1 "$@" \
  "$corpus" "$seeds"
