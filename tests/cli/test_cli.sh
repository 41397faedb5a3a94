#!/usr/bin/env bash
# End-to-end CLI checks: training lowers the loss, resume is exact, eval/generate work from one
# checkpoint file, and bad input gets one clear error and a non-zero exit.
# Usage: test_cli.sh BUILD_BIN_DIR DATA_DIR
source "$(dirname "$0")/common.sh"
# expect_error NAME PATTERN CMD... : CMD must exit non-zero and print PATTERN on stderr.
expect_error() {
  local name="$1" pat="$2"; shift 2
  "$@" >"$work/out" 2>"$work/err"; local rc=$?
  if [[ $rc -ne 0 ]] && grep -qiE "$pat" "$work/err"; then pass "$name (rc=$rc: $(head -c 160 "$work/err" | tr '\n' ' '))"
  else fail "$name: rc=$rc stderr=$(cat "$work/err") stdout=$(tail -3 "$work/out")"; fi
}
common=(--data "$data" --seq 64 --batch 4 --threads 2 --log-every 10)

# 1. 30 steps of Bolt on tinystories-c: the mean loss of the last 5 steps is at least 1.0 nat below the first 5.
"$bin" train "${common[@]}" --steps 30 --out "$work/a" > "$work/a.log" 2>&1 || fail "train 30 steps: $(tail -5 "$work/a.log")"
grep -q "step     30/30 | loss" "$work/a.log" && pass "progress line printed" || fail "no progress line"
grep -q "ETA" "$work/a.log" && grep -q "tok/s" "$work/a.log" || fail "progress line lacks tok/s or ETA"
first=$(losses "$work/a/metrics.jsonl" | head -5 | awk '{s+=$1} END {print s/NR}')
last=$(losses "$work/a/metrics.jsonl" | tail -5 | awk '{s+=$1} END {print s/NR}')
awk -v f="$first" -v l="$last" 'BEGIN {exit !(l <= f - 1.0)}' && pass "loss falls: first5 $first -> last5 $last" || fail "loss did not fall by 1.0: $first -> $last"

# 2. resume: 20 steps == 10 + resume + 10, loss for loss.
"$bin" train "${common[@]}" --steps 20 --out "$work/full" >/dev/null 2>&1
"$bin" train "${common[@]}" --steps 20 --stop-after 10 --out "$work/half" >/dev/null 2>&1
"$bin" train "${common[@]}" --steps 20 --resume "$work/half/checkpoint.safetensors" --out "$work/half" >/dev/null 2>&1
if [[ $(losses "$work/full/metrics.jsonl" | wc -l) -eq 20 ]] && diff <(losses "$work/full/metrics.jsonl") <(losses "$work/half/metrics.jsonl") >/dev/null; then
  pass "resume reproduces 20 losses exactly (last $(losses "$work/full/metrics.jsonl" | tail -1))"
else fail "resume differs: $(paste <(losses "$work/full/metrics.jsonl") <(losses "$work/half/metrics.jsonl") | tail -12 | tr '\n' ' ')"; fi
cmp -s "$work/full/checkpoint.safetensors" "$work/half/checkpoint.safetensors" && pass "resumed checkpoint is byte-identical" || echo "note: checkpoints differ only in metadata (elapsed time)"

# 3. eval and generate need only the checkpoint.
ck="$work/a/checkpoint.safetensors"
"$bin" eval --checkpoint "$ck" --data "$data" --split val --json > "$work/eval.json" 2>"$work/err" || fail "eval: $(cat "$work/err")"
grep -qE '"bpb":[0-9.]+' "$work/eval.json" && grep -qE '"loss":[0-9.]+' "$work/eval.json" && pass "eval --json: $(cat "$work/eval.json")" || fail "eval json: $(cat "$work/eval.json")"
"$bin" generate --checkpoint "$ck" --prompt "Once upon a time" --tokens 20 --seed 1 > "$work/gen.txt" 2>"$work/err" || fail "generate: $(cat "$work/err")"
[[ $(wc -c < "$work/gen.txt") -gt 20 ]] && pass "generate: $(head -c 120 "$work/gen.txt")" || fail "generate printed too little"
"$bin" generate --checkpoint "$ck" --tokens 20 --seed 1 > "$work/gen2.txt" 2>&1
cmp -s "$work/gen.txt" "$work/gen2.txt" && pass "generation is seeded" || fail "same seed, different story"

