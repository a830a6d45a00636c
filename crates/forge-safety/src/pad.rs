//! Proxy A-distance (PAD): how well a domain classifier tells source from target rows.
//!
//! Ben-David, Blitzer, Crammer & Pereira (2007), "Analysis of Representations for Domain
//! Adaptation", NIPS; Ben-David et al. (2010), "A theory of learning from different domains",
//! Machine Learning 79: `PAD = 2 (1 - 2 err)` where `err` is the error of a classifier trained to
//! separate the two domains. `err` here is the **cross-validated** error on held-out folds: the
//! training error of a flexible classifier goes to 0 and saturates PAD at 2 even for identical
//! domains. PAD lies in [0, 2] (err is capped at 0.5, chance level for the balanced sample):
//! 0 = indistinguishable, 2 = perfectly separable.
//!
//! Classifier: L2-penalised logistic regression ([`forge_classical::fit_logistic`], Newton) on
//! the pooled-standardised features, optionally with their squares (which lets a linear
//! classifier see variance and scale shifts). Both sides are subsampled (seeded) to the same size
//! `min(n_s, n_t, max_per_side)`, so chance level is exactly 0.5.

use crate::input::{two_samples, Rows};
use crate::Result;
use crate::SafetyError;
use candle_core::{Device, Tensor};
use forge_classical::cv::stratified_k_fold;
use forge_classical::fit_logistic;
use forge_linalg::rng::{permutation, seeded_rng};
use forge_linalg::Standardizer;
use serde::{Deserialize, Serialize};

/// Features given to the domain classifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum PadFeatures {
    /// The standardised features.
    Linear,
    /// The standardised features and their squares (detects variance shifts too).
    #[default]
    LinearAndSquares,
}

/// Settings of [`proxy_a_distance`].
///
/// | field | default | range |
/// |---|---|---|
/// | `folds` | 5 | >= 2 |
/// | `lam` | 1.0 (L2 penalty of the logistic domain classifier) | >= 0 |
/// | `max_per_side` | 2,000 | >= 2 |
/// | `features` | `LinearAndSquares` | |
/// | `seed` | 0 | any |
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PadConfig {
    /// Cross-validation folds.
    pub folds: usize,
    /// L2 penalty of the domain classifier.
    pub lam: f64,
    /// Rows per side (balanced seeded subsample).
    pub max_per_side: usize,
    /// Classifier features.
    pub features: PadFeatures,
    /// Seed of the subsample and the folds.
    pub seed: u64,
}

impl Default for PadConfig {
    fn default() -> Self {
        Self {
            folds: 5,
            lam: 1.0,
            max_per_side: 2_000,
            features: PadFeatures::LinearAndSquares,
            seed: 0,
        }
    }
}

/// The proxy A-distance and the held-out error behind it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PadResult {
    /// `2 (1 - 2 min(err, 0.5))`, in [0, 2].
    pub pad: f64,
    /// Cross-validated (held-out) misclassification rate of the domain classifier.
    pub heldout_error: f64,
    /// Rows per side used.
    pub n_per_side: usize,
    /// Folds used.
    pub folds: usize,
}

/// Proxy A-distance between `source` and `target` from a cross-validated logistic domain classifier.
///
/// # Shapes
/// `source`: `[n_s, d]`, `target`: `[n_t, d]`
///
/// # Errors
/// [`SafetyError::FeatureMismatch`], [`SafetyError::TooFewSamples`] (< 2 rows per side),
/// non-finite input, invalid configuration, classifier errors ([`SafetyError::Classical`]).
pub fn proxy_a_distance(source: &Tensor, target: &Tensor, config: &PadConfig) -> Result<PadResult> {
    let (s, t) = two_samples(source, target, 2)?;
    pad_rows(&s, &t, config)
}

pub(crate) fn pad_rows(s: &Rows, t: &Rows, config: &PadConfig) -> Result<PadResult> {
    if config.folds < 2 {
        return Err(SafetyError::InvalidArgument {
            name: "folds",
            reason: format!("must be >= 2, got {}", config.folds),
        });
    }
    if !(config.lam >= 0.0 && config.lam.is_finite()) {
        return Err(SafetyError::InvalidArgument {
            name: "lam",
            reason: format!("must be finite and >= 0, got {}", config.lam),
        });
    }
    if config.max_per_side < 2 {
        return Err(SafetyError::InvalidArgument {
            name: "max_per_side",
            reason: format!("must be >= 2, got {}", config.max_per_side),
        });
    }
    let mut rng = seeded_rng(config.seed);
    let per_side = s.n.min(t.n).min(config.max_per_side);
    let is = permutation(s.n, &mut rng);
    let it = permutation(t.n, &mut rng);
    let mut data = s.select(&is[..per_side]).data;
    data.extend(t.select(&it[..per_side]).data);
    let n = 2 * per_side;
    let x = Tensor::from_vec(data, (n, s.d), &Device::Cpu)?;
    let z = Standardizer::fit(&x)?.transform(&x)?;
    let feats = match config.features {
        PadFeatures::Linear => z,
        PadFeatures::LinearAndSquares => Tensor::cat(&[&z, &z.sqr()?], 1)?,
    };
    let labels: Vec<f64> = (0..n)
        .map(|i| if i < per_side { 0.0 } else { 1.0 })
        .collect();
    let y = Tensor::from_vec(labels.clone(), n, &Device::Cpu)?;
    let folds = stratified_k_fold(&labels, config.folds, config.seed.wrapping_add(1))?;
    let mut wrong = 0usize;
    let mut seen = 0usize;
    for f in &folds {
        let take = |idx: &[usize]| forge_classical::cv::take_rows(&feats, idx);
        let model = fit_logistic(
            &take(&f.train)?,
            &forge_classical::cv::take_rows(&y, &f.train)?,
            config.lam,
        )?;
        let pred: Vec<f64> = model.predict(&take(&f.valid)?)?.to_vec1()?;
        wrong += f
            .valid
            .iter()
            .zip(&pred)
            .filter(|(&i, &p)| p != labels[i])
            .count();
        seen += f.valid.len();
    }
    let err = wrong as f64 / seen as f64;
    Ok(PadResult {
        pad: 2.0 * (1.0 - 2.0 * err.min(0.5)),
        heldout_error: err,
        n_per_side: per_side,
        folds: folds.len(),
    })
}
