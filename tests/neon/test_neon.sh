#!/usr/bin/env bash
# The AArch64 kernels (include/flashlm/kernels/arch/ternary_neon*.cpp) on an x86-64 CI host:
# cross-compiles tests/test_kernels.cpp for aarch64 with g++-aarch64-linux-gnu and runs it under
# qemu-user twice, on a CPU with the dot product (-cpu max: paths scalar, neon, neon_dotprod) and on
# one without (-cpu cortex-a53: scalar, neon; qemu raises SIGILL for an sdot there, so the run also
# shows that no sdot executes on such a CPU, in the dispatch or anywhere else). Each run checks every
# SIMD path against the scalar one (int8 bit-exact, exact family ≤ 1e-5 of Σ|terms|), and the popcount
# GEMM's NEON path bit-exact against its byte-wise definition (tests/test_popcount.cpp). A third, short
# run checks that FLASHLM_ISA=neon forces the Armv8.0 path on the dotprod CPU.
# Usage: tests/neon/test_neon.sh SOURCE_DIR BUILD_DIR [INCLUDE_DIR...]
#   INCLUDE_DIRs: where to look for the header-only xsimd/, doctest/ and Eigen/ (default: the Debian
#   locations). Only those three are linked into BUILD_DIR/include: the x86-64 /usr/include itself must
#   not reach the cross compiler.
# Needs g++-aarch64-linux-gnu and qemu-user (scripts/install-deps.sh --test).
set -euo pipefail
src=$(cd "$1" && pwd)
out=$2
shift 2
cxx=aarch64-linux-gnu-g++
for tool in "$cxx" qemu-aarch64; do
  command -v "$tool" >/dev/null || { echo "test_neon: $tool not found (scripts/install-deps.sh --test installs g++-aarch64-linux-gnu and qemu-user)" >&2; exit 1; }
done
sysroot=/usr/aarch64-linux-gnu
mkdir -p "$out/include" "$out/obj"
for name in xsimd doctest Eigen; do
  found=""
  for dir in "$@" /usr/include /usr/include/eigen3 /usr/local/include /usr/local/include/eigen3; do
    [[ -d "$dir/$name" ]] && { found="$dir/$name"; break; }
  done
  [[ -n "$found" ]] || { echo "test_neon: no $name/ header directory found" >&2; exit 1; }
  ln -sfn "$found" "$out/include/$name"
done

# Everything but the dotprod file is built for plain Armv8.0, as a distribution would; -Werror: the
# project's warnings-are-bugs rule, which the x86-64 build cannot check for these files.
flags=(-std=c++20 -O2 -fopenmp -Wall -Wextra -Wpedantic -Werror -I "$src/include" -I "$src" -isystem "$out/include")
k="$src/include/flashlm/kernels/arch"
compile() { "$cxx" "${flags[@]}" "$@"; }
compile -march=armv8-a -c "$src/tests/test_kernels.cpp" -o "$out/obj/test_kernels.o" &
compile -march=armv8-a -c "$src/tests/test_main.cpp" -o "$out/obj/test_main.o" &
wait %1 && wait %2
# The v6.1 C engine's popcount GEMM (kernels/popcount_gemm.hpp, header-only: its NEON path is compiled
# here): bit-exact against the byte-wise definition, like the x86-64 test_kernels that includes it.
compile -march=armv8-a -c "$src/tests/test_popcount.cpp" -o "$out/obj/test_popcount.o"
compile -march=armv8-a -c "$k/ternary_neon.cpp" -o "$out/obj/ternary_neon.o" &
compile -march=armv8.2-a+dotprod -c "$k/ternary_neon_dotprod.cpp" -o "$out/obj/ternary_neon_dotprod.o" &
wait %1 && wait %2
"$cxx" -fopenmp "$out"/obj/*.o -o "$out/test_kernels_aarch64"

status=0
run() {  # run CPU EXPECTED_PATHS
  local log="$out/qemu-$1.log"
  echo "== qemu-aarch64 -cpu $1"
  if ! OMP_NUM_THREADS=2 qemu-aarch64 -cpu "$1" -L "$sysroot" "$out/test_kernels_aarch64" >"$log" 2>&1; then
    grep -E "ERROR|FAILED|signal" "$log" | head -20
    status=1
  fi
  tail -3 "$log"
  # Runtime detection: the best path, and how many paths the CPU runs.
  if ! grep -q "MESSAGE: active ISA $2, available: $3 paths" "$log"; then
    echo "test_neon: -cpu $1 should pick $2 from $3 paths:"; grep "active ISA" "$log" || true
    status=1
  fi
  # Both CPUs have Armv8.0 NEON: the popcount GEMM runs (and was checked on) its NEON path.
  if ! grep -q "MESSAGE: popcount paths here: scalar neon | active: neon" "$log"; then
    echo "test_neon: -cpu $1 should check and pick the NEON popcount path:"; grep "popcount paths" "$log" || true
    status=1
  fi
}
run max neon_dotprod 3
run cortex-a53 neon 2
# FLASHLM_ISA parses the new names: force the Armv8.0 path on a CPU that has dotprod.
echo "== FLASHLM_ISA=neon qemu-aarch64 -cpu max"
if ! FLASHLM_ISA=neon qemu-aarch64 -cpu max -L "$sysroot" "$out/test_kernels_aarch64" --test-case='*FLASHLM_ISA*' \
     >"$out/qemu-env.log" 2>&1; then
  cat "$out/qemu-env.log"
  status=1
fi
tail -1 "$out/qemu-env.log"
exit $status
