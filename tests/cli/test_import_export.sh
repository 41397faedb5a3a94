#!/usr/bin/env bash
# Weights in and out through PyTorch, for every variant that has a PyTorch definition
# (tests/parity/run_parity.py's MODELS, so later variants are covered without editing this file):
#   flashlm train (2 steps) -> flashlm export -> torch load_state_dict(strict=True) -> torch.save .pt
#   (F32 wrapped with its config; for one variant also F32 bare, F16, BF16) -> tools/convert_pytorch.py
#   -> flashlm import
# and the imported checkpoints evaluate exactly like the original (F32) or hold exactly PyTorch's
# F16/BF16 weights; train --resume fine-tunes an import; bad files get one clear error.
# Usage: test_import_export.sh BUILD_BIN_DIR DATA_DIR
source "$(dirname "$0")/common.sh"
src=$(cd "$(dirname "$0")/../.." && pwd)
py=/usr/bin/python3
rt="$src/tests/parity/roundtrip.py"
conv="$src/tools/convert_pytorch.py"
expect_error() {
  local name="$1" pat="$2"; shift 2
  "$@" >"$work/out" 2>"$work/err"; local rc=$?
  if [[ $rc -ne 0 ]] && grep -qiE -- "$pat" "$work/err"; then pass "$name (rc=$rc: $(head -c 200 "$work/err" | tr '\n' ' '))"
  else fail "$name: rc=$rc stderr=$(cat "$work/err") stdout=$(tail -3 "$work/out")"; fi
}
# eval_json CKPT: the validation loss line, without the checkpoint path.
eval_json() { "$bin" eval --checkpoint "$1" --data "$data" --split val --json --threads 1 | sed -E 's/"checkpoint":"[^"]*",//'; }

if ! $py -c 'import torch, numpy' 2>/dev/null; then
  echo "FAIL: $py cannot import torch and numpy (Debian: python3-torch python3-numpy)"; exit 1
fi
mapfile -t torch_models < <($py "$rt" models)
models=()
for m in "${torch_models[@]}"; do
  "$bin" import --help | grep -qE "^ +$m: " && models+=("$m")
