//! Covariance-shift transfer: importance-weighted source fit (density ratio from a domain
//! classifier), blended with a target-only fit; the blend is chosen on held-out target data.

use crate::data::{self, check_lam, check_pos, softplus, Mat64};
use crate::logistic::BinaryProblem;
use crate::model::{LinearModel, LogisticModel};
use crate::ridge::penalized_ls;
use crate::{ClassicalError, Result};
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

/// Hyperparameters of [`covariance_shift_transfer`] / [`covariance_shift_transfer_logistic`].
///
/// | field | default | range |
/// |---|---|---|
/// | `domain_lam` | 1.0 | >= 0, L2 of the domain classifier |
/// | `clip` | 10.0 | > 0, maximum importance weight (after normalising to mean 1) |
/// | `lams` | 1e-3 .. 1e3 (7 values) | each >= 0, candidate penalties for both fits |
/// | `blends` | 0.0, 0.1, ..., 1.0 | each in `[0, 1]`, weight of the source fit |
/// | `holdout_fraction` | 0.3 | in (0, 1) |
/// | `seed` | 0 | any |
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CovShiftParams {
    /// L2 penalty of the logistic domain classifier.
    pub domain_lam: f64,
    /// Upper clip of the normalised importance weights.
    pub clip: f64,
    /// Candidate penalties (weighted-source ridge/logistic and target-only fit).
    pub lams: Vec<f64>,
    /// Candidate blend weights `alpha` of the importance-weighted source fit.
    pub blends: Vec<f64>,
    /// Fraction of the target training rows held out to choose `alpha` and the penalties.
    pub holdout_fraction: f64,
    /// Seed of the held-out split.
    pub seed: u64,
}

impl Default for CovShiftParams {
    fn default() -> Self {
        Self {
            domain_lam: 1.0,
            clip: 10.0,
            lams: vec![1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0],
            blends: (0..=10).map(|i| i as f64 / 10.0).collect(),
            holdout_fraction: 0.3,
            seed: 0,
        }
    }
}

impl CovShiftParams {
    /// Sets the domain-classifier penalty.
    pub fn domain_lam(mut self, v: f64) -> Self {
        self.domain_lam = v;
        self
    }
    /// Sets the weight clip.
    pub fn clip(mut self, v: f64) -> Self {
        self.clip = v;
        self
    }
    /// Sets the candidate penalties.
    pub fn lams(mut self, v: Vec<f64>) -> Self {
        self.lams = v;
        self
    }
    /// Sets the candidate blends.
    pub fn blends(mut self, v: Vec<f64>) -> Self {
        self.blends = v;
        self
    }
    /// Sets the held-out fraction.
    pub fn holdout_fraction(mut self, v: f64) -> Self {
        self.holdout_fraction = v;
        self
    }
    /// Sets the seed.
    pub fn seed(mut self, v: u64) -> Self {
        self.seed = v;
        self
    }

    fn validate(&self) -> Result<()> {
        check_lam("domain_lam", self.domain_lam)?;
        check_pos("clip", self.clip)?;
        if self.lams.is_empty() {
            return Err(ClassicalError::InvalidParameter {
                name: "lams",
                reason: "is empty".into(),
            });
        }
        for &l in &self.lams {
            check_lam("lams", l)?;
        }
        if self.blends.is_empty() {
            return Err(ClassicalError::InvalidParameter {
                name: "blends",
                reason: "is empty".into(),
            });
        }
        if let Some(&a) = self.blends.iter().find(|a| !(0.0..=1.0).contains(*a)) {
            return Err(ClassicalError::InvalidParameter {
                name: "blends",
                reason: format!("each must be in [0, 1], got {a}"),
            });
        }
        if !(self.holdout_fraction > 0.0 && self.holdout_fraction < 1.0) {
            return Err(ClassicalError::InvalidParameter {
                name: "holdout_fraction",
                reason: format!("must be in (0, 1), got {}", self.holdout_fraction),
            });
        }
        Ok(())
    }
}

