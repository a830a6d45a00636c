//! `validate_transfer`: the guard that matters. Does the transferred model beat the
//! target-only model on held-out target data?
//!
//! Repeated K-fold cross-validation on the target data (Stone, 1974, JRSS-B 36): for every
//! fold both learners are fitted on the same training part (the transfer learner also sees the
//! whole source) and scored on the same held-out part, giving paired differences
//! `d_j = score_transfer_j - score_target_only_j` (higher score = better). Reported:
//! - the mean difference `mean(d)` and its sample standard deviation `sd(d)`;
//! - Cohen's `d_z = mean(d) / sd(d)` for paired samples (Cohen, 1988, *Statistical Power
//!   Analysis*, §2.3.5);
//! - the corrected resampled t statistic of Nadeau & Bengio (2003, "Inference for the
//!   Generalization Error", Machine Learning 52):
//!   `t = mean(d) / sqrt((1 / J + n_valid / n_train) sd(d)^2)` over `J` folds, with `J - 1`
//!   degrees of freedom (the plain paired t test is anti-conservative because CV training sets
//!   overlap), and one-sided p-values for gain and for harm.
//!
//! Outcome: [`ValidationOutcome::Hurts`] when `mean(d) < -tolerance` and the harm test gives
//! `p_harm <= harm_alpha` (default 0.2: a deliberately lenient level, because wrongly blocking a
//! transfer only forgoes its gain while wrongly allowing it costs accuracy; on small targets the
//! per-fold noise is large and a bare sign rule blocks helpful transfers by chance),
//! [`ValidationOutcome::Helps`] when `mean(d) > tolerance` and the gain is significant
//! (`p_gain <= alpha`), otherwise [`ValidationOutcome::Neutral`].
//!
//! Learners are anything implementing [`Learner`] (closures included), so any method can be
//! validated; [`LinearTransfer`] and [`LogisticTransfer`] are ready-made pairs for regularized
//! transfer against ridge / logistic regression.

use crate::input::check_unit;
use crate::stats::{mean_sd, student_t_sf};
use crate::{BoxError, Result, SafetyError};
use candle_core::{DType, Tensor};
use forge_classical::cv::{k_fold, stratified_k_fold, take_rows};
use forge_classical::{
    fit_logistic, metrics, regularized_transfer_linear, regularized_transfer_logistic, ridge,
};
use forge_linalg::check::{ensure_matrix, ensure_xy};
use serde::{Deserialize, Serialize};
use std::sync::Mutex;

/// The source model of the last source seen, keyed by the tensors' ids, so that the folds of one
/// validation fit the source once.
struct SourceCache<M>(Mutex<Option<(candle_core::TensorId, candle_core::TensorId, M)>>);

impl<M: Clone> SourceCache<M> {
    fn new() -> Self {
        Self(Mutex::new(None))
    }

    fn get_or_fit(
        &self,
        d: &FitData<'_>,
        fit: impl FnOnce() -> std::result::Result<M, BoxError>,
    ) -> std::result::Result<M, BoxError> {
        let key = (d.source_x.id(), d.source_y.id());
        let mut guard = self.0.lock().map_err(|_| "source-model cache poisoned")?;
        if let Some((a, b, m)) = guard.as_ref() {
            if (*a, *b) == key {
                return Ok(m.clone());
            }
        }
        let m = fit()?;
        *guard = Some((key.0, key.1, m.clone()));
        Ok(m)
    }
}

/// The training data one learner sees in one fold.
#[derive(Debug, Clone, Copy)]
pub struct FitData<'a> {
    /// Source features `[n_s, d]` (the target-only learner should ignore them).
    pub source_x: &'a Tensor,
    /// Source targets `[n_s]`.
    pub source_y: &'a Tensor,
    /// Target training features `[n_train, d]`.
    pub target_x: &'a Tensor,
    /// Target training targets `[n_train]`.
    pub target_y: &'a Tensor,
}

