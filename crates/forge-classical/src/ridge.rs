//! Closed-form ridge regression and regularized (source-centred) transfer for linear models.
//!
//! Both solve the penalised least-squares problem
//! `min_{w,b} sum_i s_i (y_i - x_i^T w - b)^2 + lam ||w - w0||^2`
//! with an unpenalised intercept `b`, by centring (weighted means `x̄`, `ȳ`) and a Cholesky
//! solve of `(X_c^T S X_c + lam I) w = X_c^T S y_c + lam w0`, then `b = ȳ - x̄^T w`.

use crate::data::{self, check_lam, Mat64};
use crate::model::LinearModel;
use crate::{ClassicalError, Result};
use candle_core::Tensor;
use faer::linalg::solvers::Solve;
use faer::Mat;

fn singular() -> ClassicalError {
    ClassicalError::Linalg(forge_linalg::LinalgError::NotPositiveDefinite)
}

/// Ridge regression (Hoerl & Kennard, 1970, "Ridge Regression: Biased Estimation for
/// Nonorthogonal Problems", Technometrics 12):
/// `argmin_{w,b} ||y - X w - b 1||^2 + lam ||w||^2`, intercept unpenalised (solved on centred
/// data, as scikit-learn's `Ridge(alpha = lam, fit_intercept = True)`), closed form by Cholesky.
/// `lam = 0` gives ordinary least squares when `X_c^T X_c` is invertible.
///
/// # Shapes
/// `x`: [n, d], `y`: [n] -> weights [d]
///
/// # Errors
/// Shape/empty/non-finite input; `lam < 0` or non-finite; a singular system with `lam = 0`
/// ([`ClassicalError::Linalg`]).
pub fn ridge(x: &Tensor, y: &Tensor, lam: f64) -> Result<LinearModel> {
    check_lam("lam", lam)?;
    let (n, d) = forge_linalg::check::ensure_matrix(x, "x")?;
    let yv = data::vector(y, "y")?;
    data::check_len(&yv, n, "y")?;
    // Borrow x's f64 buffer (no copy); finiteness is checked inside the solver's first pass.
    let (w, b) = data::with_f64(x, |xs| penalized_ls_raw(xs, n, d, &yv, None, lam, None))??;
    LinearModel::from_vec(w, b)
}

/// Weighted ridge regression: `argmin_{w,b} sum_i s_i (y_i - x_i^T w - b)^2 + lam ||w||^2`
/// with sample weights `s_i >= 0` (not all zero), intercept unpenalised. Used by
/// [`covariance_shift_transfer`](crate::covariance_shift_transfer) for importance weighting.
///
/// # Shapes
/// `x`: [n, d], `y`: [n], `sample_weight`: [n] -> weights [d]
///
/// # Errors
/// As [`ridge`]; negative, non-finite or all-zero weights.
pub fn ridge_weighted(x: &Tensor, y: &Tensor, sample_weight: &Tensor, lam: f64) -> Result<LinearModel> {
    check_lam("lam", lam)?;
    let (xm, yv) = data::xy(x, y)?;
    let s = sample_weights(sample_weight, xm.n)?;
    let (w, b) = penalized_ls(&xm, &yv, Some(&s), lam, None)?;
    LinearModel::from_vec(w, b)
}