/// Result of covariance-shift transfer.
#[derive(Debug, Clone)]
pub struct CovShiftFit<M> {
    /// The blended model `alpha * f_weighted + (1 - alpha) * f_target` (parameters blended;
    /// for logistic models this blends the logits).
    pub model: M,
    /// Chosen blend weight `alpha` of the importance-weighted source fit.
    pub blend: f64,
    /// Chosen penalty of the importance-weighted source fit.
    pub lam_source: f64,
    /// Chosen penalty of the target-only fit.
    pub lam_target: f64,
    /// Importance weights of the source rows (clipped, mean 1).
    pub importance_weights: Vec<f64>,
    /// Kish effective sample size of the weighted source, `(sum w)^2 / sum w^2`.
    pub effective_sample_size: f64,
}

/// Importance weights `w(x) = p_t(x) / p_s(x)` of the source rows, estimated from a logistic
/// domain classifier (Bickel, Brückner & Scheffer, 2009, "Discriminative Learning Under
/// Covariate Shift", JMLR 10): `w(x) = (n_s / n_t) P(t | x) / P(s | x)`, then scaled and clipped,
/// `min(c w, clip)`, with `c` chosen so that the weights have mean 1 (`clip >= 1`).
///
/// # Shapes
/// `xs`: `[n_s, d]`, `xt`: `[n_t, d]` -> `[n_s]`
///
/// # Errors
/// Bad input; column mismatch; `domain_lam < 0`; `clip <= 0`.
pub fn importance_weights(xs: &Tensor, xt: &Tensor, domain_lam: f64, clip: f64) -> Result<Tensor> {
    check_lam("domain_lam", domain_lam)?;
    check_pos("clip", clip)?;
    let xs = data::matrix(xs, "xs")?;
    let xt = data::matrix_cols(xt, "xt", xs.d)?;
    let w = density_ratio(&xs, &xt, domain_lam, clip)?;
    data::tensor1(w, &Device::Cpu)
}

fn density_ratio(xs: &Mat64, xt: &Mat64, domain_lam: f64, clip: f64) -> Result<Vec<f64>> {
    let mut v = xs.v.clone();
    v.extend_from_slice(&xt.v);
    let all = Mat64 {
        v,
        n: xs.n + xt.n,
        d: xs.d,
    };
    let mut lab = vec![0.0; xs.n];
    lab.extend(std::iter::repeat_n(1.0, xt.n));
    let sol = BinaryProblem {
        x: &all,
        y: &lab,
        s: None,
        offset: None,
        lam: domain_lam.max(1e-8),
        w0: None,
    }
    .solve("covariance_shift domain classifier")?;
    // P(t|x)/P(s|x) = exp(logit); the prior ratio n_s/n_t cancels after normalising.
    let logits = xs.affine(&sol.w, sol.b);
    let mx = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let w: Vec<f64> = logits.iter().map(|z| (z - mx).exp()).collect();
    Ok(clip_normalise(&w, clip))
}

