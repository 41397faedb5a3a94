#!/usr/bin/env bash
# altpav TeenyLM Delta (--model bolt-deltanet): 30 training steps on tinystories-c lower the loss; cached
# generation (matrix state kept) == --no-cache; --upstream-compat (the fork's undecayed prediction) trains
# and generates, cached == --no-cache too.
source "$(dirname "$0")/../common.sh"
common=(--model bolt-deltanet --data "$data" --seq 64 --batch 4 --accum 1 --threads 1 --log-every 10)

"$bin" train "${common[@]}" --steps $steps30 --out "$work/d" > "$work/d.log" 2>&1 || fail "bolt-deltanet train 30 steps: $(tail -5 "$work/d.log")"
loss_falls "bolt-deltanet" "$work/d/metrics.jsonl" 2.0
grep -q '"delta_form":"chunked"' <(python3 -c "
import json, struct, sys
f = open(sys.argv[1], 'rb'); n = struct.unpack('<Q', f.read(8))[0]
print(json.loads(f.read(n))['__metadata__']['config'].replace(' ', ''))" "$work/d/checkpoint.safetensors") &&
  pass "bolt-deltanet trains with the chunked delta rule (checkpoint config)" || fail "checkpoint config lacks delta_form chunked"

for run in d u; do
  if [[ $run == u ]]; then
    "$bin" train "${common[@]}" --steps 5 --upstream-compat --out "$work/u" > "$work/u.log" 2>&1 ||
      fail "bolt-deltanet --upstream-compat train: $(tail -5 "$work/u.log")"
    grep -q '"upstream_compat":true' <(python3 -c "
import json, struct, sys
f = open(sys.argv[1], 'rb'); n = struct.unpack('<Q', f.read(8))[0]
print(json.loads(f.read(n))['__metadata__']['config'].replace(' ', ''))" "$work/u/checkpoint.safetensors") &&
      pass "checkpoint config carries upstream_compat" || fail "checkpoint config lacks upstream_compat"
  fi
  ck="$work/$run/checkpoint.safetensors"
  "$bin" generate --checkpoint "$ck" --prompt "Once upon a time" --tokens 24 --seed 1 --threads 1 > "$work/g1" 2>"$work/err" || fail "bolt-deltanet generate ($run): $(cat "$work/err")"
  "$bin" generate --checkpoint "$ck" --prompt "Once upon a time" --tokens 24 --seed 1 --threads 1 --no-cache > "$work/g2" 2>&1
  [[ $(wc -c < "$work/g1") -gt 20 ]] && cmp -s "$work/g1" "$work/g2" &&
    pass "bolt-deltanet generate ($run, cached == recompute): $(head -c 120 "$work/g1")" ||
    fail "bolt-deltanet generate ($run): $(cat "$work/g1") | no-cache: $(cat "$work/g2")"
done
finish
