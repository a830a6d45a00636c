//! DARE statistics (its drops cannot match PyTorch's RNG bit for bit), breadcrumbs, task
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
