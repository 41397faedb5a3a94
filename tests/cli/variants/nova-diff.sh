#!/usr/bin/env bash
# v5.2 Nova-Ignition as announced (--model nova-diff: ternary differential attention + soft MoD + top-1 MoE):
# 30 steps on tinystories-c lower the mean loss of the last 5 steps by at least 1.0 nat below the first
# 5; generate works from the checkpoint and the KV-cache path prints the same story as the recompute loop
# (--no-cache); --upstream-compat (MoD weight in training only) trains and reaches the checkpoint config.
# Usage: nova-diff.sh BUILD_BIN_DIR DATA_DIR
source "$(dirname "$0")/../common.sh"
# The real 36.87M-parameter config; 64 tokens per step on one thread keep the run short (the fixed per-step
# cost of quantising 35.3M weights and AdamW over 36.9M dominates at this size).
common=(--model nova-diff --data "$data" --seq 32 --batch 2 --accum 1 --threads 1 --log-every 10 --eval-windows 8)
m=nova-diff
"$bin" train "${common[@]}" --steps $steps30 --out "$work/$m" > "$work/$m.log" 2>&1 || fail "$m train 30 steps: $(tail -5 "$work/$m.log")"
loss_falls "$m" "$work/$m/metrics.jsonl" 1.0
ck="$work/$m/checkpoint.safetensors"
# Loading the 36.9M-parameter checkpoint dominates each call, and --no-cache re-quantises every weight per
# token, so the comparison stays short (the unit tests compare cached and full logits across refills).
"$bin" generate --checkpoint "$ck" --tokens 12 --seed 1 > "$work/gen" 2>"$work/err" || fail "$m generate: $(cat "$work/err")"
"$bin" generate --checkpoint "$ck" --tokens 12 --seed 1 --no-cache > "$work/gen2" 2>&1
[[ $(wc -c < "$work/gen") -gt 20 ]] && cmp -s "$work/gen" "$work/gen2" && pass "$m generate (KV cache == recompute): $(head -c 120 "$work/gen")" \
  || fail "$m generate: $(cat "$work/gen") | no-cache: $(cat "$work/gen2")"

"$bin" train "${common[@]}" --steps 1 --upstream-compat --out "$work/u" > "$work/u.log" 2>&1 || fail "$m --upstream-compat train: $(tail -5 "$work/u.log")"
grep -q '"upstream_compat":true' <(python3 -c "
import json, struct, sys
f = open(sys.argv[1], 'rb'); n = struct.unpack('<Q', f.read(8))[0]
print(json.loads(f.read(n))['__metadata__']['config'].replace(' ', ''))" "$work/u/checkpoint.safetensors") &&
  pass "$m --upstream-compat reaches the checkpoint config" || fail "$m --upstream-compat: config lacks upstream_compat"
finish