/// Fits a model on a fold's training data and predicts the held-out rows.
///
/// Implemented for every `Fn(&FitData, &Tensor) -> Result<Tensor, BoxError>`, so a closure
/// (using `?` on any error type) is a learner.
pub trait Learner {
    /// Predictions `[n_test]` for `test_x` `[n_test, d]`, in the form the [`Score`] expects
    /// (values for regression, 0/1 labels for accuracy, probabilities or scores for AUC and log-loss).
    ///
    /// # Errors
    /// Whatever the learner reports; wrapped in [`SafetyError::Learner`].
    fn fit_predict(
        &self,
        data: &FitData<'_>,
        test_x: &Tensor,
    ) -> std::result::Result<Tensor, BoxError>;
}

impl<F> Learner for F
where
    F: Fn(&FitData<'_>, &Tensor) -> std::result::Result<Tensor, BoxError>,
{
    fn fit_predict(
        &self,
        data: &FitData<'_>,
        test_x: &Tensor,
    ) -> std::result::Result<Tensor, BoxError> {
        self(data, test_x)
    }
}

/// How held-out predictions are scored (higher is better for all).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Score {
    /// Coefficient of determination ([`metrics::r2`]).
    R2,
    /// Negative mean squared error.
    NegMse,
    /// Accuracy of 0/1 (or class-id) predictions.
    Accuracy,
    /// Area under the ROC curve of real-valued scores.
    RocAuc,
    /// Negative log-loss of probabilities.
    NegLogLoss,
    /// Negative Brier score `-mean (p_i - y_i)^2` of probabilities (Brier, 1950, Monthly Weather
    /// Review 78): a proper scoring rule, bounded, so small folds give stabler differences than log-loss.
    NegBrier,
}

impl Score {
    /// The score of `pred` against `y_true`.
    ///
    /// # Errors
    /// Metric errors (shape mismatch, a single class for AUC, ...).
    pub fn evaluate(&self, y_true: &Tensor, pred: &Tensor) -> Result<f64> {
        Ok(match self {
            Score::R2 => metrics::r2(y_true, pred)?,
            Score::NegMse => -metrics::mse(y_true, pred)?,
            Score::Accuracy => metrics::accuracy(y_true, pred)?,
            Score::RocAuc => metrics::roc_auc(y_true, pred)?,
            Score::NegLogLoss => -metrics::log_loss(y_true, pred)?,
            Score::NegBrier => -metrics::mse(y_true, pred)?,
        })
    }

    /// Whether folds should be stratified by class (classification scores).
    pub fn is_classification(&self) -> bool {
        matches!(
            self,
            Score::Accuracy | Score::RocAuc | Score::NegLogLoss | Score::NegBrier
        )
    }
}

/// Settings of [`validate_transfer`].
///
/// | field | default | range |
/// |---|---|---|
/// | `folds` | 5 | >= 2 (clamped to the target size) |
/// | `repeats` | 3 | >= 1 |
/// | `score` | `R2` | |
/// | `tolerance` | 0.0 (mean loss tolerated before `Hurts`) | >= 0 |
/// | `alpha` | 0.05 (level of the gain test) | (0, 1) |
/// | `harm_alpha` | 0.2 (level of the harm test) | (0, 1) |
/// | `seed` | 0 | any |
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ValidateConfig {
    /// Folds per repeat.
    pub folds: usize,
    /// Repeats of the K-fold split (different seeds).
    pub repeats: usize,
    /// Held-out score.
    pub score: Score,
    /// Mean loss in score tolerated before the outcome is `Hurts`.
    pub tolerance: f64,
    /// Level of the one-sided test for a gain.
    pub alpha: f64,
    /// Level of the one-sided test for harm.
    pub harm_alpha: f64,
    /// Seed of the fold assignment.
    pub seed: u64,
}

impl Default for ValidateConfig {
    fn default() -> Self {
        Self {
            folds: 5,
            repeats: 3,
            score: Score::R2,
            tolerance: 0.0,
            alpha: 0.05,
            harm_alpha: 0.2,
            seed: 0,
        }
    }
}

impl ValidateConfig {
    /// The defaults with another score.
    pub fn with_score(score: Score) -> Self {
        Self {
            score,
            ..Self::default()
        }
    }
}