# 4. CORTEX-III / CORTEX-VI (float, v7.1/v7.2): 30 steps on tinystories-c lower the mean loss of the last 5
#    steps by at least 1.0 nat below the first 5; generate works from the checkpoint, and the cached path
#    prints the same story as the recompute loop (--no-cache).
for m in cortex3 cortex6; do
  "$bin" train --model "$m" "${common[@]}" --steps 30 --out "$work/$m" > "$work/$m.log" 2>&1 || fail "$m train 30 steps: $(tail -5 "$work/$m.log")"
  first=$(losses "$work/$m/metrics.jsonl" | head -5 | awk '{s+=$1} END {print s/NR}')
  last=$(losses "$work/$m/metrics.jsonl" | tail -5 | awk '{s+=$1} END {print s/NR}')
  awk -v f="$first" -v l="$last" 'BEGIN {exit !(l <= f - 1.0)}' && pass "$m loss falls: first5 $first -> last5 $last" || fail "$m loss did not fall by 1.0: $first -> $last"
  "$bin" generate --checkpoint "$work/$m/checkpoint.safetensors" --tokens 20 --seed 1 > "$work/$m.gen" 2>"$work/err" || fail "$m generate: $(cat "$work/err")"
  "$bin" generate --checkpoint "$work/$m/checkpoint.safetensors" --tokens 20 --seed 1 --no-cache > "$work/$m.gen2" 2>&1
  [[ $(wc -c < "$work/$m.gen") -gt 20 ]] && cmp -s "$work/$m.gen" "$work/$m.gen2" && pass "$m generate (cached == recompute): $(head -c 120 "$work/$m.gen")" || fail "$m generate: $(cat "$work/$m.gen") | no-cache: $(cat "$work/$m.gen2")"
done
expect_error "upstream-compat on bolt" "no --upstream-compat" "$bin" train --model bolt --upstream-compat "${common[@]}" --steps 1 --out "$work/x"

# 5. bad input: one clear message, non-zero exit.
expect_error "no --data" "pass --data" "$bin" train --steps 1 --out "$work/x"
expect_error "missing data file" "cannot open data file" "$bin" train --data "$work/nope.txt" --steps 1 --out "$work/x"
: > "$work/empty.txt"
expect_error "empty corpus" "is empty" "$bin" train --data "$work/empty.txt" --steps 1 --out "$work/x"
expect_error "unknown flag" "didn't expect|not expected|extras|unknown" "$bin" train --data "$data" --steps 1 --bogus
expect_error "unknown subcommand" "extras|not expected|didn't expect|subcommand" "$bin" fly
expect_error "negative steps" "steps" "$bin" train --data "$data" --steps -5
expect_error "non-numeric lr" "lr" "$bin" train --data "$data" --steps 1 --lr abc
expect_error "unknown model" "unknown model" "$bin" train --model nosuch --data "$data" --steps 1 --out "$work/x"
expect_error "no run length" "steps|minutes" "$bin" train --data "$data" --out "$work/x"
expect_error "seq beyond model" "exceeds" "$bin" eval --checkpoint "$ck" --data "$data" --seq 100000
head -c 1000 "$ck" > "$work/trunc.safetensors"
expect_error "truncated checkpoint" "truncat|header|exceeds|bytes" "$bin" eval --checkpoint "$work/trunc.safetensors" --data "$data"
: > "$work/zero.safetensors"
expect_error "zero-length checkpoint" "bytes|truncat|small|empty" "$bin" generate --checkpoint "$work/zero.safetensors"
cp "$ck" "$work/flip.safetensors"
size=$(stat -c %s "$ck")
printf '\x5a' | dd of="$work/flip.safetensors" bs=1 seek=$((size - 100)) conv=notrunc 2>/dev/null
expect_error "bit-flipped checkpoint" "checksum" "$bin" eval --checkpoint "$work/flip.safetensors" --data "$data"
printf 'not a checkpoint at all, just text\n' > "$work/text.safetensors"
expect_error "text as checkpoint" "header|bytes|truncat|json" "$bin" eval --checkpoint "$work/text.safetensors" --data "$data"

