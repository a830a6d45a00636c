#!/usr/bin/env python3
"""Checks a checkpoint written by `forge lora merge BASE ADAPTER -o MERGED` against the reference:
transformers loads MERGED, and its logits equal PEFT's base + adapter (unmerged) on a fixed batch.

Usage: python check_lora_merge.py BASE ADAPTER MERGED
Run 2026-12-01 with torch 2.15, transformers 5.24.0, peft 0.21.2 on the tiny fixtures of
crates/forge-models/tests/fixtures: max abs difference 1.2e-6 (DistilBERT, LoRA q/v + head),
7.7e-7 (DistilBERT, rsLoRA all-linear), 6.3e-7 (BERT).
"""
import sys, torch
from transformers import AutoModelForSequenceClassification
from peft import PeftModel
base, adapter, merged = sys.argv[1:4]
ids = torch.tensor([[1, 7, 12, 30, 2, 0], [1, 5, 44, 9, 18, 2]])
mask = torch.tensor([[1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1]])
ref = PeftModel.from_pretrained(AutoModelForSequenceClassification.from_pretrained(base), adapter).eval()
m = AutoModelForSequenceClassification.from_pretrained(merged).eval()
with torch.no_grad():
    a = ref(input_ids=ids, attention_mask=mask).logits
    b = m(input_ids=ids, attention_mask=mask).logits
print("max |merged (transformers) - base+adapter (PEFT)| =", (a - b).abs().max().item())
