//! Dense decompositions and solves on candle tensors through [faer](https://faer-rs.github.io),
//! a pure-Rust linear-algebra crate (no system BLAS/LAPACK needed).
//!
//! Tensors of any float dtype are accepted; the work is done in f64 and results come back in
//! the input's dtype and on the input's device.

use crate::check::{ensure_finite, ensure_matrix};
use crate::{LinalgError, Result};
use candle_core::{DType, Device, Tensor};
use faer::linalg::solvers::{DenseSolveCore, Solve};
use faer::{Mat, Side};

/// Copies a rank-2 tensor into a faer matrix of f64.
///
/// # Errors
/// Shape errors if `t` is not a non-empty matrix.
pub fn to_faer(t: &Tensor) -> Result<Mat<f64>> {
    let (r, c) = ensure_matrix(t, "matrix")?;
    let v: Vec<f64> = t.to_dtype(DType::F64)?.flatten_all()?.to_vec1()?;
    Ok(Mat::from_fn(r, c, |i, j| v[i * c + j]))
}

/// Copies a faer matrix into a rank-2 tensor of `dtype` on `device`.
///
/// # Errors
/// Candle errors on allocation or dtype conversion.
pub fn from_faer(m: faer::MatRef<'_, f64>, dtype: DType, device: &Device) -> Result<Tensor> {
    let (r, c) = (m.nrows(), m.ncols());
    let mut v = Vec::with_capacity(r * c);
    for i in 0..r {
        for j in 0..c {
            v.push(m[(i, j)]);
        }
    }
    Ok(Tensor::from_vec(v, (r, c), device)?.to_dtype(dtype)?)
}

fn square(a: &Tensor, what: &str) -> Result<usize> {
    let (r, c) = ensure_matrix(a, what)?;
    if r != c {
        return Err(LinalgError::Shape {
            what: what.to_string(),
            expected: "a square matrix".into(),
            got: vec![r, c],
        });
    }
    Ok(r)
}

/// Lower Cholesky factor `L` with `A = L L^T` of a symmetric positive-definite matrix.
///
/// # Shapes
/// `a`: `[n, n]` -> `[n, n]`
///
/// # Errors
/// [`LinalgError::NotPositiveDefinite`] if the factorisation fails; shape and finiteness errors.
pub fn cholesky(a: &Tensor) -> Result<Tensor> {
    square(a, "a")?;
    ensure_finite(a, "a")?;
    let m = to_faer(a)?;
    let llt = m
        .llt(Side::Lower)
        .map_err(|_| LinalgError::NotPositiveDefinite)?;
    from_faer(llt.L(), a.dtype(), a.device())
}

/// Solves `A X = B` for symmetric positive-definite `A` by Cholesky factorisation.
///
/// # Shapes
/// `a`: `[n, n]`; `b`: `[n]` or `[n, k]` -> same shape as `b`
///
/// # Errors
/// [`LinalgError::NotPositiveDefinite`]; shape errors if `b` does not have `n` rows.
pub fn cholesky_solve(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let n = square(a, "a")?;
    ensure_finite(a, "a")?;
    ensure_finite(b, "b")?;
    let was_vec = b.rank() == 1;
    let b2 = if was_vec { b.unsqueeze(1)? } else { b.clone() };
    let (bn, _) = ensure_matrix(&b2, "b")?;
    if bn != n {
        return Err(LinalgError::Shape {
            what: "b".into(),
            expected: format!("{n} rows to match a [{n}, {n}]"),
            got: b.dims().to_vec(),
        });
    }
    let x = solve_spd_faer(&to_faer(a)?, &to_faer(&b2)?)?;
    let out = from_faer(x.as_ref(), b.dtype(), b.device())?;
    Ok(if was_vec { out.squeeze(1)? } else { out })
}

/// Solves `A X = B` with faer matrices, `A` symmetric positive definite.
///
/// # Errors
/// [`LinalgError::NotPositiveDefinite`] if the Cholesky factorisation fails.
pub fn solve_spd_faer(a: &Mat<f64>, b: &Mat<f64>) -> Result<Mat<f64>> {
    let llt = a
        .llt(Side::Lower)
        .map_err(|_| LinalgError::NotPositiveDefinite)?;
    Ok(llt.solve(b))
}

/// Inverse of a symmetric positive-definite matrix (via Cholesky).
///
/// # Errors
/// [`LinalgError::NotPositiveDefinite`]; shape and finiteness errors.
pub fn inverse_spd(a: &Tensor) -> Result<Tensor> {
    square(a, "a")?;
    ensure_finite(a, "a")?;
    let m = to_faer(a)?;
    let llt = m
        .llt(Side::Lower)
        .map_err(|_| LinalgError::NotPositiveDefinite)?;
    from_faer(llt.inverse().as_ref(), a.dtype(), a.device())
}

