#!/usr/bin/env python3
"""PyTorch reference timings for Forge's CPU workloads.

`cargo xtask bench --python /path/to/python` runs this script with that
interpreter once per (model, workload, precision), each in a fresh process,
and parses the LAST line of stdout as one JSON object. Everything else (torch,
transformers and peft warnings) goes to stderr; on any error (bad arguments, a
missing package, bf16 asked for fisher/merge) the script writes a message to
stderr, exits non-zero and prints no JSON at all.

Get the stack with:  pip install torch transformers peft
(developed against torch 2.15, transformers 5.24, peft 0.21).

CLI
  --model {distilbert-base,minilm}  --workload {forward,lora,full,fisher,merge}
  --precision {f32,bf16} (f32)  --iters N (5)  --warmup W (1)  --threads T (2)
  --batch B (16)  --seq S (64)  --seed (0)  --attn {sdpa,eager} (sdpa)
  --device {cpu,cuda,cuda:N} (cpu): on CUDA the model and batch live on the
    GPU, f32 only, forward/lora/full/fisher, and every iteration ends with
    torch.cuda.synchronize() (kernels run asynchronously).

Definitions (the Rust side mirrors these)
  Models: random init after torch.manual_seed(seed), float32, num_labels=2,
    built with AutoModelForSequenceClassification.from_config(config,
    attn_implementation=attn).
    distilbert-base: DistilBertConfig() defaults (vocab 30522, dim 768,
      6 layers, 12 heads, hidden 3072, max_position 512); LoRA targets
      q_lin, v_lin.
    minilm: BertConfig(vocab 30522, hidden 384, 6 layers, 12 heads,
      intermediate 1536, max_position 512, type_vocab 2); LoRA targets
      query, value.
  Batch: torch.Generator seeded with seed; input_ids int64 [B, S] uniform in
    [0, vocab) with column 0 set to 101 ([CLS]); attention_mask all ones;
    labels uniform in {0, 1}.
  Threads: torch.set_num_threads(T), torch.set_num_interop_threads(1).
  bf16: torch.autocast("cpu", dtype=torch.bfloat16) around forward + loss
    (backward and optimizer step outside it); parameters stay float32.
  One timed iteration of each workload:
    forward: model.eval(); under torch.inference_mode(),
      model(input_ids, attention_mask=mask).logits.
    full: model.train() (dropout on); AdamW(all params, lr=2e-5,
      weight_decay=0.01) built once; zero_grad(set_to_none=True);
      loss = cross_entropy(logits, labels); loss.backward(); opt.step().
    lora: peft get_peft_model with LoraConfig(task_type="SEQ_CLS", r=4,
      lora_alpha=8, lora_dropout=0.1, target_modules=targets); peft also
      trains the head in full: its SEQ_CLS default modules_to_save is
      ["classifier", "score"], matched by module-name SUFFIX, so DistilBERT
      trains pre_classifier AND classifier (LoRA 73,728 + 590,592 + 1,538 =
      665,858 trainable) and MiniLM trains classifier only (36,864 + 770 =
      37,634; the pooler stays frozen); AdamW(trainable params, lr=1e-3,
      weight_decay=0.01); model.train(); same iteration as full.
    fisher: diagonal Fisher, mini-batch estimator; model.eval(); buffers
      F_p = zeros_like(p) allocated once; zero_grad(set_to_none=True);
      loss = mean cross_entropy over the batch; backward; F_p += grad_p**2
      for every parameter (torch._foreach_addcmul_ when available).
    merge: TIES (Yadav et al. 2023) with mergekit semantics over the whole
      state dict. base = state_dict of the random model (float32);
      model_i = base + 0.01 * randn (i = 1, 2; one torch.Generator seeded
      with seed + 1, drawn once before timing, key order, model 1 then 2).
      Per float tensor key:
        tv_i = model_i - base
        trim: keep the k = int(0.5 * numel) entries of largest |tv_i|
          (torch.topk on the flattened abs; ties broken arbitrarily), zero
          the rest
        weights w_i = 1.0; d_i = w_i * trimmed tv_i
        elected sign = +1 where sum_i d_i >= 0, else -1
        mask_i = sign(d_i) == elected (so trimmed zeros are never kept)
        merged = sum_i(d_i * mask_i) / D, D = sum_i(w_i * mask_i) with
          D == 0 replaced by 1 (mergekit's zero-division guard)
        out = base + merged
      Results go into a new dict (so their memory counts); non-float
      tensors are copied as they are.
  Timing: W warm-up iterations, then N timed ones, each recording
    time.perf_counter (wall) and time.process_time (CPU, all threads) in ms.

Output: the last stdout line is one JSON object with keys
  impl ("pytorch"), torch, transformers, peft, model, workload, precision,
  threads, batch, seq, attn, iters, wall_ms [N], cpu_ms [N],
  peak_rss_bytes (ru_maxrss * 1024, Linux), params (parameter count of the
  base model, before any LoRA wrapping), trainable (parameters with
  requires_grad under LoRA; the total for every other workload), amx
  (/proc/cpuinfo flags include amx_bf16), cpu_model (/proc/cpuinfo
  "model name").
"""

