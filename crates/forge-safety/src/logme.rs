//! LogME: the log marginal evidence of a Bayesian linear model on frozen features, a
//! transferability score computed before any fine-tuning.
//!
//! You, Liu, Wang & Long (2021), "LogME: Practical Assessment of Pre-trained Models for
//! Transfer Learning", ICML. For features `F` `[N, D]` and one target column `y` (a one-hot
//! class indicator, or one regression target), with prior `w ~ N(0, alpha^-1 I)` and noise
//! precision `beta`, the evidence `log p(y | F, alpha, beta)` is maximised over `(alpha, beta)`
//! and divided by `N`; the score is the mean over classes (or targets). Higher is better; values
//! are comparable between feature extractors of different dimension on the same target.
//!
//! The maximisation is the fixed-point iteration of the authors' published code (the default
//! `LogME._fit` of github.com/thuml/LogME, described in You et al. 2021, "Ranking and Tuning
//! Pre-trained Models", arXiv:2110.10545): with the SVD `F = U diag(s) V^T`, `sigma = s^2`,
//! `x = U^T y`, start at `alpha = beta = 1` and repeat at most 11 times, stopping when
//! `|t' - t| / t <= 1e-3` for `t = alpha / beta`:
//! `gamma = sum sigma / (sigma + t)`, `m2 = sum sigma x^2 / (t + sigma)^2`,
//! `res2 = sum x^2 / (1 + sigma / t)^2 + (||y||^2 - ||x||^2)`,
//! `alpha = gamma / (m2 + 1e-5)`, `beta = (N - gamma) / (res2 + 1e-5)`; then
//! `evidence = [D/2 log alpha + N/2 log beta - 1/2 sum_k log(alpha + beta sigma_k) - beta/2 res2
//! - alpha/2 m2 - N/2 log 2 pi] / N`. When `N > D` the decomposition comes from the `D x D`
//! matrix `F^T F` (singular values `<= 1e-10` dropped), otherwise from the `N x N` matrix
//! `F F^T`. The values equal the published code on the committed fixture
//! (`tests/fixtures/make_transferability.py`) to 1e-8.
//!
//! Deviation: singular values below `1e-10` *or* below `sqrt(D * eps * s_max^2)` are dropped
//! (the reference drops only the former, so on rank-deficient features it keeps rounding noise
//! and its value depends on that noise); on full-rank features the two agree.

use crate::input::Rows;
use crate::{Result, SafetyError};
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

/// Most fixed-point iterations (the reference's 11).
const MAX_ITERS: usize = 11;
/// Relative change of `alpha / beta` that ends the iteration (the reference's 1e-3).
const TOL: f64 = 1e-3;
/// Added to the denominators of the updates (the reference's 1e-5).
const EPS: f64 = 1e-5;

/// A LogME score with its per-column parts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogMe {
    /// Mean evidence per sample over classes / targets (higher = more transferable).
    pub score: f64,
    /// Evidence per sample of each class (one-vs-rest indicator) or regression target.
    pub per_column: Vec<f64>,
    /// Fitted prior precision of each column.
    pub alphas: Vec<f64>,
    /// Fitted noise precision of each column.
    pub betas: Vec<f64>,
    /// Samples.
    pub n: usize,
    /// Feature dimension.
    pub d: usize,
    /// Singular values kept (numerical rank used).
    pub rank: usize,
}

/// LogME for classification: features of the target examples and their class labels.
///
/// The classes are `0..=max(labels)` (as the reference); every class must have a label value
/// below `n`.
///
/// # Shapes
/// `features`: `[n, d]`, `labels`: `n` values.
///
/// # Errors
/// [`SafetyError::RowMismatch`] when `labels.len() != n`; [`SafetyError::TooFewClasses`] with
/// fewer than 2 distinct labels; [`SafetyError::TooFewSamples`] below 2 rows; NaN/inf features
/// ([`forge_linalg::LinalgError::NonFinite`]).
///
/// ```
/// use candle_core::{Device, Tensor};
/// use forge_safety::logme::logme_classification;
/// // informative features (the label is the sign of column 0) against pure noise
/// let x: Vec<f64> = (0..40).flat_map(|i| [if i % 2 == 0 { 1.0 } else { -1.0 }, ((i * 7) % 5) as f64]).collect();
/// let labels: Vec<u32> = (0..40).map(|i| (i % 2) as u32).collect();
/// let good = logme_classification(&Tensor::from_vec(x.clone(), (40, 2), &Device::Cpu)?, &labels)?;
/// let shuffled: Vec<u32> = (0..40).map(|i| ((i / 2) % 2) as u32).collect();
/// let bad = logme_classification(&Tensor::from_vec(x, (40, 2), &Device::Cpu)?, &shuffled)?;
/// assert!(good.score > bad.score);
/// # Ok::<(), forge_safety::SafetyError>(())
/// ```
pub fn logme_classification(features: &Tensor, labels: &[u32]) -> Result<LogMe> {
    let basis = LogMeBasis::new(features, "features")?;
    let classes = check_labels(labels, basis.n, "features")?;
    let ys: Vec<Vec<f64>> = (0..classes).map(|c| one_hot(labels, c as u32)).collect();
    basis.evaluate(&ys)
}

