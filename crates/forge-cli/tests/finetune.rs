//! End-to-end tests of `forge finetune` with the real binary, on forge-models' tiny fixtures with a
//! word-level tokenizer (see `common`).

mod common;

use common::{assert_one_line_error, forge, model_with_tokenizer, stderr, stdout, target_tsv};

#[test]
fn lora_and_full_fine_tuning_write_loadable_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let model = model_with_tokenizer("tiny-distilbert", dir.path());
    let data = target_tsv(dir.path());
    // LoRA: a PEFT adapter that `forge lora inspect` reads back with the requested rank
    let out = dir.path().join("lora");
    let o = forge()
        .args([
            "--json",
            "finetune",
            "--epochs",
            "2",
            "--batch-size",
            "8",
            "--lora",
            "2",
            "--model",
        ])
        .arg(&model)
        .arg("--train")
        .arg(&data)
        .arg("--val")
        .arg(&data)
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["mode"], "lora");
    assert_eq!(v["history"]["epochs"].as_array().unwrap().len(), 2);
    assert!(v["val_accuracy"].as_f64().is_some());
    assert!(v["energy_kwh"].as_f64().unwrap() > 0.0);
    for f in [
        "adapter_config.json",
        "adapter_model.safetensors",
        "history.json",
        "emissions.csv",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let o = forge()
        .args(["--json", "lora", "inspect"])
        .arg(&out)
        .output()
        .unwrap();
    let a: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(a["r"], 2);
    assert_eq!(a["lora_alpha"], 4.0);
    // every step loss is a finite number (no silent NaN)
    let losses = v["history"]["step_losses"].as_array().unwrap();
    assert!(!losses.is_empty());
    assert!(
        losses
            .iter()
            .all(|l| l.as_f64().is_some_and(f64::is_finite)),
        "{losses:?}"
    );

    // full fine-tuning: a checkpoint that loads as a 2-class model
    let full = dir.path().join("full");
    let o = forge()
        .args([
            "--json",
            "finetune",
            "--epochs",
            "1",
            "--batch-size",
            "8",
            "--model",
        ])
        .arg(&model)
        .arg("--train")
        .arg(&data)
        .arg("-o")
        .arg(&full)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let files = forge_models::ModelFiles::from_dir(&full).unwrap();
    assert!(files.tokenizer.is_some());
    let m = forge_models::AnyClassifier::from_files(&files, None, 0, &candle_core::Device::Cpu)
        .unwrap();
    use forge_models::SequenceClassifier;
    assert_eq!(
        m.num_labels(),
        2,
        "the 3-class fixture head was replaced for the 2 classes"
    );
}

#[test]
fn finetune_bad_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let model = model_with_tokenizer("tiny-distilbert", dir.path());
    let data = target_tsv(dir.path());
    let val = dir.path().join("val.tsv");
    std::fs::write(&val, "sentence\tlabel\nw4 w5\tneutral\n").unwrap();
    let o = forge()
        .args(["finetune", "--model"])
        .arg(&model)
        .arg("--train")
        .arg(&data)
        .arg("--val")
        .arg(&val)
        .arg("-o")
        .arg(dir.path().join("o"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(65));
    assert_one_line_error(&o, &["\"neutral\"", "training labels"]);
    let o = forge()
        .args(["finetune", "--lora", "0", "--model"])
        .arg(&model)
        .arg("--train")
        .arg(&data)
        .arg("-o")
        .arg(dir.path().join("o"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(64));
    assert_one_line_error(&o, &["--lora"]);
    let o = forge()
        .args(["finetune", "--model", "no/such/model", "--train"])
        .arg(&data)
        .arg("-o")
        .arg(dir.path().join("o"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(65));
    assert_one_line_error(&o, &["no/such/model"]);
    assert!(!dir.path().join("o").exists());
}

/// Sum over the backbone (not the head) of the squared difference between two checkpoints.
fn backbone_drift(a: &std::path::Path, b: &std::path::Path) -> f64 {
    let dev = candle_core::Device::Cpu;
    let ta = candle_core::safetensors::load(a.join("model.safetensors"), &dev).unwrap();
    let tb = candle_core::safetensors::load(b.join("model.safetensors"), &dev).unwrap();
    let mut d = 0.0;
    let mut n = 0;
    for (name, x) in &ta {
        if name.contains("classifier") {
            continue;
        }
        let y = &tb[name];
        let diff = (x.to_dtype(candle_core::DType::F64).unwrap()
            - y.to_dtype(candle_core::DType::F64).unwrap())
        .unwrap();
        d += diff
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        n += 1;
    }
    assert!(n > 10, "backbone tensors compared: {n}");
    d
}

#[test]
fn ewc_from_a_saved_fisher_holds_the_backbone_near_the_first_task() {
    let dir = tempfile::tempdir().unwrap();
    let model = model_with_tokenizer("tiny-distilbert", dir.path());
    let data = target_tsv(dir.path());
    let run = |extra: &[&str], from: &std::path::Path, out: &std::path::Path| {
        let o = forge()
            .args(["--json", "finetune", "--epochs", "2", "--batch-size", "4"])
            .args(extra)
            .arg("--model")
            .arg(from)
            .arg("--train")
            .arg(&data)
            .arg("-o")
            .arg(out)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        serde_json::from_str::<serde_json::Value>(&stdout(&o)).unwrap()
    };
    // task 1, with the Fisher saved
    let first = dir.path().join("first");
    let v = run(&["--save-ewc", "--fisher-samples", "12"], &model, &first);
    assert!(first.join("ewc.safetensors").is_file());
    assert_eq!(v["history"]["scalars"]["fisher_samples"], 12.0);
    // task 2 from the first model at a large learning rate, with and without the penalty
    let plain = dir.path().join("plain");
    run(&["--lr", "1e-2", "--seed", "3"], &first, &plain);
    let held = dir.path().join("held");
    let first_s = first.to_str().unwrap();
    let v = run(
        &[
            "--lr",
            "1e-2",
            "--seed",
            "3",
            "--ewc-from",
            first_s,
            "--ewc-lambda",
            "1e9",
        ],
        &first,
        &held,
    );
    assert_eq!(v["history"]["scalars"]["ewc_lambda"], 1e9);
    assert!(
        v["history"]["scalars"]["ewc_penalised_tensors"]
            .as_f64()
            .unwrap()
            > 10.0
    );
    let (d_plain, d_held) = (
        backbone_drift(&first, &plain),
        backbone_drift(&first, &held),
    );
    assert!(
        d_held < 0.5 * d_plain,
        "EWC drift {d_held} is not well below plain drift {d_plain}"
    );

    // bad input: a folder without the state, and --save-ewc with --lora
    let o = forge()
        .args(["finetune", "--ewc-from"])
        .arg(&plain)
        .arg("--model")
        .arg(&first)
        .arg("--train")
        .arg(&data)
        .arg("-o")
        .arg(dir.path().join("x"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(65));
    assert_one_line_error(&o, &["ewc.safetensors", "--save-ewc"]);
    let o = forge()
        .args(["finetune", "--save-ewc", "--lora", "2", "--model"])
        .arg(&model)
        .arg("--train")
        .arg(&data)
        .arg("-o")
        .arg(dir.path().join("y"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(64));
    assert_one_line_error(&o, &["--save-ewc", "--lora"]);
    assert!(!dir.path().join("x").exists() && !dir.path().join("y").exists());
}
