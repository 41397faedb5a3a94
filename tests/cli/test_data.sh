#!/usr/bin/env bash
# Token shards, evaluation protocols, metrics and plots through the CLI: tokenize gives the same tokens as
# the text path, training reads a shard directory / .bin file (resume exact, peak RSS bounded), eval reports
# bits per byte and per character on both protocols, plot writes a PNG, and bad token data gets one clear
# error. Usage: test_data.sh BUILD_BIN_DIR DATA_DIR
source "$(dirname "$0")/common.sh"
expect_error() {  # expect_error NAME PATTERN CMD... : CMD must exit non-zero and print PATTERN on stderr
  local name="$1" pat="$2"; shift 2
  "$@" >"$work/out" 2>"$work/err"; local rc=$?
  if [[ $rc -ne 0 ]] && grep -qiE "$pat" "$work/err" && [[ $(wc -l < "$work/err") -le 2 ]]; then
    pass "$name (rc=$rc: $(head -c 200 "$work/err" | tr '\n' ' '))"
  else fail "$name: rc=$rc stderr=$(cat "$work/err") stdout=$(tail -3 "$work/out")"; fi
}
scripts="$(dirname "$0")/../../scripts"
small=(--seq 32 --batch 2 --threads 2 --eval-windows 8)
peak_rss() {  # peak_rss CMD... : runs CMD (output to $work/rss.log), prints its peak resident set in MB
  python3 -c 'import resource, subprocess, sys
rc = subprocess.call(sys.argv[2:], stdout=open(sys.argv[1], "w"), stderr=subprocess.STDOUT)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024 if rc == 0 else -1)' "$@" 2>&1
}

# 1. A tokenizer (2 steps on the text, --val-data = the text, so OUT/train.bin caches the whole of it), then
#    tokenize: the shard holds exactly those tokens; sidecar, document index and tokenizer.model beside it.
"$bin" train --data "$data" --val-data "$data" "${small[@]}" --steps 2 --out "$work/t" >"$work/t.log" 2>&1 || fail "tokenizer run: $(tail -3 "$work/t.log")"
tok="$work/t/tokenizer.model"
"$bin" tokenize --tokenizer "$tok" --data "$data" --out "$work/shards" >"$work/tk.out" 2>"$work/tk.err" || fail "tokenize: $(cat "$work/tk.err")"
cmp -s "$work/shards/shard-00000.bin" "$work/t/train.bin" && pass "tokenize == the text path's tokens ($(stat -c %s "$work/t/train.bin") bytes): $(cat "$work/tk.out")" ||
  fail "tokenize differs from train.bin"
grep -qE 'MB/s.*tokens' "$work/tk.err" && pass "progress line: $(tail -c 120 "$work/tk.err" | tr '\r' ' ')" || fail "no progress line: $(cat "$work/tk.err")"
docs=$(grep -c . "$data"); sdocs=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["documents"])' "$work/shards/shard-00000.bin.json")
[[ "$docs" -eq "$sdocs" && $(stat -c %s "$work/shards/shard-00000.docs") -eq $((8 * docs)) && -f "$work/shards/tokenizer.model" ]] &&
  pass "sidecar: $sdocs documents = $docs lines, .docs index of $((8 * docs)) bytes" || fail "sidecar documents $sdocs vs $docs lines"
