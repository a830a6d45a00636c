//! The transfer gate: shift tests plus validation -> [`Verdict`].
//!
//! Shift evidence (on the features only, [`should_transfer`]):
//! - MMD permutation (or linear-time) test and the MMD^2 estimate ([`crate::mmd`]);
//! - per-feature KS tests with Holm correction and the fraction of shifted features ([`crate::ks`]);
//! - the proxy A-distance from a cross-validated domain classifier ([`crate::pad`]).
//!
//! The two hypothesis tests share the level: each runs at `alpha / 2` (Bonferroni), so
//! "shift detected" has a false-alarm rate of at most `alpha` on same-distribution data.
//!
//! | check | rule to pass | if it fails |
//! |---|---|---|
//! | `mmd_p_value` | `> alpha / 2` | caution (significant shift) |
//! | `ks_min_p_holm` | `> alpha / 2` | caution (significant shift) |
//! | `mmd2` | `< mmd2_block` (0.5) | severe shift |
//! | `proxy_a_distance` | `< pad_block` (1.9) | severe shift |
//! | `fraction_shifted_features` | `<= fraction_caution` (0.5) | caution |
//! | `validation_harm` (`p_harm`) | `> harm_alpha` (0.2) or `mean_diff >= -tolerance` (0) | **block** (transfer hurts) |
//! | `validation_p_gain` | `<= alpha` | caution (no significant gain) |
//!
//! Verdict without labels ([`should_transfer`]): `Block` on a severe shift, `TransferWithCaution`
//! on any other failed check, else `Transfer`.
//! Verdict with validation ([`gate_transfer`], [`gate_linear`], [`gate_logistic`]): the held-out
//! comparison decides: `Block` when the transferred model is worse than the target-only model
//! on held-out target folds (mean loss with `p_harm <= harm_alpha`); `Transfer` when it is significantly better and the shift is not
//! severe; `TransferWithCaution` otherwise (no significant gain, or a gain despite a severe
//! shift). A severe covariate shift alone does not block a transfer that measurably helps:
//! shift is the reason to transfer in the first place, and the validation is direct evidence.
//! Thresholds 0.5 and 1.9 are the project's seed values; MMD^2 is computed on pooled-standardised
//! features with the median-heuristic kernel (so it is at most 2), PAD lies in [0, 2].

use crate::input::{check_unit, two_samples, Rows};
use crate::ks::{ks_rows, KsConfig, KsMethod, KsReport};
use crate::mmd::{mmd_rows, MmdConfig, MmdResult};
use crate::pad::{pad_rows, PadConfig, PadResult};
use crate::validate::{
    validate_transfer, Learner, LinearTransfer, LogisticTransfer, ValidateConfig,
    ValidationOutcome, ValidationReport,
};
use crate::{Correction, Result, SafetyError};
use candle_core::Tensor;
use forge_linalg::Standardizer;
use serde::{Deserialize, Serialize};

/// The gate's decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verdict {
    /// Transfer: no sign of harm.
    Transfer,
    /// Transfer, but the evidence is mixed (shift detected or no significant gain).
    TransferWithCaution,
    /// Do not transfer.
    Block,
}

/// What a failed check leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Consequence {
    /// A failure makes the verdict at least `TransferWithCaution`.
    Caution,
    /// A failure marks a severe shift (blocks without validation).
    Severe,
    /// A failure blocks.
    Block,
}

/// One statistic with its threshold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    /// Statistic name.
    pub name: String,
    /// Its value.
    pub value: f64,
    /// The threshold it is compared with.
    pub threshold: f64,
    /// The rule that passes, e.g. `"value < threshold"`.
    pub rule: String,
    /// Whether the rule holds.
    pub passed: bool,
    /// What a failure leads to.
    pub consequence: Consequence,
}

/// Settings of the gate.
///
/// | field | default | range |
/// |---|---|---|
/// | `alpha` | 0.05 | (0, 1) |
/// | `standardize` | true (z-score on the pooled sample before MMD and PAD) | |
/// | `mmd` | [`MmdConfig::default`] | |
/// | `ks_correction` / `ks_method` | Holm / Auto | |
/// | `pad` | [`PadConfig::default`] | |
/// | `mmd2_block` | 0.5 | > 0 |
/// | `pad_block` | 1.9 | (0, 2] |
/// | `fraction_caution` | 0.5 | [0, 1] |
/// | `validation` | [`ValidateConfig::default`] | |
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateConfig {
    /// Family-wise level of the shift tests (each of MMD and KS gets `alpha / 2`).
    pub alpha: f64,
    /// Standardise features on the pooled sample before MMD and PAD.
    pub standardize: bool,
    /// MMD test settings.
    pub mmd: MmdConfig,
    /// Correction of the per-feature KS tests.
    pub ks_correction: Correction,
    /// KS p-value method.
    pub ks_method: KsMethod,
    /// Proxy A-distance settings.
    pub pad: PadConfig,
    /// MMD^2 at or above which the shift is severe.
    pub mmd2_block: f64,
    /// PAD at or above which the shift is severe.
    pub pad_block: f64,
    /// Fraction of shifted features above which to be cautious.
    pub fraction_caution: f64,
    /// Validation settings (used by the gate functions with labels).
    pub validation: ValidateConfig,
}

