//! End-to-end tests of `forge lora` with the real binary, on forge-models' tiny fixtures.

mod common;

use common::{assert_one_line_error, forge, root, stderr, stdout};
use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    root().join("crates/forge-models/tests/fixtures").join(name)
}

#[test]
fn inspect_reports_rank_alpha_targets_and_counts() {
    let o = forge()
        .args(["--json", "lora", "inspect"])
        .arg(fixture("tiny-distilbert-lora"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["r"], 4);
    assert_eq!(v["lora_alpha"], 8.0);
    assert_eq!(v["scaling"], 2.0);
    assert_eq!(v["peft_type"], "LORA");
    let mut targets: Vec<String> = serde_json::from_value(v["target_modules"].clone()).unwrap();
    targets.sort();
    assert_eq!(targets, ["q_lin", "v_lin"]);
    // independent count from the safetensors file itself (candle's reader)
    let tensors = candle_core::safetensors::load(
        fixture("tiny-distilbert-lora").join("adapter_model.safetensors"),
        &candle_core::Device::Cpu,
    )
    .unwrap();
    let total: usize = tensors.values().map(|t| t.elem_count()).sum();
    let lora: usize = tensors
        .iter()
        .filter(|(k, _)| k.contains(".lora_A.") || k.contains(".lora_B."))
        .map(|(_, t)| t.elem_count())
        .sum();
    assert_eq!(v["parameters"], total);
    assert_eq!(v["lora_parameters"], lora);
    let n_a = tensors.keys().filter(|k| k.contains(".lora_A.")).count();
    assert_eq!(v["adapted"].as_array().unwrap().len(), n_a);
    for m in v["adapted"].as_array().unwrap() {
        assert_eq!(m["rank"], 4);
        let p = m["path"].as_str().unwrap();
        assert!(p.ends_with("q_lin") || p.ends_with("v_lin"), "{p}");
    }
    let on_disk: u64 = std::fs::read_dir(fixture("tiny-distilbert-lora"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert_eq!(v["size_bytes"], on_disk);
}

#[test]
fn inspect_rslora_text() {
    let o = forge()
        .args(["lora", "inspect"])
        .arg(fixture("tiny-distilbert-rslora"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let t = stdout(&o);
    assert!(t.contains("rsLoRA"), "{t}");
    assert!(t.contains("modules:"), "{t}");
}

#[test]
fn inspect_bad_inputs() {
    let o = forge()
        .args(["lora", "inspect", "no/such/adapter"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(65));
    assert_one_line_error(&o, &["adapter folder not found", "no/such/adapter"]);
    // a model folder is not an adapter
    let o = forge()
        .args(["lora", "inspect"])
        .arg(fixture("tiny-bert"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(65));
    assert_one_line_error(&o, &["adapter_config.json"]);
    // corrupt config and weights
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("adapter_config.json"), "{ not json").unwrap();
    std::fs::write(dir.path().join("adapter_model.safetensors"), b"abc").unwrap();
    let o = forge()
        .args(["lora", "inspect"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(65));
    assert_one_line_error(&o, &["adapter_config.json"]);
    std::fs::copy(
        fixture("tiny-distilbert-lora").join("adapter_config.json"),
        dir.path().join("adapter_config.json"),
    )
    .unwrap();
    let o = forge()
        .args(["lora", "inspect"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(65));
    assert_one_line_error(&o, &["adapter_model.safetensors", "not a safetensors file"]);
    // an unsupported PEFT option (DoRA) is rejected, not ignored
    let cfg = std::fs::read_to_string(fixture("tiny-distilbert-lora").join("adapter_config.json"))
        .unwrap()
        .replace("\"use_dora\": false", "\"use_dora\": true");
    std::fs::write(dir.path().join("adapter_config.json"), cfg).unwrap();
    let o = forge()
        .args(["lora", "inspect"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(65));
    assert_one_line_error(&o, &["dora"]);
}

/// Logits of a model on a fixed batch of token ids (the tiny fixtures' vocabulary is >= 50).
fn logits(m: &forge_models::AnyClassifier) -> Vec<Vec<f32>> {
    use forge_models::SequenceClassifier;
    let ids = candle_core::Tensor::new(
        &[[1u32, 7, 12, 30, 2, 0], [1, 5, 44, 9, 18, 2]],
        &candle_core::Device::Cpu,
    )
    .unwrap();
    let mask = candle_core::Tensor::new(
        &[[1u32, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1]],
        &candle_core::Device::Cpu,
    )
    .unwrap();
    m.forward(&ids, Some(&mask)).unwrap().to_vec2().unwrap()
}

fn load(dir: &std::path::Path) -> forge_models::AnyClassifier {
    let files = forge_models::ModelFiles::from_dir(dir).unwrap();
    forge_models::AnyClassifier::from_files(&files, None, 0, &candle_core::Device::Cpu).unwrap()
}

/// The merged checkpoint, loaded as a plain model, computes what base + adapter computes.
#[test]
fn merge_folds_the_adapter_with_the_same_logits() {
    for (base, adapter) in [
        ("tiny-distilbert", "tiny-distilbert-lora"),
        ("tiny-distilbert", "tiny-distilbert-rslora"),
        ("tiny-bert", "tiny-bert-lora"),
    ] {
        let out = tempfile::tempdir().unwrap();
        let o = forge()
            .args(["--json", "lora", "merge"])
            .arg(fixture(base))
            .arg(fixture(adapter))
            .arg("-o")
            .arg(out.path())
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "{adapter}: {}", stderr(&o));
        let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
        assert!(v["merged_layers"].as_u64().unwrap() > 0);
        assert!(out.path().join("model.safetensors").is_file());
        assert!(out.path().join("config.json").is_file());
        // reference: base + adapter, unmerged, in Forge
        let mut reference = load(&fixture(base));
        forge_lora::load_adapter(&mut reference, &fixture(adapter)).unwrap();
        let want = logits(&reference);
        let merged = load(out.path());
        let got = logits(&merged);
        let base_logits = logits(&load(&fixture(base)));
        let mut max_diff = 0f32;
        let mut moved = 0f32;
        for ((g, w), b) in got.iter().zip(&want).zip(&base_logits) {
            for ((g, w), b) in g.iter().zip(w).zip(b) {
                max_diff = max_diff.max((g - w).abs());
                moved = moved.max((w - b).abs());
            }
        }
        assert!(
            max_diff < 1e-5,
            "{adapter}: merged logits differ by {max_diff}"
        );
        assert!(
            moved > 1e-4,
            "{adapter}: the adapter changes the logits ({moved})"
        );
    }
}

#[test]
fn merge_bad_inputs() {
    let out = tempfile::tempdir().unwrap();
    // adapter for another architecture
    let o = forge()
        .args(["lora", "merge"])
        .arg(fixture("tiny-bert"))
        .arg(fixture("tiny-distilbert-lora"))
        .arg("-o")
        .arg(out.path().join("x"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(65));
    assert_one_line_error(&o, &["distilbert"]);
    assert!(!out.path().join("x").exists(), "nothing written on error");
    // missing base
    let o = forge()
        .args(["lora", "merge", "no/base"])
        .arg(fixture("tiny-distilbert-lora"))
        .arg("-o")
        .arg(out.path().join("y"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(65));
    assert_one_line_error(&o, &["base model folder not found", "no/base"]);
}

/// A soup of one adapter with itself (weights 0.5 + 0.5) is that adapter: same logits on the base.
#[test]
fn soup_of_an_adapter_with_itself_is_the_adapter() {
    for rank in [None, Some("4")] {
        let out = tempfile::tempdir().unwrap();
        let soup = out.path().join("soup");
        let mut cmd = forge();
        cmd.args(["--json", "lora", "soup"])
            .arg(fixture("tiny-distilbert-lora"))
            .arg(fixture("tiny-distilbert-lora"))
            .args(["--weights", "0.5,0.5", "-o"])
            .arg(&soup);
        if let Some(r) = rank {
            cmd.args(["--rank", r]);
        }
        let o = cmd.output().unwrap();
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
        assert!(v["modules"].as_u64().unwrap() > 0);
        if rank.is_some() {
            assert_eq!(v["rank"], 4);
            assert!(v["max_compression_error"].as_f64().unwrap() < 1e-4, "{v}");
        }
        let mut reference = load(&fixture("tiny-distilbert"));
        forge_lora::load_adapter(&mut reference, &fixture("tiny-distilbert-lora")).unwrap();
        let mut souped = load(&fixture("tiny-distilbert"));
        forge_lora::load_adapter(&mut souped, &soup).unwrap();
        let (a, b) = (logits(&reference), logits(&souped));
        let d = a
            .iter()
            .flatten()
            .zip(b.iter().flatten())
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        assert!(
            d < 1e-5,
            "soup of A with itself differs from A by {d} (rank {rank:?})"
        );
    }
}

#[test]
fn soup_bad_inputs() {
    let out = tempfile::tempdir().unwrap();
    let o = forge()
        .args(["lora", "soup"])
        .arg(fixture("tiny-distilbert-lora"))
        .arg(fixture("tiny-distilbert-lora"))
        .args(["--weights", "1,2,3", "-o"])
        .arg(out.path().join("s"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(64));
    assert_one_line_error(&o, &["--weights has 3 value(s) for 2 adapters"]);
    // adapters of different bases
    let o = forge()
        .args(["lora", "soup"])
        .arg(fixture("tiny-distilbert-lora"))
        .arg(fixture("tiny-bert-lora"))
        .arg("-o")
        .arg(out.path().join("s"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(65), "{}", stderr(&o));
    assert_one_line_error(&o, &["share no adapted module"]);
    assert!(!out.path().join("s").exists());
}