/// LogME for regression: features and one or more real-valued targets.
///
/// # Shapes
/// `features`: `[n, d]`, `targets`: `[n]` or `[n, k]`.
///
/// # Errors
/// [`SafetyError::RowMismatch`]; NaN/inf features or targets; [`SafetyError::TooFewSamples`].
pub fn logme_regression(features: &Tensor, targets: &Tensor) -> Result<LogMe> {
    let basis = LogMeBasis::new(features, "features")?;
    let t = match targets.rank() {
        1 => targets.unsqueeze(1)?,
        _ => targets.clone(),
    };
    let y = Rows::from_tensor(&t, "targets", 1)?;
    if y.n != basis.n {
        return Err(SafetyError::RowMismatch {
            what_a: "features".into(),
            rows_a: basis.n,
            what_b: "targets".into(),
            rows_b: y.n,
        });
    }
    let ys: Vec<Vec<f64>> = (0..y.d).map(|j| y.column(j)).collect();
    basis.evaluate(&ys)
}

/// Checks labels against `n` rows; returns the number of classes `max + 1`.
pub(crate) fn check_labels(labels: &[u32], n: usize, what: &str) -> Result<usize> {
    if labels.len() != n {
        return Err(SafetyError::RowMismatch {
            what_a: what.into(),
            rows_a: n,
            what_b: "labels".into(),
            rows_b: labels.len(),
        });
    }
    let classes = labels.iter().copied().max().map_or(0, |m| m as usize + 1);
    let mut seen = vec![false; classes];
    for &l in labels {
        seen[l as usize] = true;
    }
    let distinct = seen.iter().filter(|s| **s).count();
    if distinct < 2 {
        return Err(SafetyError::TooFewClasses {
            what: "labels".into(),
            got: distinct,
        });
    }
    Ok(classes)
}

pub(crate) fn one_hot(labels: &[u32], c: u32) -> Vec<f64> {
    labels
        .iter()
        .map(|&l| if l == c { 1.0 } else { 0.0 })
        .collect()
}

/// The decomposition of `F` shared by every target column (and by permuted labels).
pub(crate) struct LogMeBasis {
    pub(crate) n: usize,
    d: usize,
    /// `sigma_k = s_k^2`, kept values.
    sigma: Vec<f64>,
    /// Projection: `x = P^T y` where `P` is `[n, k]` (`U`), applied as `x = W^T (F^T y)` when
    /// `n > d` (`W = V_k diag(1/s)`, `[d, k]`), or directly with `U` when `n <= d`.
    proj: Projection,
}

enum Projection {
    /// `x = W^T F^T y`; `f` is `[n, d]`, `w` is `[d, k]`.
    ViaFeatures { f: Tensor, w: Tensor },
    /// `x = U^T y`; `u` is `[n, k]`.
    Direct { u: Tensor },
}

impl LogMeBasis {
    pub(crate) fn new(features: &Tensor, what: &str) -> Result<Self> {
        let rows = Rows::from_tensor(features, what, 2)?;
        let (n, d) = (rows.n, rows.d);
        let f = Tensor::from_vec(rows.data, (n, d), &Device::Cpu)?;
        if n > d {
            let g = f.t()?.matmul(&f)?;
            let (w, v) = forge_linalg::dense::eigh(&g)?;
            let w: Vec<f64> = w.to_vec1()?;
            let vmax = w.iter().copied().fold(0.0, f64::max);
            let floor = (d as f64 * f64::EPSILON * vmax).max(1e-20);
            // descending order, as the SVD
            let keep: Vec<usize> = (0..d).rev().filter(|&i| w[i] > floor).collect();
            let sigma: Vec<f64> = keep.iter().map(|&i| w[i]).collect();
            let k = keep.len();
            let vv: Vec<Vec<f64>> = v.to_vec2()?;
            let mut wdata = Vec::with_capacity(d * k);
            for row in &vv {
                for (j, &i) in keep.iter().enumerate() {
                    wdata.push(row[i] / sigma[j].sqrt());
                }
            }
            let w = Tensor::from_vec(wdata, (d, k), &Device::Cpu)?;
            Ok(Self {
                n,
                d,
                sigma,
                proj: Projection::ViaFeatures { f, w },
            })
        } else {
            let g = f.matmul(&f.t()?)?;
            let (w, u) = forge_linalg::dense::eigh(&g)?;
            let w: Vec<f64> = w.to_vec1()?;
            let order: Vec<usize> = (0..n).rev().collect();
            let sigma: Vec<f64> = order.iter().map(|&i| w[i].max(0.0)).collect();
            let idx = Tensor::from_vec(
                order.iter().map(|&i| i as u32).collect::<Vec<_>>(),
                n,
                &Device::Cpu,
            )?;
            let u = u.index_select(&idx, 1)?;
            Ok(Self {
                n,
                d,
                sigma,
                proj: Projection::Direct { u },
            })
        }
    }

