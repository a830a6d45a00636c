//! Whole-model parameters: state dicts, deep copies, `save_pretrained` (checked against
//! transformers when `FORGE_PYTHON` points at an interpreter with the reference stack), and the
//! other checkpoint layouts (PyTorch pickle, sharded safetensors).

use candle_core::{DType, Device, Tensor};
use forge_lora::{load_adapter, named_trainable, LoraConfig, LoraInjector, LoraModel};
use forge_models::builder::module_paths;
use forge_models::{
    cross_entropy_loss, AnyClassifier, DeepClone, DistilBertConfig,
    DistilBertForSequenceClassification, ModelError, ModelFiles, SavePretrained,
    SequenceClassifier, StateDict,
};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("fixtures")
}

fn expected() -> HashMap<String, Tensor> {
    candle_core::safetensors::load(fixtures().join("tiny-expected.safetensors"), &Device::Cpu)
        .unwrap()
}

fn load(dir: &Path) -> AnyClassifier {
    AnyClassifier::from_files(&ModelFiles::from_dir(dir).unwrap(), None, 0, &Device::Cpu).unwrap()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    // equal shapes checked there
    forge_linalg::ops::max_abs_diff(a, b).unwrap()
}

fn logits(m: &AnyClassifier, e: &HashMap<String, Tensor>) -> Tensor {
    m.forward(&e["input_ids"], Some(&e["attention_mask"]))
        .unwrap()
}

/// A few plain SGD steps on the fixture batch (eval mode: no dropout).
fn train_a_bit(m: &mut AnyClassifier, e: &HashMap<String, Tensor>, steps: usize) {
    use candle_nn::Optimizer;
    let vars = forge_lora::trainable_vars(m);
    let mut opt = candle_nn::SGD::new(vars, 0.5).unwrap();
    for _ in 0..steps {
        let loss = cross_entropy_loss(&logits(m, e), &e["labels"]).unwrap();
        opt.backward_step(&loss).unwrap();
    }
}

#[test]
fn names_are_written_once_and_match_the_checkpoint() {
    // every registered parameter is listed by named_modules_mut, in the same order, and the
    // names are exactly the Hugging Face checkpoint's
    for (dir, n) in [("tiny-distilbert", 40), ("tiny-bert", 41)] {
        let mut m = load(&fixtures().join(dir));
        let sd = m.state_dict().unwrap();
        assert_eq!(sd.len(), n, "{dir}");
        let file: HashMap<String, Tensor> = candle_core::safetensors::load(
            fixtures().join(dir).join("model.safetensors"),
            &Device::Cpu,
        )
        .unwrap();
        for (k, t) in &sd {
            assert!(file.contains_key(k), "{dir}: {k} not in the checkpoint");
            assert_eq!(
                max_diff(t, &file[k].to_dtype(DType::F32).unwrap()),
                0.0,
                "{k}"
            );
        }
        let paths = module_paths(match &mut m {
            AnyClassifier::DistilBert(x) => x as &mut dyn forge_models::VisitModules,
            AnyClassifier::Bert(x) => x,
        });
        assert_eq!(paths.len(), m.named_modules_mut().len());
    }
}

#[test]
fn state_dict_roundtrips_and_load_is_checked_and_atomic() {
    let e = expected();
    let mut a = load(&fixtures().join("tiny-distilbert"));
    let cfg = DistilBertConfig {
        vocab_size: 64,
        dim: 32,
        n_layers: 2,
        n_heads: 4,
        hidden_dim: 64,
        max_position_embeddings: 32,
        num_labels: Some(3),
        ..Default::default()
    };
    let mut b = AnyClassifier::DistilBert(
        DistilBertForSequenceClassification::new_random(&cfg, 9, &Device::Cpu).unwrap(),
    );
    let sd = a.state_dict().unwrap();
    assert!(max_diff(&logits(&a, &e), &logits(&b, &e)) > 1e-3);
    b.load_state_dict(&sd).unwrap();
    assert_eq!(max_diff(&logits(&a, &e), &logits(&b, &e)), 0.0);
    // the snapshot does not follow later training
    let before = sd[0].1.copy().unwrap();
    train_a_bit(&mut a, &e, 1);
    assert_eq!(max_diff(&sd[0].1, &before), 0.0);

    let good = b.state_dict().unwrap();
    let want = logits(&b, &e);
    let mut bad = good.clone();
    bad.remove(3);
    bad.push((
        "distilbert.transformer.layer.9.ffn.lin1.weight".into(),
        good[3].1.clone(),
    ));
    match b.load_state_dict(&bad).unwrap_err() {
        ModelError::StateDictMismatch {
            missing,
            unexpected,
        } => {
            assert_eq!(missing, vec![good[3].0.clone()]);
            assert_eq!(
                unexpected,
                vec!["distilbert.transformer.layer.9.ffn.lin1.weight"]
            );
        }
        other => panic!("unexpected {other}"),
    }
    // a bad tensor late in the list: nothing is changed
    let mut bad = good.clone();
    let last = bad.len() - 1;
    bad[0].1 = (&bad[0].1 + 1.0).unwrap();
    bad[last].1 = (bad[last].1.clone() / 0.0).unwrap();
    assert!(matches!(
        b.load_state_dict(&bad).unwrap_err(),
        ModelError::NonFinite { ref tensor, .. } if tensor == "classifier.bias"
    ));
    bad[last].1 = good[last].1.to_dtype(DType::I64).unwrap();
    assert!(matches!(
        b.load_state_dict(&bad).unwrap_err(),
        ModelError::BadDType { ref tensor, .. } if tensor == "classifier.bias"
    ));
    bad[last].1 = Tensor::zeros(7, DType::F32, &Device::Cpu).unwrap();
    assert!(matches!(
        b.load_state_dict(&bad).unwrap_err(),
        ModelError::ShapeMismatch { ref tensor, .. } if tensor == "classifier.bias"
    ));
    assert_eq!(max_diff(&logits(&b, &e), &want), 0.0);
}

