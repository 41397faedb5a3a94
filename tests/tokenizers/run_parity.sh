#!/usr/bin/env bash
# Tokenizer parity: the JavaScript ports (npm/node_modules, from scripts/install-deps.sh) encode the
# fixture texts, tokenizer_parity checks flashlm's C++ tokenizers give the same ids and text.
# Usage: run_parity.sh TOKENIZER_PARITY_BIN REPO_ROOT
set -euo pipefail
bin=$1 root=$2
if [[ ! -d "$root/npm/node_modules/@huggingface/tokenizers" || ! -d "$root/npm/node_modules/js-tiktoken" ]]; then
  echo "error: the JavaScript reference tokenizers are missing; run scripts/install-deps.sh --test" >&2
  exit 1
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
node "$root/tests/tokenizers/parity.mjs" "$root/tests/tokenizers/bytelevel_bpe.json" "$work"
"$bin" "$work/expected.json"
