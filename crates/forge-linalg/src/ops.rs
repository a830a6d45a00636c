//! Tensor helpers used across Forge: centering, standardisation, Gram and kernel matrices,
//! pairwise squared distances and the median-heuristic bandwidth.

use crate::check::{ensure_finite, ensure_matrix};
use crate::{LinalgError, Result};
use candle_core::{DType, Tensor, D};

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

/// Column means and population standard deviations (ddof = 0), with zero deviations replaced by 1
/// so that constant columns map to 0 instead of NaN.
///
/// # Shapes
/// `x`: `[n, d]` -> (mean `[d]`, std `[d]`)
///
/// # Errors
/// Shape errors for non-matrices or empty input.
pub fn mean_std(x: &Tensor) -> Result<(Tensor, Tensor)> {
    ensure_matrix(x, "x")?;
    let mean = x.mean(0)?;
    let var = x.broadcast_sub(&mean)?.sqr()?.mean(0)?;
    let std = var.sqrt()?;
    // Replace (near-)zero deviations by one.
    let tiny = std.le(1e-12)?;
    let ones = std.ones_like()?;
    let std = tiny.where_cond(&ones, &std)?;
    Ok((mean, std))
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

impl Standardizer {
    /// Fits the column means and deviations of `x`.
    ///
    /// # Errors
    /// Shape errors and non-finite input.
    pub fn fit(x: &Tensor) -> Result<Self> {
        ensure_finite(x, "x")?;
        let (mean, std) = mean_std(x)?;
        Ok(Self { mean, std })
    }

    /// Applies the fitted transform.
    ///
    /// # Errors
    /// [`LinalgError::Shape`] if `x` has a different number of columns.
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
        Ok(x.broadcast_sub(&mean)?.broadcast_div(&std)?)
    }
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

#[cfg(test)]
mod tests {
    use super::*;
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
}
