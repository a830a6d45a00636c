//! Public API: parameter counts, LoRA+ groups, loading layouts, tokenisation and typed errors
//! on bad input.

use candle_core::{Device, Tensor};
use forge_lora::{
    count_parameters, load_adapter, lora_plus_groups, LoraConfig, LoraError, LoraInjector,
};
use forge_models::{
    AnyClassifier, DistilBertConfig, DistilBertForSequenceClassification, ModelError, ModelFiles,
    SequenceClassifier, TextTokenizer,
};
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("fixtures")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

fn load(dir: &Path) -> forge_models::Result<AnyClassifier> {
    AnyClassifier::from_files(&ModelFiles::from_dir(dir)?, None, 0, &Device::Cpu)
}

#[test]
fn distilbert_base_parameter_counts_from_config() {
    // Hugging Face: DistilBertForSequenceClassification(distilbert-base-uncased, 2 labels)
    // has 66,955,010 parameters (pre_classifier included).
    let cfg = DistilBertConfig::default();
    let mut m = DistilBertForSequenceClassification::new_random(&cfg, 0, &Device::Cpu).unwrap();
    let c = count_parameters(&mut m);
    assert_eq!(c.total, 66_955_010);
    assert_eq!(c.trainable, 66_955_010);
    let inj = LoraInjector::new(LoraConfig::new(4, 8.0, &["q_lin", "v_lin"]))
        .unwrap()
        .inject(&mut m)
        .unwrap();
    assert_eq!(inj.adapted.len(), 12);
    let c = count_parameters(&mut m);
    assert_eq!(c.adapter, 73_728);
    assert_eq!(c.trainable, 73_728);
    assert_eq!(c.total, 66_955_010 + 73_728);
}

#[test]
fn lora_plus_groups_scale_b_learning_rate() {
    let cfg = DistilBertConfig {
        vocab_size: 50,
        dim: 16,
        n_layers: 2,
        n_heads: 2,
        hidden_dim: 32,
        ..Default::default()
    };
    let mut m = DistilBertForSequenceClassification::new_random(&cfg, 1, &Device::Cpu).unwrap();
    let lc = LoraConfig::new(2, 4.0, &["q_lin", "v_lin"]).with_modules_to_save(&["classifier"]);
    LoraInjector::new(lc).unwrap().inject(&mut m).unwrap();
    let groups = lora_plus_groups(&mut m, 1e-4, 16.0).unwrap();
    assert_eq!(groups[1].name, "lora_B");
    assert_eq!(groups[1].vars.len(), 4);
    assert!((groups[1].lr - 1.6e-3).abs() < 1e-12);
    // 4 A matrices + pre_classifier and classifier (weight, bias each)
    assert_eq!(groups[0].vars.len(), 4 + 4);
    assert!(lora_plus_groups(&mut m, 1e-4, 0.0).is_err());
}

#[test]
fn all_linear_skips_modules_to_save() {
    let cfg = DistilBertConfig {
        vocab_size: 50,
        dim: 16,
        n_layers: 1,
        n_heads: 2,
        hidden_dim: 32,
        ..Default::default()
    };
    let mut m = DistilBertForSequenceClassification::new_random(&cfg, 1, &Device::Cpu).unwrap();
    let mut lc = LoraConfig::new(2, 4.0, &[]).with_modules_to_save(&["classifier"]);
    lc.target_modules = forge_lora::TargetModules::all_linear();
    let inj = LoraInjector::new(lc).unwrap().inject(&mut m).unwrap();
    assert_eq!(inj.adapted.len(), 6);
    assert_eq!(
        inj.modules_to_save,
        vec!["pre_classifier".to_string(), "classifier".to_string()]
    );
}

#[test]
fn target_matching_nothing_is_typed_and_names_it() {
    let mut m = load(&fixtures().join("tiny-distilbert")).unwrap();
    let e = LoraInjector::new(LoraConfig::new(4, 8.0, &["q_lin", "query"]))
        .unwrap()
        .inject(&mut m)
        .unwrap_err();
    match &e {
        LoraError::TargetNotFound {
            target,
            architecture,
            ..
        } => {
            assert_eq!(target, "query");
            assert_eq!(architecture, "distilbert");
        }
        other => panic!("unexpected {other}"),
    }
    // "lin" is not a dotted suffix of any path: no partial-word matches
    let e = LoraInjector::new(LoraConfig::new(4, 8.0, &["lin"]))
        .unwrap()
        .inject(&mut m)
        .unwrap_err();
    assert!(matches!(e, LoraError::TargetNotFound { .. }), "{e}");
}

