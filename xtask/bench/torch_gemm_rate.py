#!/usr/bin/env python3
"""GFLOP/s of PyTorch's CPU linear layer on the dense shapes of the bench, for comparison with
`cargo run --release -p forge-linalg --example bf16_gflops [-- --minilm]`.

For each m x n x k (batch 16 x seq 64 = 1024 rows; MiniLM's and DistilBERT-base's layer
shapes), times `F.linear(x, w, b)` under `torch.autocast("cpu", dtype=torch.bfloat16)` with an
f32 input (what the bench's autocast rows run: the cast of x and w is part of each call) and
with a bf16 input, and the f32 `F.linear` (MKL). Best of 7 after one warm-up call.

Usage: python xtask/bench/torch_gemm_rate.py [--threads 2]
"""
import argparse
import time

import torch
import torch.nn.functional as F

SHAPES = [
    (1024, 384, 384), (1024, 1536, 384), (1024, 384, 1536),
    (1024, 768, 768), (1024, 3072, 768), (1024, 768, 3072),
]


def best_ms(f, reps=7):
    f()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return min(times) * 1e3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {args.threads} thread(s)")
    print("| m x n x k | f32 linear | autocast linear, f32 input | autocast linear, bf16 input |")
    print("|---|---|---|---|")
    for m, n, k in SHAPES:
        x, w, b = torch.randn(m, k), torch.randn(n, k), torch.randn(n)
        xb = x.bfloat16()
        gflop = 2 * m * n * k / 1e9

        def autocast(inp):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return F.linear(inp, w, b)

        cells = []
        for f in (lambda: F.linear(x, w, b), lambda: autocast(x), lambda: autocast(xb)):
            ms = best_ms(f)
            cells.append(f"{ms:.2f} ms, {gflop / ms * 1e3:.0f} GFLOP/s")
        print(f"| {m}x{n}x{k} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
