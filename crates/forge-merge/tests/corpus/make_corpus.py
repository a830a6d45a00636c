"""Bad-input files for tests/bad_input.rs, made from the tiny fixtures in ../fixtures/models.

    /work/venv/bin/python crates/forge-merge/tests/corpus/make_corpus.py

truncated/        model.safetensors cut 100 bytes short (an interrupted download)
corrupt_header/   model.safetensors whose JSON header is overwritten with garbage
missing_tensor/   the base model without `classifier.bias`
nan_model/        ft1 with one NaN in `distilbert.transformer.layer.0.ffn.lin1.weight`
*.yml             configs with an unknown method, out-of-range density / drop rate / t
"""
import pathlib
import shutil

from safetensors.torch import load_file, save_file

HERE = pathlib.Path(__file__).resolve().parent
MODELS = HERE.parent / "fixtures" / "models"


def copy_model(src, dst):
    dst.mkdir(exist_ok=True)
    shutil.copy(MODELS / src / "config.json", dst / "config.json")
    return dst


data = (MODELS / "base" / "model.safetensors").read_bytes()
d = copy_model("base", HERE / "truncated")
(d / "model.safetensors").write_bytes(data[:-100])
d = copy_model("base", HERE / "corrupt_header")
n = int.from_bytes(data[:8], "little")
(d / "model.safetensors").write_bytes(data[:8] + b"{" + b"#" * (n - 1) + data[8 + n :])
sd = load_file(MODELS / "base" / "model.safetensors")
del sd["classifier.bias"]
d = copy_model("base", HERE / "missing_tensor")
save_file(sd, d / "model.safetensors", metadata={"format": "pt"})
sd = load_file(MODELS / "ft1" / "model.safetensors")
sd["distilbert.transformer.layer.0.ffn.lin1.weight"][3, 5] = float("nan")
d = copy_model("ft1", HERE / "nan_model")
save_file(sd, d / "model.safetensors", metadata={"format": "pt"})

CONFIGS = {
    "unknown_method.yml": "merge_method: frankenmerge\nbase_model: base\nmodels:\n  - model: ft1\n    parameters: {weight: 1.0}\n",
    "density_out_of_range.yml": "merge_method: ties\nbase_model: base\nmodels:\n  - model: ft1\n    parameters: {weight: 1.0, density: 1.5}\n",
    "density_zero.yml": "merge_method: ties\nbase_model: base\nmodels:\n  - model: ft1\n    parameters: {weight: 1.0, density: [0.5, 0.0]}\n",
    "drop_rate_one.yml": "merge_method: dare_ties\nbase_model: base\nmodels:\n  - model: ft1\n    parameters: {weight: 1.0, density: 0.0}\n",
    "t_out_of_range.yml": "merge_method: slerp\nbase_model: base\nmodels:\n  - model: ft1\nparameters: {t: 1.5}\n",
    "unknown_key.yml": "merge_method: linear\nmodels:\n  - model: ft1\n    parameters: {weight: 1.0}\nnormalise: true\n",
    "not_yaml.yml": "merge_method: [ties\n  models: {",
}
for name, text in CONFIGS.items():
    (HERE / name).write_text(text)
