#!/usr/bin/env bash
# Training faults: a non-finite loss (stop, or skip with --skip-nonfinite), SIGINT/SIGTERM (checkpoint,
# exit 0, resume), kill -9 at random moments while checkpoints are being written (the previous or the
# new checkpoint always loads), and a full disk while saving (clear error, previous checkpoint kept).
# The NaN comes from the test hook FLASHLM_INJECT_NAN_AT_STEP=K[,K...] (see train/trainer.hpp).
# Usage: test_faults.sh BUILD_BIN_DIR DATA_DIR
source "$(dirname "$0")/common.sh"
mnt="$work/tmpfs"
cleanup() { mountpoint -q "$mnt" 2>/dev/null && umount "$mnt"; rm -rf "$work"; }
trap cleanup EXIT
common=(--data "$data" --seq 64 --batch 4 --threads 2 --log-every 1)
evals() { "$bin" eval --checkpoint "$1" --data "$data" --split val --json 2>&1; }
last_step() { grep -oE '"step":[0-9]+' "$1" | tail -1 | cut -d: -f2; }

# 1. NaN at step 5: exit 3, the message names step 5, the step-4 checkpoint (--save-every 2) loads and resumes.
FLASHLM_INJECT_NAN_AT_STEP=5 "$bin" train "${common[@]}" --steps 8 --save-every 2 --out "$work/nan" >"$work/nan.out" 2>"$work/nan.err"
rc=$?
if [[ $rc -ne 0 ]] && grep -q "non-finite loss at step 5" "$work/nan.err"; then pass "NaN at step 5 stops the run (rc=$rc: $(cat "$work/nan.err"))"
else fail "NaN at step 5: rc=$rc stderr=$(cat "$work/nan.err")"; fi
[[ ! -e "$work/nan/checkpoint.safetensors.tmp" ]] || fail "a temporary checkpoint was left behind"
if out=$(evals "$work/nan/checkpoint.safetensors"); then pass "last good checkpoint loads with eval: $out"; else fail "eval after NaN: $out"; fi
"$bin" train "${common[@]}" --steps 8 --resume "$work/nan/checkpoint.safetensors" --out "$work/nan" >"$work/nan2.out" 2>&1
if [[ $? -eq 0 ]] && grep -q "at step 4" "$work/nan2.out" && grep -q "finished at step 8" "$work/nan2.out"; then
  pass "resume from the step-4 checkpoint finishes"
else fail "resume after NaN: $(tail -3 "$work/nan2.out")"; fi

# 2. --skip-nonfinite 1: one NaN is skipped (warning names step 5) and the run completes its 8 updates; a
#    second NaN (at the retried step 5 and at step 6) stops it, naming the step and the skip count.
FLASHLM_INJECT_NAN_AT_STEP=5 "$bin" train "${common[@]}" --steps 8 --skip-nonfinite 1 --out "$work/skip" >"$work/skip.out" 2>&1
rc=$?
if [[ $rc -eq 0 ]] && grep -q "non-finite loss at step 5.*skipped" "$work/skip.out" && grep -q "finished at step 8" "$work/skip.out" &&
   [[ $(losses "$work/skip/metrics.jsonl" | wc -l) -eq 8 ]]; then
  pass "--skip-nonfinite 1 skips step 5 and completes: $(grep skipped "$work/skip.out")"
else fail "--skip-nonfinite 1: rc=$rc $(tail -5 "$work/skip.out")"; fi
FLASHLM_INJECT_NAN_AT_STEP=5,6 "$bin" train "${common[@]}" --steps 8 --skip-nonfinite 1 --out "$work/skip2" >"$work/skip2.out" 2>"$work/skip2.err"
rc=$?
if [[ $rc -ne 0 ]] && grep -q "non-finite loss at step 6.*after skipping 1" "$work/skip2.err"; then pass "a second NaN stops the run: $(cat "$work/skip2.err")"
else fail "--skip-nonfinite 1 with two NaNs: rc=$rc $(cat "$work/skip2.err")"; fi

