//! Bad input to the encoder-safety functions gives typed errors naming the bad value.

mod common;

use candle_core::{Device, Tensor};
use common::gaussian;
use forge_linalg::LinalgError;
use forge_safety::{
    leep, linear_cka, logme_classification, logme_regression, parameter_drift, rank_sources,
    rbf_cka, representation_mmd, CkaEstimator, EncoderGateConfig, MonitorConfig,
    NegativeTransferMonitor, RepresentationMmdConfig, SafetyError, SourceCandidate,
};

fn with_nan(n: usize, d: usize) -> Tensor {
    let mut v: Vec<f64> = gaussian(n, d, 1).flatten_all().unwrap().to_vec1().unwrap();
    v[d + 1] = f64::NAN;
    Tensor::from_vec(v, (n, d), &Device::Cpu).unwrap()
}

#[test]
fn mismatched_rows() {
    let (x, y) = (gaussian(10, 3, 1), gaussian(11, 3, 2));
    for est in [CkaEstimator::Biased, CkaEstimator::Unbiased] {
        let e = linear_cka(&x, &y, est).unwrap_err();
        assert!(
            matches!(
                e,
                SafetyError::RowMismatch {
                    rows_a: 10,
                    rows_b: 11,
                    ..
                }
            ),
            "{e}"
        );
    }
    let e = rbf_cka(&x, &y, 1.0, CkaEstimator::Biased).unwrap_err();
    assert!(matches!(e, SafetyError::RowMismatch { .. }), "{e}");
    let e = logme_classification(&x, &[0, 1, 0]).unwrap_err();
    assert!(
        matches!(
            e,
            SafetyError::RowMismatch {
                rows_a: 10,
                rows_b: 3,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("10") && e.to_string().contains('3'));
    let e = logme_regression(&x, &gaussian(9, 1, 3)).unwrap_err();
    assert!(matches!(e, SafetyError::RowMismatch { .. }), "{e}");
    let probs = Tensor::from_vec(vec![0.5f64; 8], (4, 2), &Device::Cpu).unwrap();
    let e = leep(&probs, &[0, 1, 0]).unwrap_err();
    assert!(matches!(e, SafetyError::RowMismatch { .. }), "{e}");
    let c = [SourceCandidate::new("a", x.clone())];
    let e = rank_sources(&c, &[0, 1, 0, 1], None, &EncoderGateConfig::default()).unwrap_err();
    assert!(matches!(e, SafetyError::RowMismatch { .. }), "{e}");
}

#[test]
fn fewer_than_two_classes() {
    let x = gaussian(10, 3, 1);
    let e = logme_classification(&x, &[1; 10]).unwrap_err();
    assert!(
        matches!(e, SafetyError::TooFewClasses { got: 1, .. }),
        "{e}"
    );
    let probs = Tensor::from_vec(vec![0.5f64; 20], (10, 2), &Device::Cpu).unwrap();
    let e = leep(&probs, &[0; 10]).unwrap_err();
    assert!(matches!(e, SafetyError::TooFewClasses { .. }), "{e}");
    let c = [SourceCandidate::new("a", x)];
    let e = rank_sources(&c, &[2; 10], None, &EncoderGateConfig::default()).unwrap_err();
    assert!(matches!(e, SafetyError::TooFewClasses { .. }), "{e}");
}

#[test]
fn nan_features() {
    let bad = with_nan(10, 3);
    let good = gaussian(10, 3, 2);
    let is_nan = |e: &SafetyError| {
        matches!(
            e,
            SafetyError::Linalg(LinalgError::NonFinite { index: 4, .. })
        )
    };
    let e = linear_cka(&bad, &good, CkaEstimator::Unbiased).unwrap_err();
    assert!(is_nan(&e), "{e}");
    let e = linear_cka(&good, &bad, CkaEstimator::Biased).unwrap_err();
    assert!(is_nan(&e), "{e}");
    let e = logme_classification(&bad, &[0, 1, 0, 1, 0, 1, 0, 1, 0, 1]).unwrap_err();
    assert!(is_nan(&e), "{e}");
    let e = representation_mmd(&bad, &good, &RepresentationMmdConfig::default()).unwrap_err();
    assert!(is_nan(&e), "{e}");
    let c = [SourceCandidate::new("nan", bad)];
    let e = rank_sources(
        &c,
        &[0, 1, 0, 1, 0, 1, 0, 1, 0, 1],
        None,
        &EncoderGateConfig::default(),
    )
    .unwrap_err();
    assert!(is_nan(&e), "{e}");
}

#[test]
fn unbiased_needs_four_rows() {
    let (x, y) = (gaussian(3, 2, 1), gaussian(3, 2, 2));
    let e = linear_cka(&x, &y, CkaEstimator::Unbiased).unwrap_err();
    assert!(
        matches!(e, SafetyError::TooFewSamples { got: 3, min: 4, .. }),
        "{e}"
    );
    assert!(linear_cka(&x, &y, CkaEstimator::Biased).is_ok());
    let (x, y) = (gaussian(4, 2, 1), gaussian(4, 2, 2));
    assert!(linear_cka(&x, &y, CkaEstimator::Unbiased)
        .unwrap()
        .is_finite());
}

#[test]
fn degenerate_and_bad_arguments() {
    let constant = Tensor::ones((10, 3), candle_core::DType::F64, &Device::Cpu).unwrap();
    let e = linear_cka(&constant, &gaussian(10, 3, 1), CkaEstimator::Biased).unwrap_err();
    assert!(matches!(e, SafetyError::Degenerate { .. }), "{e}");
    let e = rbf_cka(
        &gaussian(10, 3, 1),
        &gaussian(10, 3, 2),
        0.0,
        CkaEstimator::Biased,
    )
    .unwrap_err();
    assert!(
        matches!(
            e,
            SafetyError::InvalidArgument {
                name: "threshold",
                ..
            }
        ),
        "{e}"
    );
    let logits = Tensor::from_vec(vec![2.0f64, -1.0, 0.3, 0.1], (2, 2), &Device::Cpu).unwrap();
    let e = leep(&logits, &[0, 1]).unwrap_err();
    assert!(e.to_string().contains("row 0"), "{e}");
    let e = NegativeTransferMonitor::new(f64::NAN, MonitorConfig::default()).unwrap_err();
    assert!(
        matches!(
            e,
            SafetyError::InvalidArgument {
                name: "baseline_loss",
                ..
            }
        ),
        "{e}"
    );
    let e = NegativeTransferMonitor::new(
        1.0,
        MonitorConfig {
            patience: 0,
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(
        matches!(
            e,
            SafetyError::InvalidArgument {
                name: "patience",
                ..
            }
        ),
        "{e}"
    );
    let a = vec![("w".to_string(), gaussian(2, 2, 1))];
    let b = vec![("w".to_string(), gaussian(2, 3, 1))];
    let e = parameter_drift(&a, &b).unwrap_err();
    assert!(matches!(e, SafetyError::ParameterMismatch { .. }), "{e}");
    let c = vec![("v".to_string(), gaussian(2, 2, 1))];
    let e = parameter_drift(&a, &c).unwrap_err();
    assert!(e.to_string().contains("\"v\""), "{e}");
    let e = rank_sources(&[], &[0, 1], None, &EncoderGateConfig::default()).unwrap_err();
    assert!(
        matches!(
            e,
            SafetyError::InvalidArgument {
                name: "candidates",
                ..
            }
        ),
        "{e}"
    );
}