/// What cross-validation says about the transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ValidationOutcome {
    /// Significant gain over the target-only model.
    Helps,
    /// Neither a significant gain nor evidence of harm.
    Neutral,
    /// Worse than the target-only model (mean loss beyond the tolerance, `p_harm <= harm_alpha`):
    /// negative transfer.
    Hurts,
}

/// The paired scores of one fold.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FoldScore {
    /// Repeat index.
    pub repeat: usize,
    /// Fold index within the repeat.
    pub fold: usize,
    /// Held-out rows.
    pub n_valid: usize,
    /// Score of the transfer learner.
    pub transfer: f64,
    /// Score of the target-only learner.
    pub target_only: f64,
    /// `transfer - target_only`.
    pub diff: f64,
}

/// The evidence of [`validate_transfer`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValidationReport {
    /// Every fold's paired scores.
    pub folds: Vec<FoldScore>,
    /// Mean held-out score of the transfer learner.
    pub mean_transfer: f64,
    /// Mean held-out score of the target-only learner.
    pub mean_target_only: f64,
    /// Mean paired difference (the effect size in score units).
    pub mean_diff: f64,
    /// Sample standard deviation of the paired differences.
    pub sd_diff: f64,
    /// Cohen's `d_z = mean_diff / sd_diff` (0 when `sd_diff = 0`).
    pub cohens_dz: f64,
    /// Nadeau–Bengio corrected resampled t statistic.
    pub t_statistic: f64,
    /// One-sided p-value of a gain (H0: mean difference <= 0).
    pub p_gain: f64,
    /// One-sided p-value of harm (H0: mean difference >= 0).
    pub p_harm: f64,
    /// The verdict of the validation.
    pub outcome: ValidationOutcome,
    /// The configuration used.
    pub config: ValidateConfig,
}

/// Cross-validates `transfer` against `target_only` on the target data (see the module docs).
///
/// # Shapes
/// `source_x`: `[n_s, d]`, `source_y`: `[n_s]`, `target_x`: `[n_t, d]`, `target_y`: `[n_t]`
///
/// # Errors
/// [`SafetyError::FeatureMismatch`]; [`SafetyError::TooFewSamples`] when the target has fewer
/// than `2 * folds` rows (at least 2 per fold) or the source fewer than 2; non-finite input;
/// invalid configuration; [`SafetyError::Learner`] when a learner fails; metric errors.
pub fn validate_transfer<T, B>(
    source_x: &Tensor,
    source_y: &Tensor,
    target_x: &Tensor,
    target_y: &Tensor,
    transfer: &T,
    target_only: &B,
    config: &ValidateConfig,
) -> Result<ValidationReport>
where
    T: Learner + ?Sized,
    B: Learner + ?Sized,
{
    if config.folds < 2 {
        return Err(SafetyError::InvalidArgument {
            name: "folds",
            reason: format!("must be >= 2, got {}", config.folds),
        });
    }
    if config.repeats < 1 {
        return Err(SafetyError::InvalidArgument {
            name: "repeats",
            reason: "must be >= 1, got 0".into(),
        });
    }
    if !(config.tolerance >= 0.0 && config.tolerance.is_finite()) {
        return Err(SafetyError::InvalidArgument {
            name: "tolerance",
            reason: format!("must be finite and >= 0, got {}", config.tolerance),
        });
    }
    check_unit("alpha", config.alpha)?;
    check_unit("harm_alpha", config.harm_alpha)?;
    let (_, ds) = ensure_matrix(source_x, "source_x")?;
    let (_, dt) = ensure_matrix(target_x, "target_x")?;
    if ds != dt {
        return Err(SafetyError::FeatureMismatch {
            source_features: ds,
            target_features: dt,
        });
    }
    let (ns, _) = ensure_xy(source_x, source_y)?;
    let (nt, _) = ensure_xy(target_x, target_y)?;
    if ns < 2 {
        return Err(SafetyError::TooFewSamples {
            what: "source".into(),
            got: ns,
            min: 2,
        });
    }
    let min_t = 2 * config.folds;
    if nt < min_t {
        return Err(SafetyError::TooFewSamples {
            what: format!("target ({}-fold validation)", config.folds),
            got: nt,
            min: min_t,
        });
    }
    let labels: Vec<f64> = target_y.to_dtype(DType::F64)?.to_vec1()?;
    let mut folds_out = Vec::with_capacity(config.folds * config.repeats);
    let mut ratio_sum = 0.0;
    for r in 0..config.repeats {
        let seed = config
            .seed
            .wrapping_add(r as u64)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .wrapping_add(r as u64);
        let folds = if config.score.is_classification() {
            stratified_k_fold(&labels, config.folds, seed)?
        } else {
            k_fold(nt, config.folds, seed)?
        };
        for (k, f) in folds.iter().enumerate() {
            let (xtr, ytr) = (
                take_rows(target_x, &f.train)?,
                take_rows(target_y, &f.train)?,
            );
            let (xva, yva) = (
                take_rows(target_x, &f.valid)?,
                take_rows(target_y, &f.valid)?,
            );
            let data = FitData {
                source_x,
                source_y,
                target_x: &xtr,
                target_y: &ytr,
            };
            let j = folds_out.len();
            let pt = transfer
                .fit_predict(&data, &xva)
                .map_err(|source| SafetyError::Learner {
                    role: "transfer",
                    fold: j,
                    source,
                })?;
            let pb =
                target_only
                    .fit_predict(&data, &xva)
                    .map_err(|source| SafetyError::Learner {
                        role: "target-only",
                        fold: j,
                        source,
                    })?;
            let st = config.score.evaluate(&yva, &pt)?;
            let sb = config.score.evaluate(&yva, &pb)?;
            ratio_sum += f.valid.len() as f64 / f.train.len() as f64;
            folds_out.push(FoldScore {
                repeat: r,
                fold: k,
                n_valid: f.valid.len(),
                transfer: st,
                target_only: sb,
                diff: st - sb,
            });
        }
    }
    Ok(summarize(folds_out, ratio_sum, config))
}