    /// The numerical rank used.
    pub(crate) fn rank(&self) -> usize {
        self.sigma.len()
    }

    /// `x = U^T y` for each column of `ys` (each of length `n`).
    fn project(&self, ys: &[Vec<f64>]) -> Result<Vec<Vec<f64>>> {
        let c = ys.len();
        let mut ymat = vec![0.0; self.n * c];
        for (j, y) in ys.iter().enumerate() {
            for (i, v) in y.iter().enumerate() {
                ymat[i * c + j] = *v;
            }
        }
        let y = Tensor::from_vec(ymat, (self.n, c), &Device::Cpu)?;
        let x = match &self.proj {
            Projection::ViaFeatures { f, w } => w.t()?.matmul(&f.t()?.matmul(&y)?)?,
            Projection::Direct { u } => u.t()?.matmul(&y)?,
        };
        let x: Vec<Vec<f64>> = x.t()?.contiguous()?.to_vec2()?;
        Ok(x)
    }

    /// LogME of each column of `ys`.
    pub(crate) fn evaluate(&self, ys: &[Vec<f64>]) -> Result<LogMe> {
        let xs = self.project(ys)?;
        let mut per_column = Vec::with_capacity(ys.len());
        let (mut alphas, mut betas) = (Vec::new(), Vec::new());
        for (y, x) in ys.iter().zip(&xs) {
            let (e, a, b) = self.evidence(y, x);
            per_column.push(e);
            alphas.push(a);
            betas.push(b);
        }
        let score = per_column.iter().sum::<f64>() / per_column.len() as f64;
        if !score.is_finite() {
            return Err(SafetyError::Degenerate {
                what: "features".into(),
                reason: format!("the LogME evidence is {score} (constant targets or features?)"),
            });
        }
        Ok(LogMe {
            score,
            per_column,
            alphas,
            betas,
            n: self.n,
            d: self.d,
            rank: self.rank(),
        })
    }

    /// The evidence per sample of each column of `ys` (for permutation nulls: one projection
    /// for all columns).
    pub(crate) fn column_evidences(&self, ys: &[Vec<f64>]) -> Result<Vec<f64>> {
        let xs = self.project(ys)?;
        Ok(ys
            .iter()
            .zip(&xs)
            .map(|(y, x)| self.evidence(y, x).0)
            .collect())
    }

    /// (evidence / N, alpha, beta) for one column `y` with projection `x`.
    fn evidence(&self, y: &[f64], x: &[f64]) -> (f64, f64, f64) {
        let n = self.n as f64;
        let d = self.d as f64;
        let x2: Vec<f64> = x.iter().map(|v| v * v).collect();
        let res_x2 = y.iter().map(|v| v * v).sum::<f64>() - x2.iter().sum::<f64>();
        let (mut alpha, mut beta) = (1.0f64, 1.0f64);
        let (mut m2, mut res2) = (0.0, 0.0);
        for _ in 0..MAX_ITERS {
            let t = alpha / beta;
            let mut gamma = 0.0;
            m2 = 0.0;
            res2 = res_x2;
            for (s, q) in self.sigma.iter().zip(&x2) {
                gamma += s / (s + t);
                m2 += s * q / ((t + s) * (t + s));
                let r = 1.0 + s / t;
                res2 += q / (r * r);
            }
            alpha = gamma / (m2 + EPS);
            beta = (n - gamma) / (res2 + EPS);
            let t_new = alpha / beta;
            if (t_new - t).abs() / t <= TOL {
                break;
            }
        }
        let log_det: f64 = self.sigma.iter().map(|s| (alpha + beta * s).ln()).sum();
        let ev = d / 2.0 * alpha.ln() + n / 2.0 * beta.ln()
            - 0.5 * log_det
            - beta / 2.0 * res2
            - alpha / 2.0 * m2
            - n / 2.0 * (2.0 * std::f64::consts::PI).ln();
        (ev / n, alpha, beta)
    }
}
