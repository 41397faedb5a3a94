#!/usr/bin/env bash
# bolt-blockwise (altpav TeenyLM): 30 steps on tinystories-c lower the mean loss of the last 5 steps by at
# least 1.0 nat below the first 5; generate works from the checkpoint, cached == --no-cache, and the
# checkpoint records the blockwise config.
source "$(dirname "$0")/../common.sh"
m=bolt-blockwise
"$bin" train --model $m --data "$data" --seq 64 --batch 4 --threads 2 --log-every 10 --steps $steps30 --out "$work/$m" > "$work/$m.log" 2>&1 \
  || fail "$m train 30 steps: $(tail -5 "$work/$m.log")"
loss_falls "$m" "$work/$m/metrics.jsonl" 1.0
ck="$work/$m/checkpoint.safetensors"
"$bin" generate --checkpoint "$ck" --tokens 20 --seed 1 > "$work/gen" 2>"$work/err" || fail "$m generate: $(cat "$work/err")"
"$bin" generate --checkpoint "$ck" --tokens 20 --seed 1 --no-cache > "$work/gen2" 2>&1
[[ $(wc -c < "$work/gen") -gt 20 ]] && cmp -s "$work/gen" "$work/gen2" && pass "$m generate (cached == recompute): $(head -c 120 "$work/gen")" \
  || fail "$m generate: $(cat "$work/gen") | no-cache: $(cat "$work/gen2")"
"$bin" generate --checkpoint "$ck" --tokens 20 --seed 1 --quant int8 > "$work/gen8" 2>"$work/err" && [[ $(wc -c < "$work/gen8") -gt 20 ]] \
  && pass "$m generate --quant int8: $(head -c 80 "$work/gen8")" || fail "$m int8 generate: $(cat "$work/err")"
grep -aq '\\"quantizer\\":\\"blockwise\\"' "$ck" || grep -aq '"quantizer":"blockwise"' "$ck" && pass "checkpoint config names the blockwise quantizer" || fail "checkpoint config lacks quantizer"
finish