#[test]
fn adapter_for_another_architecture_is_typed() {
    let mut m = load(&fixtures().join("tiny-distilbert")).unwrap();
    let e = load_adapter(&mut m, &fixtures().join("tiny-bert-lora")).unwrap_err();
    match &e {
        LoraError::ArchitectureMismatch {
            module,
            architecture,
            ..
        } => {
            assert!(
                module.starts_with("bert.encoder.layer.0.attention.self"),
                "{module}"
            );
            assert_eq!(architecture, "distilbert");
        }
        other => panic!("unexpected {other}"),
    }
    assert!(e.to_string().contains("bert.encoder.layer.0"));
}

#[test]
fn adapter_missing_tensor_and_shape_mismatch_are_typed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ad");
    copy_dir(&fixtures().join("tiny-distilbert-lora"), &dir);
    let wpath = dir.join("adapter_model.safetensors");
    let mut t = candle_core::safetensors::load(&wpath, &Device::Cpu).unwrap();
    let gone = "base_model.model.distilbert.transformer.layer.1.attention.v_lin.lora_B.weight";
    t.remove(gone);
    candle_core::safetensors::save(&t, &wpath).unwrap();
    let mut m = load(&fixtures().join("tiny-distilbert")).unwrap();
    match load_adapter(&mut m, &dir).unwrap_err() {
        LoraError::MissingTensor { tensor, .. } => assert_eq!(tensor, gone),
        other => panic!("unexpected {other}"),
    }
    // r in the config disagrees with the tensors
    copy_dir(&fixtures().join("tiny-distilbert-lora"), &dir);
    let cpath = dir.join("adapter_config.json");
    let text = std::fs::read_to_string(&cpath)
        .unwrap()
        .replace("\"r\": 4", "\"r\": 2");
    std::fs::write(&cpath, text).unwrap();
    let mut m = load(&fixtures().join("tiny-distilbert")).unwrap();
    match load_adapter(&mut m, &dir).unwrap_err() {
        LoraError::ShapeMismatch {
            tensor,
            expected,
            got,
        } => {
            assert!(tensor.ends_with("q_lin.lora_A.weight"), "{tensor}");
            assert_eq!((expected, got), (vec![2, 32], vec![4, 32]));
        }
        other => panic!("unexpected {other}"),
    }
    // corrupt adapter weights, missing config
    std::fs::write(&wpath, b"not a safetensors file").unwrap();
    assert!(matches!(
        load_adapter(
            &mut load(&fixtures().join("tiny-distilbert")).unwrap(),
            &dir
        ),
        Err(LoraError::Corrupt { .. })
    ));
    std::fs::remove_file(&cpath).unwrap();
    assert!(matches!(
        load_adapter(
            &mut load(&fixtures().join("tiny-distilbert")).unwrap(),
            &dir
        ),
        Err(LoraError::Io { .. })
    ));
}

