//! Per-layer representations: every hidden state, the last equal to `forward()`, CLS and mean
//! pooling, batching with progress, typed errors.

use candle_core::{Device, Tensor};
use forge_models::representations::{
    extract_representations, HiddenStates, LayerSelection, Pooling,
};
use forge_models::{
    mean_pool, AnyEncoder, BertConfig, BertModel, DistilBertConfig, DistilBertModel, Encoded,
    ModelError, ModelFiles,
};
use std::path::PathBuf;

fn max_abs(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

fn batch(rows: &[&[u32]]) -> Encoded {
    let s = rows.iter().map(|r| r.len()).max().unwrap();
    let mut ids = Vec::new();
    let mut mask = Vec::new();
    for r in rows {
        for j in 0..s {
            ids.push(*r.get(j).unwrap_or(&0));
            mask.push(u32::from(j < r.len()));
        }
    }
    Encoded {
        input_ids: Tensor::from_vec(ids, (rows.len(), s), &Device::Cpu).unwrap(),
        attention_mask: Tensor::from_vec(mask, (rows.len(), s), &Device::Cpu).unwrap(),
    }
}

fn bert() -> BertModel {
    let cfg = BertConfig {
        vocab_size: 50,
        hidden_size: 16,
        num_hidden_layers: 3,
        num_attention_heads: 4,
        intermediate_size: 32,
        ..Default::default()
    };
    BertModel::new_random(&cfg, 1, &Device::Cpu).unwrap()
}

fn distilbert() -> DistilBertModel {
    let cfg = DistilBertConfig {
        vocab_size: 50,
        dim: 16,
        n_layers: 2,
        n_heads: 4,
        hidden_dim: 32,
        ..Default::default()
    };
    DistilBertModel::new_random(&cfg, 2, &Device::Cpu).unwrap()
}

#[test]
fn last_hidden_state_equals_forward() {
    let b = batch(&[&[1, 5, 7, 2], &[1, 9, 2]]);
    let m = bert();
    let hs = m
        .hidden_states(&b.input_ids, Some(&b.attention_mask))
        .unwrap();
    assert_eq!(hs.len(), 4);
    let f = m.forward(&b.input_ids, Some(&b.attention_mask)).unwrap();
    assert_eq!(max_abs(&hs[3], &f), 0.0);
    assert!(max_abs(&hs[0], &hs[1]) > 1e-3, "layers must differ");
    let m = distilbert();
    let hs = m
        .hidden_states(&b.input_ids, Some(&b.attention_mask))
        .unwrap();
    assert_eq!(hs.len(), 3);
    let f = m.forward(&b.input_ids, Some(&b.attention_mask)).unwrap();
    assert_eq!(max_abs(&hs[2], &f), 0.0);
}

#[test]
fn batched_extraction_pools_and_reports_progress() {
    let m = bert();
    let rows: [&[u32]; 5] = [
        &[1, 5, 7, 2],
        &[1, 9, 2],
        &[1, 3, 3, 3, 2],
        &[1, 2],
        &[1, 8, 2],
    ];
    let batches = vec![batch(&rows[..2]), batch(&rows[2..4]), batch(&rows[4..])];
    let mut seen = Vec::new();
    let r = extract_representations(&m, &batches, &LayerSelection::All, Pooling::Mean, |p| {
        seen.push((p.batches_done, p.batches_total, p.examples_done))
    })
    .unwrap();
    assert_eq!(seen, vec![(1, 3, 2), (2, 3, 4), (3, 3, 5)]);
    assert_eq!(r.layers, vec![0, 1, 2, 3]);
    assert_eq!(r.features.len(), 4);
    assert_eq!(r.features[3].dims(), &[5, 16]);
    // the same as one sentence at a time (padding does not leak into the mean)
    let single = batch(&rows[2..3]);
    let h = m
        .forward(&single.input_ids, Some(&single.attention_mask))
        .unwrap();
    let want = mean_pool(&h, &single.attention_mask).unwrap();
    let got = r.features[3].narrow(0, 2, 1).unwrap();
    assert!(max_abs(&got, &want) < 1e-5);
    // CLS pooling of selected layers, in the requested order
    let r = extract_representations(
        &m,
        &batches,
        &LayerSelection::Indices(vec![2, 0]),
        Pooling::Cls,
        |_| {},
    )
    .unwrap();
    assert_eq!(r.layers, vec![2, 0]);
    let hs = m
        .hidden_states(&batches[0].input_ids, Some(&batches[0].attention_mask))
        .unwrap();
    let cls = hs[2].narrow(1, 0, 1).unwrap().squeeze(1).unwrap();
    assert!(max_abs(&r.features[0].narrow(0, 0, 2).unwrap(), &cls) < 1e-6);
    assert_eq!(r.named()[1].0, "embeddings");
    assert!(r.layer(2).is_some() && r.layer(1).is_none());
}

#[test]
fn bad_requests_are_typed_errors() {
    let m = distilbert();
    let b = vec![batch(&[&[1, 2]])];
    let e = extract_representations(
        &m,
        &b,
        &LayerSelection::Indices(vec![3]),
        Pooling::Mean,
        |_| {},
    )
    .unwrap_err();
    assert!(
        matches!(e, ModelError::InvalidInput { what: "layers", .. }),
        "{e}"
    );
    assert!(e.to_string().contains('3'));
    let e =
        extract_representations(&m, &[], &LayerSelection::Last, Pooling::Mean, |_| {}).unwrap_err();
    assert!(
        matches!(
            e,
            ModelError::InvalidInput {
                what: "batches",
                ..
            }
        ),
        "{e}"
    );
}

/// Every layer, both poolings, equals Hugging Face's `output_hidden_states=True`
/// (tests/fixtures/make_hidden_states.py).
#[test]
fn every_layer_matches_hugging_face() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let fx: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("hidden-states.json")).unwrap())
            .unwrap();
    let ids: Vec<Vec<u32>> = serde_json::from_value(fx["input_ids"].clone()).unwrap();
    let mask: Vec<Vec<u32>> = serde_json::from_value(fx["attention_mask"].clone()).unwrap();
    let b = Encoded {
        input_ids: Tensor::new(ids, &Device::Cpu).unwrap(),
        attention_mask: Tensor::new(mask, &Device::Cpu).unwrap(),
    };
    for name in ["tiny-bert", "tiny-distilbert"] {
        let files = ModelFiles::from_dir(&dir.join(name)).unwrap();
        let enc = AnyEncoder::from_files(&files, &Device::Cpu).unwrap();
        for (pooling, key) in [(Pooling::Cls, "cls"), (Pooling::Mean, "mean")] {
            let want: Vec<Vec<Vec<f32>>> = serde_json::from_value(fx[name][key].clone()).unwrap();
            let r = extract_representations(
                &enc,
                std::slice::from_ref(&b),
                &LayerSelection::All,
                pooling,
                |_| {},
            )
            .unwrap();
            assert_eq!(r.features.len(), want.len(), "{name}");
            for (l, w) in want.iter().enumerate() {
                let w = Tensor::new(w.clone(), &Device::Cpu).unwrap();
                let d = max_abs(&r.features[l], &w);
                assert!(d < 1e-5, "{name} {key} layer {l}: max abs diff {d}");
            }
        }
    }
}
