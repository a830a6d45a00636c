"""PyTorch + transformers + PEFT reference for the Forge SST-2 fine-tuning recipe.

The same recipe runs in Forge with `cargo run -p forge-models --release --example sst2_recipe`;
docs/training-parity.md compares the two.

Recipe (identical on both sides):
- model: all-MiniLM-L6-v2 (BERT, 6 layers, hidden 384) + a new 2-class head
  (BertForSequenceClassification: pooler -> dropout 0.1 -> classifier, normal(0, 0.02) init);
- data: 2,000 SST-2 training sentences, the indices listed in sst2_train_2000.idx (0-based data rows
  of train.tsv, made once by `--write-indices` with Python's `random.Random(2024).sample`);
  evaluation on the 872 dev sentences; TSV rows read by splitting on the tab, no quoting;
- tokenisation: max length 64, padding to the longest sequence of each batch;
- batch 16, shuffled every epoch (seeded), 3 epochs = 375 steps;
- AdamW (betas 0.9/0.999, eps 1e-8), weight decay 0.01 except biases and LayerNorm weights
  (as the Hugging Face Trainer), linear warmup over ceil(6% of the steps) = 23 steps then linear
  decay to 0 (transformers' get_linear_schedule_with_warmup), gradient clipping at global norm 1.0;
- full fine-tuning: lr 5e-5, every parameter trainable;
- LoRA: r 8, alpha 16, dropout 0, on `query` and `value`; pooler and classifier trainable
  (modules_to_save); lr 5e-4;
- model dropout as in config.json (0.1) during training; evaluation in eval mode, batch 64.

Usage (from the repository root, with the scratch venv that has torch, transformers and peft):

    nice -n 10 /work/venv/bin/python crates/forge-models/examples/reference/sst2_recipe.py \
        --model ../shared/models/all-minilm-l6-v2 --data ../shared/data/text/sst2 \
        --seeds 0 1 2 --modes full lora --out crates/forge-models/examples/reference/sst2_torch_results.json

One thread (torch.set_num_threads(1)) as the machine is shared. Results are appended per run, so an
interrupted sweep keeps what it finished.

The demo's standard size (`cargo xtask demo`, scenario sst2-full-vs-lora: 600 training sentences, a
class-stratified sample drawn per seed; LoRA r 4 and 8 with alpha 2r) runs with

    /work/venv/bin/python crates/forge-models/examples/reference/sst2_recipe.py \
        --n-train 600 --lora-r 4 8 --threads 2 --seeds 0 1 2 --modes full lora \
        --out crates/forge-models/examples/reference/sst2_torch_standard.json

`--n-train N` (other than 2000) draws N sentences per seed, stratified by class (each class's share
of train.tsv, rounded; Python's random.Random(seed)), so PyTorch sees other sentences than Forge:
the two are compared as distributions over seeds, not sentence for sentence.
"""
import argparse
import json
import math
import os
import random
import sys
import time

N_TRAIN = 2000
INDEX_SEED = 2024
MAX_LEN = 64
BATCH = 16
EVAL_BATCH = 64
EPOCHS = 3
WARMUP_RATIO = 0.06
WEIGHT_DECAY = 0.01
MAX_GRAD_NORM = 1.0
LR = {"full": 5e-5, "lora": 5e-4}
HERE = os.path.dirname(os.path.abspath(__file__))
INDEX_FILE = os.path.join(HERE, "sst2_train_2000.idx")


def read_tsv(path):
    texts, labels = [], []
    with open(path, encoding="utf-8") as f:
        header = f.readline().rstrip("\n").split("\t")
        assert header == ["sentence", "label"], header
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            text, label = line.split("\t")
            texts.append(text)
            labels.append(int(label))
    return texts, labels


def write_indices(data_dir):
    texts, _ = read_tsv(os.path.join(data_dir, "train.tsv"))
    idx = sorted(random.Random(INDEX_SEED).sample(range(len(texts)), N_TRAIN))
    with open(INDEX_FILE, "w") as f:
        f.write("\n".join(str(i) for i in idx) + "\n")
    print(f"wrote {len(idx)} indices of {len(texts)} rows to {INDEX_FILE}")


