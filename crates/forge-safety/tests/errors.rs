//! Bad input gives typed errors, never a panic or a NaN.

use candle_core::{DType, Device, Tensor};
use forge_linalg::rng::{randn, seeded_rng};
use forge_linalg::LinalgError;
use forge_safety::mmd::median_bandwidth;
use forge_safety::*;

fn data(n: usize, d: usize, seed: u64) -> Tensor {
    randn(&[n, d], DType::F64, &Device::Cpu, &mut seeded_rng(seed)).unwrap()
}

fn with_nan(n: usize, d: usize) -> Tensor {
    let mut v: Vec<f64> = data(n, d, 9).flatten_all().unwrap().to_vec1().unwrap();
    v[d + 1] = f64::NAN;
    Tensor::from_vec(v, (n, d), &Device::Cpu).unwrap()
}

#[test]
fn different_feature_counts_are_rejected_everywhere() {
    let (a, b) = (data(20, 3, 1), data(20, 4, 2));
    let is_mismatch = |e: SafetyError| {
        matches!(
            e,
            SafetyError::FeatureMismatch {
                source_features: 3,
                target_features: 4
            }
        )
    };
    assert!(is_mismatch(
        should_transfer(&a, &b, &GateConfig::default()).unwrap_err()
    ));
    assert!(is_mismatch(
        mmd_test(&a, &b, &MmdConfig::default()).unwrap_err()
    ));
    assert!(is_mismatch(mmd2_unbiased(&a, &b, &[1.0]).unwrap_err()));
    assert!(is_mismatch(mmd2_linear(&a, &b, &[1.0], 0).unwrap_err()));
    assert!(is_mismatch(
        ks_per_feature(&a, &b, &KsConfig::default()).unwrap_err()
    ));
    assert!(is_mismatch(
        proxy_a_distance(&a, &b, &PadConfig::default()).unwrap_err()
    ));
    assert!(is_mismatch(median_bandwidth(&a, &b, 100, 0).unwrap_err()));
    let y = Tensor::zeros(20, DType::F64, &Device::Cpu).unwrap();
    let e = validate_linear_transfer(
        &a,
        &y,
        &b,
        &y,
        &LinearTransfer::default(),
        &ValidateConfig::default(),
    );
    assert!(is_mismatch(e.unwrap_err()));
}

#[test]
fn fewer_than_two_samples_are_rejected() {
    let (one, many) = (data(1, 3, 1), data(30, 3, 2));
    for e in [
        should_transfer(&one, &many, &GateConfig::default()).unwrap_err(),
        should_transfer(&many, &one, &GateConfig::default()).unwrap_err(),
        mmd_test(&one, &many, &MmdConfig::default()).unwrap_err(),
        ks_per_feature(&many, &one, &KsConfig::default()).unwrap_err(),
        proxy_a_distance(&one, &many, &PadConfig::default()).unwrap_err(),
    ] {
        assert!(
            matches!(e, SafetyError::TooFewSamples { got: 1, min: 2, .. }),
            "{e}"
        );
    }
    // The linear-time test needs 2 pairs per side.
    let three = data(3, 3, 3);
    assert!(matches!(
        mmd2_linear(&three, &many, &[1.0], 0),
        Err(SafetyError::TooFewSamples { min: 4, .. })
    ));
    // Validation needs 2 rows per fold.
    let y = Tensor::zeros(30, DType::F64, &Device::Cpu).unwrap();
    let small = data(9, 3, 4);
    let ys = Tensor::zeros(9, DType::F64, &Device::Cpu).unwrap();
    let e = validate_linear_transfer(
        &many,
        &y,
        &small,
        &ys,
        &LinearTransfer::default(),
        &ValidateConfig::default(),
    );
    assert!(matches!(
        e,
        Err(SafetyError::TooFewSamples {
            got: 9,
            min: 10,
            ..
        })
    ));
}

