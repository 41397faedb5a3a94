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
finish() {
  echo "$fails failure(s)"
  exit $((fails > 0))
}
