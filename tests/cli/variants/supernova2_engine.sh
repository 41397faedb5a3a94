#!/usr/bin/env bash
# v6.1 C engine (--model supernova2-engine): 30 SGD-momentum steps (the recipe's optimizer) on
# tinystories-c lower the loss; cached generation == --no-cache (every position is independent, so
# the window recompute gives the same tokens); --upstream-compat trains and generates.
source "$(dirname "$0")/../common.sh"
common=(--model supernova2-engine --data "$data" --seq 64 --batch 4 --accum 1 --threads 1 --log-every 10)

"$bin" train "${common[@]}" --steps $steps30 --out "$work/e" > "$work/e.log" 2>&1 || fail "supernova2-engine train 30 steps: $(tail -5 "$work/e.log")"
loss_falls "supernova2-engine" "$work/e/metrics.jsonl" 0.03
# SGD keeps its velocity in the checkpoint's first-moment slot; the second moment stays zero.
python3 - "$work/e/checkpoint.safetensors" <<'PY' && pass "checkpoint holds the SGD velocity (exp_avg non-zero, exp_avg_sq zero)" || fail "checkpoint optimizer state"
import json, struct, sys
f = open(sys.argv[1], 'rb'); n = struct.unpack('<Q', f.read(8))[0]; h = json.loads(f.read(n)); data = f.read()
def t(name):
    a, b = h[name]['data_offsets']; return struct.unpack('<%df' % ((b - a) // 4), data[a:b])
assert '"upstream_compat"' not in h['__metadata__']['config']
assert max(abs(v) for v in t('optimizer.exp_avg.W_up_0')) > 0
assert max(abs(v) for v in t('optimizer.exp_avg_sq.W_up_0')) == 0
PY
ck="$work/e/checkpoint.safetensors"
"$bin" generate --checkpoint "$ck" --tokens 20 --seed 1 > "$work/g1" 2>"$work/err" || fail "supernova2-engine generate: $(cat "$work/err")"
"$bin" generate --checkpoint "$ck" --tokens 20 --seed 1 --no-cache > "$work/g2" 2>&1
[[ $(wc -c < "$work/g1") -gt 20 ]] && cmp -s "$work/g1" "$work/g2" &&
  pass "supernova2-engine generate (cached == recompute): $(head -c 120 "$work/g1")" ||
  fail "supernova2-engine generate: $(cat "$work/g1") | no-cache: $(cat "$work/g2")"

"$bin" train "${common[@]}" --steps 3 --upstream-compat --out "$work/u" > "$work/u.log" 2>&1 || fail "supernova2-engine --upstream-compat train: $(tail -5 "$work/u.log")"
"$bin" generate --checkpoint "$work/u/checkpoint.safetensors" --tokens 10 --seed 1 > "$work/gu" 2>"$work/err" &&
  [[ $(wc -c < "$work/gu") -gt 10 ]] && pass "supernova2-engine --upstream-compat generate: $(head -c 80 "$work/gu")" ||
  fail "supernova2-engine --upstream-compat generate: $(cat "$work/err")"
finish