# 3. SIGINT and SIGTERM during training: checkpoint, exit 0, resume continues from that step.
signal_run() {  # signal_run SIG DIR [extra train args]: starts a long run, signals it after 3 progress lines
  local sig="$1" dir="$2"; shift 2
  "$bin" train "${common[@]}" --steps 100000 --out "$dir" "$@" >"$dir.out" 2>&1 &
  local pid=$! t=0
  until [[ $(grep -c "^step " "$dir.out" 2>/dev/null) -ge 3 ]]; do
    sleep 0.2; t=$((t + 1))
    if [[ $t -gt 600 ]] || ! kill -0 $pid 2>/dev/null; then break; fi
  done
  kill -s "$sig" $pid 2>/dev/null
  wait $pid
}
signal_run INT "$work/sig"
rc=$?
stopped=$(sed -nE 's/^stopped at step ([0-9]+);.*/\1/p' "$work/sig.out")
if [[ $rc -eq 0 && -n "$stopped" ]] && evals "$work/sig/checkpoint.safetensors" >/dev/null; then pass "SIGINT: exit 0, checkpoint at step $stopped loads"
else fail "SIGINT: rc=$rc $(tail -3 "$work/sig.out")"; fi
signal_run TERM "$work/sig" --resume "$work/sig/checkpoint.safetensors"
rc=$?
stopped2=$(sed -nE 's/^stopped at step ([0-9]+);.*/\1/p' "$work/sig.out")
if [[ $rc -eq 0 ]] && grep -q "resumed from .* at step $stopped" "$work/sig.out" && [[ -n "$stopped2" && $stopped2 -gt $stopped ]]; then
  pass "SIGTERM: exit 0 at step $stopped2 after resuming at step $stopped"
else fail "SIGTERM/resume: rc=$rc $(tail -3 "$work/sig.out")"; fi
target=$((stopped2 + 2))
"$bin" train "${common[@]}" --steps $target --resume "$work/sig/checkpoint.safetensors" --out "$work/sig" >"$work/sig3.out" 2>&1 &&
  grep -q "resumed from .* at step $stopped2" "$work/sig3.out" && grep -q "finished at step $target" "$work/sig3.out" &&
  pass "resume after SIGTERM finishes at step $target" || fail "resume after SIGTERM: $(tail -3 "$work/sig3.out")"

# 4. kill -9 at a random moment, 20 times, while --save-every 1 rewrites the 37 MB checkpoint every step:
#    eval of the checkpoint path succeeds after every kill (the rename is atomic).
ck="$work/nan/checkpoint.safetensors"
mkdir -p "$work/k9" && cp "$ck" "$work/k9/checkpoint.safetensors"
RANDOM=7  # reproducible kill times
mid=0 ok=0
for i in $(seq 1 20); do
  "$bin" train "${common[@]}" --steps 100000 --save-every 1 --resume "$work/k9/checkpoint.safetensors" --out "$work/k9" \
    >"$work/k9.out" 2>&1 &
  pid=$!
  sleep "$((1 + RANDOM % 3)).$((RANDOM % 10))"
  kill -9 $pid 2>/dev/null
  wait $pid 2>/dev/null
  [[ -e "$work/k9/checkpoint.safetensors.tmp" ]] && mid=$((mid + 1))
  if out=$(evals "$work/k9/checkpoint.safetensors"); then ok=$((ok + 1)); else fail "eval after kill -9 #$i: $out"; fi
done
step=$(last_step "$work/k9/metrics.jsonl")
[[ $ok -eq 20 ]] && pass "kill -9 x20: the checkpoint loaded after every kill ($mid kills landed mid-save, with a .tmp left; last logged step $step)"

# 5. Disk full while saving: --out on a tmpfs with room for one checkpoint, not two (the atomic save
#    needs both for a moment). Without permission to mount, a .tmp pointing at /dev/full does the same.
size=$(stat -c %s "$ck")
mkdir -p "$mnt"
if mount -t tmpfs -o size=$((size * 3 / 2 / 1024 + 1024))k tmpfs "$mnt" 2>"$work/mount.err"; then
  how="tmpfs of $((size * 3 / 2 / 1024 + 1024)) KiB"
  "$bin" train "${common[@]}" --steps 8 --save-every 2 --out "$mnt/run" >"$work/full.out" 2>"$work/full.err"
  rc=$?
  want="cannot save checkpoint at step 4.*No space left on device"
else
  how="/dev/full (mount not permitted: $(head -c 120 "$work/mount.err"))"
  mkdir -p "$mnt/run" && cp "$ck" "$mnt/run/checkpoint.safetensors"
  ln -s /dev/full "$mnt/run/checkpoint.safetensors.tmp"
  "$bin" train "${common[@]}" --steps 8 --save-every 1 --resume "$mnt/run/checkpoint.safetensors" --out "$mnt/run" \
    >"$work/full.out" 2>"$work/full.err"
  rc=$?
  want="cannot save checkpoint at step 5.*No space left on device"
fi
if [[ $rc -ne 0 ]] && grep -qE "$want" "$work/full.err" && grep -q "previous" "$work/full.err"; then
  pass "disk full ($how): rc=$rc: $(cat "$work/full.err")"
else fail "disk full ($how): rc=$rc stderr=$(cat "$work/full.err") stdout=$(tail -3 "$work/full.out")"; fi
[[ ! -e "$mnt/run/checkpoint.safetensors.tmp" ]] && pass "no temporary file left on the full disk" || fail "temporary file left on the full disk"
if out=$(evals "$mnt/run/checkpoint.safetensors"); then pass "the previous checkpoint still loads: $out"; else fail "previous checkpoint after disk full: $out"; fi

finish
