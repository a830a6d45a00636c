//! L2-penalised logistic regression (binary and multinomial) solved exactly by damped Newton
//! iterations (iteratively reweighted least squares), and the source-centred logistic transfer.

use crate::data::{self, check_lam, sigmoid, softplus, Mat64};
use crate::model::{LogisticModel, SoftmaxModel};
use crate::ridge::{sample_weights, source_weights};
use crate::{ClassicalError, Result};
use candle_core::{Device, Tensor};
use faer::Mat;

const MAX_ITER: usize = 100;

/// The binary problem `min_{w,b} sum_i s_i [softplus(z_i) - y_i z_i] + lam/2 ||w - w0||^2`,
/// `z_i = x_i^T w + b + o_i`.
pub(crate) struct BinaryProblem<'a> {
    pub x: &'a Mat64,
    pub y: &'a [f64],
    pub s: Option<&'a [f64]>,
    pub offset: Option<&'a [f64]>,
    pub lam: f64,
    pub w0: Option<&'a [f64]>,
}

/// Solution of a [`BinaryProblem`]: weights, intercept and the Hessian `[(d+1), (d+1)]`
/// (row-major, intercept last) at the optimum.
pub(crate) struct BinarySolution {
    pub w: Vec<f64>,
    pub b: f64,
    pub hessian: Vec<f64>,
}

impl BinaryProblem<'_> {
    fn value(&self, w: &[f64], b: f64) -> f64 {
        let mut f = 0.0;
        for (i, row) in self.x.v.chunks_exact(self.x.d).enumerate() {
            let z = data::dot(row, w) + b + self.offset.map_or(0.0, |o| o[i]);
            f += self.s.map_or(1.0, |s| s[i]) * (softplus(z) - self.y[i] * z);
        }
        f + 0.5 * self.lam * self.pen(w)
    }

    fn pen(&self, w: &[f64]) -> f64 {
        match self.w0 {
            Some(w0) => w.iter().zip(w0).map(|(a, b)| (a - b) * (a - b)).sum(),
            None => data::dot(w, w),
        }
    }

    /// Gradient and Hessian (row-major, parameter order `w..., b`).
    fn grad_hess(&self, w: &[f64], b: f64) -> (Vec<f64>, Vec<f64>) {
        let d = self.x.d;
        let p = d + 1;
        let mut g = vec![0.0; p];
        let mut h = vec![0.0; p * p];
        let mut xt = vec![1.0; p];
        for (i, row) in self.x.v.chunks_exact(d).enumerate() {
            let z = data::dot(row, w) + b + self.offset.map_or(0.0, |o| o[i]);
            let mu = sigmoid(z);
            let si = self.s.map_or(1.0, |s| s[i]);
            let r = si * (mu - self.y[i]);
            let v = si * mu * (1.0 - mu);
            xt[..d].copy_from_slice(row);
            for a in 0..p {
                g[a] += r * xt[a];
                let va = v * xt[a];
                let hr = &mut h[a * p..a * p + p];
                for (hv, &xb) in hr.iter_mut().zip(&xt) {
                    *hv += va * xb;
                }
            }
        }
        for j in 0..d {
            let c = self.w0.map_or(0.0, |w0| w0[j]);
            g[j] += self.lam * (w[j] - c);
            h[j * p + j] += self.lam;
        }
        (g, h)
    }

    /// Damped Newton with backtracking line search from `w0` (or 0), intercept 0. With `lam = 0`
    /// a solution that classifies every row correctly reveals separable data (no finite optimum).
    pub fn solve(&self, method: &'static str) -> Result<BinarySolution> {
        let sol = self.newton(method)?;
        if self.lam == 0.0 {
            let separated = self.x.v.chunks_exact(self.x.d).enumerate().all(|(i, row)| {
                let z = data::dot(row, &sol.w) + sol.b + self.offset.map_or(0.0, |o| o[i]);
                self.s.is_some_and(|s| s[i] == 0.0) || (z > 0.0) == (self.y[i] == 1.0)
            });
            if separated {
                return Err(ClassicalError::Separable(method));
            }
        }
        Ok(sol)
    }

    fn newton(&self, method: &'static str) -> Result<BinarySolution> {
        let d = self.x.d;
        let p = d + 1;
        let mut w: Vec<f64> = self.w0.map_or(vec![0.0; d], |w0| w0.to_vec());
        let mut b = 0.0;
        let mut f = self.value(&w, b);
        let scale = self
            .s
            .map_or(self.x.n as f64, |s| s.iter().sum::<f64>())
            .max(1.0);
        let tol = 1e-10 * scale;
        let mut gnorm = f64::INFINITY;
        for _ in 0..MAX_ITER {
            let (g, h) = self.grad_hess(&w, b);
            gnorm = g.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            if gnorm <= tol {
                return Ok(BinarySolution { w, b, hessian: h });
            }
            let step = newton_step(&h, &g, p)?;
            let theta_max = w.iter().fold(b.abs(), |m, v| m.max(v.abs()));
            if step.iter().all(|s| s.abs() <= 1e-13 * (1.0 + theta_max)) {
                // The Newton step is below the floating-point resolution of the parameters.
                return Ok(BinarySolution { w, b, hessian: h });
            }
            let mut t = 1.0;
            let mut accepted = false;
            for _ in 0..60 {
                let wn: Vec<f64> = w.iter().zip(&step).map(|(a, s)| a - t * s).collect();
                let bn = b - t * step[d];
                let fnew = self.value(&wn, bn);
                let dec: f64 = g.iter().zip(&step).map(|(a, s)| a * s).sum();
                if fnew.is_finite() && fnew <= f - 1e-4 * t * dec + 1e-12 * f.abs().max(1.0) {
                    w = wn;
                    b = bn;
                    f = fnew;
                    accepted = true;
                    break;
                }
                t *= 0.5;
            }
            if !accepted {
                // No decrease possible in floating point: at the optimum to machine precision.
                let (g, h) = self.grad_hess(&w, b);
                gnorm = g.iter().fold(0.0f64, |m, v| m.max(v.abs()));
                if gnorm <= 1e-6 * scale {
                    return Ok(BinarySolution { w, b, hessian: h });
                }
                break;
            }
        }
        Err(ClassicalError::NoConvergence {
            method,
            iterations: MAX_ITER,
            grad_norm: gnorm,
        })
    }
}

