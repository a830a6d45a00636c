//! The encoder gate ranks an informative source above random, shuffled-label and weak ones and
//! flags them; LogME / LEEP permutation nulls are calibrated.

mod common;

use candle_core::{Device, Tensor};
use common::gaussian;
use forge_linalg::rng::{permutation, seeded_rng};
use forge_safety::{rank_sources, EncoderGateConfig, SourceCandidate, Verdict};

const N: usize = 240;
const D: usize = 24;

fn labels(seed: u64) -> Vec<u32> {
    let p = permutation(N, &mut seeded_rng(seed));
    p.iter().map(|&i| (i % 2) as u32).collect()
}

/// Features whose class means differ by `signal` along random directions.
fn features(y: &[u32], signal: f64, seed: u64) -> Tensor {
    let centers: Vec<Vec<f64>> = gaussian(2, D, seed).to_vec2().unwrap();
    let noise: Vec<Vec<f64>> = gaussian(N, D, seed + 1).to_vec2().unwrap();
    let v: Vec<f64> = y
        .iter()
        .zip(&noise)
        .flat_map(|(&c, r)| {
            r.iter()
                .zip(&centers[c as usize])
                .map(|(e, m)| e + signal * m)
                .collect::<Vec<_>>()
        })
        .collect();
    Tensor::from_vec(v, (N, D), &Device::Cpu).unwrap()
}

/// Softmax probabilities of a 3-class head that predicts class `y` (mapped) with strength `s`.
fn head(y: &[u32], s: f64) -> Tensor {
    let v: Vec<f64> = y
        .iter()
        .flat_map(|&c| {
            let mut l = [0.0f64; 3];
            l[c as usize] = s;
            let z: f64 = l.iter().map(|x| x.exp()).sum();
            l.iter().map(|x| x.exp() / z).collect::<Vec<_>>()
        })
        .collect();
    Tensor::from_vec(v, (N, 3), &Device::Cpu).unwrap()
}

#[test]
fn informative_source_ranks_first_and_harmful_ones_are_flagged() {
    let y = labels(1);
    let shuffled = labels(2);
    let candidates = vec![
        SourceCandidate::new("random-init", gaussian(N, D, 50)),
        SourceCandidate::new("shuffled-labels", features(&shuffled, 1.5, 60))
            .with_source_probs(head(&shuffled, 2.0)),
        SourceCandidate::new("sensible", features(&y, 1.0, 70)).with_source_probs(head(&y, 2.0)),
        SourceCandidate::new("weak", features(&y, 0.25, 80)),
    ];
    let cfg = EncoderGateConfig::default().with_seed(3);
    let r = rank_sources(&candidates, &y, Some(&features(&y, 1.0, 70)), &cfg).unwrap();
    let best = &r.ranking[0];
    assert_eq!(
        best.name,
        "sensible",
        "{:#?}",
        r.ranking
            .iter()
            .map(|a| (&a.name, a.logme.score))
            .collect::<Vec<_>>()
    );
    assert_eq!(best.verdict, Verdict::Transfer, "{:?}", best.reasons);
    assert_eq!(best.rank, 1);
    assert!(best.logme_test.p_value <= 0.01);
    assert!(best.leep_test.as_ref().unwrap().p_value <= 0.01);
    assert!((best.cka_to_reference.unwrap() - 1.0).abs() < 1e-9);
    assert_eq!(r.recommended().unwrap().name, "sensible");
    for name in ["random-init", "shuffled-labels", "weak"] {
        let a = r.get(name).unwrap();
        assert!(a.rank > 1, "{name} ranked {}", a.rank);
        assert_ne!(
            a.verdict,
            Verdict::Transfer,
            "{name} not flagged: {:?}",
            a.reasons
        );
        assert!(!a.reasons.is_empty());
    }
    for name in ["random-init", "shuffled-labels"] {
        let a = r.get(name).unwrap();
        assert_eq!(a.verdict, Verdict::Block, "{name}: {:?}", a.reasons);
        assert!(
            a.logme_test.p_value > 0.05,
            "{name}: p = {}",
            a.logme_test.p_value
        );
        assert!(a.cka_to_reference.unwrap() < 0.5);
    }
    let sh = r.get("shuffled-labels").unwrap();
    assert!(sh.leep_test.as_ref().unwrap().p_value > 0.05);
    assert!(sh
        .checks
        .iter()
        .any(|c| c.name == "leep_p_value" && !c.passed));
    // serialisable
    let json = serde_json::to_string(&r).unwrap();
    assert!(json.contains("\"sensible\""));
}

/// Under the null (features independent of the labels) the LogME permutation p-value is
/// roughly uniform: the gate blocks at about the nominal rate, not more.
#[test]
fn logme_null_test_is_calibrated() {
    let mut rejections = 0;
    let trials = 40;
    for s in 0..trials {
        let y = labels(1000 + s);
        let c = [SourceCandidate::new("noise", gaussian(N, 8, 2000 + s))];
        let cfg = EncoderGateConfig {
            n_permutations: 99,
            ..EncoderGateConfig::default().with_seed(s)
        };
        let r = rank_sources(&c, &y, None, &cfg).unwrap();
        if r.ranking[0].logme_test.p_value <= 0.05 {
            rejections += 1;
        }
    }
    // binomial(40, 0.05): P(X >= 7) < 0.01
    assert!(rejections <= 6, "{rejections} of {trials} rejected");
}

#[test]
fn representation_shift_is_a_caution() {
    let y = labels(5);
    let target = features(&y, 1.0, 90);
    let far_source = (gaussian(150, D, 91) + 2.0).unwrap();
    let c = [SourceCandidate::new("shifted", target.clone()).with_source_features(far_source)];
    let mut cfg = EncoderGateConfig::default().with_seed(1);
    cfg.representation.mmd.n_permutations = 99;
    let r = rank_sources(&c, &y, None, &cfg).unwrap();
    let a = &r.ranking[0];
    assert_eq!(a.verdict, Verdict::TransferWithCaution, "{:?}", a.reasons);
    assert!(a.representation_shift.as_ref().unwrap().mmd.p_value <= 0.05);
}