def stratified_sample(labels, n, seed):
    """n row indices, each class's share of `labels` (rounded, the remainder to the largest
    classes), drawn with random.Random(seed); sorted."""
    rng = random.Random(seed)
    by_class = {}
    for i, l in enumerate(labels):
        by_class.setdefault(l, []).append(i)
    classes = sorted(by_class)
    want = {c: (n * len(by_class[c])) // len(labels) for c in classes}
    for c in sorted(classes, key=lambda c: -len(by_class[c]))[: n - sum(want.values())]:
        want[c] += 1
    return sorted(i for c in classes for i in rng.sample(by_class[c], want[c]))


def run(mode, seed, model_dir, data_dir, n_train=N_TRAIN, rank=8, threads=1):
    import torch
    import transformers
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.set_num_threads(threads)
    transformers.set_seed(seed)
    texts, labels = read_tsv(os.path.join(data_dir, "train.tsv"))
    if n_train == N_TRAIN:
        idx = [int(l) for l in open(INDEX_FILE).read().split()]
    else:
        idx = stratified_sample(labels, n_train, seed)
    train = [(texts[i], labels[i]) for i in idx]
    dev_texts, dev_labels = read_tsv(os.path.join(data_dir, "dev.tsv"))

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=2)
    if mode == "lora":
        from peft import LoraConfig, get_peft_model

        cfg = LoraConfig(
            task_type="SEQ_CLS",
            r=rank,
            lora_alpha=2 * rank,
            lora_dropout=0.0,
            target_modules=["query", "value"],
            modules_to_save=["pooler", "classifier"],
        )
        model = get_peft_model(model, cfg)
    decay, no_decay = [], []
    for n, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if n.endswith("bias") or "LayerNorm.weight" in n else decay).append(p)
    opt = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": WEIGHT_DECAY},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=LR[mode],
        betas=(0.9, 0.999),
        eps=1e-8,
    )
    steps_per_epoch = math.ceil(len(train) / BATCH)
    total = EPOCHS * steps_per_epoch
    warmup = math.ceil(WARMUP_RATIO * total)
    sched = transformers.get_linear_schedule_with_warmup(opt, warmup, total)
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)

    gen = torch.Generator().manual_seed(seed)
    t0 = time.time()
    epoch_losses = []
    for epoch in range(EPOCHS):
        model.train()
        order = torch.randperm(len(train), generator=gen).tolist()
        tot, n = 0.0, 0
        for s in range(0, len(order), BATCH):
            batch = [train[i] for i in order[s : s + BATCH]]
            enc = tok(
                [t for t, _ in batch],
                padding=True,
                truncation=True,
                max_length=MAX_LEN,
                return_tensors="pt",
            )
            y = torch.tensor([l for _, l in batch])
            out = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
            loss = torch.nn.functional.cross_entropy(out.logits, y)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(
                [p for p in model.parameters() if p.requires_grad], MAX_GRAD_NORM
            )
            opt.step()
            sched.step()
            tot += loss.item() * len(batch)
            n += len(batch)
        epoch_losses.append(tot / n)
    train_s = time.time() - t0

    model.eval()
    correct = 0
    with torch.no_grad():
        for s in range(0, len(dev_texts), EVAL_BATCH):
            enc = tok(
                dev_texts[s : s + EVAL_BATCH],
                padding=True,
                truncation=True,
                max_length=MAX_LEN,
                return_tensors="pt",
            )
            pred = model(
                input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]
            ).logits.argmax(-1)
            correct += (pred == torch.tensor(dev_labels[s : s + EVAL_BATCH])).sum().item()
    wall = time.time() - t0
    import peft

    return {
        "framework": "pytorch",
        "mode": mode,
        "seed": seed,
        "n_train": len(train),
        "lora_r": rank if mode == "lora" else None,
        "dev_accuracy": correct / len(dev_texts),
        "train_loss_per_epoch": epoch_losses,
        "train_seconds": train_s,
        "wall_seconds": wall,
        "trainable_parameters": n_trainable,
        "steps": total,
        "warmup_steps": warmup,
        "threads": torch.get_num_threads(),
        "versions": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "peft": peft.__version__,
            "python": sys.version.split()[0],
        },
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="../shared/models/all-minilm-l6-v2")
    ap.add_argument("--data", default="../shared/data/text/sst2")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--modes", nargs="+", default=["full", "lora"])
    ap.add_argument("--out", default=os.path.join(HERE, "sst2_torch_results.json"))
    ap.add_argument("--write-indices", action="store_true")
    ap.add_argument("--n-train", type=int, default=N_TRAIN)
    ap.add_argument("--lora-r", type=int, nargs="+", default=[8])
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    if a.write_indices:
        write_indices(a.data)
        return
    results = json.load(open(a.out)) if os.path.exists(a.out) else []
    key = lambda x: (x["mode"], x.get("lora_r", 8 if x["mode"] == "lora" else None), x["seed"])
    for mode in a.modes:
        for rank in a.lora_r if mode == "lora" else [None]:
            for seed in a.seeds:
                r = run(mode, seed, a.model, a.data, a.n_train, rank or 8, a.threads)
                print(json.dumps(r), flush=True)
                results = [x for x in results if key(x) != key(r)] + [r]
                tmp = a.out + ".tmp"
                with open(tmp, "w") as f:
                    json.dump(results, f, indent=1)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, a.out)


if __name__ == "__main__":
    main()