# stdin and several shards: the same stream cut into 2000-token shards at document boundaries
"$bin" tokenize --tokenizer "$tok" --data - --out "$work/split" --shard-tokens 2000 <"$data" >/dev/null 2>&1
[[ $(ls "$work/split"/*.bin | wc -l) -ge 3 ]] && cmp -s <(cat "$work/split"/*.bin) "$work/t/train.bin" &&
  pass "stdin into $(ls "$work/split"/*.bin | wc -l) shards: same tokens" || fail "sharded stdin tokens differ"

# 2. A few-MB shard directory (the bench/big_shard_rss.sh generator, 4 MB in 2 shards): training reads it
#    through mmap with document packing; peak RSS stays under 300 MB; resume is exact on token data.
python3 "$scripts/make_token_shards.py" "$work/shards" "$work/big" 4 2 >"$work/gen.out" || fail "shard generator"
rss=$(peak_rss "$work/rss.log" "$bin" train --data "$work/big" --sampling documents "${small[@]}" --steps 6 --out "$work/b")
grep -q "finished at step 6" "$work/rss.log" && [[ $rss -gt 0 && $rss -lt 300 ]] &&
  pass "train on $(cut -d' ' -f1-6 "$work/gen.out"): peak RSS ${rss} MB < 300 MB" || fail "train on shards: rss=$rss $(tail -3 "$work/rss.log")"
grep -q "train / .* val tokens" "$work/rss.log" && [[ $(losses "$work/b/metrics.jsonl" | wc -l) -eq 6 ]] &&
  grep -q '"val_loss"' "$work/b/metrics.jsonl" && pass "metrics: 6 step lines + an eval line: $(tail -1 "$work/b/metrics.jsonl")" ||
  fail "metrics lines: $(cat "$work/b/metrics.jsonl")"
head -1 "$work/b/metrics.jsonl" | python3 -c 'import json,sys; j=json.loads(sys.stdin.read()); assert all(k in j for k in ("step","tokens","loss","lr","grad_norm","tok_s","wall_s")), j; assert j["tokens"]==64' &&
  pass "metrics fields: $(head -1 "$work/b/metrics.jsonl")" || fail "metrics fields: $(head -1 "$work/b/metrics.jsonl")"
"$bin" train --data "$work/big" --sampling documents "${small[@]}" --steps 6 --stop-after 3 --out "$work/h" >/dev/null 2>&1
"$bin" train --data "$work/big" --sampling documents "${small[@]}" --steps 6 --resume "$work/h/checkpoint.safetensors" --out "$work/h" >/dev/null 2>&1
diff <(losses "$work/b/metrics.jsonl") <(losses "$work/h/metrics.jsonl") >/dev/null && pass "resume on shards reproduces 6 losses" ||
  fail "resume on shards: $(paste <(losses "$work/b/metrics.jsonl") <(losses "$work/h/metrics.jsonl") | tr '\t\n' '/ ')"
# a single .bin file as --data, a shard directory as --val-data, windows sampling
"$bin" train --data "$work/big/shard-00001.bin" --val-data "$work/shards" "${small[@]}" --steps 2 --out "$work/f" >"$work/f.log" 2>&1 &&
  grep -q "finished at step 2" "$work/f.log" && pass "--data FILE.bin --val-data DIR" || fail "--data .bin: $(tail -3 "$work/f.log")"

# 3. eval: bits per byte and per character on the full-window and upstream protocols; tokens == text.
ck="$work/t/checkpoint.safetensors"
"$bin" eval --checkpoint "$ck" --data "$data" --json >"$work/e1.json" 2>"$work/err" || fail "eval text: $(cat "$work/err")"
"$bin" eval --checkpoint "$ck" --data "$work/shards" --json >"$work/e2.json" 2>"$work/err" || fail "eval shards: $(cat "$work/err")"
python3 - "$work/e1.json" "$work/e2.json" <<'PY' && pass "eval text == eval shards: $(cat "$work/e1.json")" || fail "eval: $(cat "$work/e1.json" "$work/e2.json")"
import json, math, sys
a, b = (json.load(open(p)) for p in sys.argv[1:])
assert a["protocol"] == "full" and abs(a["loss"] - b["loss"]) < 1e-9 and a["tokens"] == b["tokens"], (a, b)
assert abs(a["bpc"] - a["loss"] * a["tokens"] / (a["chars"] * math.log(2))) < 1e-9
assert abs(a["bpb"] - a["loss"] * a["tokens"] / (a["bytes"] * math.log(2))) < 1e-9 and abs(a["ppl"] - math.exp(a["loss"])) < 1e-6
PY
"$bin" eval --checkpoint "$ck" --data "$data" --protocol upstream --stories 40 --json >"$work/e3.json" 2>"$work/err" || fail "eval upstream: $(cat "$work/err")"
python3 - "$work/e3.json" "$data" <<'PY' && pass "upstream protocol: $(cat "$work/e3.json")" || fail "upstream protocol: $(cat "$work/e3.json")"
import json, math, sys
j = json.load(open(sys.argv[1]))
stories = [l.strip() for l in open(sys.argv[2], encoding="utf-8") if l.strip()][:40]
kept = [s for s in stories if len(s) > 50]
assert j["protocol"] == "upstream" and j["stories"] == len(kept), (j["stories"], len(kept))
assert j["story_chars"] == sum(len(s) for s in kept)
assert abs(j["bpc_upstream"] - j["loss"] * j["tokens"] / (j["story_chars"] * math.log(2))) < 1e-9
assert j["truncated"] > 0 and j["bpc_upstream"] < j["bpc"]  # cut stories: upstream divides by characters never scored
PY
"$bin" eval --checkpoint "$ck" --data "$data" --protocol upstream --stories 40 >"$work/e4.txt" 2>&1 && grep -q "upstream BPC" "$work/e4.txt" &&
  pass "upstream protocol text: $(tail -1 "$work/e4.txt")" || fail "upstream text: $(cat "$work/e4.txt")"

# 4. plot: a PNG of the loss curves.
"$bin" plot "$work/b" --out "$work/loss.png" >"$work/p.out" 2>&1 && [[ $(head -c 4 "$work/loss.png" | tail -c 3) == PNG ]] &&
  pass "plot: $(cat "$work/p.out") ($(stat -c %s "$work/loss.png") bytes)" || fail "plot: $(cat "$work/p.out")"

# 5. bad token data: one clear error, non-zero exit.
mkdir -p "$work/bad"; cp "$tok" "$work/bad/tokenizer.model"
head -c 1001 "$work/t/train.bin" >"$work/bad/odd.bin"
expect_error "odd-sized .bin" "odd.bin' has 1001 bytes; expected a non-zero even size" "$bin" train --data "$work/bad/odd.bin" "${small[@]}" --steps 1 --out "$work/x"
cp "$work/t/train.bin" "$work/bad/big.bin"; printf '\xff\xff' | dd of="$work/bad/big.bin" bs=1 seek=20 conv=notrunc 2>/dev/null
expect_error "token id >= vocab" "token 65535 at position 10 is outside the vocabulary" "$bin" train --data "$work/bad/big.bin" "${small[@]}" --steps 1 --out "$work/x"
mkdir -p "$work/empty"
expect_error "empty shard directory" "holds no .bin token shards" "$bin" train --data "$work/empty" --tokenizer "$tok" "${small[@]}" --steps 1 --out "$work/x"
cp -r "$work/shards" "$work/other"
python3 -c 'import json,sys; p=sys.argv[1]; j=json.load(open(p)); j["tokenizer_fnv1a"]+=1; json.dump(j, open(p,"w"))' "$work/other/shard-00000.bin.json"
expect_error "sidecar of another tokenizer" "was made with another tokenizer \\(sidecar fnv1a [0-9]+, this tokenizer [0-9]+\\)" "$bin" train --data "$work/other" "${small[@]}" --steps 1 --out "$work/x"
mkdir -p "$work/notok"; cp "$work/shards/shard-00000.bin" "$work/notok/"
expect_error "token data without a tokenizer" "has no tokenizer.model beside it: pass --tokenizer" "$bin" train --data "$work/notok" "${small[@]}" --steps 1 --out "$work/x"
python3 -c 'import json,sys; p=sys.argv[1]; j=json.load(open(p)); j["tokens"]+=5; json.dump(j, open(p,"w"))' "$work/split/shard-00001.bin.json"
expect_error "sidecar token count" "holds [0-9]+ tokens but its sidecar says" "$bin" eval --checkpoint "$ck" --data "$work/split"
expect_error "tokenize into a shard directory" "already holds token shards" "$bin" tokenize --tokenizer "$tok" --data "$data" --out "$work/shards"
expect_error "upstream protocol on tokens" "protocol upstream scores stories of a text file" "$bin" eval --checkpoint "$ck" --data "$work/shards" --protocol upstream
expect_error "plot without metrics" "no metrics file" "$bin" plot "$work/empty"
expect_error "plot without gnuplot" "gnuplot not found on PATH" env PATH=/nonexistent "$bin" plot "$work/b"

finish
