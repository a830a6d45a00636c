#!/usr/bin/env bash
# Quick demo + regression gate, as run by .ci/run and .github/workflows/ci.yml.
# Runs the classical scenarios in --quick mode, saves the results, then checks them against the
# committed thresholds in xtask/gates.json. Exits non-zero on any regression, naming what broke.
set -euo pipefail
cd "$(dirname "$0")/.."
export CI="${CI:-true}"
out="${FORGE_CI_RESULTS:-target/forge-results/ci-quick.json}"
mkdir -p "$(dirname "$out")"
cargo xtask demo --quick --quiet --save-json "$out"
cargo xtask gate --results "$out" --thresholds xtask/gates.json
