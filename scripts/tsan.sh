#!/usr/bin/env bash
# Builds the unit binaries with ThreadSanitizer into build-tsan/ and runs them on 2 OpenMP threads.
# Usage: scripts/tsan.sh [test binaries...]   (default: test_kernels test_core)
#
# TSan needs an OpenMP runtime that tells it about its barriers, locks and reductions. Debian's libgomp
# (g++'s) does not, so with it every parallel region that hands data between threads is reported as a
# race. clang++-14 with LLVM's libomp (libomp-14-dev) and its Archer tool (libarcher.so, loaded through
# OMP_TOOL_LIBRARIES) does: Archer supplies OpenMP's synchronisation to TSan. Not a CI step (docs/errors.md).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${FLASHLM_TSAN_BUILD:-build-tsan}
llvm=/usr/lib/llvm-14/lib
[[ -f $llvm/libarcher.so ]] || { echo "tsan.sh: needs clang-14 and libomp-14-dev ($llvm/libarcher.so)" >&2; exit 1; }
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=None -DCMAKE_CXX_COMPILER=clang++-14 -DFLASHLM_BUILD_BENCH=OFF \
  -DFLASHLM_BUILD_EXAMPLES=OFF -DFLASHLM_BUILD_TESTS=ON -DCMAKE_CXX_FLAGS="-O1 -fsanitize=thread" \
  -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=thread -Wl,-rpath,$llvm" >/dev/null
targets=("$@")
[[ ${#targets[@]} -eq 0 ]] && targets=(test_kernels test_core)
cmake --build "$build" -j"$(nproc)" --target "${targets[@]}"
# ignore_noninstrumented_modules: libomp itself is not instrumented (Archer asks for it at start-up).
export OMP_NUM_THREADS=2 OMP_TOOL_LIBRARIES=$llvm/libarcher.so TSAN_OPTIONS=ignore_noninstrumented_modules=1:halt_on_error=1
for t in "${targets[@]}"; do "$build/bin/$t"; done
