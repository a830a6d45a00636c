//! Tensor helpers used across Forge: centering, standardisation, Gram and kernel matrices,
//! pairwise squared distances and the median-heuristic bandwidth.

use crate::check::ensure_matrix;
use crate::{LinalgError, Result};
use candle_core::{CpuStorage, DType, Layout, Tensor, D};

/// Subtracts the column means.
///
/// # Shapes
/// `x`: `[n, d]` -> (centred `[n, d]`, mean `[d]`)
///
/// # Errors
/// Shape errors for non-matrices or empty input.
pub fn center(x: &Tensor) -> Result<(Tensor, Tensor)> {
    ensure_matrix(x, "x")?;
    let mean = x.mean(0)?;
    Ok((x.broadcast_sub(&mean)?, mean))
}

/// Column means and population standard deviations (ddof = 0), with (relatively) zero
/// deviations replaced by 1 so that constant columns map to 0 instead of NaN.
///
/// Computed robustly in f64 whatever the input's dtype: each column is first scaled by a power
/// of two (exact) so that its largest magnitude lies in `[1, 2)`, then the mean and the
/// deviation are taken in two passes (no `sum x^2 - n mean^2` cancellation). So any finite
/// column, even one holding `1e308` or `-f64::MAX`, has a finite mean and deviation (a naive
/// `mean((x - mean)^2)` overflows to an infinite deviation that silently zeroes the column).
/// A deviation at most `1e-12` times the column's largest magnitude counts as zero.
///
/// # Shapes
/// `x`: `[n, d]` -> (mean `[d]`, std `[d]`) in `x`'s dtype, on `x`'s device.
///
/// # Errors
/// Shape errors for non-matrices or empty input; [`LinalgError::NonFinite`] for a NaN or an
/// infinity in `x`; [`LinalgError::BadColumn`] if a deviation is still not representable (a
/// column spanning nearly `-f64::MAX..f64::MAX`).
pub fn mean_std(x: &Tensor) -> Result<(Tensor, Tensor)> {
    let (n, d) = ensure_matrix(x, "x")?;
    let v: Vec<f64> = x.to_dtype(DType::F64)?.flatten_all()?.to_vec1()?;
    let st = column_stats(&v, n, d, "x")?;
    let mean = Tensor::from_vec(st.mean, d, x.device())?.to_dtype(x.dtype())?;
    let std = Tensor::from_vec(st.std, d, x.device())?.to_dtype(x.dtype())?;
    Ok((mean, std))
}

/// A deviation at most this fraction of a column's largest magnitude counts as zero.
const REL_ZERO_STD: f64 = 1e-12;

/// Robust column statistics of a row-major `[n, d]` slice (see [`mean_std`]), plus, per
/// column, the row of its largest magnitude and the mean and deviation of the other rows.
pub(crate) struct ColumnStats {
    /// Means.
    pub mean: Vec<f64>,
    /// Deviations, zeros replaced by 1.
    pub std: Vec<f64>,
    /// Row of the largest magnitude.
    pub argmax: Vec<usize>,
    /// Mean without that row (`NaN` when `n == 1`).
    pub mean_rest: Vec<f64>,
    /// Deviation without that row (`NaN` when `n == 1`).
    pub std_rest: Vec<f64>,
}

/// The power of two `2^-e` that brings `amax` into `[1, 2)` (exponent clamped to +-1000 so that
/// the factor and its inverse are normal numbers); 1 for `amax == 0`.
fn pow2_scale(amax: f64) -> (f64, f64) {
    if amax == 0.0 {
        return (1.0, 1.0);
    }
    let e = (amax.log2().floor() as i32).clamp(-1000, 1000);
    (2f64.powi(-e), 2f64.powi(e))
}

/// Two-pass scaled mean and population deviation of the values `get(i)` for `i` in `rows`.
fn scaled_mean_std(rows: impl Iterator<Item = f64> + Clone, amax: f64) -> (f64, f64) {
    let (down, up) = pow2_scale(amax);
    let mut cnt = 0usize;
    let mut sum = 0.0;
    for v in rows.clone() {
        sum += v * down;
        cnt += 1;
    }
    if cnt == 0 {
        return (f64::NAN, f64::NAN);
    }
    let m = sum / cnt as f64;
    let mut ss = 0.0;
    for v in rows {
        let t = v * down - m;
        ss += t * t;
    }
    (m * up, (ss / cnt as f64).sqrt() * up)
}

