#!/usr/bin/env bash
# flashlm vs PyTorch, one training step (forward, the variant's loss, backward, clip, AdamW with the
# variant's upstream recipe) on random tokens. The PyTorch side is the variant's definition in
# tests/parity/ built from the config flashlm prints, so both run the same model, and it starts from
# flashlm's initial weights and batch (--save-init / --init), so both train the same numbers: the table's
# loss column (after warmup + steps) shows they agree. Each measurement is its
# own process (bench_train_step_cli / bench/torch_train_step.py), so peak RSS and page faults are its own;
# they alternate, and swap who goes first every round, so drift on this shared machine hits all. The
# FP32 FMA peak is measured in the same run (before and after; the best counts), for "% of peak".
# PyTorch runs up to three times a round, with three memory allocators under it. As installed, glibc's
# malloc maps and unmaps PyTorch's large tensors every step, and each 4 KiB page then faults anew: ~190k
# faults a Bolt step. What that costs depends on the host: on a Zen 5 VM (session 16) two thirds of the
# step, on a Zen 4 VM (session 17) 10-20 %. So the peer also runs
#   pytorch-thp       with GLIBC_TUNABLES=glibc.malloc.hugetlb=1 (glibc's malloc on transparent huge pages;
#                     the fastest peer on the Zen 5 VM, slower than as installed on the Zen 4 one), and
#   pytorch-tcmalloc  with LD_PRELOAD of gperftools' tcmalloc (libtcmalloc-minimal4), which keeps freed
#                     memory mapped: ~500 faults a step, the fastest peer on the Zen 4 VM.
# The last column is the ratio against whichever peer was fastest for that row: the one to quote.
# flashlm needs none of this (its arena reuses memory across steps; core/storage.hpp asks for huge pages).
# usage: bench/compare_pytorch.sh [--models "bolt cortex6"] [--large] [--all] [--rounds N] [--steps N]
#                                 [--warmup N] [--threads "1 2"] [--peers "pytorch pytorch-thp pytorch-tcmalloc"]
#   --large   also run b64 x 256 for --models
#   --all     also every other variant at b16 x 256 with 2 threads (the issue's table)
#   a model named NAME+recompute runs flashlm with --recompute (blocks recomputed in backward) against
#   the same PyTorch model, e.g. --models "bolt bolt+recompute"; +bf16 adds --matmul bf16, +int8 --quant int8
#   (PyTorch stays f32: the issue's "faster arithmetic beyond what PyTorch does on a CPU")
#   Both sides follow the recipe's train-time position subsampling (v3: the loss on 25 % of the
#   positions, upstream's speed measure); NAME+allpos computes it on every position on both sides.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=3 steps=4 warmup=3 threads="1 2" configs="16x256" models="bolt cortex6" all=0
peers="pytorch pytorch-thp pytorch-tcmalloc"
while (($#)); do
  case "$1" in
    --models) models=$2; shift 2 ;;
    --large) configs="16x256 64x256"; shift ;;
    --all) all=1; shift ;;
    --rounds) rounds=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --warmup) warmup=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --peers) peers=$2; shift 2 ;;
    *) echo "usage: $0 [--models \"A B\"] [--large] [--all] [--rounds N] [--steps N] [--warmup N] [--threads \"1 2\"]" \
            "[--peers \"pytorch pytorch-thp pytorch-tcmalloc\"]" >&2
       exit 2 ;;
  esac
done
# The environment each PyTorch run adds (an array named peer_env); fails for an unknown peer.
set_peer_env() {
  case "$1" in
    pytorch) peer_env=() ;;
    pytorch-thp) peer_env=(GLIBC_TUNABLES=glibc.malloc.hugetlb=1) ;;
    pytorch-tcmalloc) peer_env=(LD_PRELOAD="$tcmalloc") ;;
    *) return 1 ;;
  esac
}
tcmalloc=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4
for p in $peers; do
  set_peer_env "$p" || { echo "unknown peer '$p'" >&2; exit 2; }
