//! # forge-safety
//!
//! Negative-transfer safety for tabular data: decide, with evidence, whether a model trained on
//! a source domain should be transferred to a target domain.
//!
//! - [`mmd`]: kernel two-sample tests — unbiased MMD^2 with RBF kernels (median heuristic, several
//!   bandwidths), a fast permutation test, a linear-time test and a blocked estimator for large n
//!   (Gretton et al., 2012).
//! - [`ks`]: per-feature two-sample Kolmogorov–Smirnov tests (exact or asymptotic p-values) with
//!   [`correction`]s (Holm, Benjamini–Hochberg) and the fraction of shifted features.
//! - [`pad`]: the proxy A-distance from a cross-validated domain classifier (Ben-David et al., 2007).
//! - [`validate`]: [`validate_transfer`] compares a transfer learner with a target-only learner on
//!   held-out target folds (paired, repeated K-fold) and reports the effect size.
//! - [`gate`]: [`should_transfer`] (features only) and [`gate_transfer`] (features + validation)
//!   return a [`TransferDecision`]: a [`Verdict`], every statistic with its threshold and
//!   human-readable reasons. All result types implement serde.
//!
//! ```
//! use candle_core::{DType, Device, Tensor};
//! use forge_linalg::rng::{randn, seeded_rng};
//! use forge_safety::{should_transfer, GateConfig, Verdict};
//!
//! let mut rng = seeded_rng(1);
//! let source = randn(&[200, 4], DType::F64, &Device::Cpu, &mut rng)?;
//! // Same distribution: no shift to report.
//! let same = randn(&[150, 4], DType::F64, &Device::Cpu, &mut rng)?;
//! let d = should_transfer(&source, &same, &GateConfig::default())?;
//! assert_eq!(d.verdict, Verdict::Transfer);
//! // Every feature moved by 3 standard deviations: a severe shift.
//! let far = (randn(&[150, 4], DType::F64, &Device::Cpu, &mut rng)? + 3.0)?;
//! let d = should_transfer(&source, &far, &GateConfig::default())?;
//! assert_eq!(d.verdict, Verdict::Block);
//! assert!(d.checks.iter().any(|c| c.name == "proxy_a_distance" && !c.passed));
//! # Ok::<(), forge_safety::SafetyError>(())
//! ```
#![deny(missing_docs)]

pub mod correction;
mod error;
pub mod gate;
mod input;
pub mod ks;
pub mod mmd;
pub mod pad;
pub mod stats;
pub mod validate;

pub use correction::{adjust_p_values, Correction};
pub use error::{BoxError, Result, SafetyError};
pub use gate::{
    gate_linear, gate_logistic, gate_transfer, should_transfer, Check, GateConfig,
    TransferDecision, Verdict,
};
pub use ks::{ks_2samp, ks_per_feature, KsConfig, KsMethod, KsReport, KsResult};
pub use mmd::{mmd2_linear, mmd2_unbiased, mmd_test, Bandwidth, MmdConfig, MmdMethod, MmdResult};
pub use pad::{proxy_a_distance, PadConfig, PadFeatures, PadResult};
pub use validate::{
    validate_linear_transfer, validate_logistic_transfer, validate_transfer, FitData, Learner,
    LinearTransfer, LogisticTransfer, Score, ValidateConfig, ValidationOutcome, ValidationReport,
};