/// Computes [`ColumnStats`]; `what` names the matrix in errors.
pub(crate) fn column_stats(v: &[f64], n: usize, d: usize, what: &str) -> Result<ColumnStats> {
    debug_assert_eq!(v.len(), n * d);
    crate::check::ensure_finite_slice(v, what)?;
    let mut out = ColumnStats {
        mean: Vec::with_capacity(d),
        std: Vec::with_capacity(d),
        argmax: Vec::with_capacity(d),
        mean_rest: Vec::with_capacity(d),
        std_rest: Vec::with_capacity(d),
    };
    for j in 0..d {
        let col = (0..n).map(move |i| v[i * d + j]);
        // Largest and second largest magnitude, and the row of the largest.
        let (mut a1, mut a2, mut k) = (0.0f64, 0.0f64, 0usize);
        for (i, x) in col.clone().enumerate() {
            let a = x.abs();
            if a > a1 {
                a2 = a1;
                a1 = a;
                k = i;
            } else if a > a2 {
                a2 = a;
            }
        }
        let (m, s) = scaled_mean_std(col.clone(), a1);
        let rest = col
            .clone()
            .enumerate()
            .filter(move |&(i, _)| i != k)
            .map(|(_, x)| x);
        let (m1, s1) = scaled_mean_std(rest, a2);
        if !(m.is_finite() && s.is_finite()) {
            return Err(LinalgError::BadColumn {
                what: what.to_string(),
                column: j,
                row: k,
                value: v[k * d + j],
                reason: format!(
                    "makes the column statistics overflow (mean {m:e}, deviation {s:e})"
                ),
            });
        }
        out.mean.push(m);
        out.std.push(if s <= REL_ZERO_STD * a1 { 1.0 } else { s });
        out.argmax.push(k);
        out.mean_rest.push(m1);
        out.std_rest.push(s1);
    }
    Ok(out)
}

/// A column-wise standardiser `z = (x - mean) / std`, fitted on one data set (e.g. the source
/// domain) and applied unchanged to another (the target domain).
#[derive(Debug, Clone)]
pub struct Standardizer {
    /// Column means, `[d]`.
    pub mean: Tensor,
    /// Column standard deviations (ddof = 0, zeros replaced by 1), `[d]`.
    pub std: Tensor,
}

/// A column is rejected when one value shifts its mean by more than this many deviations of the
/// other rows: `x - mean` then keeps fewer than half of the other rows' significant digits
/// (`1 / sqrt(f64::EPSILON)`), and at `1 / f64::EPSILON` they all collapse to one value.
const MAX_DOMINATION: f64 = 6.7e7;

impl Standardizer {
    /// Fits the column means and deviations of `x` (robustly, as [`mean_std`]).
    ///
    /// # Errors
    /// Shape errors; [`LinalgError::NonFinite`] for a NaN or infinity in `x`;
    /// [`LinalgError::BadColumn`] (naming the column, row and value) when one value dominates a
    /// column so much that standardising would erase the other rows: it shifts the mean by more
    /// than `6.7e7` deviations of the other rows (e.g. one `1e308`, or a `1e20` among values of
    /// order 1), so that `x - mean` loses more than half the other rows' significant digits (at
    /// `1e308` all of them: the column becomes a constant plus one spike). Also as [`mean_std`].
    pub fn fit(x: &Tensor) -> Result<Self> {
        let (n, d) = ensure_matrix(x, "x")?;
        let v: Vec<f64> = x.to_dtype(DType::F64)?.flatten_all()?.to_vec1()?;
        let st = column_stats(&v, n, d, "x")?;
        for j in 0..d {
            let (m, m1, s1) = (st.mean[j], st.mean_rest[j], st.std_rest[j]);
            // n == 1 gives NaN rest statistics; a constant rest (s1 == 0) holds no information
            // to lose.
            if s1.is_nan() || s1 <= 0.0 {
                continue;
            }
            let shift = (m - m1).abs();
            if shift > MAX_DOMINATION * s1 {
                let k = st.argmax[j];
                return Err(LinalgError::BadColumn {
                    what: "x".into(),
                    column: j,
                    row: k,
                    value: v[k * d + j],
                    reason: format!(
                        "dominates the column: it moves the mean from {m1:e} to {m:e}, {:.1e} \
                         deviations ({s1:e}) of the other rows, so standardising would erase \
                         them; fix or drop the value",
                        shift / s1
                    ),
                });
            }
        }
        let mean = Tensor::from_vec(st.mean, d, x.device())?.to_dtype(x.dtype())?;
        let std = Tensor::from_vec(st.std, d, x.device())?.to_dtype(x.dtype())?;
        Ok(Self { mean, std })
    }

