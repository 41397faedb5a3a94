#!/usr/bin/env bash
# CLI with other tokenizers: train --tokenizer with a tokenizer.json and with a gpt2-remap made by
# train-tokenizer; the checkpoint embeds the tokenizer, so eval and generate need nothing else; bad
# tokenizer files and flag mixes end in one clear error.
# Usage: test_cli_tokenizers.sh BUILD_BIN_DIR DATA_DIR REPO_ROOT
source "$(dirname "$0")/../cli/common.sh"
root=$3
ranks="$root/npm/node_modules/js-tiktoken/dist/ranks/gpt2.js"
fixture="$root/tests/tokenizers/bytelevel_bpe.json"
expect_error() {
  local name="$1" pat="$2"; shift 2
  "$@" >"$work/out" 2>"$work/err"; local rc=$?
  if [[ $rc -ne 0 ]] && grep -qiE "$pat" "$work/err"; then pass "$name (rc=$rc: $(head -c 160 "$work/err" | tr '\n' ' '))"
  else fail "$name: rc=$rc stderr=$(cat "$work/err") stdout=$(tail -3 "$work/out")"; fi
}
base=(--data "$data" --seq 32 --batch 2 --threads 2 --log-every 2 --eval-windows 2)
short=("${base[@]}" --steps 4)

# 1. a byte-level BPE tokenizer.json: trained with, copied beside the checkpoint, embedded in it.
"$bin" train "${short[@]}" --tokenizer "$fixture" --out "$work/hf" > "$work/hf.log" 2>&1 || fail "train --tokenizer json: $(tail -3 "$work/hf.log")"
grep -q "vocab 960" "$work/hf.log" && pass "tokenizer.json sets the vocabulary (960)" || fail "vocab: $(grep model "$work/hf.log")"
cmp -s "$fixture" "$work/hf/tokenizer.json" && pass "tokenizer.json copied to the run folder" || fail "tokenizer.json copy differs"
"$bin" generate --checkpoint "$work/hf/checkpoint.safetensors" --prompt "Once upon a time" --tokens 10 --seed 1 > "$work/gen" 2>"$work/err" \
  && [[ $(head -c 16 "$work/gen") == "Once upon a time" ]] && pass "generate with the embedded tokenizer.json: $(head -c 80 "$work/gen" | tr '\n' ' ')" \
  || fail "generate: $(cat "$work/err")"
"$bin" eval --checkpoint "$work/hf/checkpoint.safetensors" --data "$data" --split val --json > "$work/ev" 2>"$work/err" \
  && grep -qE '"bpb":[0-9.]+' "$work/ev" && pass "eval with the embedded tokenizer.json" || fail "eval: $(cat "$work/err")"
"$bin" train "${base[@]}" --steps 6 --resume "$work/hf/checkpoint.safetensors" --out "$work/hf" > "$work/res.log" 2>&1 \
  && grep -q "resumed from" "$work/res.log" && pass "resume keeps the tokenizer.json" || fail "resume: $(tail -3 "$work/res.log")"

# 2. upstream v4's tokenizer: GPT-2 ids (js-tiktoken's ranks) remapped to the 500 most frequent + 4 specials.
"$bin" train-tokenizer --type gpt2-remap --vocab 504 --data "$data" --gpt2-ranks "$ranks" --out "$work/remap.json" > "$work/tt.log" 2>&1 \
  && pass "train-tokenizer gpt2-remap: $(head -1 "$work/tt.log")" || fail "train-tokenizer gpt2-remap: $(cat "$work/tt.log")"
"$bin" train "${short[@]}" --tokenizer "$work/remap.json" --out "$work/rm" > "$work/rm.log" 2>&1 \
  && grep -q "vocab 504" "$work/rm.log" && pass "train --tokenizer remap (vocab 504)" || fail "train remap: $(tail -3 "$work/rm.log")"
"$bin" generate --checkpoint "$work/rm/checkpoint.safetensors" --prompt "Once upon a time" --tokens 10 --seed 1 > "$work/gen" 2>"$work/err" \
  && [[ $(head -c 16 "$work/gen") == "Once upon a time" ]] && pass "generate with the embedded remap: $(head -c 80 "$work/gen" | tr '\n' ' ')" \
  || fail "generate remap: $(cat "$work/err")"

# 3. SentencePiece unigram through train-tokenizer, then train --tokenizer with it.
"$bin" train-tokenizer --type unigram --vocab 400 --data "$data" --out "$work/uni.model" --threads 2 > "$work/uni.log" 2>&1 \
  && "$bin" train "${short[@]}" --tokenizer "$work/uni.model" --out "$work/uni" > "$work/uni2.log" 2>&1 \
  && pass "unigram: $(tail -1 "$work/uni.log")" || fail "unigram: $(tail -3 "$work/uni.log" "$work/uni2.log" 2>/dev/null)"

# 4. errors
printf '{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a b"]}}' > "$work/bad.json"
expect_error "merge naming a missing token" "bad.json' does not parse: merge #0" "$bin" train "${short[@]}" --tokenizer "$work/bad.json" --out "$work/bad"
printf '{"model": ' > "$work/trunc.json"
expect_error "truncated tokenizer.json" "trunc.json' does not parse" "$bin" train "${short[@]}" --tokenizer "$work/trunc.json" --out "$work/bad"
expect_error "--tokenizer with --vocab" "brings its own vocabulary" "$bin" train "${short[@]}" --tokenizer "$fixture" --vocab 500 --out "$work/bad"
expect_error "gpt2-remap without ranks" "needs --gpt2-ranks" "$bin" train-tokenizer --type gpt2-remap --vocab 504 --data "$data" --out "$work/x.json"
python3 - "$fixture" "$work/noeos.json" <<'PY'
import json, sys
j = json.load(open(sys.argv[1])); j["added_tokens"] = [t for t in j["added_tokens"] if t["content"] != "<eos>"]
json.dump(j, open(sys.argv[2], "w"))
PY
expect_error "tokenizer without an end-of-story token" "no end-of-story token" "$bin" train "${short[@]}" --tokenizer "$work/noeos.json" --out "$work/bad"
expect_error "--resume with another --tokenizer" "is not the tokenizer of" "$bin" train "${base[@]}" --steps 8 \
  --resume "$work/hf/checkpoint.safetensors" --tokenizer "$work/remap.json" --out "$work/hf"
finish