impl Default for GateConfig {
    fn default() -> Self {
        Self {
            alpha: 0.05,
            standardize: true,
            mmd: MmdConfig::default(),
            ks_correction: Correction::Holm,
            ks_method: KsMethod::Auto,
            pad: PadConfig::default(),
            mmd2_block: 0.5,
            pad_block: 1.9,
            fraction_caution: 0.5,
            validation: ValidateConfig::default(),
        }
    }
}

impl GateConfig {
    /// Sets the seed of every randomised part (permutations, subsamples, folds).
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.mmd.seed = seed;
        self.pad.seed = seed;
        self.validation.seed = seed;
        self
    }

    fn validate(&self) -> Result<()> {
        check_unit("alpha", self.alpha)?;
        self.mmd.validate()?;
        if !(self.mmd2_block > 0.0 && self.mmd2_block.is_finite()) {
            return Err(SafetyError::InvalidArgument {
                name: "mmd2_block",
                reason: format!("must be finite and > 0, got {}", self.mmd2_block),
            });
        }
        if !(self.pad_block > 0.0 && self.pad_block <= 2.0) {
            return Err(SafetyError::InvalidArgument {
                name: "pad_block",
                reason: format!("must lie in (0, 2], got {}", self.pad_block),
            });
        }
        if !(0.0..=1.0).contains(&self.fraction_caution) {
            return Err(SafetyError::InvalidArgument {
                name: "fraction_caution",
                reason: format!("must lie in [0, 1], got {}", self.fraction_caution),
            });
        }
        Ok(())
    }
}

/// The gate's decision with all its evidence (serialisable).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransferDecision {
    /// The verdict.
    pub verdict: Verdict,
    /// Every statistic with its threshold.
    pub checks: Vec<Check>,
    /// Human-readable reasons, most important first.
    pub reasons: Vec<String>,
    /// MMD or KS rejected at the family level `alpha`.
    pub shift_detected: bool,
    /// MMD^2 or PAD at or above its block threshold.
    pub severe_shift: bool,
    /// The MMD test.
    pub mmd: MmdResult,
    /// The per-feature KS tests.
    pub ks: KsReport,
    /// The proxy A-distance.
    pub pad: PadResult,
    /// The validation, when labels were given.
    pub validation: Option<ValidationReport>,
    /// Source rows.
    pub n_source: usize,
    /// Target rows.
    pub n_target: usize,
    /// Features.
    pub n_features: usize,
}

struct ShiftEvidence {
    checks: Vec<Check>,
    mmd: MmdResult,
    ks: KsReport,
    pad: PadResult,
    shift_detected: bool,
    severe: bool,
    caution_reasons: Vec<String>,
    severe_reasons: Vec<String>,
}

fn check(
    name: &str,
    value: f64,
    threshold: f64,
    rule: &str,
    passed: bool,
    consequence: Consequence,
) -> Check {
    Check {
        name: name.into(),
        value,
        threshold,
        rule: rule.into(),
        passed,
        consequence,
    }
}

fn standardize_pooled(s: &Rows, t: &Rows) -> Result<(Rows, Rows)> {
    let mut data = s.data.clone();
    data.extend_from_slice(&t.data);
    let pooled = Tensor::from_vec(data, (s.n + t.n, s.d), &candle_core::Device::Cpu)?;
    let z: Vec<f64> = Standardizer::fit(&pooled)?
        .transform(&pooled)?
        .flatten_all()?
        .to_vec1()?;
    let split = s.n * s.d;
    Ok((
        Rows {
            data: z[..split].to_vec(),
            n: s.n,
            d: s.d,
        },
        Rows {
            data: z[split..].to_vec(),
            n: t.n,
            d: t.d,
        },
    ))
}