    /// Applies the fitted transform.
    ///
    /// # Errors
    /// [`LinalgError::Shape`] if `x` has a different number of columns;
    /// [`LinalgError::BadColumn`] (naming the row and column) if a value does not standardise to
    /// a finite number (a NaN or infinity in `x`, or a value beyond `f64::MAX` deviations).
    pub fn transform(&self, x: &Tensor) -> Result<Tensor> {
        let (_, d) = ensure_matrix(x, "x")?;
        let want = self.mean.dims1()?;
        if d != want {
            return Err(LinalgError::Shape {
                what: "x".into(),
                expected: format!("{want} columns (as fitted)"),
                got: x.dims().to_vec(),
            });
        }
        let mean = self.mean.to_dtype(x.dtype())?;
        let std = self.std.to_dtype(x.dtype())?;
        let mut z = x.broadcast_sub(&mean)?.broadcast_div(&std)?;
        let mut flat: Vec<f64> = z.to_dtype(DType::F64)?.flatten_all()?.to_vec1()?;
        if flat.iter().any(|v| !v.is_finite()) {
            // `x - mean` may exceed f64::MAX although both are finite; `x / std - mean / std`
            // cannot (it is less accurate when |mean| >> std, so it is only the fallback).
            z = x
                .broadcast_div(&std)?
                .broadcast_sub(&mean.broadcast_div(&std)?)?;
            flat = z.to_dtype(DType::F64)?.flatten_all()?.to_vec1()?;
        }
        if let Some(i) = flat.iter().position(|v| !v.is_finite()) {
            let (row, column) = (i / d, i % d);
            let value = x
                .get(row)?
                .get(column)?
                .to_dtype(DType::F64)?
                .to_scalar::<f64>()?;
            return Err(LinalgError::BadColumn {
                what: "x".into(),
                column,
                row,
                value,
                reason: format!(
                    "standardises to {} (fitted mean {:e}, deviation {:e})",
                    flat[i],
                    self.mean
                        .get(column)?
                        .to_dtype(DType::F64)?
                        .to_scalar::<f64>()?,
                    self.std
                        .get(column)?
                        .to_dtype(DType::F64)?
                        .to_scalar::<f64>()?
                ),
            });
        }
        Ok(z)
    }
}

/// The largest `|a - b|` over all elements of two tensors of the same shape, as f32 (for
/// comparing a result against a reference: tests, parity checks).
///
/// # Errors
/// [`LinalgError::InvalidArgument`] when the shapes differ or the tensors are empty; candle
/// errors (e.g. different dtypes or devices).
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> Result<f32> {
    if a.dims() != b.dims() || a.elem_count() == 0 {
        return Err(LinalgError::InvalidArgument {
            name: "max_abs_diff",
            reason: format!(
                "shapes {:?} and {:?}: need equal, non-empty",
                a.dims(),
                b.dims()
            ),
        });
    }
    Ok((a - b)?
        .abs()?
        .flatten_all()?
        .max(0)?
        .to_dtype(DType::F32)?
        .to_scalar::<f32>()?)
}

/// Gram matrix `X X^T`.
///
/// # Shapes
/// `x`: `[n, d]` -> `[n, n]`
///
/// # Errors
/// Shape errors.
pub fn gram(x: &Tensor) -> Result<Tensor> {
    ensure_matrix(x, "x")?;
    Ok(x.matmul(&x.t()?)?)
}

