#!/usr/bin/env bash
# v7 CORTEX (--model cortex): 30 training steps on tinystories-c lower the loss (the logged loss is the
# whole objective: final CE + exit CEs + consistency + diversity); cached generation == --no-cache, also
# with --early-exit; --upstream-compat trains and generates (window recompute).
source "$(dirname "$0")/../common.sh"
common=(--model cortex --data "$data" --seq 64 --batch 4 --accum 1 --threads 1 --log-every 10)

"$bin" train "${common[@]}" --steps $steps30 --out "$work/c" > "$work/c.log" 2>&1 || fail "cortex train 30 steps: $(tail -5 "$work/c.log")"
loss_falls "cortex" "$work/c/metrics.jsonl" 2.0
grep -q '"early_exit":false' <(python3 -c "
import json, struct, sys
f = open(sys.argv[1], 'rb'); n = struct.unpack('<Q', f.read(8))[0]
print(json.loads(f.read(n))['__metadata__']['config'].replace(' ', ''))" "$work/c/checkpoint.safetensors") &&
  pass "checkpoint config carries the exit settings" || fail "checkpoint config lacks early_exit"

ck="$work/c/checkpoint.safetensors"
for flags in "" "--early-exit"; do
  # shellcheck disable=SC2086
  "$bin" generate --checkpoint "$ck" --tokens 20 --seed 1 $flags > "$work/g1" 2>"$work/err" || fail "cortex generate $flags: $(cat "$work/err")"
  # shellcheck disable=SC2086
  "$bin" generate --checkpoint "$ck" --tokens 20 --seed 1 $flags --no-cache > "$work/g2" 2>&1
  [[ $(wc -c < "$work/g1") -gt 20 ]] && cmp -s "$work/g1" "$work/g2" &&
    pass "cortex generate $flags (cached == recompute): $(head -c 120 "$work/g1")" ||
    fail "cortex generate $flags: $(cat "$work/g1") | no-cache: $(cat "$work/g2")"
done

"$bin" train "${common[@]}" --steps 3 --upstream-compat --out "$work/u" > "$work/u.log" 2>&1 || fail "cortex --upstream-compat train: $(tail -5 "$work/u.log")"
"$bin" generate --checkpoint "$work/u/checkpoint.safetensors" --tokens 10 --seed 1 --early-exit > "$work/gu" 2>"$work/err" &&
  [[ $(wc -c < "$work/gu") -gt 16 ]] && pass "cortex --upstream-compat generate (window recompute): $(head -c 80 "$work/gu")" ||
  fail "cortex --upstream-compat generate: $(cat "$work/err")"
finish
