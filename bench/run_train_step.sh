#!/usr/bin/env bash
# Builds bench_train_step, runs it once (about two minutes) and prints the summary: Bolt-small training
# throughput at b16 x 256 with 1 and 2 threads, as tok/s, as model GFLOP/s, as a share of the FMA peak
# measured in the same run, and as a share of Eigen's own GEMM on the step's matmul shapes (FLOP-weighted).
# usage: bench/run_train_step.sh [extra Google Benchmark flags]   env: BUILD_DIR (default build-bench)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD_DIR:-build-bench}
cmake -S . -B "$build" -DFLASHLM_BUILD_TESTS=OFF -DFLASHLM_BUILD_EXAMPLES=OFF >/dev/null
cmake --build "$build" -j2 --target bench_train_step >/dev/null
out=$(mktemp --suffix=.json)
trap 'rm -f "$out"' EXIT
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)  (2 cores; a shared machine makes every absolute number noisy)"
"$build/bin/bench_train_step" --benchmark_min_time=0.3 --benchmark_out="$out" --benchmark_out_format=json "$@"
echo "load after:  $(cut -d' ' -f1-3 /proc/loadavg)"
/usr/bin/python3 - "$out" <<'PY'
import json, re, sys
runs = json.load(open(sys.argv[1]))["benchmarks"]
by = {}
for r in runs:
    m = re.match(r"(BM_\w+)(?:/(\w+))?/threads:(\d+)", r["name"])
    if m and r.get("run_type", "iteration") == "iteration":
        by.setdefault(m.group(1), {})[(m.group(2), int(m.group(3)))] = r
bolt, fma, eig = by.get("BM_bolt_train_step", {}), by.get("BM_fma_peak", {}), by.get("BM_eigen_gemm", {})
threads = sorted({t for d in by.values() for (_, t) in d})

def eigen_weighted(t):
    # Time Eigen would need for one step's matmuls = sum of step_flops / rate per shape; its GFLOP/s on the
    # step is then total FLOPs / that time, i.e. the FLOP-weighted harmonic mean of the shapes.
    rs = [r for (s, tt), r in eig.items() if tt == t]
    if not rs:
        return None
    flops = sum(r["step_flops"] for r in rs)
    return flops / sum(r["step_flops"] / r["GFLOP/s"] for r in rs)

def f(v, fmt="{:,.1f}"):
    return "-" if v is None else fmt.format(v)

print()
print(f"{'threads':>7} | {'Bolt tok/s':>10} | {'model GFLOP/s':>13} | {'FMA peak':>8} | {'% peak':>6} | "
      f"{'Eigen GEMM GFLOP/s':>18} | {'% Eigen':>7} | {'peak RSS MB':>11}")
for t in threads:
    b, p, e = bolt.get((None, t)), fma.get((None, t)), eigen_weighted(t)
    g = b["GFLOP/s"] if b else None
    print(f"{t:>7} | {f(b and b['tok/s'], '{:,.0f}'):>10} | {f(g):>13} | {f(p and p['GFLOP/s']):>8} | "
          f"{f(g and p and 100 * g / p['GFLOP/s']):>6} | {f(e):>18} | {f(g and e and 100 * g / e):>7} | "
          f"{f(b and b['peak_rss_MB'], '{:,.0f}'):>11}")
if bolt:
    sf = next(iter(bolt.values()))["step_flops"]
    print(f"model FLOPs per step (3 x forward matmuls, tied head included): {sf / 1e9:.2f} GFLOP")
if eig:
    print("\nEigen GEMM GFLOP/s per shape (M = 4096; x[M,K] W[N,K]; share = its part of a step's matmul FLOPs):")
    shapes = sorted({s for (s, _) in eig}, key=lambda s: (int(re.search(r"N(\d+)", s).group(1)), s))
    total = sum(r["step_flops"] for (s, t), r in eig.items() if t == threads[0])
    print(f"{'shape':>16} {'share':>6} " + " ".join(f"{'t=' + str(t):>8}" for t in threads))
    for s in shapes:
        share = 100 * eig[(s, threads[0])]["step_flops"] / total
        print(f"{s:>16} {share:>5.1f}% " + " ".join(f"{f(eig.get((s, t), {}).get('GFLOP/s')):>8}" for t in threads))
PY
