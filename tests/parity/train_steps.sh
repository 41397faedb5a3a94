#!/usr/bin/env bash
# Training steps against PyTorch: bench_train_step_cli --save-init writes flashlm's initial weights and a
# batch; bench/torch_train_step.py --init trains the variant's PyTorch definition from them with the
# recipe's optimizer (AdamW; SGD with momentum for supernova2-engine), clip and loss, while flashlm trains
# its own. The first loss must agree to float round-off (same weights, same forward) and the loss after
# four updates to 2e-3 relative: ternary rounding turns round-off into whole weight flips, so the two
# trajectories part slowly (~4e-4 after five Bolt steps), but a wrong optimizer, clip or learning rate
# parts them by far more (supernova2-engine under AdamW instead of SGD: 36 % after five).
# usage: train_steps.sh BENCH_TRAIN_STEP_CLI SOURCE_DIR
set -euo pipefail
cli=$1 src=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
torch=(env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-openmp
       /usr/bin/python3 "$src/bench/torch_train_step.py")
args=(--batch 2 --seq 64 --threads 2 --warmup 0)
loss() { sed -nE 's/.*"loss": ([-0-9.eE+naif]+).*/\1/p'; }
fail=0
for m in bolt bolt-blockwise cortex6 bolt-deltanet supernova2-engine; do
  "$cli" --model "$m" --seq 64 --print-config >"$work/spec.json"
  "$cli" --model "$m" --batch 2 --seq 64 --save-init "$work/init.safetensors"
  for steps in 1 5; do
    fl=$("$cli" --model "$m" "${args[@]}" --steps "$steps" | loss)
    pt=$("${torch[@]}" --spec "$work/spec.json" --init "$work/init.safetensors" "${args[@]}" --steps "$steps" | loss)
    tol=$([[ $steps == 1 ]] && echo 1e-5 || echo 2e-3)
    if /usr/bin/python3 -c "import sys; f, p, t = map(float, sys.argv[1:]); sys.exit(not abs(f - p) <= t * abs(p))" \
         "$fl" "$pt" "$tol"; then
      echo "ok   $m: loss at step $steps flashlm $fl, PyTorch $pt (tolerance $tol relative)"
    else
      echo "FAIL $m: loss at step $steps flashlm $fl, PyTorch $pt (tolerance $tol relative)"
      fail=1
    fi
  done
done
# A file for another model or batch is refused, not trained on.
if "${torch[@]}" --spec "$work/spec.json" --init "$work/init.safetensors" --batch 4 --seq 64 --steps 1 --warmup 0 \
     >/dev/null 2>"$work/err"; then
  echo "FAIL: --init with another batch size was accepted"; fail=1
else
  grep -q "holds a batch of" "$work/err" && echo "ok   --init with another batch size is refused: $(cat "$work/err")" \
    || { echo "FAIL: unexpected error: $(cat "$work/err")"; fail=1; }
fi
exit $fail
