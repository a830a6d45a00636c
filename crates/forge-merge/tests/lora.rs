//! LoRA soups (combining per-module B A, never A and B separately, optional SVD
//! re-compression) and LoRA-Flow's gate trained over a generic forward closure.

use candle_core::{DType, Device, Tensor, D};
use forge_linalg::io::{write_atomic, write_safetensors};
use forge_merge::lora::Adapter;
use forge_merge::{merge_lora_adapters, train_gate, GateTrainConfig, LoraFlowGate, MergeError};
use std::path::Path;

const MODULES: [&str; 2] = [
    "distilbert.transformer.layer.0.attention.q_lin",
    "distilbert.transformer.layer.0.attention.v_lin",
];

/// Write a random PEFT adapter (rank r, alpha, in = out = 12) with a classifier in
/// modules_to_save.
fn write_adapter(dir: &Path, r: usize, alpha: f64, seed: u64, head_rows: usize) {
    let dev = Device::Cpu;
    let _ = seed;
    let mut ts = Vec::new();
    for m in MODULES {
        let a = Tensor::randn(0f32, 1.0, (r, 12), &dev).unwrap();
        let b = Tensor::randn(0f32, 1.0, (12, r), &dev).unwrap();
        ts.push((format!("base_model.model.{m}.lora_A.weight"), a));
        ts.push((format!("base_model.model.{m}.lora_B.weight"), b));
    }
    ts.push((
        "base_model.model.classifier.weight".to_string(),
        Tensor::randn(0f32, 1.0, (head_rows, 12), &dev).unwrap(),
    ));
    write_safetensors(&dir.join("adapter_model.safetensors"), &ts, None).unwrap();
    let cfg = serde_json::json!({
        "peft_type": "LORA", "r": r, "lora_alpha": alpha, "lora_dropout": 0.0,
        "target_modules": ["q_lin", "v_lin"], "bias": "none",
        "modules_to_save": ["classifier"], "task_type": "SEQ_CLS",
        "base_model_name_or_path": "distilbert-base-uncased"
    });
    write_atomic(
        &dir.join("adapter_config.json"),
        serde_json::to_string_pretty(&cfg).unwrap().as_bytes(),
    )
    .unwrap();
}

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

#[test]
fn lora_soup_combines_updates_exactly_and_not_factors() {
    let root = tempfile::tempdir().unwrap();
    let (d1, d2, out) = (
        root.path().join("a1"),
        root.path().join("a2"),
        root.path().join("soup"),
    );
    write_adapter(&d1, 4, 8.0, 1, 2);
    write_adapter(&d2, 2, 4.0, 2, 2);
    let w = [0.7, 0.3];
    let rep = merge_lora_adapters(&[&d1, &d2], &w, None, &out).unwrap();
    assert_eq!(rep.rank, 6);
    let (a1, a2, s) = (
        Adapter::read(&d1).unwrap(),
        Adapter::read(&d2).unwrap(),
        Adapter::read(&out).unwrap(),
    );
    // The written config is valid PEFT/forge-lora and has scaling 1.
    assert_eq!(s.config.r, 6);
    assert!((s.config.scaling() - 1.0).abs() < 1e-12);
    for m in MODULES {
        let want = ((a1.delta(m).unwrap().unwrap() * w[0]).unwrap()
            + (a2.delta(m).unwrap().unwrap() * w[1]).unwrap())
        .unwrap();
        let got = s.delta(m).unwrap().unwrap();
        assert!(max_abs(&want, &got) < 1e-4, "{m}");
        // Averaging A and B separately (with equal ranks) is the cross-term mistake: it gives
        // a different update.
        let (ea, eb) = &a1.modules[m];
        let naive = (eb * w[0]).unwrap().matmul(&(ea * w[0]).unwrap()).unwrap();
        assert!(max_abs(&want, &naive) > 1e-2);
    }
    // modules_to_save: the weighted average.
    let head = (&(a1.full["classifier.weight"].clone() * w[0]).unwrap()
        + (a2.full["classifier.weight"].clone() * w[1]).unwrap())
    .unwrap();
    assert!(max_abs(&head, &s.full["classifier.weight"]) < 1e-6);
}