fn summarize(folds: Vec<FoldScore>, ratio_sum: f64, config: &ValidateConfig) -> ValidationReport {
    let j = folds.len() as f64;
    let diffs: Vec<f64> = folds.iter().map(|f| f.diff).collect();
    let (mean_diff, sd_diff) = mean_sd(&diffs);
    let mean_transfer = folds.iter().map(|f| f.transfer).sum::<f64>() / j;
    let mean_target_only = folds.iter().map(|f| f.target_only).sum::<f64>() / j;
    let cohens_dz = if sd_diff > 0.0 {
        mean_diff / sd_diff
    } else {
        0.0
    };
    let ratio = ratio_sum / j;
    let se = ((1.0 / j + ratio) * sd_diff * sd_diff).sqrt();
    let df = (j - 1.0).max(1.0);
    let (t_statistic, p_gain, p_harm) = if se > 0.0 {
        let t = mean_diff / se;
        (t, student_t_sf(t, df), student_t_sf(-t, df))
    } else if mean_diff > 0.0 {
        (f64::INFINITY, 0.0, 1.0)
    } else if mean_diff < 0.0 {
        (f64::NEG_INFINITY, 1.0, 0.0)
    } else {
        (0.0, 0.5, 0.5)
    };
    let outcome = if mean_diff < -config.tolerance && p_harm <= config.harm_alpha {
        ValidationOutcome::Hurts
    } else if mean_diff > config.tolerance && p_gain <= config.alpha {
        ValidationOutcome::Helps
    } else {
        ValidationOutcome::Neutral
    };
    ValidationReport {
        folds,
        mean_transfer,
        mean_target_only,
        mean_diff,
        sd_diff,
        cohens_dz,
        t_statistic,
        p_gain,
        p_harm,
        outcome,
        config: *config,
    }
}

