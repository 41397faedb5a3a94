#!/usr/bin/env bash
# Installs everything the suite needs (including Debian's PyTorch for the parity tests), builds
# Release with tests, and runs the whole suite through ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh --test
# The unit binaries (test_core, test_kernels, tokenizer_parity) build and run once, sanitized, in the
# `sanitize` entry (scripts/sanitize.sh --ci); their Release copies would cost ~200 CPU-s more to compile.
scripts/build.sh -DFLASHLM_BUILD_TESTS=ON -DFLASHLM_BUILD_BENCH=ON -DFLASHLM_RELEASE_UNIT_TESTS=OFF
# ctest runs two tests at once on 2 cores and most of them run 2 OpenMP threads, so threads wait for
# partners that are descheduled; libgomp's default spin-wait then burns the CPU the other lane needs
# (tests/cli/variants/v3.sh next to bolt_deltanet.sh: 8.4 CPU-s spinning, 2.5 passive; alone the same).
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
cd build && ctest --output-on-failure --timeout 1200 -j"$(nproc)"