#[test]
fn lora_soup_svd_recompression_is_the_best_rank_k() {
    let root = tempfile::tempdir().unwrap();
    let (d1, d2, out) = (
        root.path().join("a1"),
        root.path().join("a2"),
        root.path().join("soup3"),
    );
    write_adapter(&d1, 4, 8.0, 1, 2);
    write_adapter(&d2, 4, 8.0, 2, 2);
    let rep = merge_lora_adapters(&[&d1, &d2], &[0.5, 0.5], Some(3), &out).unwrap();
    assert_eq!(rep.rank, 3);
    let (a1, a2, s) = (
        Adapter::read(&d1).unwrap(),
        Adapter::read(&d2).unwrap(),
        Adapter::read(&out).unwrap(),
    );
    for m in MODULES {
        let full = ((a1.delta(m).unwrap().unwrap() * 0.5).unwrap()
            + (a2.delta(m).unwrap().unwrap() * 0.5).unwrap())
        .unwrap();
        let approx = s.delta(m).unwrap().unwrap();
        // Eckart-Young: the Frobenius error is sqrt(sum of the dropped squared singular values).
        let (_, sv, _) = forge_linalg::dense::svd(&full.to_dtype(DType::F64).unwrap()).unwrap();
        let sv: Vec<f64> = sv.to_vec1().unwrap();
        let best: f64 = sv[3..].iter().map(|x| x * x).sum::<f64>().sqrt();
        let err = (&full - &approx)
            .unwrap()
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
            .sqrt() as f64;
        assert!(
            (err - best).abs() < 1e-3 * (1.0 + best),
            "{m}: {err} vs {best}"
        );
    }
    // Full rank (the sum of ranks) reproduces the exact soup.
    let exact = root.path().join("soup8");
    let rep = merge_lora_adapters(&[&d1, &d2], &[0.5, 0.5], Some(8), &exact).unwrap();
    assert!(rep.compression_error.iter().all(|(_, e)| *e < 1e-5));
}

#[test]
fn lora_soup_bad_input_is_typed_and_writes_nothing() {
    let root = tempfile::tempdir().unwrap();
    let (d1, d2, out) = (
        root.path().join("a1"),
        root.path().join("a2"),
        root.path().join("out"),
    );
    write_adapter(&d1, 4, 8.0, 1, 2);
    write_adapter(&d2, 4, 8.0, 2, 4); // a 4-class head
    let e = merge_lora_adapters(&[&d1, &d2], &[0.5, 0.5], None, &out).unwrap_err();
    assert!(matches!(e, MergeError::Adapter { .. }), "{e}");
    assert!(e.to_string().contains("classifier.weight"), "{e}");
    let e = merge_lora_adapters(&[&d1, &d1], &[0.5, 0.5], Some(13), &out).unwrap_err();
    assert!(matches!(e, MergeError::OutOfRange { .. }), "{e}");
    let e = merge_lora_adapters(&[&d1], &[0.5, 0.5], None, &out).unwrap_err();
    assert!(matches!(e, MergeError::WrongInputs { .. }), "{e}");
    // A truncated weights file.
    let bytes = std::fs::read(d1.join("adapter_model.safetensors")).unwrap();
    std::fs::write(
        d1.join("adapter_model.safetensors"),
        &bytes[..bytes.len() - 10],
    )
    .unwrap();
    let e = merge_lora_adapters(&[&d1, &d2], &[0.5, 0.5], None, &out).unwrap_err();
    assert!(e.to_string().contains("truncated"), "{e}");
    assert!(!out.exists());
}

/// A 2-layer toy "model": x_{l+1} = x_l + sum_i w_i(x_l) * (x_l A_i^T B_i^T), frozen adapters.
struct Toy {
    adapters: Vec<(Tensor, Tensor)>, // per adapter (A [r, h], B [h, r]), shared across layers
}

impl Toy {
    fn forward(
        &self,
        gate: Option<&LoraFlowGate>,
        fixed: Option<&[Vec<f32>]>,
        x: &Tensor,
    ) -> Tensor {
        let mut h = x.clone();
        for layer in 0..2 {
            let deltas: Vec<Tensor> = self
                .adapters
                .iter()
                .map(|(a, b)| {
                    h.matmul(&a.t().unwrap())
                        .unwrap()
                        .matmul(&b.t().unwrap())
                        .unwrap()
                })
                .collect();
            let mixed = match (gate, fixed) {
                (Some(g), _) => g.fuse(layer, &h, &deltas).unwrap(),
                (None, Some(w)) => {
                    let mut acc = (&deltas[0] * f64::from(w[layer][0])).unwrap();
                    for (i, d) in deltas.iter().enumerate().skip(1) {
                        acc = (acc + (d * f64::from(w[layer][i])).unwrap()).unwrap();
                    }
                    acc
                }
                _ => unreachable!(),
            };
            h = (h + mixed).unwrap();
        }
        h
    }
}

