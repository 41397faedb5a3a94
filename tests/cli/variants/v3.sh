#!/usr/bin/env bash
# v3: 30 steps on tinystories-c (the notebook's AdamW recipe, accum 1) lower the mean loss of the last 5 steps
# by at least 0.5 nat below the first 5; generate works from the checkpoint and cached == --no-cache.
source "$(dirname "$0")/../common.sh"
m=v3
"$bin" train --model $m --data "$data" --seq 64 --batch 4 --accum 1 --threads 2 --log-every 10 --steps $steps30 --out "$work/$m" > "$work/$m.log" 2>&1 \
  || fail "$m train 30 steps: $(tail -5 "$work/$m.log")"
loss_falls "$m" "$work/$m/metrics.jsonl" 0.5
ck="$work/$m/checkpoint.safetensors"
"$bin" generate --checkpoint "$ck" --tokens 20 --seed 1 > "$work/gen" 2>"$work/err" || fail "$m generate: $(cat "$work/err")"
"$bin" generate --checkpoint "$ck" --tokens 20 --seed 1 --no-cache > "$work/gen2" 2>&1
[[ $(wc -c < "$work/gen") -gt 20 ]] && cmp -s "$work/gen" "$work/gen2" && pass "$m generate (cached == recompute): $(head -c 120 "$work/gen")" \
  || fail "$m generate: $(cat "$work/gen") | no-cache: $(cat "$work/gen2")"
finish