#[test]
fn nan_is_rejected_with_its_position() {
    let (bad, good) = (with_nan(20, 3), data(20, 3, 5));
    let check = |e: SafetyError, who: &str| match e {
        SafetyError::Linalg(LinalgError::NonFinite { what, index, .. }) => {
            assert_eq!(what, who);
            assert_eq!(index, 4);
        }
        other => panic!("expected NonFinite, got {other}"),
    };
    check(
        should_transfer(&bad, &good, &GateConfig::default()).unwrap_err(),
        "source",
    );
    check(
        should_transfer(&good, &bad, &GateConfig::default()).unwrap_err(),
        "target",
    );
    check(
        mmd_test(&good, &bad, &MmdConfig::default()).unwrap_err(),
        "target",
    );
    check(
        ks_per_feature(&bad, &good, &KsConfig::default()).unwrap_err(),
        "source",
    );
    check(
        proxy_a_distance(&bad, &good, &PadConfig::default()).unwrap_err(),
        "source",
    );
    assert!(matches!(
        ks_2samp(&[1.0, f64::INFINITY], &[0.0], KsMethod::Auto),
        Err(SafetyError::Linalg(_))
    ));
    let y = Tensor::zeros(20, DType::F64, &Device::Cpu).unwrap();
    let e = validate_linear_transfer(
        &good,
        &y,
        &bad,
        &y,
        &LinearTransfer::default(),
        &ValidateConfig::default(),
    );
    assert!(matches!(
        e,
        Err(SafetyError::Linalg(LinalgError::NonFinite { .. }))
    ));
}

#[test]
fn invalid_configuration_is_rejected() {
    let (a, b) = (data(20, 2, 1), data(20, 2, 2));
    let bad = |cfg: GateConfig| {
        matches!(
            should_transfer(&a, &b, &cfg),
            Err(SafetyError::InvalidArgument { .. })
        )
    };
    assert!(bad(GateConfig {
        alpha: 1.5,
        ..Default::default()
    }));
    assert!(bad(GateConfig {
        pad_block: 2.5,
        ..Default::default()
    }));
    assert!(bad(GateConfig {
        mmd2_block: f64::NAN,
        ..Default::default()
    }));
    let mut g = GateConfig::default();
    g.mmd.n_permutations = 0;
    assert!(bad(g));
    let mut g = GateConfig::default();
    g.mmd.bandwidth = Bandwidth::Fixed(vec![-1.0]);
    assert!(bad(g));
    let mut g = GateConfig::default();
    g.pad.folds = 1;
    assert!(bad(g));
    assert!(matches!(
        mmd2_unbiased(&a, &b, &[]),
        Err(SafetyError::InvalidArgument { .. })
    ));
    let y = Tensor::zeros(20, DType::F64, &Device::Cpu).unwrap();
    let cfg = ValidateConfig {
        repeats: 0,
        ..Default::default()
    };
    let e = validate_linear_transfer(&a, &y, &b, &y, &LinearTransfer::default(), &cfg);
    assert!(matches!(
        e,
        Err(SafetyError::InvalidArgument {
            name: "repeats",
            ..
        })
    ));
}

#[test]
fn failing_learner_is_reported_with_its_role() {
    let (a, b) = (data(30, 2, 1), data(30, 2, 2));
    let y = Tensor::zeros(30, DType::F64, &Device::Cpu).unwrap();
    let ok = |_: &FitData<'_>, x: &Tensor| -> std::result::Result<Tensor, BoxError> {
        Ok(Tensor::zeros(x.dim(0)?, DType::F64, x.device())?)
    };
    let fail = |_: &FitData<'_>, _: &Tensor| -> std::result::Result<Tensor, BoxError> {
        Err("solver exploded".into())
    };
    let e = validate_transfer(&a, &y, &b, &y, &fail, &ok, &ValidateConfig::default()).unwrap_err();
    assert!(
        matches!(
            e,
            SafetyError::Learner {
                role: "transfer",
                fold: 0,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("solver exploded"));
}
