#!/usr/bin/env bash
# Peak RSS of loading a 67M-parameter model (issue 16): `forge lora merge` reads a randomly
# initialised DistilBERT-base classifier (transformers, 66.96M parameters, 268 MB f32) and a PEFT
# LoRA adapter (r 8 on q_lin/v_lin), folds the adapter in and saves the model.
#   PYTHON=/path/to/venv/bin/python (torch, transformers, peft) FORGE=target/release/forge \
#     bash crates/forge-cli/scripts/rss_67m.sh [WORK_DIR]
set -euo pipefail
PYTHON="${PYTHON:-python3}"
FORGE="${FORGE:-target/release/forge}"
work="${1:-$(mktemp -d)}"
"$PYTHON" - "$work" <<'PY'
import sys, torch
from transformers import DistilBertConfig, DistilBertForSequenceClassification
from peft import LoraConfig, get_peft_model
out = sys.argv[1]
torch.manual_seed(0)
m = DistilBertForSequenceClassification(DistilBertConfig(num_labels=2))
print("parameters:", sum(p.numel() for p in m.parameters()))
m.save_pretrained(f"{out}/base")
p = get_peft_model(m, LoraConfig(r=8, lora_alpha=16, target_modules=["q_lin", "v_lin"],
                                 modules_to_save=["classifier"]))
for n, t in p.named_parameters():
    if "lora_B" in n:
        torch.nn.init.normal_(t, std=0.02)
p.save_pretrained(f"{out}/adapter")
PY
/usr/bin/time -v "$FORGE" lora merge "$work/base" "$work/adapter" -o "$work/merged" 2>&1 \
  | grep -E "Maximum resident|Elapsed|merged|error"
