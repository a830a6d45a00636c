"""Make the bad-input corpus of forge-models (and forge-lora) from the tiny parity fixtures.

Run from the repository root with the reference interpreter (torch, safetensors):

    python crates/forge-models/tests/corpus/make_corpus.py

Each case is ONE file that replaces one file of a good fixture folder; `expected.json` next to the
cases gives, per file, the fixture it is laid over, the error variant Forge must return and a name
the message must mention. tests/corpus.rs (forge-models) and forge-lora's tests/corpus.rs run
them. Files:

- model/<case>.safetensors replaces tiny-distilbert/model.safetensors,
  model/<case>.config.json replaces tiny-distilbert/config.json;
- adapter/<case>.safetensors replaces tiny-distilbert-lora/adapter_model.safetensors,
  adapter/<case>.adapter_config.json replaces tiny-distilbert-lora/adapter_config.json
  (loaded onto tiny-distilbert; the test also checks the model is unchanged after the error and
  that the good adapter then loads);
- crates/forge-lora/tests/corpus/<case>.{safetensors,adapter_config.json}: the same adapter
  defects for the small MLP of forge-lora's tests (modules fc1, fc2, head).
"""
import json
import os

import torch
from safetensors.torch import load_file, save_file

HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.join(HERE, "..", "fixtures")
LORA_CORPUS = os.path.join(HERE, "..", "..", "..", "forge-lora", "tests", "corpus")
META = {"format": "pt"}


