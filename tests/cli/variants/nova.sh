#!/usr/bin/env bash
# v5.2 Nova-Ignition (float transformer, RoPE, GeGLU): 30 steps on tinystories-c lower the mean loss of the
# last 5 steps by at least 1.0 nat below the first 5 (seen here: 8.07 -> 6.33 with dropout 0.1, accum 1);
# eval and generate work from the checkpoint; the KV-cache path prints the same story as the recompute
# loop (--no-cache) while the context fits in seq_len, and generation past seq_len (cache refills) runs.
source "$(dirname "$0")/../common.sh"
m=nova
"$bin" train --model $m --data "$data" --seq 64 --batch 4 --accum 1 --threads 2 --log-every 10 --steps $steps30 --out "$work/$m" \
  > "$work/$m.log" 2>&1 || fail "$m train 30 steps: $(tail -5 "$work/$m.log")"
loss_falls "$m" "$work/$m/metrics.jsonl" 1.0
ck="$work/$m/checkpoint.safetensors"
"$bin" eval --checkpoint "$ck" --data "$data" --split val --json > "$work/eval.json" 2>"$work/err" \
  && grep -qE '"loss":[0-9.]+' "$work/eval.json" && pass "$m eval: $(cat "$work/eval.json")" || fail "$m eval: $(cat "$work/err")"
"$bin" generate --checkpoint "$ck" --tokens 30 --seed 1 > "$work/gen" 2>"$work/err" || fail "$m generate: $(cat "$work/err")"
"$bin" generate --checkpoint "$ck" --tokens 30 --seed 1 --no-cache > "$work/gen2" 2>&1
[[ $(wc -c < "$work/gen") -gt 20 ]] && cmp -s "$work/gen" "$work/gen2" && pass "$m generate (KV cache == recompute): $(head -c 120 "$work/gen")" \
  || fail "$m generate: $(cat "$work/gen") | no-cache: $(cat "$work/gen2")"
"$bin" generate --checkpoint "$ck" --tokens 150 --seed 2 > "$work/long" 2>"$work/err" && [[ $(wc -c < "$work/long") -gt 100 ]] \
  && pass "$m generates 150 tokens past seq_len 64" || fail "$m long generation: $(cat "$work/err")"
finish
