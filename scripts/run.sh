#!/usr/bin/env bash
# The main job: install, build, train Bolt on TinyStories text for a few minutes, evaluate on the
# held-out 10%, and generate a story.
# Usage: scripts/run.sh [--data FILE] [--minutes M] [--model NAME] [--out DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
data="" minutes=5 model=bolt out=runs/bolt
while (($#)); do
  case "$1" in
    --data) data="$2"; shift 2 ;;
    --minutes) minutes="$2"; shift 2 ;;
    --model) model="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    -h|--help) sed -n '2,4p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
if [[ -z "$data" ]]; then
  if [[ -f ../shared/data/tinystories-a.txt ]]; then
    data=../shared/data/tinystories-a.txt
  else
    echo "run.sh: no training text: ../shared/data/tinystories-a.txt is absent; pass --data FILE" >&2
    exit 2
  fi
fi
scripts/install-deps.sh
scripts/build.sh -DFLASHLM_BUILD_TESTS=OFF -DFLASHLM_BUILD_BENCH=OFF
bin=build/bin/flashlm
$bin train --model "$model" --data "$data" --minutes "$minutes" --out "$out" --eval-every-minutes 1
$bin eval --checkpoint "$out/best.safetensors" --data "$data" --split val
$bin generate --checkpoint "$out/best.safetensors" --prompt "Once upon a time" --tokens 200
