#!/usr/bin/env bash
# Batch-1 Bolt generation, flashlm vs the PyTorch cached loop (bench/torch_generate.py), one thread, in
# one run: prints tok/s of each and the ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -x scripts/install-deps.sh ]] && scripts/install-deps.sh --test
build=${BUILD_DIR:-build-bench}
cmake -S . -B "$build" -DFLASHLM_BUILD_TESTS=OFF -DFLASHLM_BUILD_EXAMPLES=OFF >/dev/null
cmake --build "$build" -j2 --target bench_generate >/dev/null
torch=(env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-openmp
       /usr/bin/python3 bench/torch_generate.py --threads 1)
pt1=$("${torch[@]}")
fl=$("$build/bin/bench_generate" --benchmark_filter='/1/' --benchmark_min_time=2 --benchmark_format=json 2>/dev/null)
pt2=$("${torch[@]}")
/usr/bin/python3 - "$pt1" "$pt2" "$fl" <<'PY'
import json, sys
pt = [json.loads(sys.argv[1]), json.loads(sys.argv[2])]
fl = {b["name"].split("/")[0]: b["tok/s"] for b in json.loads(sys.argv[3])["benchmarks"]}
cached = sum(p["cached_tok_s"] for p in pt) / 2
recomp = sum(p["recompute_tok_s"] for p in pt) / 2
print(f"PyTorch (1 thread): cached loop {cached:8.1f} tok/s | recompute loop {recomp:6.1f} tok/s  (mean of runs before and after)")
for k, name in [("BM_generate_exact", "flashlm cached exact"), ("BM_generate_int8", "flashlm cached int8 "),
                ("BM_generate_recompute", "flashlm recompute   ")]:
    v = fl[k]
    print(f"{name}: {v:9.1f} tok/s | {v / cached:6.1f}x PyTorch cached | {v / recomp:7.1f}x PyTorch recompute")
# On a loaded machine wall rates mostly measure the scheduler: the same on CPU time.
cpu = {b["name"].split("/")[0]: 1e6 / b["cpu_time"] for b in json.loads(sys.argv[3])["benchmarks"] if b["time_unit"] == "us"}
cached_cpu = sum(p.get("cached_tok_s_cpu", 0) for p in pt) / 2
if cached_cpu > 0:
    print(f"on CPU time: PyTorch cached loop {cached_cpu:8.1f} tok/s; " +
          "; ".join(f"{name} {cpu[k]:8.1f} tok/s = {cpu[k] / cached_cpu:5.1f}x"
                    for k, name in [("BM_generate_exact", "exact"), ("BM_generate_int8", "int8")] if k in cpu))
PY
