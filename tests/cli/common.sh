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
finish() {
  echo "$fails failure(s)"
  exit $((fails > 0))
}
