//! Padding removal (the position-wise layers run on the real tokens only): a padded batch gives
//! each sequence the logits, hidden states and gradients it gets alone, with no padding at all.

use candle_core::{Device, Tensor};
use forge_lora::{trainable_vars, LoraConfig, LoraInjector};
use forge_models::{
    cross_entropy_loss, AnyClassifier, BertConfig, BertForSequenceClassification, DistilBertConfig,
    DistilBertForSequenceClassification, SequenceClassifier,
};

/// Three sequences of lengths 7, 3 and 5 (ids below 60), right-padded with 0 to 7.
fn batch() -> (Vec<Vec<u32>>, Tensor, Tensor) {
    let seqs: Vec<Vec<u32>> = vec![
        vec![2, 11, 45, 7, 19, 33, 3],
        vec![2, 58, 3],
        vec![2, 9, 9, 41, 3],
    ];
    let s = 7;
    let mut ids = Vec::new();
    let mut mask = Vec::new();
    for q in &seqs {
        for j in 0..s {
            ids.push(q.get(j).copied().unwrap_or(0));
            mask.push(u32::from(j < q.len()));
        }
    }
    let dev = Device::Cpu;
    (
        seqs,
        Tensor::from_vec(ids, (3, s), &dev).unwrap(),
        Tensor::from_vec(mask, (3, s), &dev).unwrap(),
    )
}

fn models() -> Vec<(&'static str, AnyClassifier, [&'static str; 2])> {
    let dev = Device::Cpu;
    let d = DistilBertConfig {
        vocab_size: 60,
        dim: 32,
        n_layers: 2,
        n_heads: 4,
        hidden_dim: 48,
        max_position_embeddings: 16,
        ..Default::default()
    };
    let b = BertConfig {
        vocab_size: 60,
        hidden_size: 32,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        intermediate_size: 48,
        max_position_embeddings: 16,
        ..Default::default()
    };
    vec![
        (
            "distilbert",
            AnyClassifier::DistilBert(
                DistilBertForSequenceClassification::new_random(&d, 3, &dev).unwrap(),
            ),
            ["q_lin", "v_lin"],
        ),
        (
            "bert",
            AnyClassifier::Bert(BertForSequenceClassification::new_random(&b, 3, &dev).unwrap()),
            ["query", "value"],
        ),
    ]
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    forge_linalg::ops::max_abs_diff(a, b).unwrap()
}

#[test]
fn a_padded_batch_gives_each_sequence_its_own_logits_states_and_gradients() {
    let (seqs, ids, mask) = batch();
    let labels = Tensor::new(&[1u32, 0, 1], &Device::Cpu).unwrap();
    for (name, mut m, targets) in models() {
        // a LoRA adapter too: its own linear path sees packed tokens as well
        LoraInjector::new(LoraConfig::new(2, 4.0, &targets))
            .unwrap()
            .with_seed(5)
            .inject(&mut m)
            .unwrap();
        // B is zero after injection: give it values so that the adapter matters
        for v in trainable_vars(&mut m) {
            let t = v.as_tensor();
            if t.sum_all().unwrap().to_scalar::<f32>().unwrap() == 0.0 {
                v.set(&Tensor::randn(0f32, 0.1, t.shape(), t.device()).unwrap())
                    .unwrap();
            }
        }
        m.set_training(false);
        let vars = trainable_vars(&mut m);
        let padded = m.forward(&ids, Some(&mask)).unwrap();
        let g_batch = cross_entropy_loss(&padded, &labels)
            .unwrap()
            .affine(3.0, 0.0) // the mean over 3 -> the sum
            .unwrap()
            .backward()
            .unwrap();
        let states = m.encoder().encode(&ids, Some(&mask)).unwrap();
        let mut g_alone: Vec<Option<Tensor>> = vec![None; vars.len()];
        for (i, q) in seqs.iter().enumerate() {
            let one = Tensor::new(q.as_slice(), &Device::Cpu)
                .unwrap()
                .unsqueeze(0)
                .unwrap();
            let alone = m.forward(&one, None).unwrap();
            let d = max_abs_diff(&alone, &padded.narrow(0, i, 1).unwrap());
            assert!(d <= 1e-5, "{name}: logits of sequence {i} differ by {d}");
            let h = m.encoder().encode(&one, None).unwrap();
            let hp = states
                .narrow(0, i, 1)
                .unwrap()
                .narrow(1, 0, q.len())
                .unwrap();
            let d = max_abs_diff(&h, &hp);
            assert!(
                d <= 1e-5,
                "{name}: hidden states of sequence {i} differ by {d}"
            );
            let label = labels.narrow(0, i, 1).unwrap();
            let g = cross_entropy_loss(&alone, &label)
                .unwrap()
                .backward()
                .unwrap();
            for (acc, v) in g_alone.iter_mut().zip(&vars) {
                if let Some(gv) = g.get(v.as_tensor()) {
                    *acc = Some(match acc.take() {
                        None => gv.clone(),
                        Some(a) => (a + gv).unwrap(),
                    });
                }
            }
        }
        // the padded positions' states are zeros, not values of a padded computation
        let pad = states.narrow(0, 1, 1).unwrap().narrow(1, 3, 4).unwrap();
        assert_eq!(
            pad.abs()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap(),
            0.0
        );
        let mut checked = 0;
        for (v, ga) in vars.iter().zip(&g_alone) {
            let gb = g_batch.get(v.as_tensor()).expect("batch gradient");
            let ga = ga.as_ref().expect("gradient alone");
            let scale = 1.0
                + gb.abs()
                    .unwrap()
                    .max_all()
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap();
            let d = max_abs_diff(ga, gb) / scale;
            assert!(d <= 1e-4, "{name}: gradient differs by {d} (relative)");
            checked += 1;
        }
        assert!(checked >= 8, "{name}: only {checked} gradients");
    }
}
