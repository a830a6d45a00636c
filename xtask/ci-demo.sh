#!/usr/bin/env bash
# Quick demo + regression gate, as run by .ci/run and .github/workflows/ci.yml.
# Runs the classical scenarios in --quick mode, saves the results, then checks them against the
# committed thresholds in xtask/gates.json. Then, when the shared model and text data are there
# (.ci/run exports FORGE_MINILM_DIR and FORGE_TEXT_DATA_DIR when ../shared exists), the
# transformer smoke, 1 seed, all-MiniLM-L6-v2 at smoke size (200 SST-2 / AG News sentences, 1
# epoch), through the same gate: full fine-tuning vs LoRA r4/r8 on SST-2; the five merges and the
# backbone-only multi-task merge; LoRA soups and LoRA-Flow; the encoder gate blocking a
# random-init source. One process, so that the later scenarios reuse the first one's models
# (about 5 minutes on 2 cores).
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
    --scenario sst2-merge --scenario sst2-lora-soup --scenario dl-gate \
    --seeds 1 --quiet --save-json "$smoke"
  echo "transformer smoke: $(( $(date +%s) - start )) s"
  cargo xtask gate --results "$smoke" --thresholds xtask/gates.json
else
  echo "transformer smoke skipped: set FORGE_MINILM_DIR and FORGE_TEXT_DATA_DIR to run it"
fi

# Training-speed bench (issue 12): the committed side-by-side report must pass the ratio gates,
# and the Forge side of the bench must run (MiniLM sizes, one timed iteration each: the machinery,
# not the speed; no PyTorch here, so no ratio is gated). With FORGE_BENCH_PYTHON set to an
# interpreter with torch, transformers and peft, the MiniLM workloads are timed side by side and
# gated.
cargo xtask bench --from results/bench-speed.json --gate xtask/bench-gates.json > /dev/null
bench_out="${FORGE_CI_BENCH_RESULTS:-target/forge-results/ci-bench.json}"
if [ -n "${FORGE_BENCH_PYTHON:-}" ]; then
  cargo xtask bench --python "$FORGE_BENCH_PYTHON" --model minilm --rounds 2 --iters 3 \
    --out "$bench_out" --gate xtask/bench-gates.json
else
  cargo xtask bench --model minilm --iters 1 --warmup 0 --out "$bench_out"
fi
