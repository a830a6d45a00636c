//! CKA invariances and estimator bias (Kornblith et al. 2019; Song et al. 2012).

mod common;

use candle_core::Tensor;
use common::{close, gaussian, orthogonal};
use forge_safety::{cka, linear_cka, CkaConfig, CkaEstimator, CkaReport};

fn configs() -> Vec<CkaConfig> {
    vec![
        CkaConfig::linear(CkaEstimator::Biased),
        CkaConfig::linear(CkaEstimator::Unbiased),
        CkaConfig::rbf(0.8, CkaEstimator::Biased),
        CkaConfig::rbf(0.8, CkaEstimator::Unbiased),
    ]
}

#[test]
fn orthogonal_transform_and_isotropic_scaling_give_one() {
    let x = gaussian(80, 12, 1);
    let q = orthogonal(12, 2);
    let rotated = x.matmul(&q).unwrap();
    let scaled = (&x * 7.5).unwrap();
    let both = ((x.matmul(&q).unwrap() * 0.01).unwrap() + 3.0).unwrap();
    for cfg in configs() {
        for (what, y) in [
            ("orthogonal", &rotated),
            ("scaled", &scaled),
            ("both + shift", &both),
        ] {
            let v = cka(&x, y, &cfg).unwrap();
            close(v, 1.0, 1e-6, &format!("{what} {cfg:?}"));
        }
    }
}

#[test]
fn cka_is_symmetric_and_in_unit_interval_when_biased() {
    let x = gaussian(50, 6, 3);
    let y = (x.narrow(1, 0, 3).unwrap() + gaussian(50, 3, 4)).unwrap();
    for cfg in configs() {
        let a = cka(&x, &y, &cfg).unwrap();
        let b = cka(&y, &x, &cfg).unwrap();
        close(a, b, 1e-12, "symmetry");
        if cfg.estimator == CkaEstimator::Biased {
            assert!((0.0..=1.0).contains(&a), "{a}");
        }
    }
}

/// Independent random features at n = 64, d = 32: the unbiased estimator is near 0 while the
/// biased one is near 0.3 (its expectation grows with d / n).
#[test]
fn independent_features_unbiased_near_zero_biased_visibly_larger() {
    let mut unbiased_abs = Vec::new();
    for seed in 0..10u64 {
        let x = gaussian(64, 32, 100 + seed);
        let y = gaussian(64, 32, 200 + seed);
        let u = linear_cka(&x, &y, CkaEstimator::Unbiased).unwrap();
        let b = linear_cka(&x, &y, CkaEstimator::Biased).unwrap();
        assert!(u.abs() < 0.05, "seed {seed}: unbiased {u}");
        assert!(b > 0.2, "seed {seed}: biased {b}");
        assert!(b > u + 0.15, "seed {seed}: biased {b} vs unbiased {u}");
        unbiased_abs.push(u.abs());
    }
    let mean = unbiased_abs.iter().sum::<f64>() / unbiased_abs.len() as f64;
    assert!(mean < 0.03, "mean |unbiased| {mean}");
}

#[test]
fn report_matrix_is_heat_map_ready() {
    let x = gaussian(40, 5, 7);
    let q = orthogonal(5, 8);
    let a = vec![
        ("a0".to_string(), x.clone()),
        ("a1".to_string(), gaussian(40, 4, 9)),
    ];
    let b = vec![
        ("b0".to_string(), x.matmul(&q).unwrap()),
        ("b1".to_string(), gaussian(40, 3, 10)),
        ("b2".to_string(), (&x * 2.0).unwrap()),
    ];
    let r = CkaReport::compute(&a, &b, &CkaConfig::default()).unwrap();
    assert_eq!(r.values.len(), 2);
    assert_eq!(r.values[0].len(), 3);
    close(r.values[0][0], 1.0, 1e-9, "a0 vs rotated a0");
    close(r.values[0][2], 1.0, 1e-9, "a0 vs scaled a0");
    assert!(r.values[1][0].abs() < 0.3);
    let single = linear_cka(&a[1].1, &b[1].1, CkaEstimator::Unbiased).unwrap();
    close(
        r.values[1][1],
        single,
        1e-12,
        "report equals the pairwise value",
    );
    assert_eq!(r.diagonal().len(), 2);
    assert_eq!(r.best_match()[0].0, 0);
    let csv = r.to_csv();
    assert_eq!(csv.lines().count(), 3);
    assert!(csv.starts_with("\"\",\"b0\",\"b1\",\"b2\""));
    let _: Tensor = x;
}
