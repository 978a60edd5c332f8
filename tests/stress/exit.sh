#!/usr/bin/env bash
# Exit stress: runs every subcommand, every GPU test file and the whole suite
# many times and counts the processes that end abnormally (a signal, glibc's
# "double free or corruption" / "corrupted size vs. prev_size", a panic),
# as opposed to the exit codes the program chose. Not part of `deno task test`.
#
#   tests/stress/exit.sh [--cli N] [--files N] [--suite N] [--only cli|files|suite]
#                        [--mcheck] [--shard K/N]
#
# Defaults: each subcommand 50 times, each GPU test file 20 times, the suite
# 10 times (hours on a 2-core machine; pass smaller counts for a quick look).
# --mcheck preloads glibc's malloc checker, which turns heap corruption that
# would otherwise pass unnoticed into an abort. Logs of abnormal runs are kept
# in $SSD_STRESS_DIR (default out/stress). --shard K/N runs the K-th of N
# slices of the test files (K from 1), so that N machines or cores share them. The last line is the verdict:
# "exit stress: N runs, N abnormal".
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
OUT="${SSD_STRESS_DIR:-$ROOT/out/stress}"
CLI_N=50 FILES_N=20 SUITE_N=10 ONLY="" MCHECK=0 SHARD="1/1"
while [ $# -gt 0 ]; do
  case "$1" in
    --cli) CLI_N="$2"; shift 2 ;;
    --files) FILES_N="$2"; shift 2 ;;
    --suite) SUITE_N="$2"; shift 2 ;;
    --only) ONLY="$2"; shift 2 ;;
    --mcheck) MCHECK=1; shift ;;
    --shard) SHARD="$2"; shift 2 ;;
    *) echo "exit.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

cd "$ROOT" || exit 2
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}" NO_COLOR=1
mkdir -p "$OUT"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
MALLOC_ENV=()
if [ "$MCHECK" -eq 1 ]; then
  MALLOC_ENV=(LD_PRELOAD=/lib/x86_64-linux-gnu/libc_malloc_debug.so.0 GLIBC_TUNABLES=glibc.malloc.check=3)
fi

RUNS=0 ABNORMAL=0 FAILED=0
declare -A CAT_RUNS CAT_BAD CAT_FAILED

# One run: `record CATEGORY NAME cmd...`. Abnormal: killed by a signal
# (status > 128: 134 is glibc's abort), or a heap/panic message on stderr.
record() {
  local cat="$1" name="$2"
  shift 2
  local log="$WORK/run.log" rc
  env "${MALLOC_ENV[@]}" "$@" >"$log" 2>&1
  rc=$?
  RUNS=$((RUNS + 1))
  CAT_RUNS[$cat]=$((${CAT_RUNS[$cat]:-0} + 1))
  if [ "$rc" -gt 128 ] ||
    grep -qE "double free|corrupted size|free\(\): |malloc\(\): |Segmentation fault|panicked at|Aborted" "$log"; then
    ABNORMAL=$((ABNORMAL + 1))
    CAT_BAD[$cat]=$((${CAT_BAD[$cat]:-0} + 1))
    local keep="$OUT/$cat-${name//\//_}-$RUNS.log"
    cp "$log" "$keep"
    echo "ABNORMAL $cat $name (status $rc): $keep" >&2
  elif [ "$rc" -ne 0 ]; then
    # A normal failure (a test failed, a refusal): not what this script
    # hunts, but counted and kept so that a broken fixture is noticed.
    FAILED=$((FAILED + 1))
    CAT_FAILED[$cat]=$((${CAT_FAILED[$cat]:-0} + 1))
    cp "$log" "$OUT/failed-$cat-${name//\//_}-$RUNS.log"
  fi
}

SSD=(deno run -A cli/main.ts)
ssd() { "${SSD[@]}" "$@"; }

stress_cli() {
  local n="$1" d="$WORK/cli"
  mkdir -p "$d"
  # A small real run to read from: the tiny preset, a checkpoint every 5 steps.
  ssd train --preset tiny --steps 10 --save-every 5 --val-tokens 2000 --out "$d/run" >/dev/null 2>&1 ||
    { echo "exit.sh: cannot train the fixture run" >&2; exit 2; }
  local ck="$d/run/final.safetensors" text="$d/text.txt"
  head -c 200000 README.md >"$text"
  ssd moefy "$ck" --experts 4 --tokens 512 --eval-tokens 512 -o "$d/moe.safetensors" >/dev/null 2>&1
  local i
  for i in $(seq "$n"); do
    record cli train "${SSD[@]}" train --preset tiny --steps 3 --val-tokens 1000 --out "$d/t$i"
    record cli eval "${SSD[@]}" eval "$ck" --data "$text"
    record cli generate "${SSD[@]}" generate "$ck" --prompt "The " --tokens 20
    record cli inspect "${SSD[@]}" inspect "$ck"
    record cli profile "${SSD[@]}" profile "$d/run/ckpt-5.safetensors" "$ck" --data "$text" --tokens 256 --experts 4
    record cli moefy "${SSD[@]}" moefy "$ck" --experts 4 --tokens 512 --eval-tokens 512 -o "$d/m$i.safetensors"
    record cli bench "${SSD[@]}" bench "$d/moe.safetensors" --data "$text" --val-tokens 512 --reps 1
    record cli report "${SSD[@]}" report "$d/run" -o "$d/r$i.html"
    record cli device "${SSD[@]}" device
    record cli demo "${SSD[@]}" demo --preset tiny --steps 10 --save-every 5 --val-tokens 1000 --out "$d/demo$i"
    rm -rf "$d/t$i" "$d/m$i.safetensors" "$d/r$i.html" "$d/demo$i"
  done
}

# Test files that open the GPU (directly or through the CLI they spawn).
gpu_test_files() {
  grep -rlE "setupGpu|initGpu|requestAdapter|ssd\(\[|_tiny_checkpoint|cli/main.ts" tests --include='*_test.ts' |
    grep -v '^tests/stress/' | sort
}

stress_files() {
  local n="$1" f i k="${SHARD%/*}" of="${SHARD#*/}"
  for f in $(gpu_test_files | awk -v k="$k" -v n="$of" '(NR - 1) % n == k - 1'); do
    for i in $(seq "$n"); do record files "$f" deno test -A --no-check=remote "$f"; done
  done
}

stress_suite() {
  local n="$1" i
  for i in $(seq "$n"); do record suite "suite" deno task test; done
}

[ -z "$ONLY" ] || [ "$ONLY" = cli ] && stress_cli "$CLI_N"
[ -z "$ONLY" ] || [ "$ONLY" = files ] && stress_files "$FILES_N"
[ -z "$ONLY" ] || [ "$ONLY" = suite ] && stress_suite "$SUITE_N"

for cat in "${!CAT_RUNS[@]}"; do
  echo "$cat: ${CAT_RUNS[$cat]} runs, ${CAT_BAD[$cat]:-0} abnormal, ${CAT_FAILED[$cat]:-0} failed normally"
done
echo "exit stress: $RUNS runs, $ABNORMAL abnormal, $FAILED failed normally"
[ "$ABNORMAL" -eq 0 ]
