#!/usr/bin/env bash
# Training on a large token corpus costs resident memory for the model, not for the data: tokenizes
# TinyStories text, grows it to SIZE_MB of shards in /tmp (scripts/make_token_shards.py, not committed),
# trains STEPS steps on it through mmap with document packing, and reports peak RSS next to the same run
# on the few-MB source shards. Usage: bench/big_shard_rss.sh BUILD_BIN_DIR [SIZE_MB=1024] [STEPS=20]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bin="$1/flashlm"; size="${2:-1024}"; steps="${3:-20}"
data="${FLASHLM_DATA:-$here/../../shared/data}"
work="${TMPDIR:-/tmp}/flashlm-big-shard"
mkdir -p "$work"
run=(--seq 128 --batch 4 --threads 2 --eval-windows 20 --log-every 5 --sampling documents --steps "$steps")

if [[ ! -f "$work/big/.made-$size" ]]; then  # the corpus is reused by a second call with the same size
  rm -rf "$work"; mkdir -p "$work"
  "$bin" train --data "$data/tinystories-a.txt" --steps 1 --seq 32 --batch 2 --out "$work/tok" >/dev/null
  "$bin" tokenize --tokenizer "$work/tok/tokenizer.model" --data "$data/tinystories-a.txt" "$data/tinystories-b.txt" --out "$work/src"
  python3 "$here/../scripts/make_token_shards.py" "$work/src" "$work/big" "$size"
  touch "$work/big/.made-$size"
fi
rm -rf "$work"/run-*
du -sh "$work/big"

peak() {  # peak NAME DATA : trains on DATA, prints the run's last lines and its peak RSS
  python3 - "$work/$1.log" "$bin" train --data "$2" "${run[@]}" --out "$work/run-$1" <<'PY'
import resource, subprocess, sys, time
t = time.time()
rc = subprocess.call(sys.argv[2:], stdout=open(sys.argv[1], "w"), stderr=subprocess.STDOUT)
lines = open(sys.argv[1]).read().splitlines()
print("\n".join([l for l in lines if l.startswith("model ")] + lines[-3:]))
print(f"exit {rc}, {time.time() - t:.0f} s, peak RSS {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024:.0f} MB")
sys.exit(rc)
PY
}
echo "== ${size} MB of shards"; peak big "$work/big"
echo "== the few-MB source shards (same model and run)"; peak small "$work/src"
echo "(delete $work when done)"
