# Shared preamble of the shell test scripts (test_cli.sh, test_faults.sh, ../mpi/test_mpi.sh), sourced
# with the caller's arguments BUILD_BIN_DIR DATA_DIR.
set -uo pipefail
bin="$1/flashlm"
data="$2/tinystories-c.txt"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fails=0
pass() { echo "PASS: $1"; }
fail() { echo "FAIL: $1"; fails=$((fails + 1)); }
# Per-step training losses from a metrics.jsonl (evaluation lines carry val_loss instead and are skipped).
losses() { sed -nE 's/.*"loss":([^,]*).*/\1/p' "$1"; }
# expect_error NAME PATTERN CMD... : CMD must exit non-zero and print PATTERN on stderr.
expect_error() {
  local name="$1" pat="$2"; shift 2
  "$@" >"$work/out" 2>"$work/err"; local rc=$?
  if [[ $rc -ne 0 ]] && grep -qiE "$pat" "$work/err"; then pass "$name (rc=$rc: $(head -c 160 "$work/err" | tr '\n' ' '))"
  else fail "$name: rc=$rc stderr=$(cat "$work/err") stdout=$(tail -3 "$work/out")"; fi
}
# Training length of the "loss falls" checks. Under the sanitizers (scripts/sanitize.sh sets
# FLASHLM_TEST_QUICK=1) each run is 4 steps: every code path of a step is exercised on the first, and
# the Release run of the same script asserts the learning.
steps30=30 steps20=20 steps10=10
[[ -n ${FLASHLM_TEST_QUICK:-} ]] && steps30=4 steps20=4 steps10=2
# loss_falls NAME METRICS MARGIN: the mean loss of the last 5 steps is MARGIN nats below the first 5;
# in quick mode, every logged loss is a finite number.
loss_falls() {
  local name="$1" metrics="$2" margin="$3" first last
  if [[ -n ${FLASHLM_TEST_QUICK:-} ]]; then
    losses "$metrics" | awk 'BEGIN {n = 0} /^-?[0-9.]+(e-?[0-9]+)?$/ {n++; next} {exit 1} END {exit n == 0}' &&
      pass "$name: $(losses "$metrics" | wc -l) finite losses (quick mode)" || fail "$name: losses $(losses "$metrics" | tr '\n' ' ')"
    return
  fi
  first=$(losses "$metrics" | head -5 | awk '{s+=$1} END {print s/NR}')
  last=$(losses "$metrics" | tail -5 | awk '{s+=$1} END {print s/NR}')
  awk -v f="$first" -v l="$last" -v m="$margin" 'BEGIN {exit !(l <= f - m)}' &&
    pass "$name loss falls by >= $margin: first5 $first -> last5 $last" || fail "$name loss did not fall by $margin: $first -> $last"
}
finish() {
  echo "$fails failure(s)"
  exit $((fails > 0))
}
