#!/usr/bin/env bash
# v3: 30 steps of batch 8 on tinystories-c (the notebook's AdamW recipe, accum 1) lower the mean loss of the last 5 steps
# by at least 0.5 nat below the first 5 with the loss on the recipe's random 25 % of positions; resume is exact
# with that sample; generate works from the checkpoint and cached == --no-cache.
source "$(dirname "$0")/../common.sh"
m=v3
"$bin" train --model $m --data "$data" --seq 64 --batch 8 --accum 1 --threads 2 --log-every 10 --steps $steps30 --out "$work/$m" > "$work/$m.log" 2>&1 \
  || fail "$m train 30 steps: $(tail -5 "$work/$m.log")"
loss_falls "$m" "$work/$m/metrics.jsonl" 0.5
grep -q "training loss on 128 of 512 positions per micro-batch (--pos-fraction 0.25)" "$work/$m.log" \
  && pass "$m trains on the recipe's 25 % of positions" || fail "$m: no position-sampling line in $(head -3 "$work/$m.log")"
# The sample is drawn from the trainer's checkpointed stream: 20 steps == 10 + resume + 10, loss for loss.
pc=(--model $m --data "$data" --seq 64 --batch 4 --accum 1 --threads 2 --steps $steps20)
"$bin" train "${pc[@]}" --out "$work/full" >/dev/null 2>&1
"$bin" train "${pc[@]}" --stop-after $steps10 --out "$work/half" >/dev/null 2>&1
"$bin" train "${pc[@]}" --resume "$work/half/checkpoint.safetensors" --out "$work/half" >/dev/null 2>&1
if [[ $(losses "$work/full/metrics.jsonl" | wc -l) -eq $steps20 ]] && diff <(losses "$work/full/metrics.jsonl") <(losses "$work/half/metrics.jsonl") >/dev/null; then
  pass "$m resume with sampled positions reproduces $steps20 losses exactly"
else fail "$m resume differs: $(paste <(losses "$work/full/metrics.jsonl") <(losses "$work/half/metrics.jsonl") | tail -6 | tr '\n' ' ')"; fi
# --pos-fraction 1: every position, so other losses than the sampled run's.
"$bin" train "${pc[@]}" --pos-fraction 1 --out "$work/all" >/dev/null 2>&1 || fail "$m --pos-fraction 1"
if [[ $(losses "$work/all/metrics.jsonl" | wc -l) -eq $steps20 ]] && ! diff <(losses "$work/full/metrics.jsonl") <(losses "$work/all/metrics.jsonl") >/dev/null; then
  pass "$m --pos-fraction 1 trains on every position (its losses differ from the sampled run's)"
else fail "$m --pos-fraction 1: $(losses "$work/all/metrics.jsonl" | tail -3 | tr '\n' ' ')"; fi
ck="$work/$m/checkpoint.safetensors"
"$bin" generate --checkpoint "$ck" --tokens 20 --seed 1 > "$work/gen" 2>"$work/err" || fail "$m generate: $(cat "$work/err")"
"$bin" generate --checkpoint "$ck" --tokens 20 --seed 1 --no-cache > "$work/gen2" 2>&1
[[ $(wc -c < "$work/gen") -gt 20 ]] && cmp -s "$work/gen" "$work/gen2" && pass "$m generate (cached == recompute): $(head -c 120 "$work/gen")" \
  || fail "$m generate: $(cat "$work/gen") | no-cache: $(cat "$work/gen2")"
finish