done
[[ ${#models[@]} -gt 0 ]] && pass "variants with a PyTorch definition: ${models[*]}" || fail "no variant to test"

# Every variant: the F32 round trip (wrapped .pt with its config). One variant, preferably one with
# upstream buffers (cortex6: decay_mask), also goes through the bare F32, F16 and BF16 files and --to-pt;
# the other dtypes exercise the same converter code, so once is enough and keeps this test short.
full="${models[0]}"
for x in "${models[@]}"; do [[ $x == cortex6 ]] && full=cortex6; done
for m in "${models[@]}"; do
  d="$work/$m"; mkdir -p "$d"
  # --accum 1: the recipes of nova, nova-diff, v3 and thunderbolt accumulate 8-32 micro-batches per step.
  "$bin" train --model "$m" --data "$data" --steps 2 --seq 32 --batch 2 --accum 1 --vocab 400 --threads 1 --eval-windows 4 \
    --out "$d/run" > "$d/train.log" 2>&1 || { fail "$m: train: $(tail -3 "$d/train.log")"; continue; }
  ck="$d/run/checkpoint.safetensors" tok="$d/run/tokenizer.model"
  "$bin" export --checkpoint "$ck" --out "$d/exp.safetensors" > "$d/export.log" 2>"$work/err" || { fail "$m: export: $(cat "$work/err")"; continue; }
  # strict=True load into the PyTorch definition (which registers upstream's persistent buffers, so an
  # export without them fails here as upstream's own scripts would), then the upstream kinds of .pt file.
  $py "$rt" save --model "$m" --in "$d/exp.safetensors" --out-dir "$d/pt" 2>"$work/err" \
    && pass "$m: torch load_state_dict(strict=True) of the export ($(grep -oE '[0-9]+ upstream buffers' "$d/export.log" || echo 'no upstream buffers'))" \
    || { fail "$m: torch strict load: $(tail -3 "$work/err")"; continue; }
  variants=(wrapped); [[ $m == "$full" ]] && variants=(wrapped bare f16 bf16)
  for v in "${variants[@]}"; do
    $py "$conv" "$d/pt/$v.pt" "$d/$v.safetensors" > /dev/null 2>"$work/err" || fail "$m: convert_pytorch $v: $(cat "$work/err")"
  done
  # wrapped.pt carries its config; the bare files need the one key the shapes do not determine (cortex6
  # infers even that from its decay_mask buffer).
  "$bin" import --model "$m" --from "$d/wrapped.safetensors" --tokenizer "$tok" --out "$d/imp-wrapped.safetensors" > /dev/null 2>"$work/err" || fail "$m: import wrapped: $(cat "$work/err")"
  ref=$(eval_json "$ck")
  got=$(eval_json "$d/imp-wrapped.safetensors")
  [[ -n "$ref" && "$got" == "$ref" ]] && pass "$m: imported F32 (wrapped .pt) evaluates exactly like the original: $got" || fail "$m: wrapped: $got != $ref"
  # The imported model is the same model: its export is byte-identical to the original export.
  "$bin" export --checkpoint "$d/imp-wrapped.safetensors" --out "$d/re.safetensors" > /dev/null 2>&1
  cmp -s "$d/re.safetensors" "$d/exp.safetensors" && pass "$m: export of the import == the original export, byte for byte" || fail "$m: re-export differs"
  [[ $m == "$full" ]] || continue
  cfg=(--config '{"seq_len": 32}'); [[ $m == cortex6 ]] && cfg=()
  for v in bare f16 bf16; do
    "$bin" import --model "$m" --from "$d/$v.safetensors" --tokenizer "$tok" "${cfg[@]}" \
      --out "$d/imp-$v.safetensors" > /dev/null 2>"$work/err" || fail "$m: import $v: $(cat "$work/err")"
  done
  got=$(eval_json "$d/imp-bare.safetensors")
  [[ -n "$ref" && "$got" == "$ref" ]] && pass "$m: imported F32 (bare .pt${cfg[*]:+, }${cfg[*]}) evaluates exactly like the original" || fail "$m: bare: $got != $ref"
  # F16/BF16: flashlm holds exactly PyTorch's rounded weights (checked below); the loss moves a little.
  for v in f16 bf16; do
    "$bin" export --checkpoint "$d/imp-$v.safetensors" --out "$d/re-$v.safetensors" > /dev/null 2>&1
    l0=$(sed -E 's/.*"loss":([^,]*).*/\1/' <<<"$ref") l1=$(eval_json "$d/imp-$v.safetensors" | sed -E 's/.*"loss":([^,]*).*/\1/')
    awk -v a="$l0" -v b="$l1" 'BEGIN {d = a - b; if (d < 0) d = -d; exit !(d > 0 && d < 0.02)}' \
      && pass "$m: ${v^^} import loss $l1 vs $l0" || fail "$m: ${v^^} import loss $l1 vs $l0"
  done
  # The reverse converter: the export as a v4-style .pt.
  $py "$conv" --to-pt "$d/exp.safetensors" "$d/exp.pt" --wrap model_state_dict > /dev/null 2>&1
  out=$($py "$rt" same "$d/re-f16.safetensors" "$d/pt/f16.pt" "$d/re-bf16.safetensors" "$d/pt/bf16.pt" \
    "$d/exp.safetensors" "$d/exp.pt" 2>&1) \
    && pass "$m: imported F16 and BF16 weights == torch's; convert_pytorch --to-pt keeps every tensor: $out" || fail "$m: $out"
done

# Fine-tuning an import: train --resume starts at step 0 from the imported weights.
m="$full" d="$work/$full"
"$bin" train --model "$m" --resume "$d/imp-bf16.safetensors" --data "$data" --steps 2 --seq 32 --batch 2 --accum 1 --threads 1 \
  --eval-windows 4 --out "$d/ft" > "$d/ft.log" 2>&1 && grep -q "resumed from .* at step 0" "$d/ft.log" && grep -q "finished at step 2" "$d/ft.log" \
  && pass "$m: train --resume fine-tunes an imported checkpoint" || fail "$m: fine-tune: $(tail -3 "$d/ft.log")"

# Bad files: one clear error (listing every problem), non-zero exit.
m="${models[0]}" d="$work/${models[0]}"
tok="$d/run/tokenizer.model" exp="$d/exp.safetensors"
PYTHONPATH="$src/tests/parity" $py - "$exp" "$work" <<'EOF'
import sys
import numpy as np
import safetensors_np as s
t, meta = s.read(sys.argv[1])
w = sys.argv[2]
first = next(iter(t))
def save(name, d):
    s.write(f"{w}/{name}.safetensors", d, meta)
d = dict(t); del d[first]; save("missing", d)
d = dict(t); d["extra.weight"] = np.zeros(3, np.float32); save("extra", d)
big = max(t, key=lambda k: t[k].size)
d = dict(t); d[big] = d[big][: d[big].shape[0] // 2]; save("shape", d)
small = min(t, key=lambda k: t[k].size)
d = dict(t); d[small] = d[small].astype(np.int32); save("int", d)
# A vocabulary of 300 instead of 400 (the embedding and its tied head): a valid state dict that the
# 400-piece tokenizer does not fit.
save("vocab300", {k: v[:300] if v.ndim == 2 and v.shape[0] == 400 else v for k, v in t.items()})
# 960 rows: the vocabulary of the tokenizer.json fixture.
save("vocab960", {k: np.concatenate([v, np.zeros((560,) + v.shape[1:], v.dtype)]) if v.ndim == 2 and v.shape[0] == 400 else v
                  for k, v in t.items()})
EOF
# Other tokenizer kinds for --tokenizer, all of 400 pieces but the tokenizer.json fixture (960):
# flashlm's remap JSON over that fixture, and tiktoken ranks (256 bytes + 143 pairs + <|endoftext|>).
hf="$src/tests/tokenizers/bytelevel_bpe.json"
$py - "$hf" "$work" <<'EOF'
import base64, json, sys
hf, w = sys.argv[1], sys.argv[2]
json.dump({"flashlm_tokenizer": "remap/1", "specials": ["<pad>", "<unk>", "<bos>", "<eos>"], "unk_id": 1, "eos_id": 3,
           "vocab_size": 400, "base_ids": list(range(4, 400)), "base": json.load(open(hf))}, open(f"{w}/remap.json", "w"))
toks = [bytes([b]) for b in range(256)] + [bytes([97 + i % 26, 97 + i // 26]) for i in range(143)]
open(f"{w}/ranks.tiktoken", "w").write("".join(f"{base64.b64encode(b).decode()} {r}\n" for r, b in enumerate(toks)))
EOF
head -c $(( $(stat -c %s "$exp") / 2 )) "$exp" > "$work/trunc.safetensors"
imp=("$bin" import --model "$m" --tokenizer "$tok" --out "$work/x.safetensors")
expect_error "missing tensor" "missing tensors \(1\)" "${imp[@]}" --from "$work/missing.safetensors"
expect_error "extra tensor" "unexpected tensors \(1\):.*|extra.weight" "${imp[@]}" --from "$work/extra.safetensors"
expect_error "wrong shape" "shape mismatches \(1\)" "${imp[@]}" --from "$work/shape.safetensors"
expect_error "non-float dtype" "I32 \(F32, F16, BF16 or F64 expected\)" "${imp[@]}" --from "$work/int.safetensors"
expect_error "truncated file" "truncated" "${imp[@]}" --from "$work/trunc.safetensors"
other=$(for x in "${models[@]}"; do [[ $x != "$m" ]] && echo "$x" && break; done)
[[ -n "$other" ]] && expect_error "wrong model ($other)" "do not match --model $other" "$bin" import --model "$other" --tokenizer "$tok" --out "$work/x.safetensors" --from "$exp"
expect_error "flashlm checkpoint as --from" "already a flashlm checkpoint" "${imp[@]}" --from "$d/run/checkpoint.safetensors"
expect_error "tokenizer of another vocabulary" "has 400 pieces but the weights' vocabulary is 300" "${imp[@]}" --from "$work/vocab300.safetensors"
expect_error "tokenizer that does not parse" "does not parse" "$bin" import --model "$m" --from "$exp" --out "$work/x.safetensors" --tokenizer "$exp"
expect_error "--config not an object" "must be a JSON object" "${imp[@]}" --from "$exp" --config '[1]'
expect_error "no --tokenizer" "--tokenizer is required" "$bin" import --model "$m" --from "$exp" --out "$work/x.safetensors"
# cortex6's decay masks: the import checks them against the config (here: another decay).
if [[ -e "$work/cortex6/exp.safetensors" ]]; then
  PYTHONPATH="$src/tests/parity" $py - "$work/cortex6/exp.safetensors" "$work/mask.safetensors" <<'EOF'
import sys
import safetensors_np as s
t, meta = s.read(sys.argv[1])
t["blocks.1.decay_mask"] = t["blocks.1.decay_mask"] ** 2
s.write(sys.argv[2], t, meta)
EOF
  expect_error "cortex6: a decay_mask of another decay" "upstream buffers that are not what --model cortex6 .* computes \(1\):" \
    "$bin" import --model cortex6 --tokenizer "$work/cortex6/run/tokenizer.model" --out "$work/x.safetensors" --from "$work/mask.safetensors"
  grep -q "blocks.1.decay_mask: element 1 is 0.98" "$work/err" && pass "the message names the buffer and element" || fail "mask message: $(cat "$work/err")"
fi
[[ ! -e "$work/x.safetensors" ]] && pass "no checkpoint written by a failed import" || fail "a failed import wrote a file"

# --tokenizer takes every kind load_tokenizer reads; the checkpoint embeds it (export --tokenizer-out
# writes it back, and that file imports again).
for k in "remap:$work/remap.json:$exp" "tiktoken:$work/ranks.tiktoken:$exp" "tokenizer.json:$hf:$work/vocab960.safetensors"; do
  IFS=: read -r kind tf from <<<"$k"
  "$bin" import --model "$m" --from "$from" --tokenizer "$tf" --out "$work/tk.safetensors" > "$work/out" 2>"$work/err" \
    && grep -q "| $kind tokenizer" "$work/out" \
    && "$bin" export --checkpoint "$work/tk.safetensors" --out "$work/tk-exp.safetensors" --tokenizer-out "$work/tk-tok" > /dev/null 2>>"$work/err" \
    && "$bin" import --model "$m" --from "$from" --tokenizer "$work/tk-tok" --out "$work/tk2.safetensors" 2>>"$work/err" | grep -q "| $kind tokenizer" \
    && pass "import --tokenizer $(basename "$tf") ($kind), embedded and exported back" || fail "import --tokenizer $kind: $(cat "$work/err" "$work/out")"
  rm -f "$work/tk.safetensors" "$work/tk2.safetensors"
done
echo "not a pickle" > "$work/bad.pt"
expect_error "convert_pytorch: not a checkpoint" "cannot load" $py "$conv" "$work/bad.pt" "$work/y.safetensors"
# A .pt whose pickle calls a function (here: open() creating a file) is refused without running it.
$py - "$work" <<'EOF'
import sys, torch
class Payload:
    def __reduce__(self):
        return (open, (sys.argv[1] + "/pwned", "w"))
torch.save({"model_state_dict": {"w": torch.zeros(2)}, "x": Payload()}, sys.argv[1] + "/evil.pt")
EOF
expect_error "convert_pytorch: pickled code refused" "refusing to unpickle" $py "$conv" "$work/evil.pt" "$work/y.safetensors"
[[ ! -e "$work/pwned" ]] && pass "the refused pickle ran nothing" || fail "convert_pytorch ran pickled code"
finish
