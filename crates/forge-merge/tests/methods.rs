//! DARE and DELLA statistics (their drops cannot match PyTorch's RNG bit for bit), breadcrumbs, task
//! vectors and their similarity, and the tensor-level functions against closed forms.

use candle_core::{Device, Tensor};
use forge_merge::{ops, task_vector, task_vector_similarity, MergeError};

fn filled(n: usize, v: f32) -> Tensor {
    Tensor::full(v, n, &Device::Cpu).unwrap()
}

fn values(t: &Tensor) -> Vec<f32> {
    t.to_vec1::<f32>().unwrap()
}

#[test]
fn dare_keeps_1_minus_p_and_rescales_to_preserve_the_mean() {
    let n = 200_000;
    let base = filled(n, 0.25);
    let c = 0.01f32;
    let ft = filled(n, 0.25 + c);
    for p in [0.1, 0.5, 0.9] {
        let out = values(&ops::dare(&base, &[&ft], &[1.0], p, 42, false).unwrap());
        let deltas: Vec<f32> = out.iter().map(|x| x - 0.25).collect();
        let kept = deltas.iter().filter(|d| d.abs() > 1e-6).count() as f64 / n as f64;
        // Binomial: 5 standard deviations.
        let sd = (p * (1.0 - p) / n as f64).sqrt();
        assert!((kept - (1.0 - p)).abs() < 5.0 * sd, "p={p}: kept {kept}");
        // Survivors are rescaled by 1/(1-p); the mean delta is preserved in expectation.
        let delta = (0.25f32 + c) - 0.25f32;
        let rescaled = delta / (1.0 - p) as f32;
        assert!(deltas
            .iter()
            .filter(|d| d.abs() > 1e-6)
            .all(|d| (d - rescaled).abs() < 1e-6));
        let mean = deltas.iter().map(|&d| f64::from(d)).sum::<f64>() / n as f64;
        let sd_mean = f64::from(rescaled) * sd;
        assert!(
            (mean - f64::from(delta)).abs() < 5.0 * sd_mean,
            "p={p}: mean {mean} vs {delta}"
        );
    }
}

#[test]
fn dare_is_seeded() {
    let n = 10_000;
    let base = filled(n, 0.0);
    let ft = Tensor::randn(0f32, 1.0, n, &Device::Cpu).unwrap();
    let a = values(&ops::dare(&base, &[&ft], &[1.0], 0.5, 7, true).unwrap());
    let b = values(&ops::dare(&base, &[&ft], &[1.0], 0.5, 7, true).unwrap());
    let c = values(&ops::dare(&base, &[&ft], &[1.0], 0.5, 8, true).unwrap());
    assert_eq!(a, b);
    assert_ne!(a, c);
    // p = 0 is the identity on the task vector.
    let d = values(&ops::dare(&base, &[&ft], &[1.0], 0.0, 7, false).unwrap());
    assert_eq!(d, values(&ft));
}

#[test]
fn dare_rejects_drop_rates_outside_0_1() {
    let base = filled(4, 0.0);
    let ft = filled(4, 1.0);
    for p in [1.0, 1.5, -0.1, f64::NAN] {
        match ops::dare(&base, &[&ft], &[1.0], p, 0, true) {
            Err(e @ MergeError::OutOfRange { .. }) => {
                assert!(e.to_string().contains("drop rate"), "{e}")
            }
            other => panic!("p={p}: {other:?}"),
        }
    }
}