def model_cases(out, expected):
    base = load_file(os.path.join(FIX, "tiny-distilbert", "model.safetensors"))
    with open(os.path.join(FIX, "tiny-distilbert", "config.json")) as f:
        cfg = json.load(f)

    def st(name, change, kind, mention):
        t = {k: v.clone() for k, v in base.items()}
        change(t)
        save_file(t, os.path.join(out, name), metadata=META)
        expected[f"model/{name}"] = {"over": "tiny-distilbert", "error": kind, "mentions": mention}

    def conf(name, change, kind, mention):
        c = json.loads(json.dumps(cfg))
        change(c)
        with open(os.path.join(out, name), "w") as f:
            json.dump(c, f, indent=2)
        expected[f"model/{name}"] = {"over": "tiny-distilbert", "error": kind, "mentions": mention}

    w = "distilbert.embeddings.word_embeddings.weight"
    st("int64-embeddings.safetensors",
       lambda t: t.__setitem__(w, (t[w] * 1e9).to(torch.int64)), "BadDType", w)
    st("int32-classifier.safetensors",
       lambda t: t.__setitem__("classifier.weight", t["classifier.weight"].to(torch.int32)),
       "BadDType", "classifier.weight")
    st("uint8-layer-norm.safetensors",
       lambda t: t.__setitem__("distilbert.embeddings.LayerNorm.weight",
                               torch.ones_like(t["distilbert.embeddings.LayerNorm.weight"], dtype=torch.uint8)),
       "BadDType", "distilbert.embeddings.LayerNorm.weight")
    lin1 = "distilbert.transformer.layer.1.ffn.lin1.weight"
    st("nan-weight.safetensors", lambda t: t[lin1].__setitem__((3, 5), float("nan")), "NonFinite", lin1)
    ln = "distilbert.embeddings.LayerNorm.bias"
    st("inf-weight.safetensors", lambda t: t[ln].__setitem__(0, float("inf")), "NonFinite", ln)
    # a flipped exponent bit: finite, but the forward pass overflows to NaN (found by fuzzing)
    st("exponent-flip-bias.safetensors", lambda t: t[ln].__setitem__(0, -8.121356e37), "Corrupt", ln)
    st("neg-inf-head.safetensors", lambda t: t["classifier.bias"].__setitem__(1, float("-inf")),
       "NonFinite", "classifier.bias")
    gone = "distilbert.transformer.layer.1.sa_layer_norm.bias"
    st("missing-tensor.safetensors", lambda t: t.pop(gone), "MissingTensor", gone)
    conf("fewer-layers.config.json", lambda c: c.__setitem__("n_layers", 1),
         "UnexpectedTensors", "distilbert.transformer.layer.1.")
    conf("shape-mismatch.config.json", lambda c: c.__setitem__("hidden_dim", 48),
         "ShapeMismatch", "distilbert.transformer.layer.0.ffn.lin1.weight")
    conf("heads-not-dividing.config.json", lambda c: c.__setitem__("n_heads", 5), "Config", "n_heads")
    conf("unknown-model-type.config.json", lambda c: c.__setitem__("model_type", "gpt2"),
         "Config", "model_type")
    with open(os.path.join(out, "not-json.config.json"), "w") as f:
        f.write('{"model_type": "distilbert", "dim": 32,')
    expected["model/not-json.config.json"] = {"over": "tiny-distilbert", "error": "Corrupt",
                                              "mentions": "config.json"}
    good = open(os.path.join(FIX, "tiny-distilbert", "model.safetensors"), "rb").read()
    with open(os.path.join(out, "truncated.safetensors"), "wb") as f:
        f.write(good[: len(good) // 2])
    expected["model/truncated.safetensors"] = {"over": "tiny-distilbert", "error": "Corrupt",
                                               "mentions": "model.safetensors"}
    with open(os.path.join(out, "huge-header-length.safetensors"), "wb") as f:
        f.write((1 << 60).to_bytes(8, "little") + b"{}")
    expected["model/huge-header-length.safetensors"] = {"over": "tiny-distilbert", "error": "Corrupt",
                                                        "mentions": "model.safetensors"}
    with open(os.path.join(out, "garbage.safetensors"), "wb") as f:
        f.write(b"\x10\x00\x00\x00\x00\x00\x00\x00{garbage")
    expected["model/garbage.safetensors"] = {"over": "tiny-distilbert", "error": "Corrupt",
                                             "mentions": "model.safetensors"}


def adapter_cases(base_dir, prefix, out, expected, key_a, key_b, other_lin, over):
    base = load_file(os.path.join(base_dir, "adapter_model.safetensors"))
    with open(os.path.join(base_dir, "adapter_config.json")) as f:
        cfg = json.load(f)

    def st(name, change, kind, mention):
        t = {k: v.clone() for k, v in base.items()}
        change(t)
        save_file(t, os.path.join(out, name), metadata=META)
        expected[f"{prefix}{name}"] = {"over": over, "error": kind, "mentions": mention}

    def conf(name, change, kind, mention):
        c = json.loads(json.dumps(cfg))
        change(c)
        with open(os.path.join(out, name), "w") as f:
            json.dump(c, f, indent=2)
        expected[f"{prefix}{name}"] = {"over": over, "error": kind, "mentions": mention}

    st("nan-lora-b.safetensors", lambda t: t[key_b].__setitem__((0, 0), float("nan")), "NonFinite", key_b)
    st("inf-lora-a.safetensors", lambda t: t[key_a].__setitem__((1, 2), float("inf")), "NonFinite", key_a)
    st("huge-lora-b.safetensors", lambda t: t[key_b].__setitem__((0, 0), 3e38), "Corrupt", key_b)
    st("int-lora-a.safetensors", lambda t: t.__setitem__(key_a, (t[key_a] * 100).to(torch.int64)),
       "BadDType", key_a)
    st("missing-lora-b.safetensors", lambda t: t.pop(key_b), "MissingTensor", key_b)

    def add_other(t):
        a, b = t[key_a], t[key_b]
        t[key_a.replace(key_a.split(".")[-3], other_lin)] = a.clone()
        t[key_b.replace(key_b.split(".")[-3], other_lin)] = b.clone()
    st("non-targeted-module.safetensors", add_other, "UnexpectedTensor", other_lin)
    conf("alpha-1e308.adapter_config.json", lambda c: c.__setitem__("lora_alpha", 1e308),
         "InvalidConfig", "lora_alpha")
    conf("r-2pow40.adapter_config.json", lambda c: c.__setitem__("r", 1 << 40), "InvalidConfig", "r")
    conf("r-mismatch.adapter_config.json", lambda c: c.__setitem__("r", max(1, c["r"] // 2)), "ShapeMismatch", key_a)
    conf("not-lora.adapter_config.json", lambda c: c.__setitem__("peft_type", "IA3"),
         "InvalidConfig", "peft_type")


def main():
    expected = {}
    out = os.path.join(HERE, "model")
    os.makedirs(out, exist_ok=True)
    model_cases(out, expected)
    out = os.path.join(HERE, "adapter")
    os.makedirs(out, exist_ok=True)
    pre = "base_model.model.distilbert.transformer.layer.0.attention.q_lin."
    adapter_cases(os.path.join(FIX, "tiny-distilbert-lora"), "adapter/", out, expected,
                  pre + "lora_A.weight", pre + "lora_B.weight", "k_lin", "tiny-distilbert-lora")

    # a classifier saved without modules_to_save: PEFT would never write this
    with open(os.path.join(FIX, "tiny-distilbert-lora", "adapter_config.json")) as f:
        cfg = json.load(f)
    cfg["modules_to_save"] = None
    cfg["task_type"] = None
    with open(os.path.join(out, "classifier-without-modules-to-save.adapter_config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    expected["adapter/classifier-without-modules-to-save.adapter_config.json"] = {
        "over": "tiny-distilbert-lora", "error": "UnexpectedTensor", "mentions": "classifier"}
    with open(os.path.join(HERE, "expected.json"), "w") as f:
        json.dump(dict(sorted(expected.items())), f, indent=1)
    print(len(expected), "forge-models cases")

    # forge-lora: the MLP of its tests (fc1 4->8, fc2 8->2, head 2->3), r = 2, alpha = 4, fc1 targeted
    os.makedirs(LORA_CORPUS, exist_ok=True)
    good = os.path.join(LORA_CORPUS, "good")
    os.makedirs(good, exist_ok=True)
    g = torch.Generator().manual_seed(7)
    p = "base_model.model."
    t = {p + "fc1.lora_A.weight": torch.randn(2, 4, generator=g),
         p + "fc1.lora_B.weight": torch.randn(8, 2, generator=g),
         p + "head.weight": torch.randn(3, 2, generator=g),
         p + "head.bias": torch.randn(3, generator=g)}
    save_file(t, os.path.join(good, "adapter_model.safetensors"), metadata=META)
    cfg = {"peft_type": "LORA", "r": 2, "lora_alpha": 4, "target_modules": ["fc1"],
           "modules_to_save": ["head"], "lora_dropout": 0.0, "bias": "none"}
    with open(os.path.join(good, "adapter_config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    lexp = {}
    adapter_cases(good, "", LORA_CORPUS, lexp, p + "fc1.lora_A.weight", p + "fc1.lora_B.weight",
                  "fc2", "good")
    cfg2 = dict(cfg, modules_to_save=None)
    with open(os.path.join(LORA_CORPUS, "head-without-modules-to-save.adapter_config.json"), "w") as f:
        json.dump(cfg2, f, indent=2)
    lexp["head-without-modules-to-save.adapter_config.json"] = {
        "over": "good", "error": "UnexpectedTensor", "mentions": "head"}
    with open(os.path.join(LORA_CORPUS, "expected.json"), "w") as f:
        json.dump(dict(sorted(lexp.items())), f, indent=1)
    print(len(lexp), "forge-lora cases")


if __name__ == "__main__":
    main()