#[test]
fn missing_corrupt_and_mismatched_checkpoints_are_typed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("m");
    copy_dir(&fixtures().join("tiny-distilbert"), &dir);
    // config/weight shape mismatch names the tensor
    let cpath = dir.join("config.json");
    let good = std::fs::read_to_string(&cpath).unwrap();
    std::fs::write(
        &cpath,
        good.replace("\"hidden_dim\": 64", "\"hidden_dim\": 48"),
    )
    .unwrap();
    match load(&dir).unwrap_err() {
        ModelError::ShapeMismatch {
            tensor,
            expected,
            got,
        } => {
            assert_eq!(tensor, "distilbert.transformer.layer.0.ffn.lin1.weight");
            assert_eq!((expected, got), (vec![48, 32], vec![64, 32]));
        }
        other => panic!("unexpected {other}"),
    }
    // a head of another size is a shape mismatch too (as transformers without ignore_mismatched_sizes)
    std::fs::write(&cpath, &good).unwrap();
    let e = AnyClassifier::from_files(
        &ModelFiles::from_dir(&dir).unwrap(),
        Some(5),
        0,
        &Device::Cpu,
    )
    .unwrap_err();
    assert!(
        matches!(&e, ModelError::ShapeMismatch { tensor, .. } if tensor == "classifier.weight"),
        "{e}"
    );
    // a missing encoder tensor is named
    let wpath = dir.join("model.safetensors");
    let mut t = candle_core::safetensors::load(&wpath, &Device::Cpu).unwrap();
    t.remove("distilbert.transformer.layer.1.sa_layer_norm.bias");
    candle_core::safetensors::save(&t, &wpath).unwrap();
    match load(&dir).unwrap_err() {
        ModelError::MissingTensor { tensor, .. } => {
            assert_eq!(tensor, "distilbert.transformer.layer.1.sa_layer_norm.bias")
        }
        other => panic!("unexpected {other}"),
    }
    // corrupt and missing safetensors
    std::fs::write(&wpath, b"\x10\x00\x00\x00\x00\x00\x00\x00{garbage").unwrap();
    assert!(matches!(load(&dir), Err(ModelError::Corrupt { .. })));
    std::fs::remove_file(&wpath).unwrap();
    assert!(
        matches!(ModelFiles::from_dir(&dir), Err(ModelError::MissingFile { path, .. }) if path.ends_with("model.safetensors"))
    );
    assert!(matches!(
        ModelFiles::from_dir(&tmp.path().join("nope")),
        Err(ModelError::MissingFile { .. })
    ));
}

#[test]
fn hf_cache_layout_and_prefixless_checkpoints_load() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("models--forge-test--tiny-bert");
    let snap = repo.join("snapshots").join("0123abcd");
    copy_dir(&fixtures().join("tiny-bert"), &snap);
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs").join("main"), "0123abcd").unwrap();
    let files = ModelFiles::from_hf_cache("forge-test/tiny-bert", Some(tmp.path())).unwrap();
    assert_eq!(files.dir, snap);
    let m = AnyClassifier::from_files(&files, None, 0, &Device::Cpu).unwrap();
    // the same checkpoint with the "bert." prefix stripped (a bare BertModel) gives the same encoder
    let wpath = snap.join("model.safetensors");
    let t = candle_core::safetensors::load(&wpath, &Device::Cpu).unwrap();
    let stripped: std::collections::HashMap<String, Tensor> = t
        .into_iter()
        .map(|(k, v)| (k.strip_prefix("bert.").unwrap_or(&k).to_string(), v))
        .collect();
    candle_core::safetensors::save(&stripped, &wpath).unwrap();
    let enc = forge_models::AnyEncoder::from_files(&files, &Device::Cpu).unwrap();
    let ids = Tensor::new(&[[1u32, 7, 9, 2]], &Device::Cpu).unwrap();
    use forge_models::TextEncoder;
    let a = m.encoder().encode(&ids, None).unwrap();
    let b = enc.encode(&ids, None).unwrap();
    let d = (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert_eq!(d, 0.0);
    assert!(ModelFiles::from_hf_cache("forge-test/absent", Some(tmp.path())).is_err());
}

#[test]
fn bad_model_inputs_are_typed() {
    let m = load(&fixtures().join("tiny-distilbert")).unwrap();
    let too_big = Tensor::new(&[[1u32, 64]], &Device::Cpu).unwrap();
    assert!(matches!(
        m.forward(&too_big, None),
        Err(ModelError::InvalidInput {
            what: "input_ids",
            ..
        })
    ));
    let long = Tensor::zeros((1, 33), candle_core::DType::U32, &Device::Cpu).unwrap();
    assert!(matches!(
        m.forward(&long, None),
        Err(ModelError::InvalidInput {
            what: "input_ids",
            ..
        })
    ));
    let logits = m
        .forward(&Tensor::new(&[[1u32, 2]], &Device::Cpu).unwrap(), None)
        .unwrap();
    let bad_labels = Tensor::new(&[3u32], &Device::Cpu).unwrap();
    assert!(matches!(
        forge_models::cross_entropy_loss(&logits, &bad_labels),
        Err(ModelError::InvalidInput { what: "labels", .. })
    ));
}

