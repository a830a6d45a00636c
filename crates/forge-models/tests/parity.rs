//! Parity with Hugging Face transformers + PEFT on tiny random checkpoints (fixtures made by
//! `fixtures/make_fixtures.py`): logits, LoRA adapters, merged outputs and gradients.

use candle_core::{Device, Tensor};
use forge_lora::{load_adapter, merge_all, named_trainable, save_adapter, unmerge_all, LoraModel};
use forge_models::{cross_entropy_loss, AnyClassifier, ModelFiles, SequenceClassifier};
use std::collections::HashMap;
use std::path::PathBuf;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("fixtures")
}

fn expected() -> HashMap<String, Tensor> {
    candle_core::safetensors::load(fixtures().join("tiny-expected.safetensors"), &Device::Cpu)
        .unwrap()
}

fn load(name: &str) -> AnyClassifier {
    let files = ModelFiles::from_dir(&fixtures().join(name)).unwrap();
    AnyClassifier::from_files(&files, None, 0, &Device::Cpu).unwrap()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    // equal shapes checked there
    forge_linalg::ops::max_abs_diff(a, b).unwrap()
}

fn logits(m: &AnyClassifier, e: &HashMap<String, Tensor>) -> Tensor {
    m.forward(&e["input_ids"], Some(&e["attention_mask"]))
        .unwrap()
}

#[test]
fn base_logits_match_transformers() {
    let e = expected();
    for (model, key) in [
        ("tiny-distilbert", "distil_logits"),
        ("tiny-bert", "bert_logits"),
    ] {
        let m = load(model);
        let d = max_diff(&logits(&m, &e), &e[key]);
        eprintln!("{model}: logits max abs diff {d:.2e}");
        assert!(d <= 1e-4, "{model}: max abs diff {d}");
    }
}

#[test]
fn bert_mean_pooled_hidden_state_matches() {
    let e = expected();
    let m = load("tiny-bert");
    let h = m
        .encoder()
        .encode(&e["input_ids"], Some(&e["attention_mask"]))
        .unwrap();
    let p = forge_models::mean_pool(&h, &e["attention_mask"]).unwrap();
    let d = max_diff(&p, &e["bert_mean_pooled"]);
    assert!(d <= 1e-4, "max abs diff {d}");
}

#[test]
fn peft_adapters_reproduce_peft_logits_merged_and_unmerged() {
    let e = expected();
    for (model, adapter, key) in [
        (
            "tiny-distilbert",
            "tiny-distilbert-lora",
            "distil_lora_logits",
        ),
        (
            "tiny-distilbert",
            "tiny-distilbert-rslora",
            "distil_rslora_logits",
        ),
        ("tiny-bert", "tiny-bert-lora", "bert_lora_logits"),
    ] {
        let mut m = load(model);
        let base = logits(&m, &e);
        let cfg = load_adapter(&mut m, &fixtures().join(adapter)).unwrap();
        let unmerged = logits(&m, &e);
        let d = max_diff(&unmerged, &e[key]);
        eprintln!("{adapter}: logits max abs diff {d:.2e}");
        assert!(d <= 1e-4, "{adapter}: max abs diff {d}");
        // the adapter really changes the output (non-zero B, modules_to_save restored)
        assert!(max_diff(&base, &unmerged) > 1e-2, "{adapter} had no effect");
        assert!(merge_all(&mut m).unwrap() > 0);
        let merged = logits(&m, &e);
        let d = max_diff(&merged, &unmerged);
        assert!(d <= 1e-5, "{adapter}: merged vs unmerged {d}");
        unmerge_all(&mut m).unwrap();
        let d = max_diff(&logits(&m, &e), &unmerged);
        assert!(d <= 1e-5, "{adapter}: after unmerge {d}");
        if cfg.use_rslora {
            assert_eq!(cfg.r, 2);
        }
    }
}

fn check_grads(
    m: &mut AnyClassifier,
    e: &HashMap<String, Tensor>,
    prefix: &str,
    rename: impl Fn(&str) -> String,
) -> usize {
    m.set_training(false); // reference gradients are taken without dropout
    let loss = cross_entropy_loss(&logits(m, e), &e["labels"]).unwrap();
    let loss_key = format!("{}loss", prefix.trim_end_matches("grad."));
    let dl = (loss.to_scalar::<f32>().unwrap()
        - e[&loss_key]
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()[0])
        .abs();
    assert!(dl <= 1e-5, "loss differs by {dl}");
    let grads = loss.backward().unwrap();
    let mut n = 0;
    let mut worst = 0f32;
    for (name, var) in named_trainable(m) {
        let g = grads
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("no gradient for {name}"));
        let gmax = g
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(gmax > 0.0, "gradient of {name} is all zeros");
        let key = format!("{prefix}{}", rename(&name));
        let want = e
            .get(&key)
            .unwrap_or_else(|| panic!("fixture has no {key}"));
        let d = max_diff(g, want);
        worst = worst.max(d);
        assert!(d <= 1e-4, "{name}: gradient max abs diff {d}");
        n += 1;
    }
    eprintln!("{prefix}: {n} parameter gradients, worst max abs diff {worst:.2e}");
    n
}