/// Pairwise squared Euclidean distances `D_ij = ||x_i - y_j||^2`, clamped at 0.
///
/// # Shapes
/// `x`: `[n, d]`, `y`: `[m, d]` -> `[n, m]`
///
/// # Errors
/// [`LinalgError::Shape`] if the column counts differ.
pub fn pairwise_sq_dists(x: &Tensor, y: &Tensor) -> Result<Tensor> {
    let (_, dx) = ensure_matrix(x, "x")?;
    let (_, dy) = ensure_matrix(y, "y")?;
    if dx != dy {
        return Err(LinalgError::Shape {
            what: "y".into(),
            expected: format!("{dx} columns to match x"),
            got: y.dims().to_vec(),
        });
    }
    let xx = x.sqr()?.sum_keepdim(1)?; // [n,1]
    let yy = y.sqr()?.sum_keepdim(1)?.t()?; // [1,m]
    let xy = x.matmul(&y.t()?)?;
    let d = xx.broadcast_add(&yy)?.broadcast_sub(&(xy * 2.0)?)?;
    Ok(d.relu()?)
}

/// Gaussian (RBF) kernel `k(x, y) = exp(-||x - y||^2 / (2 bandwidth^2))`.
///
/// # Shapes
/// `x`: `[n, d]`, `y`: `[m, d]` -> `[n, m]`
///
/// # Errors
/// [`LinalgError::InvalidArgument`] if `bandwidth` is not finite and positive.
pub fn rbf_kernel(x: &Tensor, y: &Tensor, bandwidth: f64) -> Result<Tensor> {
    if !(bandwidth.is_finite() && bandwidth > 0.0) {
        return Err(LinalgError::InvalidArgument {
            name: "bandwidth",
            reason: format!("must be finite and > 0, got {bandwidth}"),
        });
    }
    let d = pairwise_sq_dists(x, y)?;
    Ok((d * (-1.0 / (2.0 * bandwidth * bandwidth)))?.exp()?)
}

/// Median heuristic (Gretton et al., 2012, "A Kernel Two-Sample Test", JMLR 13): the bandwidth
/// is the median of the pairwise Euclidean distances between distinct rows of `x`.
/// For large inputs at most `max_rows` rows (the first ones) are used. Returns 1.0 when all
/// rows coincide.
///
/// # Errors
/// Shape errors; [`LinalgError::InvalidArgument`] if fewer than 2 rows.
pub fn median_heuristic(x: &Tensor, max_rows: usize) -> Result<f64> {
    let (n, _) = ensure_matrix(x, "x")?;
    if n < 2 {
        return Err(LinalgError::InvalidArgument {
            name: "x",
            reason: format!("median heuristic needs at least 2 rows, got {n}"),
        });
    }
    let m = n.min(max_rows.max(2));
    let xs = x.narrow(0, 0, m)?.to_dtype(DType::F64)?;
    let d: Vec<Vec<f64>> = pairwise_sq_dists(&xs, &xs)?.to_vec2()?;
    let mut v = Vec::with_capacity(m * (m - 1) / 2);
    for (i, row) in d.iter().enumerate() {
        for &dij in &row[i + 1..] {
            v.push(dij.sqrt());
        }
    }
    // O(m^2) selection instead of an O(m^2 log m) sort.
    let len = v.len();
    let half = len / 2;
    let (lower, upper, _) = v.select_nth_unstable_by(half, |a, b| a.total_cmp(b));
    let upper = *upper;
    let med = if len % 2 == 1 {
        upper
    } else {
        let below = lower.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        0.5 * (below + upper)
    };
    Ok(if med > 0.0 { med } else { 1.0 })
}

/// Row-wise softmax that keeps candle's autograd graph (unlike the fused `softmax_last_dim`).
///
/// # Errors
/// Candle errors.
pub fn softmax_rows(x: &Tensor) -> Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?;
    let e = x.broadcast_sub(&max)?.exp()?;
    Ok(e.broadcast_div(&e.sum_keepdim(D::Minus1)?)?)
}