/// Solves `H s = g` by Cholesky with a tiny relative damping (which does not move the fixed point).
fn newton_step(h: &[f64], g: &[f64], p: usize) -> Result<Vec<f64>> {
    let maxdiag = (0..p)
        .map(|i| h[i * p + i])
        .fold(0.0f64, f64::max)
        .max(1e-300);
    let mut damp = 1e-12 * maxdiag;
    for _ in 0..8 {
        let a = Mat::from_fn(p, p, |i, j| h[i * p + j] + if i == j { damp } else { 0.0 });
        let rhs = Mat::from_fn(p, 1, |i, _| g[i]);
        if let Ok(s) = forge_linalg::dense::solve_spd_faer(&a, &rhs) {
            let v: Vec<f64> = (0..p).map(|i| s[(i, 0)]).collect();
            if v.iter().all(|x| x.is_finite()) {
                return Ok(v);
            }
        }
        damp = (damp * 1e3).max(1e-10);
    }
    Err(ClassicalError::Linalg(
        forge_linalg::LinalgError::NotPositiveDefinite,
    ))
}

/// L2-penalised binary logistic regression solved exactly by Newton's method / IRLS
/// (Hastie, Tibshirani & Friedman, 2009, *The Elements of Statistical Learning*, §4.4.1):
/// `argmin_{w,b} sum_i [log(1 + exp(z_i)) - y_i z_i] + lam/2 ||w||^2`, `z_i = x_i^T w + b`,
/// intercept unpenalised. Equals scikit-learn's `LogisticRegression(C = 1/lam)`.
///
/// # Shapes
/// `x`: `[n, d]`, `y`: `[n]` with values 0/1
///
/// # Errors
/// Bad input; `lam < 0`; labels other than 0/1; a single class ([`ClassicalError::SingleClass`]);
/// [`ClassicalError::NoConvergence`] (e.g. separable data with `lam = 0`).
pub fn fit_logistic(x: &Tensor, y: &Tensor, lam: f64) -> Result<LogisticModel> {
    check_lam("lam", lam)?;
    let (xm, yv) = data::xy(x, y)?;
    data::check_binary(&yv, "y", true)?;
    let sol = BinaryProblem {
        x: &xm,
        y: &yv,
        s: None,
        offset: None,
        lam,
        w0: None,
    }
    .solve("fit_logistic")?;
    LogisticModel::from_vec(sol.w, sol.b)
}

/// Weighted [`fit_logistic`]: `argmin sum_i s_i [log(1 + exp(z_i)) - y_i z_i] + lam/2 ||w||^2`.
///
/// # Errors
/// As [`fit_logistic`]; negative, non-finite or all-zero weights.
pub fn fit_logistic_weighted(
    x: &Tensor,
    y: &Tensor,
    sample_weight: &Tensor,
    lam: f64,
) -> Result<LogisticModel> {
    check_lam("lam", lam)?;
    let (xm, yv) = data::xy(x, y)?;
    data::check_binary(&yv, "y", true)?;
    let s = sample_weights(sample_weight, xm.n)?;
    let sol = BinaryProblem {
        x: &xm,
        y: &yv,
        s: Some(&s),
        offset: None,
        lam,
        w0: None,
    }
    .solve("fit_logistic_weighted")?;
    LogisticModel::from_vec(sol.w, sol.b)
}