#[test]
fn tokenizer_pads_to_longest_and_truncates_overriding_the_file() {
    use std::collections::HashMap;
    use tokenizers::models::wordlevel::WordLevel;
    let vocab: HashMap<String, u32> = ["[PAD]", "[UNK]", "a", "b", "c", "d"]
        .iter()
        .enumerate()
        .map(|(i, t)| (t.to_string(), i as u32))
        .collect();
    let model = WordLevel::builder()
        .vocab(vocab.into_iter().collect())
        .unk_token("[UNK]".into())
        .build()
        .unwrap();
    let mut tok = tokenizers::Tokenizer::new(model);
    tok.with_pre_tokenizer(Some(tokenizers::pre_tokenizers::whitespace::Whitespace {}));
    // a fixed padding to 16 in the file, as all-MiniLM-L6-v2's tokenizer.json has 128
    tok.with_padding(Some(tokenizers::PaddingParams {
        strategy: tokenizers::PaddingStrategy::Fixed(16),
        ..Default::default()
    }));
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("tokenizer.json");
    tok.save(&path, false).unwrap();
    let t = TextTokenizer::from_file(&path, 3).unwrap();
    let enc = t
        .encode_batch(&["a b", "c d a b", "zz"], &Device::Cpu)
        .unwrap();
    let ids: Vec<Vec<u32>> = enc.input_ids.to_vec2().unwrap();
    let mask: Vec<Vec<u32>> = enc.attention_mask.to_vec2().unwrap();
    assert_eq!(ids, vec![vec![2, 3, 0], vec![4, 5, 2], vec![1, 0, 0]]);
    assert_eq!(mask, vec![vec![1, 1, 0], vec![1, 1, 1], vec![1, 0, 0]]);
    assert!(TextTokenizer::from_file(&tmp.path().join("none.json"), 8).is_err());
    std::fs::write(&path, "{broken").unwrap();
    assert!(matches!(
        TextTokenizer::from_file(&path, 8),
        Err(ModelError::Corrupt { .. })
    ));
    assert!(t.encode_batch(&[], &Device::Cpu).is_err());
}

#[test]
fn dropout_only_in_training_mode() {
    let cfg = DistilBertConfig {
        vocab_size: 50,
        dim: 16,
        n_layers: 1,
        n_heads: 2,
        hidden_dim: 32,
        dropout: 0.5,
        ..Default::default()
    };
    let mut m = DistilBertForSequenceClassification::new_random(&cfg, 3, &Device::Cpu).unwrap();
    let ids = Tensor::new(&[[1u32, 4, 9, 2], [1, 7, 7, 2]], &Device::Cpu).unwrap();
    let a: Vec<Vec<f32>> = m.forward(&ids, None).unwrap().to_vec2().unwrap();
    let b: Vec<Vec<f32>> = m.forward(&ids, None).unwrap().to_vec2().unwrap();
    assert_eq!(a, b, "evaluation mode must be deterministic");
    m.set_training(true);
    assert!(m.is_training());
    let c: Vec<Vec<f32>> = m.forward(&ids, None).unwrap().to_vec2().unwrap();
    assert_ne!(a, c, "training mode must apply dropout");
}