/// Regularized transfer for linear regression (biased regularisation towards the source model;
/// Schölkopf, Herbrich & Smola, 2001, "A Generalized Representer Theorem", COLT; Kuzborskij &
/// Orabona, 2013, "Stability and Hypothesis Transfer Learning", ICML):
/// `argmin_{w,b} ||y - X w - b 1||^2 + lam ||w - w_src||^2`.
///
/// Closed form `w = (X_c^T X_c + lam I)^{-1} (X_c^T y_c + lam w_src)`, `b = ȳ - x̄^T w`.
/// **Intercept:** the target intercept is re-fitted freely (unpenalised, from the target means);
/// the source intercept is not used. Equivalently, ridge on the residual `y - X w_src` plus `w_src`.
/// Limits: `lam -> 0` gives the target least-squares fit, `lam -> inf` gives `w_src` (with the
/// intercept `ȳ - x̄^T w_src`).
///
/// # Shapes
/// `x`: [n, d], `y`: [n], `source.weights`: [d] -> weights [d]
///
/// # Errors
/// As [`ridge`]; a source model with a different number of features.
pub fn regularized_transfer_linear(
    x: &Tensor,
    y: &Tensor,
    source: &LinearModel,
    lam: f64,
) -> Result<LinearModel> {
    check_lam("lam", lam)?;
    let (xm, yv) = data::xy(x, y)?;
    let w0 = source_weights(&source.weights, xm.d)?;
    let (w, b) = penalized_ls(&xm, &yv, None, lam, Some(&w0))?;
    LinearModel::from_vec(w, b)
}

/// Weighted version of [`regularized_transfer_linear`]:
/// `argmin_{w,b} sum_i s_i (y_i - x_i^T w - b)^2 + lam ||w - w_src||^2`.
///
/// # Errors
/// As [`ridge_weighted`] and [`regularized_transfer_linear`].
pub fn regularized_transfer_linear_weighted(
    x: &Tensor,
    y: &Tensor,
    sample_weight: &Tensor,
    source: &LinearModel,
    lam: f64,
) -> Result<LinearModel> {
    check_lam("lam", lam)?;
    let (xm, yv) = data::xy(x, y)?;
    let s = sample_weights(sample_weight, xm.n)?;
    let w0 = source_weights(&source.weights, xm.d)?;
    let (w, b) = penalized_ls(&xm, &yv, Some(&s), lam, Some(&w0))?;
    LinearModel::from_vec(w, b)
}

/// Reads and checks a source weight vector against `d` features.
pub(crate) fn source_weights(w: &Tensor, d: usize) -> Result<Vec<f64>> {
    let w0 = data::weights(w, "source.weights")?;
    if w0.len() != d {
        return Err(ClassicalError::Shape {
            what: "source.weights".into(),
            expected: format!("[{d}] (x has {d} columns)"),
            got: vec![w0.len()],
        });
    }
    Ok(w0)
}

/// Reads and checks sample weights: `[n]`, finite, `>= 0`, positive sum.
pub(crate) fn sample_weights(s: &Tensor, n: usize) -> Result<Vec<f64>> {
    let v = data::vector(s, "sample_weight")?;
    data::check_len(&v, n, "sample_weight")?;
    check_sample_weights(&v)?;
    Ok(v)
}

pub(crate) fn check_sample_weights(v: &[f64]) -> Result<()> {
    if let Some((i, &w)) = v.iter().enumerate().find(|(_, &w)| w < 0.0) {
        return Err(ClassicalError::InvalidParameter {
            name: "sample_weight",
            reason: format!("must be >= 0, got {w} at index {i}"),
        });
    }
    if v.iter().sum::<f64>() <= 0.0 {
        return Err(ClassicalError::InvalidParameter {
            name: "sample_weight",
            reason: "all weights are zero".into(),
        });
    }
    Ok(())
}

/// Weighted column means of `x` (row-major `[n, d]`) and the mean of `y`.
fn weighted_means(x: &[f64], d: usize, y: &[f64], s: Option<&[f64]>) -> (Vec<f64>, f64, f64) {
    let mut mx = vec![0.0; d];
    let mut my = 0.0;
    let mut tot = 0.0;
    match s {
        None => {
            for (row, &yi) in x.chunks_exact(d).zip(y) {
                for (m, &v) in mx.iter_mut().zip(row) {
                    *m += v;
                }
                my += yi;
            }
            tot = y.len() as f64;
        }
        Some(s) => {
            for ((row, &yi), &si) in x.chunks_exact(d).zip(y).zip(s) {
                for (m, &v) in mx.iter_mut().zip(row) {
                    *m += si * v;
                }
                my += si * yi;
                tot += si;
            }
        }
    }
    for m in &mut mx {
        *m /= tot;
    }
    (mx, my / tot, tot)
}

