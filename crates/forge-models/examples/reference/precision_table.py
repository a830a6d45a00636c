"""Forge's SST-2 recipe in f32 and in the bf16 mixed-precision mode, for docs/speed.md.

    python3 crates/forge-models/examples/reference/precision_table.py

Reads sst2_forge_precision_results.json next to this script, written by

    RAYON_NUM_THREADS=2 [FORGE_PRECISION=bf16] target/release/examples/sst2_recipe \\
        --model ../shared/models/all-minilm-l6-v2 --data ../shared/data/text/sst2 \\
        --modes full,lora --seeds 0,1,2 \\
        --out crates/forge-models/examples/reference/sst2_forge_precision_results.json

(once with FORGE_PRECISION=bf16, once without), and prints dev accuracy per seed, mean +- sample
std and the mean training time per mode and precision, then the bf16 - f32 difference of means.
"""
import json
import os
import statistics

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    runs = json.load(open(os.path.join(HERE, "sst2_forge_precision_results.json")))
    print("| mode | precision | dev accuracy per seed | mean +- std | training (s, mean) |")
    print("|---|---|---|---:|---:|")
    means = {}
    for mode in ["full", "lora"]:
        for prec in ["f32", "bf16"]:
            rs = sorted(
                (r for r in runs if r["mode"] == mode and r.get("precision") == prec),
                key=lambda r: r["seed"],
            )
            if not rs:
                continue
            acc = [100 * r["dev_accuracy"] for r in rs]
            sd = f" +- {statistics.stdev(acc):.2f}" if len(acc) > 1 else ""
            means[(mode, prec)] = statistics.mean(acc)
            per_seed = ", ".join(f"{a:.2f}" for a in acc)
            t = statistics.mean(r["train_seconds"] for r in rs)
            print(f"| {mode} | {prec} | {per_seed} | {statistics.mean(acc):.2f}{sd} (n={len(acc)}) | {t:.1f} |")
    print()
    for mode in ["full", "lora"]:
        if (mode, "f32") in means and (mode, "bf16") in means:
            d = means[(mode, "bf16")] - means[(mode, "f32")]
            print(f"{mode}: bf16 - f32 = {d:+.2f} points")


if __name__ == "__main__":
    main()
