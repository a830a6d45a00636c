//! Moment mapping: transfer a source linear model to the target domain with zero gradient
//! steps by matching per-feature first and second moments.

use crate::data;
use crate::model::LinearModel;
use crate::ridge::source_weights;
use crate::Result;
use candle_core::Tensor;

/// Statistical (moment) mapping of a source model (diagonal moment matching, as in the
/// feature-wise standardisation view of CORAL: Sun, Feng & Saenko, 2016, "Return of
/// Frustratingly Easy Domain Adaptation", AAAI, restricted to the diagonal).
///
/// Each target feature is mapped to the source's scale, `phi(x)_j = mu_s,j + (sigma_s,j /
/// sigma_t,j) (x_j - mu_t,j)`, and the source model is applied: `f(x) = w_src^T phi(x) + b_src`.
/// Folding `phi` into the model gives new weights `w_j = w_src,j sigma_s,j / sigma_t,j` and
/// intercept `b = b_src + sum_j w_src,j mu_s,j - sum_j w_j mu_t,j`. Needs only unlabelled target
/// features: zero gradient steps, zero target labels. A constant feature's deviation is taken
/// as 1 (as [`forge_linalg::ops::mean_std`]).
///
/// # Shapes
/// `source_x`: `[n_s, d]`, `target_x`: `[n_t, d]`, `source.weights`: `[d]`
///
/// # Errors
/// Bad input; column mismatch.
pub fn stat_mapping(
    source: &LinearModel,
    source_x: &Tensor,
    target_x: &Tensor,
) -> Result<LinearModel> {
    let xs = data::matrix(source_x, "source_x")?;
    data::matrix_cols(target_x, "target_x", xs.d)?;
    let w0 = source_weights(&source.weights, xs.d)?;
    let (ms, ss) = moments(source_x)?;
    let (mt, st) = moments(target_x)?;
    let mut w = Vec::with_capacity(xs.d);
    let mut b = source.intercept;
    for j in 0..xs.d {
        let ratio = ss[j] / st[j];
        let wj = w0[j] * ratio;
        b += w0[j] * ms[j] - wj * mt[j];
        w.push(wj);
    }
    LinearModel::from_vec(w, b)
}

/// Column means and population deviations (zeros replaced by 1) as f64 vectors.
fn moments(x: &Tensor) -> Result<(Vec<f64>, Vec<f64>)> {
    let (m, s) = forge_linalg::ops::mean_std(&x.to_dtype(candle_core::DType::F64)?)?;
    Ok((m.to_vec1()?, s.to_vec1()?))
}
