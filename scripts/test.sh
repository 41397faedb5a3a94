#!/usr/bin/env bash
# Installs everything the suite needs (including Debian's PyTorch for the parity tests), builds
# Release with tests, and runs the whole suite through ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh --test
scripts/build.sh -DFLASHLM_BUILD_TESTS=ON -DFLASHLM_BUILD_BENCH=ON
cd build && ctest --output-on-failure --timeout 1200 -j"$(nproc)"
