#!/usr/bin/env bash
# Builds every test binary and the CLI with AddressSanitizer + UndefinedBehaviorSanitizer into build-asan/
# and runs the whole ctest suite against them. Usage: scripts/sanitize.sh [--ci | --quick] [extra ctest args]
#
# Every ctest entry runs except four that have no sanitized binary of ours to run:
#   sanitize      this script;
#   fuzz          builds its own clang -fsanitize=fuzzer,address,undefined binaries (in the Release suite);
#   consumer      a cmake --install / find_package / add_subdirectory build of a 10-line program;
#   kernels_neon  the AArch64 kernels cross-compiled and run under qemu-user, where ASan's shadow memory
#                 layout does not apply.
# alloc counts heap allocations through ASan's allocator hooks here (tests/test_alloc.cpp), mpi runs its
# ranks sanitized with OpenMPI's own leaks suppressed (tests/lsan.supp).
# --quick runs the suite with FLASHLM_TEST_QUICK=1: the CLI scripts' 30-step "the loss falls" runs shrink
# to 4 steps whose losses must be finite (tests/cli/common.sh); every other check runs as in Release.
# --ci is the CI step (ctest entry `sanitize`), quick mode built at -O1 without -g, and only the part of
# the suite that fits CI's 25 minutes on 2 cores (docs/errors.md has the measured costs): the unit
# binaries (every op's forward and backward, every SIMD kernel against scalar, bf16 GEMM, loaders), the
# tokenizer parity binary, and the CLI scripts that need no other binary: test_cli.sh
# (training, resume, generation, every subcommand), test_errors.sh (every bad input), test_data.sh, the
# tokenizer CLI, and the two cheapest per-variant scripts (train, eval, generate of supernova and
# supernova2_engine, ~31 CPU-s; three more, bolt_blockwise, bolt_deltanet and v3, took the whole CI to
# 25 m 53 s on this VM in session 6).
# Left to the full run: test_variants, test_parity and test_alloc (three more sanitized builds; with
# parity and alloc in this list the CI took 21 m 56 s here in session 7) and the other CLI scripts
# (cli_bolt_blockwise, cli_bolt_deltanet, cli_v3, cli_cortex7, cli_nova, cli_nova-diff, cli_supernova2,
# cli_thunderbolt, import_export, faults, mpi); docs/errors.md has their measured costs.
# ThreadSanitizer is not run here: Debian's libgomp is not TSan-instrumented, so every OpenMP barrier and
# reduction would be reported as a race; scripts/tsan.sh uses clang with LLVM's libomp + Archer instead
# (see docs/errors.md).
set -euo pipefail
cd "$(dirname "$0")/.."
ci=0
if [[ "${1:-}" == "--ci" ]]; then ci=1; export FLASHLM_TEST_QUICK=1; shift; fi
if [[ "${1:-}" == "--quick" ]]; then export FLASHLM_TEST_QUICK=1; shift; fi
build=${FLASHLM_ASAN_BUILD:-build-asan}
# -O1 without -g in CI: the sanitizer checks are the same and the build is faster (Eigen's templates
# make debug info expensive); reports then name functions but not lines.
opt=$([[ $ci == 1 ]] && echo "-O1" || echo "-O2 -g")
# The CI step's CLI holds only the model families its tests train (bolt, cortex3/cortex6, supernova,
# supernova2-engine): each other family's model costs ~35 CPU-s more to compile sanitized.
models=$([[ $ci == 1 ]] && echo "-DFLASHLM_MODELS=bolt;cortex;supernova;supernova2_engine" || echo "-UFLASHLM_MODELS")
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=None -DFLASHLM_BUILD_BENCH=OFF -DFLASHLM_BUILD_TESTS=ON "$models" -DFLASHLM_RELEASE_UNIT_TESTS=ON \
  -DCMAKE_CXX_FLAGS="$opt -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
  -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" >/dev/null
build=$(realpath "$build")
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export LSAN_OPTIONS=suppressions=$PWD/tests/lsan.supp:print_suppressions=0
cd_ctest() { cd "$build" && ctest --output-on-failure --timeout 1800 -j"$(nproc)" "$@"; }
if [[ $ci == 1 ]]; then
  cmake --build "$build" -j"$(nproc)" --target flashlm_sanitize_ci  # tests/CMakeLists.txt
  cd_ctest -R '^(core|kernels|kernels_isa_env|tokenizers|cli|cli_errors|cli_tokenizers|data|cli_(supernova|supernova2_engine))$' "$@"
  exit
fi
cmake --build "$build" -j"$(nproc)"
cd_ctest -E '^(sanitize|fuzz|consumer|kernels_neon)$' "$@"