#[test]
fn della_keeps_large_magnitudes_more_often_and_rescales_to_preserve_the_mean() {
    // 100 rows of 2,000 entries whose magnitudes rise along each row: MAGPRUNE keeps the
    // smallest of a row with probability density - epsilon and the largest with density +
    // epsilon, and survivors divided by their probability leave the expected delta unchanged.
    let (rows, cols) = (100usize, 2000usize);
    let (density, eps) = (0.5, 0.3);
    let delta: Vec<f32> = (0..rows * cols)
        .map(|i| 0.001 * (1 + i % cols) as f32 * if i % 3 == 0 { -1.0 } else { 1.0 })
        .collect();
    let base = Tensor::zeros((rows, cols), candle_core::DType::F32, &Device::Cpu).unwrap();
    let ft = Tensor::from_vec(delta.clone(), (rows, cols), &Device::Cpu).unwrap();
    let out = ops::della(&base, &[&ft], &[1.0], density, eps, 3, false).unwrap();
    let out: Vec<f32> = out.flatten_all().unwrap().to_vec1().unwrap();
    let kept_in = |lo: usize, hi: usize| {
        let (mut k, mut n) = (0usize, 0usize);
        for r in 0..rows {
            for c in lo..hi {
                n += 1;
                k += usize::from(out[r * cols + c] != 0.0);
            }
        }
        k as f64 / n as f64
    };
    // Ranks 0..199 keep with p in [0.2, 0.26]; ranks 1800..1999 with p in [0.74, 0.8].
    let (low, high) = (kept_in(0, 200), kept_in(1800, 2000));
    assert!((low - 0.23).abs() < 0.02, "smallest tenth kept {low}");
    assert!((high - 0.77).abs() < 0.02, "largest tenth kept {high}");
    let overall = kept_in(0, cols);
    let sd = (0.25f64 / (rows * cols) as f64).sqrt();
    assert!(
        (overall - density).abs() < 6.0 * sd + 1e-3,
        "kept {overall}"
    );
    // Each survivor is its delta over its probability.
    for c in [0usize, 999, 1999] {
        let p = density - eps + 2.0 * eps * c as f64 / (cols - 1) as f64;
        for r in 0..rows {
            let (o, d) = (out[r * cols + c], delta[r * cols + c]);
            if o != 0.0 {
                assert!(
                    (f64::from(o) - f64::from(d) / p).abs() < 1e-5 * f64::from(d.abs()) / p + 1e-9
                );
            }
        }
    }
    let sum_in: f64 = delta.iter().map(|&d| f64::from(d)).sum();
    let sum_out: f64 = out.iter().map(|&d| f64::from(d)).sum();
    assert!(
        (sum_out - sum_in).abs() < 0.02 * delta.iter().map(|d| f64::from(d.abs())).sum::<f64>(),
        "{sum_out} vs {sum_in}"
    );
    // Seeded; TIES' sign election on top with one model changes nothing.
    let again = ops::della(&base, &[&ft], &[1.0], density, eps, 3, false).unwrap();
    let again: Vec<f32> = again.flatten_all().unwrap().to_vec1().unwrap();
    assert_eq!(again, out);
    let other = ops::della(&base, &[&ft], &[1.0], density, eps, 4, false).unwrap();
    assert_ne!(other.flatten_all().unwrap().to_vec1::<f32>().unwrap(), out);
    let ties = ops::della(&base, &[&ft], &[1.0], density, eps, 3, true).unwrap();
    assert_eq!(ties.flatten_all().unwrap().to_vec1::<f32>().unwrap(), out);
}

#[test]
fn della_rejects_epsilon_outside_the_density_range() {
    let base = filled(8, 0.0);
    let ft = filled(8, 1.0);
    for (d, e) in [(0.5, 0.6), (0.8, 0.3), (0.5, -0.1), (0.5, f64::NAN)] {
        match ops::della(&base, &[&ft], &[1.0], d, e, 0, true) {
            Err(e @ MergeError::OutOfRange { .. }) => {
                assert!(e.to_string().contains("epsilon"), "{e}")
            }
            other => panic!("density {d} epsilon {e}: {other:?}"),
        }
    }
    // The YAML names and the epsilon parameter are read.
    let cfg = forge_merge::MergeConfig::from_yaml(
        "merge_method: della\nbase_model: b\nmodels:\n  - model: a\n    parameters: {weight: 1.0, density: 0.5, epsilon: 0.2}\n",
    )
    .unwrap();
    assert_eq!(cfg.merge_method, forge_merge::MergeMethod::Della);
    let p = cfg.tensor_params("x.weight", 0.0).unwrap();
    assert_eq!((p.densities[0], p.epsilons[0], p.rescale), (0.5, 0.2, true));
    // density + epsilon > 1 is refused when the tensor's parameters are resolved (before any
    // output is written).
    let bad = forge_merge::MergeConfig::from_yaml(
        "merge_method: della_linear\nbase_model: b\nmodels:\n  - model: a\n    parameters: {weight: 1.0, density: 0.5, epsilon: 0.7}\n",
    )
    .unwrap();
    let e = bad.tensor_params("x.weight", 0.0).unwrap_err();
    assert!(e.to_string().contains("epsilon"), "{e}");
}