#[test]
fn full_fine_tuning_gradients_match_pytorch() {
    let e = expected();
    let mut d = load("tiny-distilbert");
    assert_eq!(
        check_grads(&mut d, &e, "distil_grad.", |n| n.to_string()),
        40
    );
    let mut b = load("tiny-bert");
    assert_eq!(check_grads(&mut b, &e, "bert_grad.", |n| n.to_string()), 41);
}

#[test]
fn lora_gradients_match_peft() {
    let e = expected();
    let mut m = load("tiny-distilbert");
    load_adapter(&mut m, &fixtures().join("tiny-distilbert-lora")).unwrap();
    // PEFT's trainable set: 8 LoRA matrices + classifier and pre_classifier (modules_to_save
    // "classifier" matches both: PEFT uses a plain suffix rule there)
    let names: Vec<String> = named_trainable(&mut m)
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(names.len(), 12, "{names:?}");
    let lora_only = |n: &str| n.contains("lora_");
    m.set_training(false);
    let loss = cross_entropy_loss(&logits(&m, &e), &e["labels"]).unwrap();
    let grads = loss.backward().unwrap();
    let mut n = 0;
    for (name, var) in named_trainable(&mut m) {
        let g = grads.get(var.as_tensor()).unwrap();
        if !lora_only(&name) {
            continue;
        }
        let key = format!(
            "distil_lora_grad.base_model.model.{}",
            name.replace(".weight", ".default.weight")
        );
        let d = max_diff(g, &e[&key]);
        assert!(d <= 1e-4, "{name}: {d}");
        n += 1;
    }
    assert_eq!(n, 8);
    // frozen base weights receive no gradient
    let mut frozen_with_grad = 0;
    for (_, p) in forge_lora::named_base_params_mut(&mut m) {
        if !p.is_trainable() && grads.get(p.var().as_tensor()).is_some() {
            frozen_with_grad += 1;
        }
    }
    assert_eq!(frozen_with_grad, 0);
}

#[test]
fn forge_saved_adapter_roundtrips_and_is_peft_readable() {
    let e = expected();
    let mut m = load("tiny-distilbert");
    load_adapter(&mut m, &fixtures().join("tiny-distilbert-lora")).unwrap();
    let cfg = forge_lora::read_adapter_config(&fixtures().join("tiny-distilbert-lora")).unwrap();
    // perturb so that the saved adapter differs from the PEFT one
    for (name, var) in named_trainable(&mut m) {
        if name.contains("lora_B") {
            let t = (var.as_tensor() * 1.5).unwrap();
            var.set(&t).unwrap();
        }
    }
    let want = logits(&m, &e);
    let dir = match std::env::var("FORGE_PEFT_CHECK_DIR") {
        Ok(d) => PathBuf::from(d),
        Err(_) => tempfile::tempdir().unwrap().keep(),
    };
    save_adapter(&mut m, &cfg, &dir).unwrap();
    let rows: Vec<Vec<f32>> = want.to_vec2().unwrap();
    std::fs::write(
        dir.join("forge_logits.json"),
        serde_json::to_string(&rows).unwrap(),
    )
    .unwrap();
    let keys: Vec<String> =
        candle_core::safetensors::load(dir.join("adapter_model.safetensors"), &Device::Cpu)
            .unwrap()
            .into_keys()
            .collect();
    assert!(keys.contains(
        &"base_model.model.distilbert.transformer.layer.0.attention.q_lin.lora_A.weight"
            .to_string()
    ));
    assert!(keys.contains(&"base_model.model.classifier.weight".to_string()));
    assert_eq!(keys.len(), 12);
    let mut fresh = load("tiny-distilbert");
    load_adapter(&mut fresh, &dir).unwrap();
    let d = max_diff(&logits(&fresh, &e), &want);
    assert!(d <= 1e-6, "reloaded adapter differs by {d}");
    assert_eq!(fresh.architecture(), "distilbert");
}