#[test]
fn lora_flow_gate_learns_which_adapter_each_layer_needs() {
    let dev = Device::Cpu;
    let hdim = 8;
    let toy = Toy {
        adapters: (0..2)
            .map(|_| {
                (
                    (Tensor::randn(0f32, 1.0, (2, hdim), &dev).unwrap() * 0.5).unwrap(),
                    (Tensor::randn(0f32, 1.0, (hdim, 2), &dev).unwrap() * 0.5).unwrap(),
                )
            })
            .collect(),
    };
    // Target task: adapter 0 in layer 0, adapter 1 in layer 1.
    let teacher = vec![vec![1.0f32, 0.0], vec![0.0, 1.0]];
    let batches: Vec<(Tensor, Tensor)> = (0..4)
        .map(|_| {
            let x = Tensor::randn(0f32, 1.0, (8, hdim), &dev).unwrap();
            let y = toy.forward(None, Some(&teacher), &x);
            (x, y)
        })
        .collect();
    let mse =
        |p: &Tensor, y: &Tensor| -> Tensor { (p - y).unwrap().sqr().unwrap().mean_all().unwrap() };
    let eval = |fixed: &[Vec<f32>]| -> f32 {
        batches
            .iter()
            .map(|(x, y)| {
                mse(&toy.forward(None, Some(fixed), x), y)
                    .to_scalar::<f32>()
                    .unwrap()
            })
            .sum::<f32>()
            / batches.len() as f32
    };
    let only0 = eval(&[vec![1.0, 0.0], vec![1.0, 0.0]]);
    let only1 = eval(&[vec![0.0, 1.0], vec![0.0, 1.0]]);
    let soup = eval(&[vec![0.5, 0.5], vec![0.5, 0.5]]);

    let gate = LoraFlowGate::new(2, 2, hdim, &dev).unwrap();
    let adapters_before: Vec<Vec<f32>> = toy
        .adapters
        .iter()
        .map(|(a, _)| a.flatten_all().unwrap().to_vec1().unwrap())
        .collect();
    let cfg = GateTrainConfig {
        lr: 0.05,
        epochs: 150,
        weight_decay: 0.0,
    };
    // At zero init the gate is the equal-weight soup.
    let init: f32 = batches
        .iter()
        .map(|(x, y)| {
            mse(&toy.forward(Some(&gate), None, x), y)
                .to_scalar::<f32>()
                .unwrap()
        })
        .sum::<f32>()
        / batches.len() as f32;
    assert!(
        (init - soup).abs() < 1e-5 * (1.0 + soup),
        "{init} vs {soup}"
    );
    let hist = train_gate(&gate, &batches, &cfg, |g, (x, y)| {
        Ok(mse(&toy.forward(Some(g), None, x), y))
    })
    .unwrap();
    let last = *hist.last().unwrap() as f32;
    assert!(last < 0.2 * init, "loss {init} -> {last}");
    assert!(
        last < only0.min(only1),
        "gate {last} vs single adapters {only0}, {only1}"
    );
    // The learned weights pick adapter 0 in layer 0 and adapter 1 in layer 1.
    let x = &batches[0].0;
    let w0 = gate
        .weights(0, x)
        .unwrap()
        .mean(0)
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let w1 = gate
        .weights(1, x)
        .unwrap()
        .mean(0)
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    assert!(w0[0] > 0.8 && w1[1] > 0.8, "{w0:?} {w1:?}");
    let s = gate
        .weights(0, x)
        .unwrap()
        .sum(D::Minus1)
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    assert!(s.iter().all(|v| (v - 1.0).abs() < 1e-5));
    // Frozen adapters are untouched.
    for ((a, _), before) in toy.adapters.iter().zip(adapters_before) {
        assert_eq!(a.flatten_all().unwrap().to_vec1::<f32>().unwrap(), before);
    }
    // Bad input.
    assert!(gate.weights(2, x).is_err());
    assert!(gate.fuse(0, x, std::slice::from_ref(x)).is_err());
    assert!(LoraFlowGate::new(0, 2, 4, &dev).is_err());
}