# 6. more bad input (docs/errors.md lists every case and its message). Checkpoints edited in their
#    metadata (not covered by the tensor checksum) and hostile headers, written with Python's stdlib.
edit_ck() {  # edit_ck SRC DST PYTHON-EXPR-ON-h : rewrites the JSON header of SRC into DST
  python3 - "$1" "$2" "$3" <<'PY'
import json, struct, sys
src, dst, expr = sys.argv[1:]
b = open(src, 'rb').read(); n = struct.unpack('<Q', b[:8])[0]; h = json.loads(b[8:8 + n]); data = b[8 + n:]
m = h.get('__metadata__', {}); cfg = json.loads(m.get('config', '{}'))
exec(expr)
if '__metadata__' in h: m['config'] = json.dumps(cfg)
s = json.dumps(h).encode(); s += b' ' * ((8 - len(s) % 8) % 8)
open(dst, 'wb').write(struct.pack('<Q', len(s)) + s + data)
PY
}
expect_error "missing file names the reason" "No such file" "$bin" train --data "$work/nope.txt" --steps 1 --out "$work/x"
edit_ck "$ck" "$work/shape.safetensors" "cfg['dim'] = 128"
expect_error "config/tensor shape mismatch" "has shape \[.*\] but the model expects" "$bin" eval --checkpoint "$work/shape.safetensors" --data "$data"
edit_ck "$ck" "$work/huge.safetensors" "cfg['vocab_size'] = 2000000000"
expect_error "config declares a huge model" "declares [0-9]+ parameter values, more than the [0-9]+ its checkpoint holds" "$bin" generate --checkpoint "$work/huge.safetensors"
edit_ck "$ck" "$work/model.safetensors" "m['model'] = 'cortex3'"
expect_error "checkpoint of another model" "missing tensor" "$bin" eval --checkpoint "$work/model.safetensors" --data "$data"
edit_ck "$ck" "$work/tok.safetensors" "m['tokenizer'] = 'QUJDRA=='"
expect_error "tokenizer does not parse" "tokenizer does not parse" "$bin" generate --checkpoint "$work/tok.safetensors"
# found by tests/fuzz/fuzz_tokenizer: libsentencepiece's darts-clone throws on this proto
edit_ck "$ck" "$work/darts.safetensors" "m['tokenizer'] = 'Cg4KBT11bms+FQAAAAAYAgoMCgMAFeIVAOKWMDB4'"
expect_error "tokenizer that makes sentencepiece throw" "tokenizer does not parse:.*zero-length key" "$bin" generate --checkpoint "$work/darts.safetensors"
edit_ck "$ck" "$work/b64.safetensors" "m['tokenizer'] = 'not base64!'"
expect_error "tokenizer not base64" "malformed metadata: base64" "$bin" generate --checkpoint "$work/b64.safetensors"
edit_ck "$ck" "$work/foreign.safetensors" "del h['__metadata__']"
expect_error "safetensors without flashlm metadata" "not a flashlm checkpoint" "$bin" eval --checkpoint "$work/foreign.safetensors" --data "$data"
edit_ck "$ck" "$work/state.safetensors" "m['train_state'] = json.dumps({'step': 'x'})"
expect_error "malformed train_state on resume" "malformed train_state" "$bin" train "${common[@]}" --steps 40 --resume "$work/state.safetensors" --out "$work/x"
python3 -c "
import json, struct, sys
s = json.dumps({'w': {'dtype': 'F32', 'shape': [10**12], 'data_offsets': [0, 4 * 10**12]}}).encode()
open(sys.argv[1], 'wb').write(struct.pack('<Q', len(s)) + s + bytes(64))" "$work/hugetensor.safetensors"
expect_error "huge tensor declared in a 100-byte file" "within the 64-byte data region" "$bin" eval --checkpoint "$work/hugetensor.safetensors" --data "$data"
expect_error "negative --tokens" "tokens: must be zero or a positive" "$bin" generate --checkpoint "$ck" --tokens -3
expect_error "non-numeric --batch" "batch: must be a positive number" "$bin" eval --checkpoint "$ck" --data "$data" --batch abc
expect_error "NaN --temperature" "temperature: must be zero or a positive" "$bin" generate --checkpoint "$ck" --temperature nan
expect_error "negative --skip-nonfinite" "skip-nonfinite: must be zero" "$bin" train --data "$data" --steps 1 --skip-nonfinite -1
expect_error "non-numeric --save-every" "save-every: must be zero" "$bin" train --data "$data" --steps 1 --save-every abc
# a damaged token cache (id outside the vocabulary, odd size) is rebuilt with a note, not trusted
cp "$work/a/train.bin" "$work/train.bin.orig"
printf '\xff\xff' | dd of="$work/a/train.bin" bs=1 seek=10 conv=notrunc 2>/dev/null
touch -r "$work/train.bin.orig" "$work/a/train.bin"
"$bin" train "${common[@]}" --steps 31 --resume "$work/a/checkpoint.safetensors" --out "$work/a" > "$work/out" 2>"$work/err" && grep -q "rebuilding the token cache:.*outside the vocabulary" "$work/err" &&
  cmp -s "$work/a/train.bin" "$work/train.bin.orig" && pass "damaged token cache rebuilt: $(cat "$work/err")" || fail "damaged token cache: $(cat "$work/err")"
# invalid UTF-8 text: SentencePiece byte fallback tokenizes it (no refusal)
for i in $(seq 200); do printf 'a \xff\xfe\xc3 broken \xe2\x82 text %d\n' "$i"; done > "$work/bad-utf8.txt"
"$bin" train --data "$work/bad-utf8.txt" --seq 16 --batch 2 --threads 2 --vocab 300 --steps 2 --out "$work/u" > "$work/out" 2>"$work/err" &&
  pass "invalid UTF-8 text trains (byte fallback)" || fail "invalid UTF-8 text: $(cat "$work/err")"

finish
