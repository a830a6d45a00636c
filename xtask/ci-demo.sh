#!/usr/bin/env bash
# Quick demo + regression gate, as run by .ci/run and .github/workflows/ci.yml.
# Runs the classical scenarios in --quick mode, saves the results, then checks them against the
# committed thresholds in xtask/gates.json. Then, when the shared model and text data are there
# (.ci/run exports FORGE_MINILM_DIR and FORGE_TEXT_DATA_DIR when ../shared exists), the
# transformer smoke: full fine-tuning vs LoRA r4/r8 of all-MiniLM-L6-v2 on 200 SST-2 sentences,
# 1 epoch, 1 seed (about 1-2 minutes on 2 cores), through the same gate.
# Exits non-zero on any regression, naming what broke.
set -euo pipefail
cd "$(dirname "$0")/.."
export CI="${CI:-true}"
out="${FORGE_CI_RESULTS:-target/forge-results/ci-quick.json}"
mkdir -p "$(dirname "$out")"
cargo xtask demo --quick --quiet --save-json "$out"
cargo xtask gate --results "$out" --thresholds xtask/gates.json

if [ -n "${FORGE_MINILM_DIR:-}" ] && [ -n "${FORGE_TEXT_DATA_DIR:-}" ]; then
  smoke="${FORGE_CI_SMOKE_RESULTS:-target/forge-results/ci-sst2-smoke.json}"
  start=$(date +%s)
  FORGE_MODEL="$FORGE_MINILM_DIR" cargo xtask demo --quick --scenario sst2-full-vs-lora \
    --seeds 1 --quiet --save-json "$smoke"
  echo "transformer smoke: $(( $(date +%s) - start )) s"
  cargo xtask gate --results "$smoke" --thresholds xtask/gates.json
else
  echo "transformer smoke skipped: set FORGE_MINILM_DIR and FORGE_TEXT_DATA_DIR to run it"
fi