/// Regularized linear transfer against target-only ridge:
/// source model `w_src = ridge(source, source_lam)`, transferred model
/// [`regularized_transfer_linear`]`(target, w_src, transfer_lam)`
/// (`argmin ||y - X w - b||^2 + transfer_lam ||w - w_src||^2`, Kuzborskij & Orabona 2013),
/// baseline [`ridge`]`(target, target_lam)`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LinearTransfer {
    /// Ridge penalty of the source fit. Default 1.0.
    pub source_lam: f64,
    /// Pull towards the source weights. Default 10.0.
    pub transfer_lam: f64,
    /// Ridge penalty of the target-only baseline. Default 1.0.
    pub target_lam: f64,
}

impl Default for LinearTransfer {
    fn default() -> Self {
        Self {
            source_lam: 1.0,
            transfer_lam: 10.0,
            target_lam: 1.0,
        }
    }
}

impl LinearTransfer {
    /// The transfer learner (predictions of the transferred model). The source model is fitted
    /// once per source (cached by tensor id) and reused across folds.
    pub fn transfer(
        &self,
    ) -> impl Fn(&FitData<'_>, &Tensor) -> std::result::Result<Tensor, BoxError> + '_ {
        let cache = SourceCache::new();
        move |d: &FitData<'_>, x: &Tensor| {
            let src =
                cache.get_or_fit(d, || Ok(ridge(d.source_x, d.source_y, self.source_lam)?))?;
            Ok(
                regularized_transfer_linear(d.target_x, d.target_y, &src, self.transfer_lam)?
                    .predict(x)?,
            )
        }
    }

    /// The target-only learner (ridge on the target training part).
    pub fn target_only(
        &self,
    ) -> impl Fn(&FitData<'_>, &Tensor) -> std::result::Result<Tensor, BoxError> + '_ {
        move |d: &FitData<'_>, x: &Tensor| {
            Ok(ridge(d.target_x, d.target_y, self.target_lam)?.predict(x)?)
        }
    }
}

/// Regularized logistic transfer against target-only L2 logistic regression:
/// `w_src = fit_logistic(source, source_lam)`, transferred
/// [`regularized_transfer_logistic`]`(target, w_src, transfer_lam)`, baseline
/// [`fit_logistic`]`(target, target_lam)`. Predictions are probabilities when `probabilities` is
/// true (for AUC / log-loss) and 0/1 labels otherwise (for accuracy).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LogisticTransfer {
    /// L2 penalty of the source fit. Default 1.0.
    pub source_lam: f64,
    /// Pull towards the source weights. Default 10.0.
    pub transfer_lam: f64,
    /// L2 penalty of the target-only baseline. Default 1.0.
    pub target_lam: f64,
    /// Predict probabilities (true) or labels (false). Default true.
    pub probabilities: bool,
}

impl Default for LogisticTransfer {
    fn default() -> Self {
        Self {
            source_lam: 1.0,
            transfer_lam: 10.0,
            target_lam: 1.0,
            probabilities: true,
        }
    }
}

impl LogisticTransfer {
    fn out(
        &self,
        m: &forge_classical::LogisticModel,
        x: &Tensor,
    ) -> std::result::Result<Tensor, BoxError> {
        Ok(if self.probabilities {
            m.predict_proba(x)?
        } else {
            m.predict(x)?
        })
    }

    /// The transfer learner (source model cached per source, as [`LinearTransfer::transfer`]).
    pub fn transfer(
        &self,
    ) -> impl Fn(&FitData<'_>, &Tensor) -> std::result::Result<Tensor, BoxError> + '_ {
        let cache = SourceCache::new();
        move |d: &FitData<'_>, x: &Tensor| {
            let src = cache.get_or_fit(d, || {
                Ok(fit_logistic(d.source_x, d.source_y, self.source_lam)?)
            })?;
            self.out(
                &regularized_transfer_logistic(d.target_x, d.target_y, &src, self.transfer_lam)?,
                x,
            )
        }
    }

    /// The target-only learner.
    pub fn target_only(
        &self,
    ) -> impl Fn(&FitData<'_>, &Tensor) -> std::result::Result<Tensor, BoxError> + '_ {
        move |d: &FitData<'_>, x: &Tensor| {
            self.out(&fit_logistic(d.target_x, d.target_y, self.target_lam)?, x)
        }
    }
}