/// The f32 values of a contiguous tensor's CPU storage (for custom ops' `cpu_fwd`): the slice
/// its layout covers. `what` names the op in the error.
///
/// # Errors
/// A candle error naming `what` when the storage is not f32 or the layout not contiguous.
pub fn contiguous_f32<'a>(
    s: &'a CpuStorage,
    l: &Layout,
    what: &str,
) -> candle_core::Result<&'a [f32]> {
    let CpuStorage::F32(v) = s else {
        candle_core::bail!("{what}: f32 expected")
    };
    let (a, b) = l
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg(format!("{what}: contiguous input expected")))?;
    Ok(&v[a..b])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_abs_diff_is_the_largest_gap_and_checks_shapes() {
        let dev = candle_core::Device::Cpu;
        let a = Tensor::new(&[[1.0f32, -2.0], [3.0, 4.0]], &dev).unwrap();
        let b = Tensor::new(&[[1.5f32, -2.0], [0.0, 4.25]], &dev).unwrap();
        assert_eq!(max_abs_diff(&a, &b).unwrap(), 3.0);
        let a64 = Tensor::new(&[1.0f64, 2.0], &dev).unwrap();
        let b64 = Tensor::new(&[1.0f64, 2.5], &dev).unwrap();
        assert_eq!(max_abs_diff(&a64, &b64).unwrap(), 0.5);
        assert!(max_abs_diff(&a, &a.t().unwrap().reshape(4).unwrap()).is_err());
        let e = Tensor::zeros(0, DType::F32, &dev).unwrap();
        assert!(max_abs_diff(&e, &e).is_err());
    }
    use candle_core::Device;

    #[test]
    fn distances_match_direct() {
        let dev = Device::Cpu;
        let x = Tensor::new(&[[0.0f64, 0.0], [1.0, 2.0], [3.0, -1.0]], &dev).unwrap();
        let d: Vec<Vec<f64>> = pairwise_sq_dists(&x, &x).unwrap().to_vec2().unwrap();
        assert!((d[0][1] - 5.0).abs() < 1e-12);
        assert!((d[1][2] - 13.0).abs() < 1e-12);
        assert!(d[2][2].abs() < 1e-12);
        // distances 5^.5, 9+1=10^.5, 13^.5: median sqrt(10)
        let h = median_heuristic(&x, 100).unwrap();
        assert!((h - 10f64.sqrt()).abs() < 1e-12);
        let k: Vec<Vec<f64>> = rbf_kernel(&x, &x, 1.0).unwrap().to_vec2().unwrap();
        assert!((k[0][1] - (-2.5f64).exp()).abs() < 1e-12);
        assert!(rbf_kernel(&x, &x, 0.0).is_err());
        // Even number of distances (1, 3, 7, 2, 6, 4): median is the mean of 3 and 4.
        let line = Tensor::new(&[[0.0f64], [1.0], [3.0], [7.0]], &dev).unwrap();
        assert!((median_heuristic(&line, 100).unwrap() - 3.5).abs() < 1e-12);
    }

    #[test]
    fn standardizer_fits_source_only() {
        let dev = Device::Cpu;
        let src = Tensor::new(&[[1.0f64, 5.0], [3.0, 5.0]], &dev).unwrap();
        let s = Standardizer::fit(&src).unwrap();
        let z: Vec<Vec<f64>> = s.transform(&src).unwrap().to_vec2().unwrap();
        assert_eq!(z, vec![vec![-1.0, 0.0], vec![1.0, 0.0]]);
        let tgt = Tensor::new(&[[5.0f64, 7.0]], &dev).unwrap();
        let z: Vec<Vec<f64>> = s.transform(&tgt).unwrap().to_vec2().unwrap();
        assert_eq!(z, vec![vec![3.0, 2.0]]);
        let bad = Tensor::new(&[[5.0f64, 7.0, 1.0]], &dev).unwrap();
        assert!(s.transform(&bad).is_err());
    }

    /// Issue 16: one 1e308 cell made the naive deviation infinite and silently zeroed the
    /// column. Now the statistics are finite and exact (closed form for one spike `v` among
    /// `n - 1` zeros: mean `v / n`, deviation `v sqrt(n - 1) / n`).
    #[test]
    fn extreme_values_give_finite_exact_statistics() {
        let dev = Device::Cpu;
        for v in [1e308, -1e308, f64::MAX, 1e200, 1e-300] {
            let n = 4usize;
            let mut col = vec![0.0f64; n];
            col[2] = v;
            let x = Tensor::from_vec(col, (n, 1), &dev).unwrap();
            let (m, s) = mean_std(&x).unwrap();
            let (m, s) = (
                m.to_vec1::<f64>().unwrap()[0],
                s.to_vec1::<f64>().unwrap()[0],
            );
            let nf = n as f64;
            let (em, es) = (v / nf, (v / nf).abs() * (nf - 1.0).sqrt());
            assert!(((m - em) / em).abs() < 1e-15, "{v}: mean {m} vs {em}");
            assert!(((s - es) / es).abs() < 1e-15, "{v}: std {s} vs {es}");
            // The rest is constant, so nothing is erased: fit accepts it and the spike maps to
            // +-sqrt(n - 1), the other rows to -+1 / sqrt(n - 1).
            let z: Vec<f64> = Standardizer::fit(&x)
                .unwrap()
                .transform(&x)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            let sg = v.signum();
            assert!((z[2] - sg * 3f64.sqrt()).abs() < 1e-12, "{v}: {z:?}");
            assert!((z[0] + sg / 3f64.sqrt()).abs() < 1e-12, "{v}: {z:?}");
        }
        // Large but unremarkable scales stay exact; f32 input keeps its dtype.
        let x = Tensor::new(&[[1e300f64], [3e300]], &dev).unwrap();
        let (m, s) = mean_std(&x).unwrap();
        assert_eq!(m.to_vec1::<f64>().unwrap(), vec![2e300]);
        assert_eq!(s.to_vec1::<f64>().unwrap(), vec![1e300]);
        let x = Tensor::new(&[[1.0f32], [3.0]], &dev).unwrap();
        assert_eq!(mean_std(&x).unwrap().1.dtype(), DType::F32);
        // A column spanning -MAX..MAX has a deviation of MAX: still finite.
        let x = Tensor::new(&[[f64::MAX], [-f64::MAX]], &dev).unwrap();
        let s = Standardizer::fit(&x).unwrap();
        let z: Vec<f64> = s
            .transform(&x)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(z, vec![1.0, -1.0]);
    }

    /// Issue 16: a 1e308 (or 1e20) cell among values of order 1 would erase the other rows; it is
    /// a typed error naming the column and the row.
    #[test]
    fn dominating_value_is_an_error_naming_row_and_column() {
        let dev = Device::Cpu;
        for spike in [1e308, 1e200, -1e20] {
            let rows: Vec<f64> = (0..50)
                .flat_map(|i| [i as f64 * 0.1, if i == 17 { spike } else { (i % 7) as f64 }])
                .collect();
            let x = Tensor::from_vec(rows, (50, 2), &dev).unwrap();
            match Standardizer::fit(&x) {
                Err(e @ LinalgError::BadColumn { .. }) => {
                    let LinalgError::BadColumn {
                        column, row, value, ..
                    } = &e
                    else {
                        unreachable!()
                    };
                    assert_eq!((*column, *row, *value), (1, 17, spike), "{e}");
                    assert!(e.to_string().contains("dominates"), "{e}");
                }
                other => panic!("{spike}: {other:?}"),
            }
        }
        // A heavy but honest tail (one value 1e6 among values of order 1) is accepted.
        let rows: Vec<f64> = (0..50)
            .map(|i| if i == 3 { 1e6 } else { i as f64 })
            .collect();
        let x = Tensor::from_vec(rows, (50, 1), &dev).unwrap();
        assert!(Standardizer::fit(&x).is_ok());
        // NaN input is a NonFinite error, in fit and in transform (named by row and column).
        let nan = Tensor::new(&[[1.0f64, f64::NAN], [2.0, 3.0]], &dev).unwrap();
        assert!(matches!(
            Standardizer::fit(&nan),
            Err(LinalgError::NonFinite { index: 1, .. })
        ));
        let ok = Tensor::new(&[[1.0f64, 2.0], [2.0, 3.0]], &dev).unwrap();
        assert!(matches!(
            Standardizer::fit(&ok).unwrap().transform(&nan),
            Err(LinalgError::BadColumn {
                row: 0,
                column: 1,
                ..
            })
        ));
        // A target value beyond f64::MAX deviations is an error, not an infinity.
        let tiny = Tensor::new(&[[0.0f64], [1e-300]], &dev).unwrap();
        let far = Tensor::new(&[[0.5f64], [1e300]], &dev).unwrap();
        assert!(matches!(
            Standardizer::fit(&tiny).unwrap().transform(&far),
            Err(LinalgError::BadColumn {
                row: 1,
                column: 0,
                ..
            })
        ));
    }
}