#[test]
fn ties_trims_to_density_and_elects_signs() {
    // One model: TIES keeps exactly the top-k magnitudes of its task vector.
    let base = Tensor::zeros(10, candle_core::DType::F32, &Device::Cpu).unwrap();
    let ft = Tensor::new(
        &[0.1f32, -0.9, 0.3, 0.05, -0.4, 0.8, -0.2, 0.6, 0.0, 0.7],
        &Device::Cpu,
    )
    .unwrap();
    let out = values(&ops::ties(&base, &[&ft], &[1.0], &[0.4]).unwrap());
    assert_eq!(out, vec![0.0, -0.9, 0.0, 0.0, 0.0, 0.8, 0.0, 0.6, 0.0, 0.7]);
    assert!(matches!(
        ops::ties(&base, &[&ft], &[1.0], &[0.0]),
        Err(MergeError::OutOfRange { .. })
    ));
}

#[test]
fn linear_task_arithmetic_and_slerp_closed_forms() {
    let dev = Device::Cpu;
    let a = Tensor::new(&[1.0f32, 2.0], &dev).unwrap();
    let b = Tensor::new(&[3.0f32, 6.0], &dev).unwrap();
    assert_eq!(
        values(&ops::linear(&[&a, &b], &[1.0, 3.0], true).unwrap()),
        vec![2.5, 5.0]
    );
    assert_eq!(
        values(&ops::linear(&[&a, &b], &[1.0, 1.0], false).unwrap()),
        vec![4.0, 8.0]
    );
    let base = Tensor::new(&[1.0f32, 1.0], &dev).unwrap();
    assert_eq!(
        values(&ops::task_arithmetic(&base, &[&a, &b], &[1.0, 0.5], 2.0).unwrap()),
        vec![1.0 + 2.0 * (0.0 + 1.0), 1.0 + 2.0 * (1.0 + 2.5)]
    );
    // Orthogonal unit vectors: slerp(t) = (cos(t pi/2), sin(t pi/2)).
    let x = Tensor::new(&[1.0f32, 0.0], &dev).unwrap();
    let y = Tensor::new(&[0.0f32, 1.0], &dev).unwrap();
    let s = values(&ops::slerp(0.3, &x, &y).unwrap());
    let th = 0.3 * std::f32::consts::FRAC_PI_2;
    assert!((s[0] - th.cos()).abs() < 1e-6 && (s[1] - th.sin()).abs() < 1e-6);
    assert!(ops::slerp(1.5, &x, &y).is_err());
    let short = Tensor::new(&[1.0f32], &dev).unwrap();
    assert!(matches!(
        ops::linear(&[&a, &short], &[1.0, 1.0], true),
        Err(MergeError::ShapeMismatch { .. })
    ));
}

#[test]
fn task_vector_similarity_overall_and_per_layer() {
    let dev = Device::Cpu;
    let t = |v: &[f32]| Tensor::new(v, &dev).unwrap();
    let base = vec![
        ("m.layer.0.w".to_string(), t(&[0.0, 0.0])),
        ("m.layer.1.w".to_string(), t(&[1.0, 1.0])),
        ("head.w".to_string(), t(&[0.0, 0.0])),
    ];
    let fa = vec![
        ("m.layer.0.w".to_string(), t(&[1.0, 0.0])),
        ("m.layer.1.w".to_string(), t(&[2.0, 1.0])),
        ("head.w".to_string(), t(&[1.0, 1.0])),
    ];
    let fb = vec![
        ("m.layer.0.w".to_string(), t(&[2.0, 0.0])), // same direction: cos 1
        ("m.layer.1.w".to_string(), t(&[0.0, 1.0])), // opposite: cos -1
        (
            "head.w".to_string(),
            t(&[1.0, 1.0, 1.0, 1.0]).reshape(4).unwrap(),
        ), // other shape
    ];
    let (ta, left_a) = task_vector(&base, &fa).unwrap();
    let (tb, left_b) = task_vector(&base, &fb).unwrap();
    assert!(left_a.is_empty());
    assert_eq!(left_b, vec!["head.w".to_string()]);
    let s = task_vector_similarity(&ta, &tb).unwrap();
    let layer = |k: &str| s.per_layer.iter().find(|(n, _)| n == k).unwrap().1;
    assert!((layer("layer 0") - 1.0).abs() < 1e-12);
    assert!((layer("layer 1") + 1.0).abs() < 1e-12);
    // Overall: dot = 2 - 1 = 1; |a| = sqrt(2), |b| = sqrt(5) over the shared tensors.
    assert!((s.overall - 1.0 / (2f64.sqrt() * 5f64.sqrt())).abs() < 1e-12);
    assert_eq!(s.skipped, vec!["head.w".to_string()]);
}