fn shift_evidence(s: &Rows, t: &Rows, cfg: &GateConfig) -> Result<ShiftEvidence> {
    let half = cfg.alpha / 2.0;
    let ks_cfg = KsConfig {
        alpha: half,
        correction: cfg.ks_correction,
        method: cfg.ks_method,
    };
    let ks = ks_rows(s, t, &ks_cfg)?;
    let (zs, zt) = if cfg.standardize {
        standardize_pooled(s, t)?
    } else {
        (s.clone(), t.clone())
    };
    let mmd = mmd_rows(&zs, &zt, &cfg.mmd)?;
    let pad = pad_rows(&zs, &zt, &cfg.pad)?;
    let mmd_ok = mmd.p_value > half;
    let ks_ok = ks.min_p_adjusted > half;
    let mmd2_ok = mmd.mmd2 < cfg.mmd2_block;
    let pad_ok = pad.pad < cfg.pad_block;
    let frac_ok = ks.fraction_shifted <= cfg.fraction_caution;
    let checks = vec![
        check(
            "mmd_p_value",
            mmd.p_value,
            half,
            "value > threshold",
            mmd_ok,
            Consequence::Caution,
        ),
        check(
            "ks_min_p_adjusted",
            ks.min_p_adjusted,
            half,
            "value > threshold",
            ks_ok,
            Consequence::Caution,
        ),
        check(
            "mmd2",
            mmd.mmd2,
            cfg.mmd2_block,
            "value < threshold",
            mmd2_ok,
            Consequence::Severe,
        ),
        check(
            "proxy_a_distance",
            pad.pad,
            cfg.pad_block,
            "value < threshold",
            pad_ok,
            Consequence::Severe,
        ),
        check(
            "fraction_shifted_features",
            ks.fraction_shifted,
            cfg.fraction_caution,
            "value <= threshold",
            frac_ok,
            Consequence::Caution,
        ),
    ];
    let mut caution_reasons = Vec::new();
    let mut severe_reasons = Vec::new();
    if !mmd2_ok {
        severe_reasons.push(format!(
            "MMD^2 = {:.3} >= {} (kernel distance between the domains is large)",
            mmd.mmd2, cfg.mmd2_block
        ));
    }
    if !pad_ok {
        severe_reasons.push(format!(
            "proxy A-distance = {:.3} >= {} (a classifier tells the domains apart with held-out error {:.3})",
            pad.pad, cfg.pad_block, pad.heldout_error
        ));
    }
    if !mmd_ok {
        caution_reasons.push(format!(
            "MMD test detects a distribution shift (p = {:.4} <= {half})",
            mmd.p_value
        ));
    }
    if !ks_ok {
        let mut worst: Vec<_> = ks.features.iter().filter(|f| f.shifted).collect();
        worst.sort_by(|a, b| b.statistic.total_cmp(&a.statistic));
        let names: Vec<String> = worst
            .iter()
            .take(3)
            .map(|f| format!("#{} (D = {:.3})", f.feature, f.statistic))
            .collect();
        caution_reasons.push(format!(
            "{} of {} features shifted (KS, Holm-adjusted p <= {half}); largest: {}",
            ks.n_shifted,
            ks.features.len(),
            names.join(", ")
        ));
    }
    if !frac_ok {
        caution_reasons.push(format!(
            "more than {:.0}% of the features are shifted ({:.0}%)",
            100.0 * cfg.fraction_caution,
            100.0 * ks.fraction_shifted
        ));
    }
    Ok(ShiftEvidence {
        checks,
        shift_detected: !(mmd_ok && ks_ok),
        severe: !(mmd2_ok && pad_ok),
        mmd,
        ks,
        pad,
        caution_reasons,
        severe_reasons,
    })
}

/// Shift-only gate: should a model trained on `source` be used for `target`? Uses the features
/// only (no labels), so it cannot see concept shift; use [`gate_transfer`] when target labels exist.
///
/// # Shapes
/// `source_x`: `[n_s, d]`, `target_x`: `[n_t, d]`
///
/// # Errors
/// [`SafetyError::FeatureMismatch`], [`SafetyError::TooFewSamples`] (< 2 rows per side),
/// non-finite input ([`SafetyError::Linalg`]), invalid configuration.
pub fn should_transfer(
    source_x: &Tensor,
    target_x: &Tensor,
    config: &GateConfig,
) -> Result<TransferDecision> {
    config.validate()?;
    let (s, t) = two_samples(source_x, target_x, 2)?;
    let ev = shift_evidence(&s, &t, config)?;
    let (verdict, mut reasons) = if ev.severe {
        (Verdict::Block, ev.severe_reasons.clone())
    } else if ev.checks.iter().any(|c| !c.passed) {
        (Verdict::TransferWithCaution, ev.caution_reasons.clone())
    } else {
        (
            Verdict::Transfer,
            vec![format!(
                "no significant shift (MMD p = {:.3}, min KS Holm p = {:.3}, PAD = {:.3})",
                ev.mmd.p_value, ev.ks.min_p_adjusted, ev.pad.pad
            )],
        )
    };
    if verdict == Verdict::Block {
        reasons.extend(ev.caution_reasons.iter().cloned());
    }
    Ok(decision(verdict, reasons, ev, None, &s, &t))
}