import argparse
import contextlib
import json
import os
import resource
import sys
import time
import warnings

MODELS = {
    # model name -> LoRA target modules
    "distilbert-base": ["q_lin", "v_lin"],
    "minilm": ["query", "value"],
}
WORKLOADS = ["forward", "lora", "full", "fisher", "merge"]
CLS_TOKEN = 101


def die(msg, code=1):
    print(f"torch_reference: {msg}", file=sys.stderr)
    sys.exit(code)


def parse_args():
    p = argparse.ArgumentParser(description="PyTorch reference timings for cargo xtask bench.")
    p.add_argument("--model", required=True, choices=list(MODELS))
    p.add_argument("--workload", required=True, choices=WORKLOADS)
    p.add_argument("--precision", default="f32", choices=["f32", "bf16"])
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seq", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--attn", default="sdpa", choices=["sdpa", "eager"])
    p.add_argument("--device", default="cpu")
    a = p.parse_args()
    if a.device != "cpu":
        dev = a.device.split(":")
        if dev[0] != "cuda" or len(dev) > 2 or (len(dev) == 2 and not dev[1].isdigit()):
            die(f"--device {a.device!r}: expected cpu, cuda or cuda:N", 2)
        if a.precision == "bf16":
            die("--precision bf16 is the CPU autocast comparison: not with --device cuda", 2)
        if a.workload == "merge":
            die("the merge workload runs on the CPU only", 2)
    if a.iters < 1 or a.warmup < 0 or a.threads < 1 or a.batch < 1 or a.seq < 1:
        die("--iters, --threads, --batch, --seq must be >= 1 and --warmup >= 0", 2)
    if a.seq > 512:
        die("--seq must be <= 512 (max_position_embeddings)", 2)
    if a.precision == "bf16" and a.workload in ("fisher", "merge"):
        die(f"--precision bf16 is not defined for the {a.workload} workload", 2)
    return a


def cpu_info():
    """(amx_bf16 present, model name) from /proc/cpuinfo; (False, "unknown") elsewhere."""
    amx, name = False, "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, val = line.partition(":")
                key = key.strip()
                if key == "model name" and name == "unknown":
                    name = val.strip()
                elif key == "flags" and "amx_bf16" in val.split():
                    amx = True
    except OSError:
        pass
    return amx, name


def build_model(torch, transformers, args):
    torch.manual_seed(args.seed)
    if args.model == "distilbert-base":
        config = transformers.DistilBertConfig(num_labels=2)
    else:
        config = transformers.BertConfig(
            vocab_size=30522, hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
            intermediate_size=1536, max_position_embeddings=512, type_vocab_size=2, num_labels=2,
        )
    model = transformers.AutoModelForSequenceClassification.from_config(
        config, attn_implementation=args.attn
    )
    return model.float(), config.vocab_size


def make_batch(torch, args, vocab):
    g = torch.Generator().manual_seed(args.seed)
    ids = torch.randint(0, vocab, (args.batch, args.seq), generator=g, dtype=torch.int64)
    ids[:, 0] = CLS_TOKEN
    mask = torch.ones(args.batch, args.seq, dtype=torch.int64)
    labels = torch.randint(0, 2, (args.batch,), generator=g, dtype=torch.int64)
    return ids, mask, labels


def ties_merge(torch, base, models, density=0.5):
    """TIES merge of `models` into `base` (dicts of tensors), mergekit semantics."""
    out = {}
    w = torch.ones(len(models), dtype=torch.float32)
    for key, b in base.items():
        if not b.is_floating_point():
            out[key] = b.clone()
            continue
        ds = []
        for m in models:
            tv = (m[key] - b).reshape(-1)
            k = int(density * tv.numel())
            trimmed = torch.zeros_like(tv)
            if k > 0:
                idx = torch.topk(tv.abs(), k, sorted=False).indices
                trimmed.scatter_(0, idx, tv.gather(0, idx))
            ds.append(trimmed)
        d = torch.stack(ds) * w.view(-1, 1)                  # weighted trimmed task vectors
        elected = torch.where(d.sum(0) >= 0, 1.0, -1.0)       # sign election ("sum")
        keep = d.sign() == elected                            # zeros never match +-1
        merged = (d * keep).sum(0)
        divisor = (w.view(-1, 1) * keep).sum(0)
        divisor[divisor == 0] = 1.0
        out[key] = b + (merged / divisor).view_as(b)
    return out


