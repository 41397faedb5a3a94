#!/usr/bin/env bash
# FlashLM v5 Thunderbolt through the CLI: 30 steps on tinystories-c lower the mean loss of the last 5 steps
# by at least 1.0 nat below the first 5; generate works from the checkpoint, and the cached path (recurrent
# state) prints the same story as the recompute loop (--no-cache). --upstream-compat trains too (its
# GroupNorm spans the window, so it has no cache and generates by recomputing).
# Usage: thunderbolt.sh BUILD_BIN_DIR DATA_DIR
source "$(dirname "$0")/../common.sh"
# The real 29.75M-parameter config; 64 tokens per step on one thread keep the run short (the fixed
# per-step cost of quantising 26.5M weights and AdamW over 29.75M dominates at this size).
common=(--data "$data" --seq 32 --batch 2 --accum 1 --threads 1 --log-every 10 --eval-windows 8)

m=thunderbolt
"$bin" train --model $m "${common[@]}" --steps $steps30 --out "$work/$m" > "$work/$m.log" 2>&1 || fail "$m train 30 steps: $(tail -5 "$work/$m.log")"
loss_falls "$m" "$work/$m/metrics.jsonl" 1.0
ck="$work/$m/checkpoint.safetensors"
"$bin" generate --checkpoint "$ck" --tokens 20 --seed 1 > "$work/gen" 2>"$work/err" || fail "$m generate: $(cat "$work/err")"
"$bin" generate --checkpoint "$ck" --tokens 20 --seed 1 --no-cache > "$work/gen2" 2>&1
[[ $(wc -c < "$work/gen") -gt 20 ]] && cmp -s "$work/gen" "$work/gen2" && pass "$m generate (cached == recompute): $(head -c 120 "$work/gen")" || fail "$m generate: $(cat "$work/gen") | no-cache: $(cat "$work/gen2")"
"$bin" generate --checkpoint "$ck" --tokens 20 --seed 1 --quant int8 > "$work/gen8" 2>"$work/err" && [[ $(wc -c < "$work/gen8") -gt 20 ]] && pass "$m generate --quant int8: $(head -c 120 "$work/gen8")" || fail "$m int8 generate: $(cat "$work/err")"

"$bin" train --model $m --upstream-compat "${common[@]}" --steps 3 --out "$work/compat" > "$work/compat.log" 2>&1 || fail "$m --upstream-compat train: $(tail -5 "$work/compat.log")"
grep -q '"upstream_compat":true' <(head -c 20000 "$work/compat/checkpoint.safetensors" | tr -d '\\') && pass "$m --upstream-compat checkpoint records the mode" || fail "$m --upstream-compat not recorded in the checkpoint"
"$bin" generate --checkpoint "$work/compat/checkpoint.safetensors" --tokens 5 --seed 1 > "$work/genc" 2>"$work/err" && pass "$m --upstream-compat generates (recompute): $(head -c 80 "$work/genc")" || fail "$m compat generate: $(cat "$work/err")"
finish