#[test]
fn training_a_deep_copy_leaves_the_original_unchanged() {
    let e = expected();
    for dir in ["tiny-distilbert", "tiny-bert"] {
        let mut orig = load(&fixtures().join(dir));
        load_adapter(&mut orig, &fixtures().join(format!("{dir}-lora"))).unwrap();
        let want = logits(&orig, &e);
        let sd_before = orig.state_dict().unwrap();
        let mut copy = orig.try_clone_deep().unwrap();
        assert_eq!(max_diff(&logits(&copy, &e), &want), 0.0);
        // same trainable set in the copy
        let names = |m: &mut AnyClassifier| -> Vec<String> {
            named_trainable(m).into_iter().map(|(n, _)| n).collect()
        };
        assert_eq!(names(&mut copy), names(&mut orig));
        train_a_bit(&mut copy, &e, 2);
        assert!(
            max_diff(&logits(&copy, &e), &want) > 1e-4,
            "{dir}: copy did not train"
        );
        assert_eq!(
            max_diff(&logits(&orig, &e), &want),
            0.0,
            "{dir}: original changed"
        );
        for ((n, a), (_, b)) in sd_before.iter().zip(orig.state_dict().unwrap()) {
            assert_eq!(max_diff(a, &b), 0.0, "{n}");
        }
        // and the reverse
        let copy_logits = logits(&copy, &e);
        train_a_bit(&mut orig, &e, 1);
        assert_eq!(max_diff(&logits(&copy, &e), &copy_logits), 0.0);
    }
}

#[test]
fn pickle_and_sharded_checkpoints_load_with_transformers_logits() {
    let e = expected();
    for (dir, key, file) in [
        ("tiny-distilbert-bin", "distil_logits", "pytorch_model.bin"),
        (
            "tiny-bert-sharded",
            "bert_logits",
            "model.safetensors.index.json",
        ),
    ] {
        let files = ModelFiles::from_dir(&fixtures().join(dir)).unwrap();
        assert!(files.weights.ends_with(file), "{:?}", files.weights);
        let m = load(&fixtures().join(dir));
        let d = max_diff(&logits(&m, &e), &e[key]);
        assert!(d <= 1e-4, "{dir}: {d}");
    }
    // a shard named in the index but absent is named
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("m");
    std::fs::create_dir_all(&dir).unwrap();
    for f in std::fs::read_dir(fixtures().join("tiny-bert-sharded")).unwrap() {
        let f = f.unwrap();
        if !f.file_name().to_string_lossy().starts_with("model-00002") {
            std::fs::copy(f.path(), dir.join(f.file_name())).unwrap();
        }
    }
    let err =
        AnyClassifier::from_files(&ModelFiles::from_dir(&dir).unwrap(), None, 0, &Device::Cpu)
            .unwrap_err();
    assert!(
        matches!(&err, ModelError::MissingFile { path, .. } if path.to_string_lossy().contains("model-00002")),
        "{err}"
    );
}