/// `min(c w_i, clip)` with the scale `c` chosen (by bisection) so that the mean is 1; if
/// `clip < 1` a mean of 1 is impossible and every weight becomes `clip`.
fn clip_normalise(w: &[f64], clip: f64) -> Vec<f64> {
    let n = w.len() as f64;
    let mean_at = |c: f64| w.iter().map(|&v| (c * v).min(clip)).sum::<f64>() / n;
    let m = w.iter().sum::<f64>() / n;
    let (mut lo, mut hi) = (0.0, 1.0 / m);
    while mean_at(hi) < 1.0 && hi < 1e300 {
        if clip < 1.0 {
            return vec![clip; w.len()];
        }
        hi *= 2.0;
    }
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if mean_at(mid) < 1.0 {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    w.iter().map(|&v| (hi * v).min(clip)).collect()
}

#[derive(Clone, Copy, PartialEq)]
enum Task {
    Regression,
    Binary,
}

struct Split {
    fit: Vec<usize>,
    hold: Vec<usize>,
}

fn split(n: usize, frac: f64, seed: u64) -> Result<Split> {
    if n < 2 {
        return Err(ClassicalError::InvalidParameter {
            name: "yt",
            reason: format!("covariance-shift blending needs at least 2 target rows, got {n}"),
        });
    }
    let perm = forge_linalg::rng::permutation(n, &mut forge_linalg::seeded_rng(seed));
    let h = ((n as f64 * frac).round() as usize).clamp(1, n - 1);
    Ok(Split {
        hold: perm[..h].to_vec(),
        fit: perm[h..].to_vec(),
    })
}

/// Fits one model; `None` if the fit is impossible (e.g. a single class).
fn fit_one(
    task: Task,
    x: &Mat64,
    y: &[f64],
    s: Option<&[f64]>,
    lam: f64,
) -> Option<(Vec<f64>, f64)> {
    match task {
        Task::Regression => penalized_ls(x, y, s, lam, None).ok(),
        Task::Binary => {
            if data::check_binary(y, "y", true).is_err() {
                return None;
            }
            BinaryProblem {
                x,
                y,
                s,
                offset: None,
                lam,
                w0: None,
            }
            .solve("covariance_shift fit")
            .ok()
            .map(|sol| (sol.w, sol.b))
        }
    }
}

fn loss(task: Task, x: &Mat64, y: &[f64], w: &[f64], b: f64) -> f64 {
    let z = x.affine(w, b);
    let l: f64 = z
        .iter()
        .zip(y)
        .map(|(&z, &y)| match task {
            Task::Regression => (z - y) * (z - y),
            Task::Binary => softplus(z) - y * z,
        })
        .sum();
    l / y.len() as f64
}

fn blend(a: f64, ws: &(Vec<f64>, f64), wt: &(Vec<f64>, f64)) -> (Vec<f64>, f64) {
    let w =
        ws.0.iter()
            .zip(&wt.0)
            .map(|(s, t)| a * s + (1.0 - a) * t)
            .collect();
    (w, a * ws.1 + (1.0 - a) * wt.1)
}

type Fitted = (Vec<f64>, f64);

fn run(
    task: Task,
    xs: &Tensor,
    ys: &Tensor,
    xt: &Tensor,
    yt: &Tensor,
    p: &CovShiftParams,
) -> Result<(Fitted, CovShiftFit<()>)> {
    p.validate()?;
    let xsm = data::matrix(xs, "xs")?;
    let ysv = data::vector(ys, "ys")?;
    data::check_len(&ysv, xsm.n, "ys")?;
    let xtm = data::matrix_cols(xt, "xt", xsm.d)?;
    let ytv = data::vector(yt, "yt")?;
    data::check_len(&ytv, xtm.n, "yt")?;
    if task == Task::Binary {
        data::check_binary(&ysv, "ys", true)?;
        data::check_binary(&ytv, "yt", false)?;
    }
    let iw = density_ratio(&xsm, &xtm, p.domain_lam, p.clip)?;
    let ess = iw.iter().sum::<f64>().powi(2) / iw.iter().map(|w| w * w).sum::<f64>();
    let sp = split(xtm.n, p.holdout_fraction, p.seed)?;
    let (xf, yf) = (
        xtm.take(&sp.fit),
        sp.fit.iter().map(|&i| ytv[i]).collect::<Vec<_>>(),
    );
    let (xh, yh) = (
        xtm.take(&sp.hold),
        sp.hold.iter().map(|&i| ytv[i]).collect::<Vec<_>>(),
    );
    // Candidate fits.
    let src: Vec<(f64, Fitted)> = p
        .lams
        .iter()
        .filter_map(|&l| fit_one(task, &xsm, &ysv, Some(&iw), l).map(|f| (l, f)))
        .collect();
    if src.is_empty() {
        return Err(ClassicalError::NoConvergence {
            method: "covariance_shift weighted fit",
            iterations: 0,
            grad_norm: f64::NAN,
        });
    }
    let tgt: Vec<(f64, Fitted)> = p
        .lams
        .iter()
        .filter_map(|&l| fit_one(task, &xf, &yf, None, l).map(|f| (l, f)))
        .collect();
    // Choose (lam_s, lam_t, alpha) on the held-out rows; ties prefer the first (smallest) candidates.
    let mut best = (f64::INFINITY, 0usize, None::<usize>, 1.0f64);
    for (i, (_, fs)) in src.iter().enumerate() {
        if tgt.is_empty() {
            let l = loss(task, &xh, &yh, &fs.0, fs.1);
            if l < best.0 {
                best = (l, i, None, 1.0);
            }
            continue;
        }
        for (j, (_, ft)) in tgt.iter().enumerate() {
            for &a in &p.blends {
                let (w, b) = blend(a, fs, ft);
                let l = loss(task, &xh, &yh, &w, b);
                if l < best.0 - 1e-12 {
                    best = (l, i, Some(j), a);
                }
            }
        }
    }
    let (_, i, j, a) = best;
    let (lam_s, fs) = &src[i];
    // Refit the target-only model on all target training rows with the chosen penalty.
    let (lam_t, fitted) = match j {
        Some(j) => {
            let lam_t = tgt[j].0;
            match fit_one(task, &xtm, &ytv, None, lam_t) {
                Some(ft) => (lam_t, blend(a, fs, &ft)),
                None => (lam_t, blend(a, fs, &tgt[j].1)),
            }
        }
        None => (f64::NAN, fs.clone()),
    };
    let blend_used = if j.is_some() { a } else { 1.0 };
    tracing::debug!(
        blend = blend_used,
        lam_s,
        lam_t,
        ess,
        "covariance-shift transfer"
    );
    Ok((
        fitted,
        CovShiftFit {
            model: (),
            blend: blend_used,
            lam_source: *lam_s,
            lam_target: lam_t,
            importance_weights: iw,
            effective_sample_size: ess,
        },
    ))
}

/// Covariance-shift transfer for regression (Shimodaira, 2000, "Improving predictive inference
/// under covariate shift by weighting the log-likelihood function", JSPI 90; density ratio by a
/// domain classifier as Bickel et al., 2009):
///
/// 1. importance weights `w_i = p_t(x_i) / p_s(x_i)` of the source rows from a logistic domain
///    classifier (clipped, mean 1; [`importance_weights`]);
/// 2. importance-weighted ridge on the source, `argmin sum_i w_i (y_i - x_i^T v - c)^2 + lam_s ||v||^2`;
/// 3. a target-only ridge fit;
/// 4. the blend `alpha f_w + (1 - alpha) f_t` with `alpha`, `lam_s`, `lam_t` chosen to minimise the
///    squared error on a held-out part of the target *training* rows; the target-only fit is then
///    refitted on all target training rows.
///
/// If `yt` cannot support a target-only fit, `alpha = 1`.
///
/// # Shapes
/// `xs`: `[n_s, d]`, `ys`: `[n_s]`, `xt`: `[n_t, d]` (n_t >= 2), `yt`: `[n_t]`
///
/// # Errors
/// Bad input or parameters; fewer than 2 target rows.
pub fn covariance_shift_transfer(
    xs: &Tensor,
    ys: &Tensor,
    xt: &Tensor,
    yt: &Tensor,
    params: &CovShiftParams,
) -> Result<CovShiftFit<LinearModel>> {
    let ((w, b), r) = run(Task::Regression, xs, ys, xt, yt, params)?;
    Ok(CovShiftFit {
        model: LinearModel::from_vec(w, b)?,
        blend: r.blend,
        lam_source: r.lam_source,
        lam_target: r.lam_target,
        importance_weights: r.importance_weights,
        effective_sample_size: r.effective_sample_size,
    })
}

/// Covariance-shift transfer for binary classification: as [`covariance_shift_transfer`] with
/// importance-weighted L2 logistic regression on the source, a target-only logistic fit, logits
/// blended, and the blend chosen by held-out log-loss.
///
/// # Shapes
/// `xs`: `[n_s, d]`, `ys`: `[n_s]` 0/1, `xt`: `[n_t, d]`, `yt`: `[n_t]` 0/1
///
/// # Errors
/// Bad input or parameters; labels other than 0/1; a single class in `ys`.
pub fn covariance_shift_transfer_logistic(
    xs: &Tensor,
    ys: &Tensor,
    xt: &Tensor,
    yt: &Tensor,
    params: &CovShiftParams,
) -> Result<CovShiftFit<LogisticModel>> {
    let ((w, b), r) = run(Task::Binary, xs, ys, xt, yt, params)?;
    Ok(CovShiftFit {
        model: LogisticModel::from_vec(w, b)?,
        blend: r.blend,
        lam_source: r.lam_source,
        lam_target: r.lam_target,
        importance_weights: r.importance_weights,
        effective_sample_size: r.effective_sample_size,
    })
}