fn decision(
    verdict: Verdict,
    reasons: Vec<String>,
    ev: ShiftEvidence,
    validation: Option<ValidationReport>,
    s: &Rows,
    t: &Rows,
) -> TransferDecision {
    tracing::debug!(?verdict, ?reasons, "forge-safety gate");
    TransferDecision {
        verdict,
        checks: ev.checks,
        reasons,
        shift_detected: ev.shift_detected,
        severe_shift: ev.severe,
        mmd: ev.mmd,
        ks: ev.ks,
        pad: ev.pad,
        validation,
        n_source: s.n,
        n_target: t.n,
        n_features: s.d,
    }
}

/// The full gate: shift tests on the features plus [`validate_transfer`] of `transfer` against
/// `target_only` on the target data (see the module docs for how they combine).
///
/// # Errors
/// As [`should_transfer`] and [`validate_transfer`].
pub fn gate_transfer<T, B>(
    source_x: &Tensor,
    source_y: &Tensor,
    target_x: &Tensor,
    target_y: &Tensor,
    transfer: &T,
    target_only: &B,
    config: &GateConfig,
) -> Result<TransferDecision>
where
    T: Learner + ?Sized,
    B: Learner + ?Sized,
{
    config.validate()?;
    let (s, t) = two_samples(source_x, target_x, 2)?;
    let val = validate_transfer(
        source_x,
        source_y,
        target_x,
        target_y,
        transfer,
        target_only,
        &config.validation,
    )?;
    let mut ev = shift_evidence(&s, &t, config)?;
    let tol = config.validation.tolerance;
    ev.checks.push(check(
        "validation_mean_diff",
        val.mean_diff,
        -tol,
        "value >= threshold (or p_harm > harm_alpha)",
        val.outcome != ValidationOutcome::Hurts,
        Consequence::Block,
    ));
    ev.checks.push(check(
        "validation_p_harm",
        val.p_harm,
        config.validation.harm_alpha,
        "value > threshold (or mean_diff >= -tolerance)",
        val.outcome != ValidationOutcome::Hurts,
        Consequence::Block,
    ));
    ev.checks.push(check(
        "validation_p_gain",
        val.p_gain,
        config.validation.alpha,
        "value <= threshold",
        val.outcome == ValidationOutcome::Helps,
        Consequence::Caution,
    ));
    let effect = format!(
        "held-out target {:?}: transfer {:.4} vs target-only {:.4} (mean diff {:+.4}, Cohen's d_z {:+.2}, {} folds)",
        val.config.score,
        val.mean_transfer,
        val.mean_target_only,
        val.mean_diff,
        val.cohens_dz,
        val.folds.len()
    );
    let mut reasons = Vec::new();
    let verdict = match val.outcome {
        ValidationOutcome::Hurts => {
            reasons.push(format!(
                "transfer hurts the target: {effect}, p(harm) = {:.3}",
                val.p_harm
            ));
            Verdict::Block
        }
        ValidationOutcome::Helps if !ev.severe => {
            reasons.push(format!(
                "transfer helps significantly: {effect}, p(gain) = {:.3}",
                val.p_gain
            ));
            Verdict::Transfer
        }
        ValidationOutcome::Helps => {
            reasons.push(format!(
                "transfer helps significantly despite a severe covariate shift: {effect}, p(gain) = {:.3}",
                val.p_gain
            ));
            Verdict::TransferWithCaution
        }
        ValidationOutcome::Neutral => {
            reasons.push(format!(
                "no significant gain and no evidence of harm: {effect}, p(gain) = {:.3}, p(harm) = {:.3}",
                val.p_gain, val.p_harm
            ));
            Verdict::TransferWithCaution
        }
    };
    reasons.extend(ev.severe_reasons.iter().cloned());
    reasons.extend(ev.caution_reasons.iter().cloned());
    Ok(decision(verdict, reasons, ev, Some(val), &s, &t))
}

/// [`gate_transfer`] with [`LinearTransfer`] (regularized transfer vs ridge).
///
/// # Errors
/// As [`gate_transfer`].
pub fn gate_linear(
    source_x: &Tensor,
    source_y: &Tensor,
    target_x: &Tensor,
    target_y: &Tensor,
    params: &LinearTransfer,
    config: &GateConfig,
) -> Result<TransferDecision> {
    gate_transfer(
        source_x,
        source_y,
        target_x,
        target_y,
        &params.transfer(),
        &params.target_only(),
        config,
    )
}

/// [`gate_transfer`] with [`LogisticTransfer`] (regularized logistic transfer vs logistic regression).
///
/// # Errors
/// As [`gate_transfer`].
pub fn gate_logistic(
    source_x: &Tensor,
    source_y: &Tensor,
    target_x: &Tensor,
    target_y: &Tensor,
    params: &LogisticTransfer,
    config: &GateConfig,
) -> Result<TransferDecision> {
    gate_transfer(
        source_x,
        source_y,
        target_x,
        target_y,
        &params.transfer(),
        &params.target_only(),
        config,
    )
}
