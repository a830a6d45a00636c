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
use faer::linalg::matmul::matmul;
use faer::linalg::solvers::Solve;
use faer::{Accum, Mat, MatRef, Par};

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
/// `x`: `[n, d]`, `y`: `[n]` -> weights `[d]`
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
/// `x`: `[n, d]`, `y`: `[n]`, `sample_weight`: `[n]` -> weights `[d]`
///
/// # Errors
/// As [`ridge`]; negative, non-finite or all-zero weights.
pub fn ridge_weighted(
    x: &Tensor,
    y: &Tensor,
    sample_weight: &Tensor,
    lam: f64,
) -> Result<LinearModel> {
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
/// `x`: `[n, d]`, `y`: `[n]`, `source.weights`: `[d]` -> weights `[d]`
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

/// First and second moments of a (weighted) design: means `x̄`, `ȳ`, the centred Gram matrix
/// `G = X_c^T S X_c` (row-major `[d, d]`) and `c = X_c^T S y_c`.
pub(crate) struct Moments {
    pub mx: Vec<f64>,
    pub my: f64,
    pub g: Vec<f64>,
    pub c: Vec<f64>,
}

/// Unweighted [`Moments`] straight from the borrowed rows, without any copy: faer's SIMD
/// products give `X^T X`, `X^T 1` and `X^T y`, and the centred moments follow from
/// `G = X^T X - n x̄ x̄^T`, `c = X^T y - n x̄ ȳ`. This loses about `log10(1 + x̄_j^2 / var_j)`
/// digits, so it is used only when every column has `x̄_j^2 <= 1e4 var_j` (at most ~4 digits of
/// 16); otherwise `None` and the caller uses the shifted algorithm of [`moments_raw`].
fn moments_uncentered(x: &[f64], n: usize, d: usize, y: &[f64]) -> Option<Moments> {
    let mut g0 = Mat::<f64>::zeros(d, d);
    let mut ty = Mat::<f64>::zeros(d, 1);
    gram_add(&mut g0, &mut ty, x, y, d);
    let mut sx = vec![0.0; d];
    for row in x.chunks_exact(d) {
        for (a, &v) in sx.iter_mut().zip(row) {
            *a += v;
        }
    }
    let nf = n as f64;
    let mx: Vec<f64> = sx.iter().map(|v| v / nf).collect();
    let my = y.iter().sum::<f64>() / nf;
    for j in 0..d {
        let var = g0[(j, j)] / nf - mx[j] * mx[j];
        if !(var > 0.0 && mx[j] * mx[j] <= 1e4 * var) {
            return None;
        }
    }
    let mut g = vec![0.0; d * d];
    for i in 0..d {
        for j in 0..d {
            g[i * d + j] = g0[(i, j)] - nf * mx[i] * mx[j];
        }
    }
    let c = (0..d).map(|j| ty[(j, 0)] - nf * mx[j] * my).collect();
    Some(Moments { mx, my, g, c })
}

/// Widest design for which [`gram_add`] uses its own loops instead of faer's matrix product.
const SMALL_GRAM: usize = 64;

/// `g += Z^T Z`, `c += Z^T z_y` for the row-major block `z` (`[m, d]`) and `zy` (`[m]`).
///
/// For `d <= 64` (every tabular design of the benchmarks) this is a plain loop over the rows
/// that touches only `g` and `c`: faer's product reserves a per-thread packing buffer of about
/// 1 GB of address space on first use, which made the classical demo abort under
/// `ulimit -v 2 GiB` although it needs ~50 MB (issue 16). Wider designs use faer (SIMD, runtime
/// dispatch), where that reservation is worth it.
fn gram_add(g: &mut Mat<f64>, c: &mut Mat<f64>, z: &[f64], zy: &[f64], d: usize) {
    let m = zy.len();
    if d > SMALL_GRAM {
        let zm = MatRef::from_row_major_slice(z, m, d);
        let ym = MatRef::from_column_major_slice(zy, m, 1);
        matmul(g.as_mut(), Accum::Add, zm.transpose(), zm, 1.0, Par::Seq);
        matmul(c.as_mut(), Accum::Add, zm.transpose(), ym, 1.0, Par::Seq);
        return;
    }
    // Upper triangle, row-major accumulation, then mirrored.
    let mut acc = vec![0.0; d * d];
    let mut accy = vec![0.0; d];
    for (row, &yv) in z.chunks_exact(d).zip(zy) {
        for (i, &zi) in row.iter().enumerate() {
            let out = &mut acc[i * d + i..i * d + d];
            for (o, &zj) in out.iter_mut().zip(&row[i..]) {
                *o += zi * zj;
            }
            accy[i] += zi * yv;
        }
    }
    for i in 0..d {
        for j in i..d {
            let v = acc[i * d + j];
            g[(i, j)] += v;
            if j != i {
                g[(j, i)] += v;
            }
        }
        c[(i, 0)] += accy[i];
    }
}

/// [`Moments`] of a [`Mat64`].
pub(crate) fn moments(x: &Mat64, y: &[f64], s: Option<&[f64]>) -> Moments {
    moments_raw(&x.v, x.d, y, s)
}

/// One pass over the rows with the shifted-data algorithm: rows are shifted by the first row
/// `x_0` (a typical point, so no catastrophic cancellation), scaled by `sqrt(s_i)`, written
/// block by block into a small cache-resident buffer, and accumulated with faer's SIMD matrix
/// product (runtime AVX2/AVX-512 dispatch): `G0 += Z^T Z`, `c0 += Z^T z_y`. The centred moments
/// follow from `G = G0 - W δ δ^T`, `c = c0 - W δ δ_y` with `δ = x̄ - x_0`, `W = sum s_i`.
/// Non-finite input shows up as non-finite means.
pub(crate) fn moments_raw(x: &[f64], d: usize, y: &[f64], s: Option<&[f64]>) -> Moments {
    const BLOCK: usize = 4096;
    let x0 = &x[..d];
    let y0 = y[0];
    let mut g = Mat::<f64>::zeros(d, d);
    let mut c = Mat::<f64>::zeros(d, 1);
    let mut sum = vec![0.0; d];
    let mut sum_y = 0.0;
    let mut tot = 0.0;
    let rows = BLOCK.min(y.len());
    let mut zb = vec![0.0; rows * d];
    let mut yb = vec![0.0; rows];
    for (bi, (xc, yc)) in x.chunks(BLOCK * d).zip(y.chunks(BLOCK)).enumerate() {
        let m = yc.len();
        let pairs = zb
            .chunks_exact_mut(d)
            .zip(xc.chunks_exact(d))
            .zip(yb.iter_mut().zip(yc));
        match s {
            None => {
                for ((zr, xr), (yo, &yi)) in pairs {
                    for (((z, &v), &o), acc) in zr.iter_mut().zip(xr).zip(x0).zip(sum.iter_mut()) {
                        *z = v - o;
                        *acc += *z;
                    }
                    *yo = yi - y0;
                    sum_y += *yo;
                }
                tot += m as f64;
            }
            Some(s) => {
                for (((zr, xr), (yo, &yi)), &si) in pairs.zip(&s[bi * BLOCK..bi * BLOCK + m]) {
                    let sw = si.sqrt();
                    for (((z, &v), &o), acc) in zr.iter_mut().zip(xr).zip(x0).zip(sum.iter_mut()) {
                        *acc += si * (v - o);
                        *z = sw * (v - o);
                    }
                    sum_y += si * (yi - y0);
                    *yo = sw * (yi - y0);
                    tot += si;
                }
            }
        }
        gram_add(&mut g, &mut c, &zb[..m * d], &yb[..m], d);
    }
    let delta: Vec<f64> = sum.iter().map(|v| v / tot).collect();
    let delta_y = sum_y / tot;
    let mut gv = vec![0.0; d * d];
    for i in 0..d {
        for j in 0..d {
            gv[i * d + j] = g[(i, j)] - tot * delta[i] * delta[j];
        }
    }
    let cv = (0..d)
        .map(|i| c[(i, 0)] - tot * delta[i] * delta_y)
        .collect();
    Moments {
        mx: x0.iter().zip(&delta).map(|(o, dl)| o + dl).collect(),
        my: y0 + delta_y,
        g: gv,
        c: cv,
    }
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
    let fast = match s {
        None => moments_uncentered(x, n, d, y),
        Some(_) => None,
    };
    let Moments { mx, my, g, mut c } = fast.unwrap_or_else(|| moments_raw(x, d, y, s));
    if mx.iter().any(|m| !m.is_finite()) {
        forge_linalg::check::ensure_finite_slice(x, "x")?;
    }
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