done
[[ " $peers " == *" pytorch "* ]] || { echo "--peers must include pytorch (the table's main columns)" >&2; exit 2; }
# The arena is sized by the first step; for most models the second is the steady state. Models whose
# activation sizes follow the routing (nova-diff, supernova2) fill it differently in the second step and
# fold it into one block in the third, whose fresh pages then fault in (core/arena.hpp).
((warmup >= 3)) || echo "note: --warmup below 3 times the routed models' one-off arena fold" >&2

[[ -x scripts/install-deps.sh ]] && scripts/install-deps.sh --test
build=${BUILD_DIR:-build-bench}
cmake -S . -B "$build" -DFLASHLM_BUILD_TESTS=OFF -DFLASHLM_BUILD_EXAMPLES=OFF >/dev/null
cmake --build "$build" -j2 --target bench_train_step_cli >/dev/null

# Debian's torch links the reference BLAS unless OpenBLAS is put first; OPENBLAS_CORETYPE / _L2_SIZE from
# the environment would pin OpenBLAS to its Haswell kernels, so they are unset here and nowhere else.
torch=(env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-openmp
       /usr/bin/python3 bench/torch_train_step.py)
core=$(OPENBLAS_VERBOSE=2 "${torch[@]}" --blas-probe 2>&1 | grep -m1 -o 'Core: .*' || true)
echo "PyTorch BLAS: OpenBLAS ${core:-kernel not reported (OpenBLAS not loaded?)}"
if [[ " $peers " == *" pytorch-tcmalloc "* && ! -f $tcmalloc ]]; then
  echo "note: $tcmalloc is missing (Debian libtcmalloc-minimal4); pytorch-tcmalloc is skipped" >&2
  peers=${peers/pytorch-tcmalloc/}
fi

work=$(mktemp -d)
out="$work/rows.jsonl"
trap 'rm -rf "$work"' EXIT
cli="$build/bin/bench_train_step_cli"
all_threads=$(echo "$threads 2" | tr ' ' '\n' | sort -un | tr '\n' ' ')
peak() { for t in $all_threads; do "$cli" --peak --threads "$t" >>"$out"; done; }
# jobs: MODEL CONFIG THREADS
jobs=()
for m in $models; do for cfg in $configs; do for t in $threads; do jobs+=("$m $cfg $t"); done; done; done
if ((all)); then
  for m in $("$cli" --model '?' 2>&1 | sed -nE 's/.*known: (.*)\)$/\1/p' | tr -d ','); do
    [[ " $models " == *" $m "* ]] || jobs+=("$m 16x256 2")
  done
