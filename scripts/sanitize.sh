#!/usr/bin/env bash
# Builds the tests and the CLI with AddressSanitizer + UndefinedBehaviorSanitizer into build-asan/ and runs
# them. Usage: scripts/sanitize.sh [--ci | --quick] [extra ctest args]
#
# Full mode runs ctest except: consumer (a cmake install/find_package build, no code of ours to check),
# fuzz (builds its own ASan/UBSan/libFuzzer binaries), alloc (replaces malloc/new process-wide, which
# conflicts with ASan's allocator), parity (PyTorch peer: slow under ASan, same code as core) and mpi.
# It takes ~25 min on 2 cores, mostly the CLI training tests at sanitizer speed (--quick: test_cli.sh
# costs 150 instead of 326 CPU-s at -O1).
# --quick runs the same suite with FLASHLM_TEST_QUICK=1: the CLI scripts' 30-step "the loss falls" runs
# shrink to 4 steps whose losses must be finite (tests/cli/common.sh), every other check runs as in Release.
#
# --ci is the step CI runs (ctest entry `sanitize`, a few minutes): the unit binaries (every op's forward
# and backward, every SIMD kernel against scalar, the loaders' unit tests) and every bad-input path of
# the CLI (tests/cli/test_errors.sh), where hostile files meet our parsers; fuzz covers the loaders too.
# ThreadSanitizer is not run: Debian's libgomp is not TSan-instrumented, so every OpenMP barrier and
# reduction would be reported as a race (see docs/errors.md).
set -euo pipefail
cd "$(dirname "$0")/.."
ci=0
if [[ "${1:-}" == "--ci" ]]; then ci=1; shift; fi
if [[ "${1:-}" == "--quick" ]]; then export FLASHLM_TEST_QUICK=1; shift; fi
build=${FLASHLM_ASAN_BUILD:-build-asan}
# -O1 without -g in CI: the sanitizer checks are the same and the build is faster (Eigen's templates
# make debug info expensive); reports then name functions but not lines.
opt=$([[ $ci == 1 ]] && echo "-O1" || echo "-O2 -g")
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=None -DFLASHLM_BUILD_BENCH=OFF -DFLASHLM_BUILD_TESTS=ON \
  -DCMAKE_CXX_FLAGS="$opt -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
  -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" >/dev/null
build=$(realpath "$build")
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
if [[ $ci == 1 ]]; then
  cmake --build "$build" -j"$(nproc)" --target test_core test_kernels flashlm_cli
  "$build"/bin/test_core
  "$build"/bin/test_kernels
  bash tests/cli/test_errors.sh "$build/bin" "$PWD/../shared/data"
  exit 0
fi
targets=(test_core test_kernels flashlm_cli tokenizer_parity)
cmake --build "$build" --target help | grep -q ' test_variants$' && targets+=(test_variants)
cmake --build "$build" -j"$(nproc)" --target "${targets[@]}"
cd "$build"
ctest --output-on-failure --timeout 1800 -E '^(consumer|fuzz|alloc|parity|mpi)$' "$@"