def setup_workload(torch, F, peft, model, args, batch):
    """Returns (step function, trainable parameter count) for the workload."""
    ids, mask, labels = batch
    total = sum(p.numel() for p in model.parameters())
    autocast = (
        (lambda: torch.autocast("cpu", dtype=torch.bfloat16))
        if args.precision == "bf16"
        else contextlib.nullcontext
    )

    if args.workload == "forward":
        model.eval()

        def step():
            with torch.inference_mode(), autocast():
                return model(ids, attention_mask=mask).logits

        return step, total

    if args.workload in ("full", "lora"):
        if args.workload == "lora":
            cfg = peft.LoraConfig(
                task_type="SEQ_CLS", r=4, lora_alpha=8, lora_dropout=0.1,
                target_modules=MODELS[args.model],
            )
            model = peft.get_peft_model(model, cfg)
            lr = 1e-3
        else:
            lr = 2e-5
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
        model.train()

        def step():
            opt.zero_grad(set_to_none=True)
            with autocast():
                loss = F.cross_entropy(model(ids, attention_mask=mask).logits, labels)
            loss.backward()
            opt.step()

        return step, sum(p.numel() for p in params)

    if args.workload == "fisher":
        model.eval()
        params = [p for p in model.parameters() if p.requires_grad]
        fisher = [torch.zeros_like(p) for p in params]
        foreach = hasattr(torch, "_foreach_addcmul_")

        def step():
            model.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(ids, attention_mask=mask).logits, labels)
            loss.backward()
            pairs = [(f, p.grad) for f, p in zip(fisher, params) if p.grad is not None]
            if foreach:
                fs, gs = zip(*pairs)
                torch._foreach_addcmul_(list(fs), list(gs), list(gs))
            else:
                for f, g in pairs:
                    f.add_(g.square())

        return step, total

    # merge
    base = {k: v.detach().clone() for k, v in model.state_dict().items()}
    g = torch.Generator().manual_seed(args.seed + 1)
    models = []
    for _ in range(2):
        m = {}
        for k, v in base.items():
            if v.is_floating_point():
                m[k] = v + 0.01 * torch.randn(v.shape, generator=g, dtype=v.dtype)
            else:
                m[k] = v.clone()
        models.append(m)
    del model
    results = []

    def step():
        # Keep only the latest result alive, but do build it as a new dict.
        results.clear()
        with torch.no_grad():
            results.append(ties_merge(torch, base, models))

    return step, total


def main():
    args = parse_args()
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    warnings.filterwarnings("ignore")
    real_stdout = sys.stdout
    # Anything a library prints goes to stderr; only the JSON line reaches stdout.
    with contextlib.redirect_stdout(sys.stderr):
        try:
            import torch
            import torch.nn.functional as F
            import transformers
            import peft
        except Exception as e:  # ImportError and broken installs alike
            die(f"cannot import torch/transformers/peft ({e}); pip install torch transformers peft")
        transformers.logging.set_verbosity_error()
        torch.set_num_threads(args.threads)
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError as e:
            print(f"torch_reference: set_num_interop_threads: {e}", file=sys.stderr)

        model, vocab = build_model(torch, transformers, args)
        params = sum(p.numel() for p in model.parameters())
        batch = make_batch(torch, args, vocab)
        sync = lambda: None  # noqa: E731
        if args.device != "cpu":
            if not torch.cuda.is_available():
                die(f"--device {args.device}: torch.cuda.is_available() is False "
                    f"(torch {torch.__version__})")
            model = model.to(args.device)
            batch = tuple(t.to(args.device) for t in batch)
            sync = torch.cuda.synchronize
        step, trainable = setup_workload(torch, F, peft, model, args, batch)
        del model

        for _ in range(args.warmup):
            step()
            sync()
        wall_ms, cpu_ms = [], []
        for _ in range(args.iters):
            w0, c0 = time.perf_counter(), time.process_time()
            step()
            sync()
            wall_ms.append((time.perf_counter() - w0) * 1e3)
            cpu_ms.append((time.process_time() - c0) * 1e3)

        amx, cpu_model = cpu_info()
        record = {
            "impl": "pytorch",
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "peft": peft.__version__,
            "model": args.model,
            "workload": args.workload,
            "precision": args.precision,
            "threads": args.threads,
            "batch": args.batch,
            "seq": args.seq,
            "attn": args.attn,
            "iters": args.iters,
            "wall_ms": [round(x, 3) for x in wall_ms],
            "cpu_ms": [round(x, 3) for x in cpu_ms],
            "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            "params": params,
            "trainable": trainable,
            "amx": amx,
            "cpu_model": cpu_model,
        }
        if args.device != "cpu":
            record["device"] = args.device
    real_stdout.write(json.dumps(record) + "\n")
    real_stdout.flush()


if __name__ == "__main__":
    main()