/// Regularized transfer for logistic regression (biased regularisation; Evgeniou & Pontil, 2004,
/// "Regularized Multi-Task Learning", KDD; Kuzborskij & Orabona, 2013): the true logistic loss
/// with a source-centred penalty,
/// `argmin_{w,b} sum_i [log(1 + exp(z_i)) - y_i z_i] + lam/2 ||w - w_src||^2`,
/// solved by Newton's method from `w_src`. The intercept is unpenalised and re-fitted.
/// `lam -> 0` gives [`fit_logistic`] with `lam = 0`; `lam -> inf` gives `w_src`.
///
/// # Shapes
/// `x`: `[n, d]`, `y`: `[n]` 0/1, `source.weights`: `[d]`
///
/// # Errors
/// As [`fit_logistic`]; a source model with a different number of features.
pub fn regularized_transfer_logistic(
    x: &Tensor,
    y: &Tensor,
    source: &LogisticModel,
    lam: f64,
) -> Result<LogisticModel> {
    check_lam("lam", lam)?;
    let (xm, yv) = data::xy(x, y)?;
    data::check_binary(&yv, "y", true)?;
    let w0 = source_weights(&source.weights, xm.d)?;
    let sol = BinaryProblem {
        x: &xm,
        y: &yv,
        s: None,
        offset: None,
        lam,
        w0: Some(&w0),
    }
    .solve("regularized_transfer_logistic")?;
    LogisticModel::from_vec(sol.w, sol.b)
}

/// Weighted [`regularized_transfer_logistic`].
///
/// # Errors
/// As [`regularized_transfer_logistic`] and [`fit_logistic_weighted`].
pub fn regularized_transfer_logistic_weighted(
    x: &Tensor,
    y: &Tensor,
    sample_weight: &Tensor,
    source: &LogisticModel,
    lam: f64,
) -> Result<LogisticModel> {
    check_lam("lam", lam)?;
    let (xm, yv) = data::xy(x, y)?;
    data::check_binary(&yv, "y", true)?;
    let s = sample_weights(sample_weight, xm.n)?;
    let w0 = source_weights(&source.weights, xm.d)?;
    let sol = BinaryProblem {
        x: &xm,
        y: &yv,
        s: Some(&s),
        offset: None,
        lam,
        w0: Some(&w0),
    }
    .solve("regularized_transfer_logistic_weighted")?;
    LogisticModel::from_vec(sol.w, sol.b)
}

/// Multinomial (softmax) logistic regression with an L2 penalty, solved exactly by Newton's
/// method (Böhning, 1992, "Multinomial logistic regression algorithm", AISM 44):
/// `argmin_{W,b} sum_i [logsumexp(z_i) - z_{i,y_i}] + lam/2 ||W||_F^2`, `z_i = W^T x_i + b`,
/// intercepts unpenalised. Equals scikit-learn's `LogisticRegression(C = 1/lam)` (multinomial).
/// The intercepts are identified only up to a common shift; the returned `b` sums to zero.
///
/// # Shapes
/// `x`: `[n, d]`, `y_class_ids`: `[n]` with integer values in `0..n_classes` -> W `[d, k]`, b `[k]`
///
/// # Errors
/// Bad input; `lam < 0`; `n_classes < 2`; labels outside `0..n_classes`;
/// [`ClassicalError::NoConvergence`].
pub fn fit_softmax(
    x: &Tensor,
    y_class_ids: &Tensor,
    n_classes: usize,
    lam: f64,
) -> Result<SoftmaxModel> {
    check_lam("lam", lam)?;
    if n_classes < 2 {
        return Err(ClassicalError::InvalidParameter {
            name: "n_classes",
            reason: format!("must be >= 2, got {n_classes}"),
        });
    }
    let (xm, yv) = data::xy(x, y_class_ids)?;
    let ids = data::class_ids(&yv, n_classes, "y_class_ids")?;
    let (w, b) = softmax_newton(&xm, &ids, n_classes, lam)?;
    SoftmaxModel::new(
        &Tensor::from_vec(w, (xm.d, n_classes), &Device::Cpu)?,
        &Tensor::from_vec(b, n_classes, &Device::Cpu)?,
    )
}

