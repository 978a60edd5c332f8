#!/usr/bin/env bash
# Reproduces the abort at exit of long WebGPU processes and shows the
# workaround, on this machine's Deno and Mesa:
#
#   tests/stress/exit_repro.sh [RUNS]      (default 12 runs per backend set)
#
# Each run is one `deno test` process over COPIES copies of
# tests/core/memory_test.ts (about a minute of GPU work in one process),
# alternately with Deno's default backend set forced back on
# (DENO_WEBGPU_BACKEND=vulkan,gl: what Deno picks when the variable is unset)
# and with Vulkan alone (what gpu/device.ts sets on Linux). With GL in the set,
# wgpu loads glvnd's libEGL, whose per-thread state is freed twice at exit;
# glibc then aborts some of those processes after their last test passed
# ("corrupted size vs. prev_size", "double free or corruption", exit 134).
# Measured on Mesa 25 llvmpipe, Deno 2.9.6, 2 cores, before the fix: 3 of 24
# processes with the default set aborted, 0 of 12 with Vulkan alone; after
# it (Vulkan chosen by gpu/device.ts), 0 of 12.
# `deno run -A tests/stress/exit_repro.ts --maps` shows, with raw WebGPU and
# nothing of ssd, whether libEGL is mapped into a process.
set -uo pipefail
RUNS="${1:-12}" COPIES="${COPIES:-30}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT" || exit 2
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}" NO_COLOR=1
# The copies live beside the original so that its relative imports resolve.
DIR="tests/core/_exit_repro_$$"
mkdir -p "$DIR"
trap 'rm -rf "$DIR"' EXIT
for i in $(seq -w 1 "$COPIES"); do
  sed 's#"\.\./#"../../#g' tests/core/memory_test.ts >"$DIR/m${i}_test.ts"
done
declare -A aborted=([vulkan,gl]=0 [vulkan]=0) ran=([vulkan,gl]=0 [vulkan]=0)
for i in $(seq "$RUNS"); do
  for backends in vulkan,gl vulkan; do
    DENO_WEBGPU_BACKEND="$backends" deno test -A "$DIR" >"$DIR/log" 2>&1
    rc=$?
    ran[$backends]=$((ran[$backends] + 1))
    if [ "$rc" -gt 128 ]; then
      aborted[$backends]=$((aborted[$backends] + 1))
      echo "run $i, DENO_WEBGPU_BACKEND=$backends: exit $rc: $(tail -n 1 "$DIR/log")"
    fi
  done
done
for backends in vulkan,gl vulkan; do
  echo "DENO_WEBGPU_BACKEND=$backends: ${aborted[$backends]} of ${ran[$backends]} processes aborted at exit"
done