fi
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)  ($(nproc) cores, shared)"
peak
for r in $(seq 1 "$rounds"); do
  for job in "${jobs[@]}"; do
    read -r m cfg t <<<"$job"
    b=${cfg%x*} s=${cfg#*x} base=${m%%+*} extra=() pos=()
    [[ "$m" == *+recompute* ]] && extra+=(--recompute)
    [[ "$m" == *+bf16* ]] && extra+=(--matmul bf16)
    [[ "$m" == *+int8* ]] && extra+=(--quant int8)
    [[ "$m" == *+allpos* ]] && pos=(--pos-fraction 1)
    spec="$work/spec_${base}_$s.json" init="$work/init_${base}_${b}x$s.safetensors"
    [[ -f "$spec" ]] || "$cli" --model "$base" --seq "$s" --print-config >"$spec"
    [[ -f "$init" ]] || "$cli" --model "$base" --batch "$b" --seq "$s" --save-init "$init"
    args=(--batch "$b" --seq "$s" --threads "$t" --steps "$steps" --warmup "$warmup")
    run() {
      if [[ $1 == flashlm ]]; then
        "$cli" --model "$base" "${extra[@]}" "${pos[@]}" "${args[@]}"
      else
        set_peer_env "$1"
        env "${peer_env[@]}" "${torch[@]}" --impl "$1" --spec "$spec" --init "$init" --label "$m" "${pos[@]}" "${args[@]}"
      fi
    }
    order="flashlm $peers"
    ((r % 2)) || order=$(echo "$order" | tr ' ' '\n' | tac | tr '\n' ' ')
    for f in $order; do
      if line=$(run "$f"); then
        echo "  round $r: $line" >&2
        echo "$line" >>"$out"
      else
        echo "  round $r: $f failed for $m $cfg t=$t" >&2
      fi
    done
  done
done
peak
echo "load after:  $(cut -d' ' -f1-3 /proc/loadavg)"

/usr/bin/python3 - "$out" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
peak = {}
for r in rows:
    if r["impl"] == "peak":
        peak[r["threads"]] = max(peak.get(r["threads"], 0), r["gflop_s"])
rows = [r for r in rows if r["impl"] != "peak"]
print("measured FP32 FMA peak (best of the runs before and after): "
      + ", ".join(f"{t} thread{'s' if t > 1 else ''} {g:,.0f} GFLOP/s" for t, g in sorted(peak.items())))
# A run whose process got under 90% of `threads` CPUs shared its cores with other work; with OpenMP
# barriers that can cost several x, so the table uses uncontended rounds when there are any.
clean = lambda r: r["cpu_util"] >= 0.9 * r["threads"]
groups = {}
for r in rows:
    groups.setdefault((r["model"], r["batch"], r["seq"], r["threads"]), {}).setdefault(r["impl"], []).append(r)
print()
# Peers besides PyTorch as installed, each with its own group of columns, in the order they ran.
extra = [i for i in dict.fromkeys(r["impl"] for r in rows) if i not in ("flashlm", "pytorch")]
short = lambda i: i.replace("pytorch", "pt").replace("tcmalloc", "tc")
print(f"{'model':>19} {'config':>8} {'thr':>3} | {'flashlm tok/s':>13} {'pytorch tok/s':>13} {'ratio':>6} "
      f"{'(min-max)':>11} | {'GFLOP/s fl/pt':>13} {'% peak fl/pt':>12} | {'RSS MB fl/pt':>13} | {'minflt/step fl/pt':>17}"
      + "".join(f" | {short(i) + ' tok/s':>12} {'ratio':>6} {'(min-max)':>11} {'% peak':>6} {'RSS MB':>6} {'minflt':>7}"
                for i in extra)
      + f" | {'best peer':>9} {'ratio':>6} | {'loss fl/pt':>13}")
def rounds(fl, peer):
    """flashlm's and a peer's rounds, the uncontended pairs only where there are any; and how many those are."""
    pairs = [(a, p) for a, p in zip(fl, peer) if clean(a) and clean(p)]
    if not pairs:
        return fl, peer, 0
    return [a for a, _ in pairs], [p for _, p in pairs], len(pairs)
def spread(fl, peer):
    # Rounds pair up in run order, so the per-round ratios show how much the machine moved.
    ratios = [a["tok_s"] / p["tok_s"] for a, p in zip(fl, peer)]
    return f"{min(ratios):.2f}-{max(ratios):.2f}" if ratios else "-"
med = lambda rs, k: statistics.median(r[k] for r in rs) if rs else float("nan")
def peer_cols(fl, pr, fpt, pk):
    if not fl or not pr:
        return f" | {'-':>12} {'-':>6} {'-':>11} {'-':>6} {'-':>6} {'-':>7}"
    tok = med(pr, "tok_s")
    return (f" | {tok:>12,.0f} {med(fl, 'tok_s') / tok:>6.2f} {spread(fl, pr):>11} {f'{100 * fpt * tok / pk:.0f}%':>6} "
            f"{max(p['peak_rss_mb'] for p in pr):>6,.0f} {med(pr, 'minflt_per_step'):>7,.0f}")
for (m, b, s, t), g in sorted(groups.items()):
    fl_all = g.get("flashlm", [])
    fl, pt, n_clean = rounds(fl_all, g.get("pytorch", []))
    # Every peer's rounds paired with flashlm's; the fastest peer's ratio is the one to quote.
    paired = {"pytorch": (fl, pt)} | {i: rounds(fl_all, g.get(i, []))[:2] for i in extra}
    note = f"{n_clean}/{len(fl_all)} clean rounds"
    if not n_clean:
        note += " (none: all rounds shown, contended)"
    # Same model, same FLOPs per token: PyTorch's GFLOP/s follows from flashlm's count.
    fpt = med(fl, "gflop_s") / med(fl, "tok_s") if fl else float("nan")
    gfl, gpt = med(fl, "gflop_s"), fpt * med(pt, "tok_s")
    pk = peak.get(t, float("nan"))
    ratio = {i: med(f, "tok_s") / med(p, "tok_s") for i, (f, p) in paired.items() if f and p}
    best = min(ratio, key=ratio.get) if ratio else None
    print(f"{m:>19} {b:>4}x{s:<3} {t:>3} | {med(fl, 'tok_s'):>13,.0f} {med(pt, 'tok_s'):>13,.0f} "
          f"{med(fl, 'tok_s') / med(pt, 'tok_s'):>6.2f} {spread(fl, pt):>11} | {gfl:>6,.0f}/{gpt:<6,.0f} "
          f"{f'{100 * gfl / pk:.0f}%':>6}/{f'{100 * gpt / pk:.0f}%':<5} | "
          f"{max((r['peak_rss_mb'] for r in fl), default=0):>6,.0f}/{max((r['peak_rss_mb'] for r in pt), default=0):<6,.0f} | "
          f"{med(fl, 'minflt_per_step'):>8,.0f}/{med(pt, 'minflt_per_step'):<8,.0f}"
          + "".join(peer_cols(*paired[i], fpt, pk) for i in extra)
          + (f" | {short(best):>9} {ratio[best]:>6.2f}" if best else f" | {'-':>9} {'-':>6}")
          + f" | {med(fl, 'loss'):>6.3f}/{med(pt, 'loss'):<6.3f} | {note}")
print("tok/s: median over rounds (clean ones where there are any); ratio = flashlm / peer of the medians and,\n"
      "in brackets, its range over the same round pairs; GFLOP/s = tok/s x 6 x the weights in matrix products\n"
      "(a floor for attention and recurrences); % peak of the FMA peak measured with that many threads;\n"
      "RSS: max. pt-thp: PyTorch with GLIBC_TUNABLES=glibc.malloc.hugetlb=1; pt-tc: PyTorch on tcmalloc\n"
      "(LD_PRELOAD). best peer: the fastest PyTorch run of the row, and flashlm's ratio against it (the one to\n"
      "quote). loss: after warmup + steps on one fixed batch, from the same initial weights; the f32 sides agree\n"
      "to rounding, which ternary rounding amplifies step by step; +int8 / +bf16 rows show their arithmetic's\n"
      "effect, and v3's rows differ by the positions each side samples. Every round is echoed above the table.")
for (m, b, s, t), g in sorted(groups.items()):
    util = {k: " ".join(f"{r['cpu_util']:.2f}" for r in v) for k, v in g.items()}
    print(f"cpu_util {m} {b}x{s} t={t} per round (CPU s per wall s; {t} = cores to itself): "
          + "; ".join(f"{k} {v}" for k, v in sorted(util.items())))
for (m, b, s, t), g in sorted(groups.items()):
    fl = [r for r in g.get("flashlm", []) if clean(r)] or g.get("flashlm", [])
    if fl:
        ph = {k: statistics.median(r["phase_ms"][k] for r in fl) for k in fl[0]["phase_ms"]}
        print(f"flashlm {m} {b}x{s} t={t} step split (ms, median): " + ", ".join(f"{k} {v:.1f}" for k, v in ph.items()))
PY