/// Row-wise softmax probabilities of `x W + b` (`W` row-major `[d, k]`).
pub(crate) fn softmax_probs(x: &Mat64, w: &[f64], b: &[f64], k: usize) -> Vec<f64> {
    let mut out = vec![0.0; x.n * k];
    for (row, o) in x.v.chunks_exact(x.d).zip(out.chunks_exact_mut(k)) {
        o.copy_from_slice(b);
        for (j, &xv) in row.iter().enumerate() {
            for (oc, &wc) in o.iter_mut().zip(&w[j * k..j * k + k]) {
                *oc += xv * wc;
            }
        }
        let m = o.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let mut s = 0.0;
        for oc in o.iter_mut() {
            *oc = (*oc - m).exp();
            s += *oc;
        }
        o.iter_mut().for_each(|oc| *oc /= s);
    }
    out
}

/// Mean cross-entropy `1/n sum_i -log p_{i,y_i}` (probabilities clipped at 1e-300).
pub(crate) fn cross_entropy(p: &[f64], ids: &[usize], k: usize) -> f64 {
    let n = ids.len();
    ids.iter()
        .enumerate()
        .map(|(i, &c)| -p[i * k + c].max(1e-300).ln())
        .sum::<f64>()
        / n as f64
}

fn softmax_newton(x: &Mat64, ids: &[usize], k: usize, lam: f64) -> Result<(Vec<f64>, Vec<f64>)> {
    let d = x.d;
    let p1 = d + 1;
    let np = p1 * k; // parameter index (a, c) -> a * k + c, a = d is the intercept
    let mut w = vec![0.0; d * k];
    let mut b = vec![0.0; k];
    let value = |w: &[f64], b: &[f64]| -> f64 {
        let p = softmax_probs(x, w, b, k);
        cross_entropy(&p, ids, k) * x.n as f64 + 0.5 * lam * data::dot(w, w)
    };
    let mut f = value(&w, &b);
    let tol = 1e-10 * (x.n as f64).max(1.0);
    let mut gnorm = f64::INFINITY;
    let mut xt = vec![1.0; p1];
    for _ in 0..MAX_ITER {
        let p = softmax_probs(x, &w, &b, k);
        let mut g = vec![0.0; np];
        let mut h = vec![0.0; np * np];
        for (i, row) in x.v.chunks_exact(d).enumerate() {
            xt[..d].copy_from_slice(row);
            let pi = &p[i * k..i * k + k];
            for a in 0..p1 {
                for c in 0..k {
                    let r = pi[c] - if ids[i] == c { 1.0 } else { 0.0 };
                    g[a * k + c] += r * xt[a];
                }
            }
            for a in 0..p1 {
                for c in 0..k {
                    let row_idx = (a * k + c) * np;
                    for a2 in 0..p1 {
                        let xx = xt[a] * xt[a2];
                        for c2 in 0..k {
                            let v = if c == c2 {
                                pi[c] * (1.0 - pi[c])
                            } else {
                                -pi[c] * pi[c2]
                            };
                            h[row_idx + a2 * k + c2] += v * xx;
                        }
                    }
                }
            }
        }
        for j in 0..d * k {
            g[j] += lam * w[j];
            h[j * np + j] += lam;
        }
        gnorm = g.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        if gnorm <= tol {
            let mean = b.iter().sum::<f64>() / k as f64;
            b.iter_mut().for_each(|v| *v -= mean);
            return Ok((w, b));
        }
        let step = newton_step(&h, &g, np)?;
        let dec: f64 = g.iter().zip(&step).map(|(a, s)| a * s).sum();
        let mut t = 1.0;
        let mut accepted = false;
        for _ in 0..60 {
            let wn: Vec<f64> = w.iter().zip(&step).map(|(a, s)| a - t * s).collect();
            let bn: Vec<f64> = b
                .iter()
                .enumerate()
                .map(|(c, v)| v - t * step[d * k + c])
                .collect();
            let fnew = value(&wn, &bn);
            if fnew.is_finite() && fnew <= f - 1e-4 * t * dec + 1e-12 * f.abs().max(1.0) {
                w = wn;
                b = bn;
                f = fnew;
                accepted = true;
                break;
            }
            t *= 0.5;
        }
        if !accepted {
            break;
        }
    }
    if gnorm <= 1e-6 * (x.n as f64).max(1.0) {
        let mean = b.iter().sum::<f64>() / k as f64;
        b.iter_mut().for_each(|v| *v -= mean);
        return Ok((w, b));
    }
    Err(ClassicalError::NoConvergence {
        method: "fit_softmax",
        iterations: MAX_ITER,
        grad_norm: gnorm,
    })
}
