#!/usr/bin/env bash
# Builds the libFuzzer targets (clang++ -fsanitize=fuzzer,address,undefined) and runs each for a bounded
# time on seeds cut from a real training run; any crash, leak, sanitizer report or unexpected exception
# fails. Usage: run_fuzz.sh BUILD_BIN_DIR DATA_DIR [SECONDS_PER_TARGET (default 60)]
# Needs clang++ and libclang-rt-14-dev (scripts/install-deps.sh --test). FUZZ_KEEP=DIR keeps the work dir.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
bin="$1/flashlm"
data="$2/tinystories-c.txt"
secs="${3:-60}"
work="${FUZZ_KEEP:-$(mktemp -d)}"
mkdir -p "$work"
[[ -n "${FUZZ_KEEP:-}" ]] || trap 'rm -rf "$work"' EXIT
CXX="${FUZZ_CXX:-clang++}"
command -v "$CXX" >/dev/null || { echo "FAIL: $CXX not found (apt-get install clang libclang-rt-14-dev)"; exit 1; }

# pkg-config flags of the library's dependencies (header-only flashlm needs no build of its own).
deps=(eigen3 nlohmann_json fmt sentencepiece icu-uc)
cflags=$(pkg-config --cflags "${deps[@]}" 2>/dev/null || true)
libs="$(pkg-config --libs fmt sentencepiece icu-uc) -lsentencepiece_train"
common=(-std=c++20 -g -O1 -I"$root/include" -I"$root" $cflags)
san=(-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer)

echo "== building fuzz targets with $CXX (in parallel, 2 jobs)"
t0=$SECONDS
"$CXX" "${common[@]}" -fsanitize=address,undefined "$here/make_seeds.cpp" -o "$work/make_seeds" $libs &
p1=$!
"$CXX" "${common[@]}" "${san[@]}" "$here/fuzz_checkpoint.cpp" -o "$work/fuzz_checkpoint" $libs &
p2=$!
wait $p1 || true; wait $p2 || true
"$CXX" "${common[@]}" "${san[@]}" "$here/fuzz_tokenizer.cpp" -o "$work/fuzz_tokenizer" $libs &
p1=$!
"$CXX" "${common[@]}" "${san[@]}" "$here/fuzz_token_file.cpp" -o "$work/fuzz_token_file" $libs &
p2=$!
wait $p1 || true; wait $p2 || true
for f in make_seeds fuzz_checkpoint fuzz_tokenizer fuzz_token_file; do
  [[ -x "$work/$f" ]] || { echo "FAIL: $f did not build"; exit 1; }
done
echo "built in $((SECONDS - t0)) s"

echo "== seeds from a 2-step training run on $(basename "$data")"
"$bin" train --data "$data" --seq 64 --batch 4 --threads 2 --steps 2 --out "$work/run" >/dev/null
ASAN_OPTIONS=detect_leaks=1 "$work/make_seeds" "$work/run" "$data" "$root/tests/tokenizers/bytelevel_bpe.json" "$work/seeds"
# inputs that once crashed a target (regressions/TARGET-*) run first, as seeds
for t in checkpoint tokenizer token_file; do
  for f in "$here"/regressions/"$t"-*; do [[ -e "$f" ]] && cp "$f" "$work/seeds/$t/"; done
done

fails=0
for t in checkpoint tokenizer token_file; do
  mkdir -p "$work/corpus_$t" "$work/art_$t"
  # -max_len: the real tokenizer seed (~290 KB) is read truncated; mutations stay small and fast.
  ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    "$work/fuzz_$t" "$work/corpus_$t" "$work/seeds/$t" -max_total_time="$secs" -max_len=65536 -rss_limit_mb=2048 \
    -timeout=10 -print_final_stats=1 -artifact_prefix="$work/art_$t/" >"$work/fuzz_$t.log" 2>&1 && rc=0 || rc=$?
  execs=$(sed -nE 's/^stat::number_of_executed_units: *([0-9]+)/\1/p' "$work/fuzz_$t.log" | tail -1)
  cov=$(grep -oE 'cov: [0-9]+ ft: [0-9]+' "$work/fuzz_$t.log" | tail -1)
  if [[ $rc -eq 0 ]] && ! ls "$work/art_$t"/* >/dev/null 2>&1; then
    echo "PASS: fuzz_$t: ${execs:-?} executions in ${secs} s, ${cov:-no coverage line}, corpus $(ls "$work/corpus_$t" | wc -l) inputs"
  else
    echo "FAIL: fuzz_$t (rc=$rc): $(ls "$work/art_$t" 2>/dev/null | tr '\n' ' ')"
    grep -E "ERROR|SUMMARY|==[0-9]+==|terminate|what\(\)|#[0-9]+ " "$work/fuzz_$t.log" | head -40
    fails=$((fails + 1))
  fi
done
echo "$fails failure(s)"
exit $((fails > 0))