/// Symmetric eigendecomposition `A = V diag(w) V^T`, eigenvalues in ascending order.
///
/// # Shapes
/// `a`: `[n, n]` -> (`w`: `[n]`, `V`: `[n, n]`, eigenvectors in columns)
///
/// # Errors
/// Shape/finiteness errors, [`LinalgError::NoConvergence`].
pub fn eigh(a: &Tensor) -> Result<(Tensor, Tensor)> {
    let n = square(a, "a")?;
    ensure_finite(a, "a")?;
    let m = to_faer(a)?;
    let e = m
        .self_adjoint_eigen(Side::Lower)
        .map_err(|_| LinalgError::NoConvergence("symmetric eigendecomposition"))?;
    let s = e.S();
    let w: Vec<f64> = (0..n).map(|i| s[i]).collect();
    let w = Tensor::from_vec(w, n, a.device())?.to_dtype(a.dtype())?;
    Ok((w, from_faer(e.U(), a.dtype(), a.device())?))
}

/// Thin singular value decomposition `A = U diag(s) V^T`, singular values descending.
///
/// # Shapes
/// `a`: `[m, n]` -> (`U`: `[m, k]`, `s`: `[k]`, `Vt`: `[k, n]`) with k = min(m, n)
///
/// # Errors
/// Shape/finiteness errors, [`LinalgError::NoConvergence`].
pub fn svd(a: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
    let (r, c) = ensure_matrix(a, "a")?;
    ensure_finite(a, "a")?;
    let m = to_faer(a)?;
    let d = m
        .thin_svd()
        .map_err(|_| LinalgError::NoConvergence("SVD"))?;
    let k = r.min(c);
    let s = d.S();
    let sv: Vec<f64> = (0..k).map(|i| s[i]).collect();
    let s = Tensor::from_vec(sv, k, a.device())?.to_dtype(a.dtype())?;
    let u = from_faer(d.U(), a.dtype(), a.device())?;
    let vt = from_faer(d.V().transpose(), a.dtype(), a.device())?;
    Ok((u, s, vt))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spd(dev: &Device) -> Tensor {
        Tensor::new(&[[4.0f64, 1.0, 0.5], [1.0, 3.0, 0.2], [0.5, 0.2, 2.0]], dev).unwrap()
    }

    fn max_abs(a: &Tensor, b: &Tensor) -> f64 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f64>()
            .unwrap()
    }

    #[test]
    fn cholesky_reconstructs() {
        let dev = Device::Cpu;
        let a = spd(&dev);
        let l = cholesky(&a).unwrap();
        let r = l.matmul(&l.t().unwrap()).unwrap();
        assert!(max_abs(&a, &r) < 1e-12);
    }

    #[test]
    fn solve_matches_inverse() {
        let dev = Device::Cpu;
        let a = spd(&dev);
        let b = Tensor::new(&[1.0f64, -2.0, 0.5], &dev).unwrap();
        let x = cholesky_solve(&a, &b).unwrap();
        let back = a
            .matmul(&x.unsqueeze(1).unwrap())
            .unwrap()
            .squeeze(1)
            .unwrap();
        assert!(max_abs(&back, &b) < 1e-12);
        let inv = inverse_spd(&a).unwrap();
        let eye = a.matmul(&inv).unwrap();
        assert!(max_abs(&eye, &Tensor::eye(3, DType::F64, &dev).unwrap()) < 1e-12);
    }

    #[test]
    fn not_pd_is_error() {
        let dev = Device::Cpu;
        let a = Tensor::new(&[[1.0f64, 2.0], [2.0, 1.0]], &dev).unwrap();
        assert!(matches!(
            cholesky(&a),
            Err(LinalgError::NotPositiveDefinite)
        ));
    }

    #[test]
    fn eigh_and_svd_reconstruct() {
        let dev = Device::Cpu;
        let a = spd(&dev);
        let (w, v) = eigh(&a).unwrap();
        let wv: Vec<f64> = w.to_vec1().unwrap();
        assert!(wv.windows(2).all(|p| p[0] <= p[1]));
        let r = v
            .broadcast_mul(&w.unsqueeze(0).unwrap())
            .unwrap()
            .matmul(&v.t().unwrap())
            .unwrap();
        assert!(max_abs(&a, &r) < 1e-10);
        let m = Tensor::new(&[[1.0f64, 2.0], [3.0, 4.0], [5.0, 6.5]], &dev).unwrap();
        let (u, s, vt) = svd(&m).unwrap();
        assert_eq!(u.dims(), &[3, 2]);
        let r = u
            .broadcast_mul(&s.unsqueeze(0).unwrap())
            .unwrap()
            .matmul(&vt)
            .unwrap();
        assert!(max_abs(&m, &r) < 1e-10);
    }
}
