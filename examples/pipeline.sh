#!/usr/bin/env bash
# train → profile → moefy → bench, chained through checkpoints and --json.
#
#   examples/pipeline.sh [TEXT]     (TEXT: a .txt file or folder; default the embedded corpus)
#
# Trains the small model of examples/small.json densely (the flag overrides
# the file's SSD schedule: an SSD run already ends as an MoE checkpoint, which
# `ssd bench` takes as it is), profiles its checkpoints, turns the final
# dense weights into an MoE checkpoint, benches that against dense, and
# prints one line per stage from the JSON documents with jq. About 3 minutes
# on a 2-core machine without a GPU.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
DATA=()
[ $# -gt 0 ] && DATA=(--data "$1")
OUT=runs/example
mkdir -p runs
ssd() { deno run -A cli/main.ts "$@"; }

# A fresh run each time: --force replaces an earlier one in the folder.
ssd train --config examples/small.json --schedule dense --out "$OUT" --force "${DATA[@]}" \
  --json >"$OUT.train.json"
jq -r '"train: \(.step) steps, val \(.val.nll | . * 1000 | round / 1000) nats/token, " +
  "FFN FLOPs \(.accounting.flops_ratio | . * 100 | round / 100)x of dense"' "$OUT.train.json"

mapfile -t CKPTS < <(jq -r '.checkpoints[]' "$OUT.train.json")
ssd profile "${CKPTS[@]}" --experts 8 "${DATA[@]}" --json >"$OUT.profile.json"
jq -r '.similarity[] | "profile: checkpoints \(.from) → \(.to): partition ARI \(.ari_mean | . * 100 | round / 100)"' \
  "$OUT.profile.json"

FINAL="$(jq -r '.checkpoints[-1]' "$OUT.train.json")"
ssd moefy "$FINAL" --experts 8 --top-k 2 -o "$OUT.moe.safetensors" "${DATA[@]}" --json >"$OUT.moefy.json"
jq -r '"moefy: dense \(.dense.nll | . * 1000 | round / 1000), " +
  (.moe | map("k=\(.k) \(.nll | . * 1000 | round / 1000)") | join(", "))' "$OUT.moefy.json"

ssd bench "$OUT.moe.safetensors" --top-k 2,4 "${DATA[@]}" --json >"$OUT.bench.json"
jq -r '.rows[] | "bench: \(.mode) k=\(.top_k // "all"): \(.ffn_flops_per_token) FFN FLOPs/token, " +
  "decode b=1 \(.decode[0].ms_per_token | . * 10 | round / 10) ms/token"' "$OUT.bench.json"
