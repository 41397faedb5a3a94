#!/usr/bin/env bash
# Builds the test suite with AddressSanitizer + UndefinedBehaviorSanitizer into build-asan/ and runs it
# through ctest, except: consumer (a cmake install/find_package build, no code of ours to check), fuzz
# (builds its own ASan/UBSan/libFuzzer binaries), alloc (replaces malloc/new process-wide, which
# conflicts with ASan's allocator), parity (PyTorch peer: slow under ASan, same code as core) and mpi.
# ThreadSanitizer is not run: Debian's libgomp is not TSan-instrumented, so every OpenMP barrier and
# reduction would be reported as a race (see docs/errors.md).
# Usage: scripts/sanitize.sh [extra ctest args]
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFLASHLM_BUILD_BENCH=OFF \
  -DCMAKE_CXX_FLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
  -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" >/dev/null
cmake --build build-asan -j"$(nproc)" --target test_core test_kernels flashlm_cli
cd build-asan
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
ctest --output-on-failure --timeout 1800 -E '^(consumer|fuzz|alloc|parity|mpi)$' "$@"
