//! BaseModel operations: layer groups, freezing by group, head replacement and the ULMFiT
//! transfer scheduler (gradual unfreezing with discriminative learning rates).

use candle_core::{Device, Tensor};
use forge_models::train::{fine_tune_with, Callback, Control, Hooks, TextDataset, TrainConfig};
use forge_models::transfer::{
    layer_groups, replace_head, set_group_trainable, set_head, Scope, TransferScheduler,
    HF_INIT_STD, ULMFIT_DECAY,
};
use forge_models::{BertConfig, BertForSequenceClassification, ModelError, SequenceClassifier};
use std::collections::BTreeMap;

fn tiny_bert(seed: u64) -> BertForSequenceClassification {
    let cfg = BertConfig {
        vocab_size: 24,
        hidden_size: 16,
        num_hidden_layers: 2,
        num_attention_heads: 2,
        intermediate_size: 32,
        max_position_embeddings: 32,
        ..Default::default()
    };
    BertForSequenceClassification::new_random(&cfg, seed, &Device::Cpu).unwrap()
}

fn trainable_groups(m: &mut BertForSequenceClassification) -> Vec<String> {
    let names: Vec<String> = forge_lora::named_trainable(m)
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    layer_groups(m)
        .into_iter()
        .filter(|g| g.params.iter().all(|p| names.contains(p)))
        .map(|g| g.name)
        .collect()
}

#[test]
fn groups_are_embeddings_blocks_head_in_order() {
    let mut m = tiny_bert(0);
    let g = layer_groups(&mut m);
    let names: Vec<&str> = g.iter().map(|g| g.name.as_str()).collect();
    assert_eq!(names, ["embeddings", "layer.0", "layer.1", "head"]);
    assert!(g[3].params.contains(&"classifier.weight".to_string()));
    assert!(g[3]
        .params
        .contains(&"bert.pooler.dense.weight".to_string()));
    assert!(g[1]
        .params
        .contains(&"bert.encoder.layer.0.attention.output.LayerNorm.weight".to_string()));
    // every parameter is in exactly one group
    let total: usize = g.iter().map(|g| g.params.len()).sum();
    assert_eq!(total, forge_lora::named_trainable(&mut m).len());
}

#[test]
fn scheduler_unfreezes_from_the_top_with_discriminative_lrs() {
    let mut m = tiny_bert(0);
    let s = TransferScheduler::ulmfit(1e-3, 0.01);
    let expect = [
        vec!["head"],
        vec!["layer.1", "head"],
        vec!["layer.0", "layer.1", "head"],
        vec!["embeddings", "layer.0", "layer.1", "head"],
        vec!["embeddings", "layer.0", "layer.1", "head"],
    ];
    for (epoch, want) in expect.iter().enumerate() {
        let groups = s.apply(&mut m, epoch).unwrap();
        assert_eq!(&trainable_groups(&mut m), want, "epoch {epoch}");
        // one lr per layer group, lr / 2.6^depth from the top
        let mut lrs: BTreeMap<String, f64> = BTreeMap::new();
        for g in &groups {
            let layer = g.name.split('/').next().unwrap().to_string();
            lrs.insert(layer, g.lr);
            let no_decay = g.name.ends_with("/no_decay");
            assert_eq!(
                g.weight_decay,
                if no_decay { 0.0 } else { 0.01 },
                "{}",
                g.name
            );
            for n in &g.names {
                assert_eq!(forge_models::train::is_no_decay(n), no_decay, "{n}");
            }
        }
        for (depth, name) in want.iter().rev().enumerate() {
            let lr = lrs[*name];
            let exact = 1e-3 / ULMFIT_DECAY.powi(depth as i32);
            assert!((lr - exact).abs() < 1e-15, "{name}: {lr} vs {exact}");
        }
    }
}

#[test]
fn fine_tune_with_the_scheduler_trains_the_unfrozen_groups_only() {
    // Epoch 0 trains only the head: the blocks and embeddings must not move.
    let data = TextDataset::from_ids(
        (0..16).map(|i| vec![1, 5 + (i % 2) as u32, 2]).collect(),
        (0..16).map(|i| (i % 2) as u32).collect(),
        0,
    )
    .unwrap();
    let mut m = tiny_bert(1);
    let emb_before = param(&mut m, "word_embeddings.weight");
    let head_before = param(&mut m, "classifier.weight");
    struct Trainable(Vec<usize>);
    impl Callback for Trainable {
        fn on_epoch(&mut self, r: &mut forge_models::train::EpochRecord) -> Control {
            self.0.push(r.epoch);
            Control::Continue
        }
    }
    let cfg = TrainConfig {
        epochs: 1,
        batch_size: 8,
        learning_rate: 1e-2,
        ..Default::default()
    };
    let mut plan = TransferScheduler::ulmfit(1e-2, 0.0);
    let mut t = Trainable(vec![]);
    let mut hooks = Hooks::new().callback(&mut t);
    fine_tune_with(&mut m, &data, None, &cfg, &mut hooks, &mut plan).unwrap();
    drop(hooks);
    assert_eq!(t.0, vec![0]);
    let emb_after = param(&mut m, "word_embeddings.weight");
    assert_eq!(emb_before, emb_after, "frozen embeddings moved");
    let head_after = param(&mut m, "classifier.weight");
    assert_ne!(head_before, head_after, "the head did not train");
}

fn param(m: &mut BertForSequenceClassification, suffix: &str) -> Vec<f32> {
    forge_lora::named_base_params_mut(m)
        .into_iter()
        .find(|(n, _)| n.ends_with(suffix))
        .map(|(_, p)| p.tensor().flatten_all().unwrap().to_vec1().unwrap())
        .unwrap_or_else(|| panic!("no parameter {suffix}"))
}

#[test]
fn replace_head_keeps_the_backbone_and_is_seeded() {
    let mut m = tiny_bert(2);
    let ids = Tensor::new(&[[1u32, 5, 7, 2]], &Device::Cpu).unwrap();
    let enc_before = m.encoder().encode(&ids, None).unwrap();
    let logits_before = m.forward(&ids, None).unwrap();
    let old = replace_head(&mut m, 4, HF_INIT_STD, 9).unwrap();
    assert_eq!(m.num_labels(), 4);
    assert_eq!(m.forward(&ids, None).unwrap().dims(), &[1, 4]);
    let enc_after = m.encoder().encode(&ids, None).unwrap();
    let d = (enc_before - enc_after)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert_eq!(d, 0.0, "the backbone changed");
    // seeded: the same seed gives the same head; its std is about 0.02
    let mut m2 = tiny_bert(2);
    replace_head(&mut m2, 4, HF_INIT_STD, 9).unwrap();
    let a = m.forward(&ids, None).unwrap().to_vec2::<f32>().unwrap();
    let b = m2.forward(&ids, None).unwrap().to_vec2::<f32>().unwrap();
    assert_eq!(a, b);
    // re-attaching the old head restores the old logits
    set_head(&mut m, old).unwrap();
    let back = m.forward(&ids, None).unwrap();
    assert_eq!(
        back.to_vec2::<f32>().unwrap(),
        logits_before.to_vec2::<f32>().unwrap()
    );
    // bad requests are typed
    assert!(matches!(
        replace_head(&mut m, 0, HF_INIT_STD, 0),
        Err(ModelError::InvalidInput {
            what: "num_labels",
            ..
        })
    ));
    let e = set_group_trainable(&mut m, "layer.7", false, Scope::All).unwrap_err();
    assert!(e.to_string().contains("layer.7"), "{e}");
}
