#!/usr/bin/env bash
# Installs what flashlm needs from Debian 12 packages (apt-get update once, then install only what is
# missing). Usage: scripts/install-deps.sh [--test]   (--test adds the PyTorch peer for parity tests and
# benchmarks, with tcmalloc for bench/compare_pytorch.sh's pytorch-tcmalloc run, and
# OpenMPI for the multi-process training test; clang and its sanitizer/libFuzzer runtime for tests/fuzz;
# the aarch64 cross compiler and qemu-user for the NEON kernel test, tests/neon/test_neon.sh).
# Both install the npm packages of npm/package.json into npm/node_modules (git-ignored): js-tiktoken's
# GPT-2 ranks for `flashlm train-tokenizer --type gpt2-remap`, and the JavaScript tokenizers the parity
# test compares against.
set -euo pipefail
pkgs=(build-essential cmake pkg-config libeigen3-dev libxsimd-dev libcli11-dev nlohmann-json3-dev libfmt-dev
      libsentencepiece-dev libicu-dev gnuplot-nox)
if [[ "${1:-}" == "--test" ]]; then
  pkgs+=(doctest-dev libbenchmark-dev python3-torch python3-numpy libopenblas0-openmp libtcmalloc-minimal4 libopenmpi-dev
            openmpi-bin clang libclang-rt-14-dev g++-aarch64-linux-gnu qemu-user)
fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
command -v npm >/dev/null || missing+=(nodejs npm)
if ((${#missing[@]})); then
  SUDO=""
  [[ "$(id -u)" != 0 ]] && SUDO="sudo"
  echo "installing: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
npm install --prefix "$(dirname "$0")/../npm" --no-audit --no-fund --no-package-lock --loglevel=error >/dev/null
