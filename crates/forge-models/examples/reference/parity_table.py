"""Markdown tables for docs/training-parity.md from the two result files of the SST-2 recipe.

    python3 crates/forge-models/examples/reference/parity_table.py

Reads sst2_torch_results.json (sst2_recipe.py) and sst2_forge_results.json (the sst2_recipe
example) next to this script; prints per-run rows and mean +- sample std per framework and mode.
"""
import json
import os
import statistics

HERE = os.path.dirname(os.path.abspath(__file__))


def load(name):
    p = os.path.join(HERE, name)
    return json.load(open(p)) if os.path.exists(p) else []


def mean_std(xs):
    if not xs:
        return "-"
    m = statistics.mean(xs)
    if len(xs) == 1:
        return f"{100 * m:.1f} (n=1)"
    return f"{100 * m:.1f} +- {100 * statistics.stdev(xs):.1f} (n={len(xs)})"


runs = load("sst2_torch_results.json") + load("sst2_forge_results.json")
print("| framework | mode | seed | dev accuracy | train loss per epoch | wall time (s) |")
print("|---|---|---:|---:|---|---:|")
for r in sorted(runs, key=lambda r: (r["mode"], r["framework"], r["seed"])):
    losses = ", ".join(f"{l:.3f}" for l in r["train_loss_per_epoch"])
    print(
        f"| {r['framework']} | {r['mode']} | {r['seed']} | {100 * r['dev_accuracy']:.2f} | {losses} | {r['wall_seconds']:.0f} |"
    )
print()
print("| mode | PyTorch accuracy | Forge accuracy | difference of means |")
print("|---|---:|---:|---:|")
for mode in ["full", "lora"]:
    t = [r["dev_accuracy"] for r in runs if r["mode"] == mode and r["framework"] == "pytorch"]
    f = [r["dev_accuracy"] for r in runs if r["mode"] == mode and r["framework"] == "forge"]
    diff = f"{100 * (statistics.mean(f) - statistics.mean(t)):+.1f}" if t and f else "-"
    print(f"| {mode} | {mean_std(t)} | {mean_std(f)} | {diff} |")
