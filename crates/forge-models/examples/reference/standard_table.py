"""Forge's `cargo xtask demo` (scenario sst2-full-vs-lora, standard size) next to the PyTorch
reference at the same size, for docs/training-parity.md.

    python3 crates/forge-models/examples/reference/standard_table.py [DEMO_RESULTS_JSON]

Reads sst2_torch_standard.json next to this script (sst2_recipe.py --n-train 600 --lora-r 4 8
--threads 2) and the demo's results file (default results/transformer-standard-3seeds.json,
written by `cargo xtask demo --seeds 3 --save-json PATH`); prints dev accuracy (mean +- sample
std over seeds) and the mean training time of each strategy on both sides.

Forge's time is its measured training window (loading the weights, injecting the adapter, the
epochs); PyTorch's is its epochs only (train_seconds). Both sample 600 sentences per seed,
stratified by class, with their own generators: the sentences differ, so the comparison is
between distributions over seeds.
"""
import json
import os
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", "..", "..", ".."))
STRATEGIES = [("full-ft", "full", None), ("lora-r4", "lora", 4), ("lora-r8", "lora", 8)]


def mean_std(xs, scale=100.0, digits=1):
    if not xs:
        return "-"
    m = statistics.mean(xs) * scale
    if len(xs) == 1:
        return f"{m:.{digits}f} (n=1)"
    return f"{m:.{digits}f} +- {statistics.stdev(xs) * scale:.{digits}f} (n={len(xs)})"


def main():
    demo_path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        ROOT, "results", "transformer-standard-3seeds.json"
    )
    torch_runs = json.load(open(os.path.join(HERE, "sst2_torch_standard.json")))
    demo = json.load(open(demo_path))
    forge = [r for r in demo["records"] if r["scenario"] == "sst2-full-vs-lora"]
    print("| strategy | PyTorch dev accuracy | Forge dev accuracy | difference of means | "
          "PyTorch training (s) | Forge training (s) |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, mode, rank in STRATEGIES:
        t = [r for r in torch_runs if r["mode"] == mode and r.get("lora_r") == rank
             and r.get("n_train") == 600]
        f = [r for r in forge if r["strategy"] == name]
        ta = [r["dev_accuracy"] for r in t]
        fa = [r["quality"] for r in f]
        diff = f"{100 * (statistics.mean(fa) - statistics.mean(ta)):+.1f}" if ta and fa else "-"
        tt = f"{statistics.mean(r['train_seconds'] for r in t):.1f}" if t else "-"
        ft = f"{statistics.mean(r['training']['wall_time_s'] for r in f):.1f}" if f else "-"
        print(f"| {name} | {mean_std(ta)} | {mean_std(fa)} | {diff} | {tt} | {ft} |")


if __name__ == "__main__":
    main()
