#!/usr/bin/env bash
# Usage: run.sh SOURCE_DIR — installs flashlm to a temporary prefix, then builds and runs the consumer
# once with find_package and once with add_subdirectory.
set -euo pipefail
src="$1"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cmake -S "$src" -B "$work/lib" -DFLASHLM_BUILD_TESTS=OFF -DFLASHLM_BUILD_EXAMPLES=OFF -DFLASHLM_BUILD_BENCH=OFF \
      -DCMAKE_INSTALL_PREFIX="$work/prefix" >/dev/null
cmake --install "$work/lib" >/dev/null
cmake -S "$src/tests/consumer" -B "$work/fp" -DCMAKE_PREFIX_PATH="$work/prefix" >/dev/null
cmake --build "$work/fp" -j2 >/dev/null
"$work/fp/consumer"
cmake -S "$src/tests/consumer" -B "$work/sub" -DFLASHLM_MODE=add_subdirectory -DFLASHLM_SOURCE="$src" >/dev/null
cmake --build "$work/sub" -j2 >/dev/null
"$work/sub/consumer"
echo "find_package and add_subdirectory consumers built and ran"
