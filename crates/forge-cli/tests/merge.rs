//! End-to-end tests of `forge merge` and `forge lora soup` with the real binary, against
//! mergekit's own outputs (forge-merge's fixtures, made by mergekit 0.1.5).

mod common;

use common::{assert_one_line_error, forge, root, stderr, stdout};
use std::path::PathBuf;

fn fixtures() -> PathBuf {
    root().join("crates/forge-merge/tests/fixtures")
}

fn load(path: PathBuf) -> std::collections::HashMap<String, candle_core::Tensor> {
    candle_core::safetensors::load(path, &candle_core::Device::Cpu).unwrap()
}

#[test]
fn yaml_merges_equal_mergekit() {
    for method in ["linear", "ties", "task_arithmetic"] {
        let out = tempfile::tempdir().unwrap();
        let o = forge()
            .args(["--json", "merge"])
            .arg(fixtures().join(format!("configs/{method}.yml")))
            .arg("--models-root")
            .arg(fixtures())
            .arg("-o")
            .arg(out.path())
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "{method}: {}", stderr(&o));
        let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
        assert!(v["counts"]["merged"].as_u64().unwrap() > 0, "{v}");
        assert!(out.path().join("config.json").is_file());
        let got = load(out.path().join("model.safetensors"));
        let want = load(fixtures().join(format!("mergekit/{method}/model.safetensors")));
        assert_eq!(got.len(), want.len(), "{method}: tensor count");
        for (name, w) in &want {
            let g = got
                .get(name)
                .unwrap_or_else(|| panic!("{method}: {name} missing"));
            let d = (g.to_dtype(candle_core::DType::F32).unwrap()
                - w.to_dtype(candle_core::DType::F32).unwrap())
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
            assert!(d <= 1e-6, "{method}: {name} differs from mergekit by {d}");
        }
    }
}

#[test]
fn merge_bad_inputs() {
    let dir = tempfile::tempdir().unwrap();
    // missing config
    let o = forge()
        .args(["merge", "nope.yml", "-o"])
        .arg(dir.path().join("o"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(65));
    assert_one_line_error(&o, &["merge config not found", "nope.yml"]);
    // bad YAML
    let bad = dir.path().join("bad.yml");
    std::fs::write(&bad, "merge_method: [unclosed\nmodels: {").unwrap();
    let o = forge()
        .arg("merge")
        .arg(&bad)
        .arg("-o")
        .arg(dir.path().join("o"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(65));
    assert_one_line_error(&o, &["bad.yml"]);
    // unknown method
    let unk = dir.path().join("unknown.yml");
    std::fs::write(&unk, "merge_method: frankenmerge\nmodels:\n  - model: a\n").unwrap();
    let o = forge()
        .arg("merge")
        .arg(&unk)
        .arg("-o")
        .arg(dir.path().join("o"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(65));
    assert_one_line_error(&o, &["frankenmerge"]);
    // a model that does not exist
    let missing = dir.path().join("missing.yml");
    std::fs::write(
        &missing,
        "merge_method: linear\nmodels:\n  - model: no_such_model\n    parameters: {weight: 1.0}\n",
    )
    .unwrap();
    let o = forge()
        .arg("merge")
        .arg(&missing)
        .arg("-o")
        .arg(dir.path().join("o"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(65));
    assert_one_line_error(&o, &["no_such_model"]);
    assert!(!dir.path().join("o").exists(), "nothing written on error");
}