/// [`validate_transfer`] of [`LinearTransfer`] (regularized transfer vs ridge), scored by `config.score`.
///
/// # Errors
/// As [`validate_transfer`].
pub fn validate_linear_transfer(
    source_x: &Tensor,
    source_y: &Tensor,
    target_x: &Tensor,
    target_y: &Tensor,
    params: &LinearTransfer,
    config: &ValidateConfig,
) -> Result<ValidationReport> {
    validate_transfer(
        source_x,
        source_y,
        target_x,
        target_y,
        &params.transfer(),
        &params.target_only(),
        config,
    )
}

/// [`validate_transfer`] of [`LogisticTransfer`] (regularized logistic transfer vs logistic
/// regression), scored by `config.score`.
///
/// # Errors
/// As [`validate_transfer`].
pub fn validate_logistic_transfer(
    source_x: &Tensor,
    source_y: &Tensor,
    target_x: &Tensor,
    target_y: &Tensor,
    params: &LogisticTransfer,
    config: &ValidateConfig,
) -> Result<ValidationReport> {
    validate_transfer(
        source_x,
        source_y,
        target_x,
        target_y,
        &params.transfer(),
        &params.target_only(),
        config,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fold(diff: f64) -> FoldScore {
        FoldScore {
            repeat: 0,
            fold: 0,
            n_valid: 2,
            transfer: diff,
            target_only: 0.0,
            diff,
        }
    }

    #[test]
    fn summary_statistics_match_hand_computation() {
        // diffs 1, 2, 3, 2: mean 2, sd sqrt((1 + 0 + 1 + 0) / 3) = sqrt(2/3).
        let folds: Vec<FoldScore> = [1.0, 2.0, 3.0, 2.0].iter().map(|&d| fold(d)).collect();
        let cfg = ValidateConfig::default();
        // n_valid / n_train = 1/3 per fold -> ratio_sum = 4/3.
        let r = summarize(folds, 4.0 / 3.0, &cfg);
        let sd = (2.0f64 / 3.0).sqrt();
        assert!((r.mean_diff - 2.0).abs() < 1e-14);
        assert!((r.sd_diff - sd).abs() < 1e-14);
        assert!((r.cohens_dz - 2.0 / sd).abs() < 1e-14);
        // t = 2 / sqrt((1/4 + 1/3) * 2/3) = 3.20713; scipy.stats.t.sf(t, 3) = 0.0245317445864876
        let t = 2.0 / ((0.25 + 1.0 / 3.0) * sd * sd).sqrt();
        assert!((r.t_statistic - t).abs() < 1e-12);
        assert!((r.p_gain - 0.024_531_744_586_487_56).abs() < 1e-10);
        assert!((r.p_gain + r.p_harm - 1.0).abs() < 1e-12);
        assert_eq!(r.outcome, ValidationOutcome::Helps);
        // mean -0.1125, sd 0.0629, t = -2.34 (3 df): p_harm = 0.05 <= 0.2.
        let worse: Vec<FoldScore> = [-0.1, -0.05, -0.2, -0.1].iter().map(|&d| fold(d)).collect();
        assert_eq!(
            summarize(worse, 4.0 / 3.0, &cfg).outcome,
            ValidationOutcome::Hurts
        );
        // mean -0.0625 but t = -0.74: p_harm = 0.26 > 0.2, no evidence of harm.
        let noisy: Vec<FoldScore> = [-0.1, 0.05, -0.2, 0.0].iter().map(|&d| fold(d)).collect();
        let r = summarize(noisy, 4.0 / 3.0, &cfg);
        assert!(r.p_harm > 0.2 && r.p_harm < 0.3, "{}", r.p_harm);
        assert_eq!(r.outcome, ValidationOutcome::Neutral);
        let flat: Vec<FoldScore> = [0.1, -0.05, 0.0, 0.0].iter().map(|&d| fold(d)).collect();
        assert_eq!(
            summarize(flat, 4.0 / 3.0, &cfg).outcome,
            ValidationOutcome::Neutral
        );
    }
}