#[test]
fn lora_step_updates_only_adapters_and_saved_modules() {
    use candle_nn::{AdamW, Optimizer, ParamsAdamW};
    let mut m = load(&fixtures().join("tiny-distilbert")).unwrap();
    let lc = LoraConfig::new(4, 8.0, &["q_lin", "v_lin"]).with_modules_to_save(&["classifier"]);
    LoraInjector::new(lc).unwrap().inject(&mut m).unwrap();
    let before: Vec<(String, Vec<f32>)> = forge_lora::named_base_params_mut(&mut m)
        .into_iter()
        .map(|(n, p)| (n, p.tensor().flatten_all().unwrap().to_vec1().unwrap()))
        .collect();
    let mut opt = AdamW::new(
        forge_lora::trainable_vars(&mut m),
        ParamsAdamW {
            lr: 1e-2,
            ..Default::default()
        },
    )
    .unwrap();
    let ids = Tensor::new(&[[1u32, 5, 17, 33, 2], [1, 40, 41, 2, 0]], &Device::Cpu).unwrap();
    let mask = ids.ne(0u32).unwrap();
    let labels = Tensor::new(&[0u32, 2], &Device::Cpu).unwrap();
    m.set_training(true);
    let l0 = forge_models::train_step(&m, &mut opt, &ids, Some(&mask), &labels).unwrap();
    for _ in 0..5 {
        forge_models::train_step(&m, &mut opt, &ids, Some(&mask), &labels).unwrap();
    }
    m.set_training(false);
    let l1 = forge_models::cross_entropy_loss(&m.forward(&ids, Some(&mask)).unwrap(), &labels)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(l1 < l0, "loss did not decrease: {l0} -> {l1}");
    for ((name, old), (_, p)) in before.iter().zip(forge_lora::named_base_params_mut(&mut m)) {
        let new: Vec<f32> = p.tensor().flatten_all().unwrap().to_vec1().unwrap();
        let saved = name.contains("classifier");
        assert_eq!(
            old != &new,
            saved,
            "{name}: changed = {}, trainable = {saved}",
            old != &new
        );
    }
}

/// `forge_lora::no_grad` (inference without a graph): the same logits as a tracked forward,
/// bit for bit, on DistilBERT and BERT, f32 and the bf16 mode, with and without LoRA adapters;
/// and nothing inside it gets a gradient.
#[test]
fn no_grad_forward_gives_the_same_logits_and_no_graph() {
    use forge_linalg::bf16::{with_matmul_precision, MatmulPrecision};
    use forge_models::{BertConfig, BertForSequenceClassification};
    let dev = Device::Cpu;
    // the second sequence is padded: masked keys take the fused attention's masked path
    let ids = Tensor::new(&[[2u32, 7, 11, 4, 9, 3], [5, 8, 1, 0, 0, 0]], &dev).unwrap();
    let mask = Tensor::new(&[[1u32, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]], &dev).unwrap();
    let dcfg = DistilBertConfig {
        vocab_size: 40,
        dim: 16,
        n_layers: 2,
        n_heads: 2,
        hidden_dim: 32,
        ..Default::default()
    };
    let bcfg = BertConfig {
        vocab_size: 40,
        hidden_size: 16,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        intermediate_size: 32,
        max_position_embeddings: 16,
        ..Default::default()
    };
    let mut models: Vec<AnyClassifier> = vec![
        AnyClassifier::DistilBert(
            DistilBertForSequenceClassification::new_random(&dcfg, 5, &dev).unwrap(),
        ),
        AnyClassifier::Bert(BertForSequenceClassification::new_random(&bcfg, 6, &dev).unwrap()),
    ];
    let mut lora = DistilBertForSequenceClassification::new_random(&dcfg, 7, &dev).unwrap();
    LoraInjector::new(LoraConfig::new(2, 4.0, &["q_lin", "v_lin"]))
        .unwrap()
        .inject(&mut lora)
        .unwrap();
    models.push(AnyClassifier::DistilBert(lora));
    for (i, m) in models.iter_mut().enumerate() {
        m.set_training(false);
        let vars = forge_lora::named_trainable(m);
        assert!(!vars.is_empty());
        for p in [MatmulPrecision::F32, MatmulPrecision::Bf16] {
            with_matmul_precision(p, || {
                let tracked = m.forward(&ids, Some(&mask)).unwrap();
                let free = forge_lora::no_grad(|| m.forward(&ids, Some(&mask))).unwrap();
                assert_eq!(
                    tracked.to_vec2::<f32>().unwrap(),
                    free.to_vec2::<f32>().unwrap(),
                    "model {i}, {p:?}"
                );
                // a tracked forward reaches the parameters; the no_grad one does not
                let g = tracked.sum_all().unwrap().backward().unwrap();
                assert!(vars.iter().any(|(_, v)| g.get(v.as_tensor()).is_some()));
                let g = free.sum_all().unwrap().backward().unwrap();
                assert!(vars.iter().all(|(_, v)| g.get(v.as_tensor()).is_none()));
            });
        }
    }
}
