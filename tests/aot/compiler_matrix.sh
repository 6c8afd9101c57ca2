#!/usr/bin/env bash
# The compiler matrix of embedding: a user program compiled against the folder `mtlc build -o DIR`
# writes (the model's header, mtlc_embed.h, lib<model>.a) and nothing else, with every C and C++
# compiler given, as C99, C11 (examples/embed/main.c) and C++17 (main.cpp), with
# -Wall -Wextra -Werror -pedantic; each program is linked and run (it trains, saves, reloads and
# predicts, and fails on any wrong result).
#
#   compiler_matrix.sh GEN_DIR EXAMPLE_DIR WORK_DIR CC=CXX [CC=CXX ...]
#
# e.g. `compiler_matrix.sh build/examples/embed/gen examples/embed build/test-work/matrix gcc=g++
# clang-19=clang++-19`. Exits 77 (CTest: skipped) when a compiler of the list is not installed,
# naming it; non-zero on any warning, link error or failing run.
set -euo pipefail
gen=$1 examples=$2 work=$3
shift 3
[ -f "$gen/libsensor.a" ] && [ -f "$gen/sensor.h" ] && [ -f "$gen/mtlc_embed.h" ] ||
  { echo "compiler_matrix: $gen is not a \`mtlc build\` folder of sensor.mtl" >&2; exit 1; }
for pair in "$@"; do
  for c in "${pair%%=*}" "${pair#*=}"; do
    command -v "$c" >/dev/null || { echo "compiler_matrix: $c is not installed (skipped)"; exit 77; }
  done
done
rm -rf "$work" && mkdir -p "$work"
flags=(-Wall -Wextra -Werror -pedantic -I "$gen")
failed=0
run_one() {  # run_one NAME COMPILER STD SOURCE
  local name=$1 compiler=$2 std=$3 source=$4
  local exe="$work/$name"
  if ! "$compiler" "-std=$std" "${flags[@]}" "$source" "$gen/libsensor.a" -lm -o "$exe" 2>"$exe.log"; then
    echo "FAIL $name: $compiler -std=$std does not compile or link $(basename "$source"):"
    cat "$exe.log"
    failed=1
    return
  fi
  if ! "$exe" "$work/$name.safetensors" >"$exe.log" 2>&1; then
    echo "FAIL $name: the program failed:"
    cat "$exe.log"
    failed=1
    return
  fi
  echo "ok   $name: $compiler -std=$std $(basename "$source"): $(tail -1 "$exe.log")"
}
for pair in "$@"; do
  cc=${pair%%=*} cxx=${pair#*=}
  run_one "$cc-c99" "$cc" c99 "$examples/main.c"
  run_one "$cc-c11" "$cc" c11 "$examples/main.c"
  run_one "$cxx-c++17" "$cxx" c++17 "$examples/main.cpp"
done
exit $failed