/// Centred (weighted) Gram matrix `X_c^T S X_c` (full square, row-major `[d, d]`) and `X_c^T S y_c`.
pub(crate) fn centered_gram(
    x: &Mat64,
    y: &[f64],
    s: Option<&[f64]>,
    mx: &[f64],
    my: f64,
) -> (Vec<f64>, Vec<f64>) {
    centered_gram_raw(&x.v, x.d, y, s, mx, my)
}

fn centered_gram_raw(x: &[f64], d: usize, y: &[f64], s: Option<&[f64]>, mx: &[f64], my: f64) -> (Vec<f64>, Vec<f64>) {
    let mut g = vec![0.0; d * d];
    let mut c = vec![0.0; d];
    let mut buf = vec![0.0; d];
    for (i, (row, &yi)) in x.chunks_exact(d).zip(y).enumerate() {
        let si = s.map_or(1.0, |s| s[i]);
        for ((b, &v), &m) in buf.iter_mut().zip(row).zip(mx) {
            *b = v - m;
        }
        let yc = si * (yi - my);
        for (a, (gr, cv)) in g.chunks_exact_mut(d).zip(c.iter_mut()).enumerate() {
            let ba = buf[a];
            *cv += ba * yc;
            let sba = si * ba;
            for (gv, &bb) in gr.iter_mut().zip(&buf) {
                *gv += sba * bb;
            }
        }
    }
    (g, c)
}

/// Solves `min sum_i s_i (y_i - x_i^T w - b)^2 + lam ||w - w0||^2`; returns `(w, b)`.
pub(crate) fn penalized_ls(
    x: &Mat64,
    y: &[f64],
    s: Option<&[f64]>,
    lam: f64,
    w0: Option<&[f64]>,
) -> Result<(Vec<f64>, f64)> {
    penalized_ls_raw(&x.v, x.n, x.d, y, s, lam, w0)
}

/// [`penalized_ls`] on a row-major `[n, d]` slice; also rejects non-finite `x` (detected from
/// the column sums of the first pass, then located by a scan).
fn penalized_ls_raw(
    x: &[f64],
    n: usize,
    d: usize,
    y: &[f64],
    s: Option<&[f64]>,
    lam: f64,
    w0: Option<&[f64]>,
) -> Result<(Vec<f64>, f64)> {
    debug_assert_eq!(x.len(), n * d);
    let (mx, my, _) = weighted_means(x, d, y, s);
    if mx.iter().any(|m| !m.is_finite()) {
        forge_linalg::check::ensure_finite_slice(x, "x")?;
    }
    let (g, mut c) = centered_gram_raw(x, d, y, s, &mx, my);
    if let Some(w0) = w0 {
        for (cv, &w) in c.iter_mut().zip(w0) {
            *cv += lam * w;
        }
    }
    let a = Mat::from_fn(d, d, |i, j| g[i * d + j] + if i == j { lam } else { 0.0 });
    let rhs = Mat::from_fn(d, 1, |i, _| c[i]);
    let llt = a.llt(faer::Side::Lower).map_err(|_| singular())?;
    // Reject numerically singular systems (e.g. collinear columns with lam = 0) instead of
    // returning huge, meaningless weights.
    let l = llt.L();
    let maxa = (0..d).map(|i| a[(i, i)]).fold(0.0f64, f64::max);
    if (0..d).any(|i| l[(i, i)] * l[(i, i)] <= 1e-13 * maxa) {
        return Err(singular());
    }
    let sol = llt.solve(&rhs);
    let w: Vec<f64> = (0..d).map(|i| sol[(i, 0)]).collect();
    forge_linalg::check::ensure_finite_slice(&w, "ridge solution")?;
    let b = my - data::dot(&mx, &w);
    Ok((w, b))
}