/// Fine-tune (full for DistilBERT, LoRA for BERT), save with `save_pretrained`, reload in Forge;
/// with `FORGE_PYTHON` set, also load the folder in transformers through the fixture script and
/// compare logits (1e-5).
#[test]
fn save_pretrained_roundtrips_and_loads_in_transformers() {
    let e = expected();
    for (dir, lora) in [("tiny-distilbert", false), ("tiny-bert", true)] {
        let mut m = load(&fixtures().join(dir));
        if lora {
            LoraInjector::new(
                LoraConfig::new(4, 8.0, &["query", "value"]).with_modules_to_save(&["classifier"]),
            )
            .unwrap()
            .inject(&mut m)
            .unwrap();
        }
        train_a_bit(&mut m, &e, 3);
        let want = logits(&m, &e);
        let out = match std::env::var("FORGE_HF_CHECK_DIR") {
            Ok(d) => PathBuf::from(d).join(dir),
            Err(_) => tempfile::tempdir().unwrap().keep().join(dir),
        };
        m.save_pretrained(&out).unwrap();
        let names: Vec<String> = std::fs::read_dir(&out)
            .unwrap()
            .map(|f| f.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            !names.iter().any(|n| n.starts_with('.')),
            "temp files left: {names:?}"
        );
        let back = load(&out);
        let d = max_diff(&logits(&back, &e), &want);
        assert!(d <= 1e-5, "{dir}: reloaded model differs by {d}");
        let rows: Vec<Vec<f32>> = want.to_vec2().unwrap();
        std::fs::write(
            out.join("forge_logits.json"),
            serde_json::to_string(&rows).unwrap(),
        )
        .unwrap();
        if let Ok(py) = std::env::var("FORGE_PYTHON") {
            let script = fixtures().join("make_fixtures.py");
            let o = std::process::Command::new(py)
                .arg(&script)
                .arg("--check-forge-model")
                .arg(&out)
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&o.stdout);
            eprintln!("{dir}: {text}");
            assert!(
                o.status.success(),
                "{dir}: transformers check failed: {text} {}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
    }
}

/// Tensors outside the encoder (a pre-training head, integer buffers such as `position_ids`)
/// are ignored with a warning, as transformers does: distilbert-base-uncased ships its MLM head.
#[test]
fn unused_heads_and_buffers_are_not_errors_but_extra_layers_are() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("m");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(
        fixtures().join("tiny-distilbert").join("config.json"),
        dir.join("config.json"),
    )
    .unwrap();
    let mut t: HashMap<String, Tensor> = candle_core::safetensors::load(
        fixtures().join("tiny-distilbert").join("model.safetensors"),
        &Device::Cpu,
    )
    .unwrap();
    let dev = Device::Cpu;
    t.insert(
        "vocab_transform.weight".into(),
        Tensor::zeros((32, 32), DType::F32, &dev).unwrap(),
    );
    t.insert(
        "vocab_projector.bias".into(),
        Tensor::zeros(64, DType::F32, &dev).unwrap(),
    );
    t.insert(
        "distilbert.embeddings.position_ids".into(),
        Tensor::arange(0i64, 32, &dev)
            .unwrap()
            .unsqueeze(0)
            .unwrap(),
    );
    candle_core::safetensors::save(&t, dir.join("model.safetensors")).unwrap();
    let e = expected();
    let m = load(&dir);
    assert!(max_diff(&logits(&m, &e), &e["distil_logits"]) <= 1e-4);
    // the bare encoder ignores the classification head too
    forge_models::AnyEncoder::from_files(&ModelFiles::from_dir(&dir).unwrap(), &dev).unwrap();
    // but an extra block is an error naming it
    t.insert(
        "distilbert.transformer.layer.2.attention.q_lin.weight".into(),
        Tensor::zeros((32, 32), DType::F32, &dev).unwrap(),
    );
    candle_core::safetensors::save(&t, dir.join("model.safetensors")).unwrap();
    let err =
        AnyClassifier::from_files(&ModelFiles::from_dir(&dir).unwrap(), None, 0, &dev).unwrap_err();
    match err {
        ModelError::UnexpectedTensors { tensors, .. } => {
            assert_eq!(
                tensors,
                vec!["distilbert.transformer.layer.2.attention.q_lin.weight"]
            )
        }
        other => panic!("unexpected {other}"),
    }
}

/// What the builder registered is exactly what `named_modules_mut` lists, in the same order,
/// for every architecture: the names are written once.
#[test]
fn registered_names_equal_listed_parameters() {
    use forge_models::{
        BertConfig, BertForSequenceClassification, BertModel, DistilBertModel, ParamBuilder,
    };
    let dev = Device::Cpu;
    let d = DistilBertConfig {
        vocab_size: 20,
        dim: 8,
        n_layers: 2,
        n_heads: 2,
        hidden_dim: 16,
        ..Default::default()
    };
    let b = BertConfig {
        vocab_size: 20,
        hidden_size: 8,
        num_hidden_layers: 2,
        num_attention_heads: 2,
        intermediate_size: 16,
        ..Default::default()
    };
    let names = |m: &mut dyn LoraModel| -> Vec<String> {
        forge_lora::named_base_params_mut(m)
            .into_iter()
            .map(|(n, _)| n)
            .collect()
    };
    let vb = ParamBuilder::random(0, 0.02, &dev);
    let mut m = DistilBertForSequenceClassification::build(&d, &vb).unwrap();
    assert_eq!(vb.registered(), names(&mut m));
    let vb = ParamBuilder::random(0, 0.02, &dev);
    let mut m = DistilBertModel::build(&d, &vb).unwrap();
    assert_eq!(vb.registered(), names(&mut m));
    let vb = ParamBuilder::random(0, 0.02, &dev);
    let mut m = BertForSequenceClassification::build(&b, &vb).unwrap();
    assert_eq!(vb.registered(), names(&mut m));
    assert!(vb
        .registered()
        .contains(&"bert.pooler.dense.weight".to_string()));
    let vb = ParamBuilder::random(0, 0.02, &dev);
    let mut m = BertModel::build(&b, &vb, false, false).unwrap();
    assert_eq!(vb.registered(), names(&mut m));
    assert_eq!(vb.registered()[0], "embeddings.word_embeddings.weight");
}
