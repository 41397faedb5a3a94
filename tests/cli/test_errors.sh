#!/usr/bin/env bash
# Bad input gets one clear error on stderr and a non-zero exit (docs/errors.md lists every case). Kept
# apart from test_cli.sh so the sanitizer step (scripts/sanitize.sh --ci) can run every error path under
# ASan+UBSan in a minute: it trains only a 3-step checkpoint to corrupt.
# Usage: test_errors.sh BUILD_BIN_DIR DATA_DIR
source "$(dirname "$0")/common.sh"
common=(--data "$data" --seq 64 --batch 4 --threads 2 --log-every 10)

"$bin" train "${common[@]}" --steps 3 --out "$work/a" > "$work/a.log" 2>&1 || fail "train 3 steps: $(tail -5 "$work/a.log")"
ck="$work/a/checkpoint.safetensors"

# 1. bad input: one clear message, non-zero exit.
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
expect_error "--matmul bf16 on a CPU without AVX512_BF16 (hidden by FLASHLM_ISA)" "needs a CPU with AVX512_BF16" env FLASHLM_ISA=avx2 "$bin" train --data "$data" --steps 1 --matmul bf16 --out "$work/x"
expect_error "--pos-fraction on a variant without it" "every position only" "$bin" train --data "$data" --steps 1 --pos-fraction 0.5 --out "$work/x"
expect_error "--pos-fraction outside (0, 1]" "pos-fraction" "$bin" train --model v3 --data "$data" --steps 1 --pos-fraction 1.5 --out "$work/x"
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

# 2. more bad input (docs/errors.md lists every case and its message). Checkpoints edited in their
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
expect_error "malformed train_state on resume" "malformed train_state" "$bin" train "${common[@]}" --steps 10 --resume "$work/state.safetensors" --out "$work/x"
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
"$bin" train "${common[@]}" --steps 4 --resume "$work/a/checkpoint.safetensors" --out "$work/a" > "$work/out" 2>"$work/err" && grep -q "rebuilding the token cache:.*outside the vocabulary" "$work/err" &&
  cmp -s "$work/a/train.bin" "$work/train.bin.orig" && pass "damaged token cache rebuilt: $(cat "$work/err")" || fail "damaged token cache: $(cat "$work/err")"
# invalid UTF-8 text: SentencePiece byte fallback tokenizes it (no refusal)
for i in $(seq 200); do printf 'a \xff\xfe\xc3 broken \xe2\x82 text %d\n' "$i"; done > "$work/bad-utf8.txt"
"$bin" train --data "$work/bad-utf8.txt" --seq 16 --batch 2 --threads 2 --vocab 300 --steps 2 --out "$work/u" > "$work/out" 2>"$work/err" &&
  pass "invalid UTF-8 text trains (byte fallback)" || fail "invalid UTF-8 text: $(cat "$work/err")"

# 3. Limits of the other loaders (tokenizer.json, tiktoken ranks, remap JSON, shard sidecar and index):
#    sizes and ids are validated before anything is allocated from them, and a sidecar names only files
#    beside its shard.
src_dir=$(cd "$(dirname "$0")/../.." && pwd)
tk=(train --data "$data" --seq 16 --batch 2 --threads 2 --steps 1 --out "$work/x" --tokenizer)
echo '{"model": {"type": "BPE", "vocab": {"a": 4000000000}, "merges": []}}' > "$work/hf-id.json"
expect_error "tokenizer.json with a vocab id beyond 2^31" "vocab id of 'a' is not a non-negative integer" "$bin" "${tk[@]}" "$work/hf-id.json"
echo '{"model": {"type": "BPE", "vocab": {"a": 70000}, "merges": []}}' > "$work/hf-big.json"
expect_error "tokenizer.json with an id beyond uint16" "ids up to 70000 do not fit uint16 token files" "$bin" "${tk[@]}" "$work/hf-big.json"
printf 'export default {"bpe_ranks": "! 0 AA== AQ==", "special_tokens": {"<|endoftext|>": 9223372036854775807}};\n' > "$work/ranks.js"
expect_error "tiktoken special id beyond uint16" "special token '<\|endoftext\|>' has no integer id in \[0, 65535\)" "$bin" "${tk[@]}" "$work/ranks.js"
# found by tests/fuzz/fuzz_tokenizer: two tokens of one rank loaded, but a checkpoint could not load them back
expect_error "tiktoken ranks with a rank given twice" "rank 234 is given to two tokens" "$bin" "${tk[@]}" "$src_dir/tests/fuzz/regressions/tokenizer-tiktoken-duplicate-rank"
echo '{"flashlm_tokenizer": "remap/1", "specials": ["<unk>"], "unk_id": 0, "eos_id": 0, "vocab_size": 1e300, "base_ids": [], "base": {}}' > "$work/remap-big.json"
expect_error "remap with a vocab_size of 1e300" "remap vocab_size must be an integer in \[0, 65535\], got 1e\+300" "$bin" "${tk[@]}" "$work/remap-big.json"
"$bin" tokenize --tokenizer "$work/a/tokenizer.model" --data "$data" --out "$work/sh" > /dev/null 2>&1 || fail "tokenize for the sidecar cases"
side="$work/sh/shard-00000.bin.json"
cp "$side" "$work/side.orig"
python3 -c 'import json, sys; j = json.load(open(sys.argv[1])); j["sources"] = ["x" * 100] * 12000; json.dump(j, open(sys.argv[1], "w"))' "$side"
expect_error "sidecar over 1 MB" "has [0-9]+ bytes; a token file's sidecar has at most 1048576" "$bin" eval --checkpoint "$ck" --data "$work/sh"
python3 -c 'import json, sys; j = json.load(open(sys.argv[2])); j["tokens"] = 1e300; json.dump(j, open(sys.argv[1], "w"))' "$side" "$work/side.orig"
expect_error "sidecar token count that is not an integer" "sidecar '.*': tokens must be an integer, got 1e\+300" "$bin" eval --checkpoint "$ck" --data "$work/sh"
python3 -c 'import json, sys; j = json.load(open(sys.argv[2])); j["doc_index"] = "../a/train.bin"; json.dump(j, open(sys.argv[1], "w"))' "$side" "$work/side.orig"
expect_error "sidecar naming a file outside the shard's directory" "doc_index '../a/train.bin' is not a file name in the shard's directory" "$bin" eval --checkpoint "$ck" --data "$work/sh"

finish
