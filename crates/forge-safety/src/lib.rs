//! # forge-safety
//!
//! Negative-transfer safety: decide, with evidence, whether a model trained on a source domain
//! should be transferred to a target domain — for tabular features and for encoders'
//! representations.
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
//! For encoders (model-agnostic: feature tensors and named tensors, no forge-models dependency):
//! - [`cka`]: linear CKA with the biased and the unbiased (Song et al. 2012) HSIC estimator, RBF
//!   CKA, and a per-layer [`CkaReport`] (Kornblith et al. 2019).
//! - [`representation`]: [`representation_mmd`], the MMD permutation test on learned features.
//! - [`logme`] and [`leep`]: transferability scores before fine-tuning (You et al. 2021;
//!   Nguyen et al. 2020).
//! - [`monitor`]: [`NegativeTransferMonitor`], validation loss against a baseline with patience;
//!   [`drift`]: [`parameter_drift`] per layer.
//! - [`encoder_gate`]: [`rank_sources`] ranks candidate source models with a verdict each.
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

pub mod cka;
pub mod correction;
pub mod drift;
pub mod encoder_gate;
mod error;
pub mod gate;
mod input;
pub mod ks;
pub mod leep;
pub mod logme;
pub mod mmd;
pub mod monitor;
pub mod pad;
pub mod representation;
pub mod stats;
pub mod validate;

pub use cka::{cka, linear_cka, rbf_cka, CkaConfig, CkaEstimator, CkaKernel, CkaReport};
pub use correction::{adjust_p_values, Correction};
pub use drift::{parameter_drift, DriftReport, LayerDrift, TensorDrift};
pub use encoder_gate::{
    rank_sources, EncoderGateConfig, NullTest, SourceAssessment, SourceCandidate, SourceRanking,
};
pub use error::{BoxError, Result, SafetyError};
pub use gate::{
    gate_linear, gate_logistic, gate_transfer, should_transfer, Check, GateConfig,
    TransferDecision, Verdict,
};
pub use ks::{ks_2samp, ks_per_feature, KsConfig, KsMethod, KsReport, KsResult};
pub use leep::{leep, Leep};
pub use logme::{logme_classification, logme_regression, LogMe};
pub use mmd::{mmd2_linear, mmd2_unbiased, mmd_test, Bandwidth, MmdConfig, MmdMethod, MmdResult};
pub use monitor::{MonitorConfig, MonitorDecision, NegativeTransferMonitor};
pub use pad::{proxy_a_distance, PadConfig, PadFeatures, PadResult};
pub use representation::{representation_mmd, RepresentationMmd, RepresentationMmdConfig};
pub use validate::{
    validate_linear_transfer, validate_logistic_transfer, validate_transfer, FitData, Learner,
    LinearTransfer, LogisticTransfer, Score, ValidateConfig, ValidationOutcome, ValidationReport,
};
