//! Dense decompositions and solves on candle tensors through [faer](https://faer-rs.github.io),
//! a pure-Rust linear-algebra crate (no system BLAS/LAPACK needed).
//!
//! Tensors of any float dtype are accepted; the work is done in f64 and results come back in
//! the input's dtype and on the input's device.

use crate::check::{ensure_finite, ensure_matrix};
use crate::{LinalgError, Result};
use candle_core::{DType, Device, Tensor};
use faer::linalg::solvers::{DenseSolveCore, Llt, Solve};
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
    let inv = inverse_spd_faer(&to_faer(a)?, None)?;
    from_faer(inv.as_ref(), a.dtype(), a.device())
}

/// Inverse of a symmetric positive-definite faer matrix: [`small_inverse_spd`] up to order
/// [`SMALL_INVERSE`], faer's Cholesky inverse above (from `llt`, its factorisation, when the
/// caller has one already, else factorised here).
///
/// # Errors
/// [`LinalgError::NotPositiveDefinite`].
pub fn inverse_spd_faer(a: &Mat<f64>, llt: Option<&Llt<f64>>) -> Result<Mat<f64>> {
    let n = a.nrows();
    if n <= SMALL_INVERSE && a.ncols() == n {
        let v: Vec<f64> = (0..n * n).map(|i| a[(i / n, i % n)]).collect();
        let inv = small_inverse_spd(&v, n)?;
        return Ok(Mat::from_fn(n, n, |i, j| inv[i * n + j]));
    }
    match llt {
        Some(llt) => Ok(llt.inverse()),
        None => Ok(a
            .llt(Side::Lower)
            .map_err(|_| LinalgError::NotPositiveDefinite)?
            .inverse()),
    }
}

/// Largest order [`inverse_spd`] inverts with [`small_inverse_spd`] instead of faer: faer's
/// Cholesky inverse runs its triangular products in parallel through private-gemm, whose
/// per-thread packing buffer is twice the L3 cache (960 MB of address space per thread on a
/// host that reports a 480 MB L3): two threads exceed the quick demo's `ulimit -v 2 GiB`
/// (issue 16), for a 10 x 10 covariance.
const SMALL_INVERSE: usize = 64;

/// Inverse of a symmetric positive-definite row-major `[n, n]` matrix (its lower triangle is
/// used) by the Cholesky factorisation `A = L L^T` (Cholesky-Banachiewicz, row by row), then
/// `A^-1 = L^-T L^-1` column by column through forward and back substitution; plain loops, no
/// allocation beyond the factor and the result. The result is exactly symmetric.
///
/// # Errors
/// [`LinalgError::NotPositiveDefinite`] when a pivot is not positive (or not finite).
pub fn small_inverse_spd(a: &[f64], n: usize) -> Result<Vec<f64>> {
    debug_assert_eq!(a.len(), n * n);
    let mut l = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..=i {
            let s: f64 = (0..j).map(|k| l[i * n + k] * l[j * n + k]).sum();
            if i == j {
                let d = a[i * n + i] - s;
                if !(d > 0.0 && d.is_finite()) {
                    return Err(LinalgError::NotPositiveDefinite);
                }
                l[i * n + i] = d.sqrt();
            } else {
                l[i * n + j] = (a[i * n + j] - s) / l[j * n + j];
            }
        }
    }
    let mut inv = vec![0.0; n * n];
    let mut y = vec![0.0; n];
    for c in 0..n {
        // L y = e_c, then L^T x = y; x is column c of the inverse
        for i in 0..n {
            let s: f64 = (0..i).map(|k| l[i * n + k] * y[k]).sum();
            y[i] = (if i == c { 1.0 } else { 0.0 } - s) / l[i * n + i];
        }
        for i in (0..n).rev() {
            let s: f64 = (i + 1..n).map(|k| l[k * n + i] * inv[k * n + c]).sum();
            inv[i * n + c] = (y[i] - s) / l[i * n + i];
        }
    }
    for i in 0..n {
        for j in 0..i {
            let m = 0.5 * (inv[i * n + j] + inv[j * n + i]);
            inv[i * n + j] = m;
            inv[j * n + i] = m;
        }
    }
    Ok(inv)
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
    if n <= SMALL_EIGH {
        let v: Vec<f64> = a.to_dtype(DType::F64)?.flatten_all()?.to_vec1()?;
        let (w, vecs) = jacobi_eigh(&v, n)?;
        let w = Tensor::from_vec(w, n, a.device())?.to_dtype(a.dtype())?;
        let vecs = Tensor::from_vec(vecs, (n, n), a.device())?.to_dtype(a.dtype())?;
        return Ok((w, vecs));
    }
    let m = to_faer(a)?;
    let e = m
        .self_adjoint_eigen(Side::Lower)
        .map_err(|_| LinalgError::NoConvergence("symmetric eigendecomposition"))?;
    let s = e.S();
    let w: Vec<f64> = (0..n).map(|i| s[i]).collect();
    let w = Tensor::from_vec(w, n, a.device())?.to_dtype(a.dtype())?;
    Ok((w, from_faer(e.U(), a.dtype(), a.device())?))
}

/// Largest order [`eigh`] solves with [`jacobi_eigh`] instead of faer.
///
/// faer's decompositions run their matrix products through a per-thread packing buffer of twice
/// the L3 cache (600 MB-1 GB of address space on server CPUs with large L3), reserved on first
/// use: harmless for RSS, but a process under `ulimit -v` aborts (issue 16). The tabular
/// designs of the classical benchmarks are far below this size, where Jacobi is also fast.
const SMALL_EIGH: usize = 64;

/// Symmetric eigendecomposition by the cyclic Jacobi method (Jacobi 1846; Golub & Van Loan,
/// *Matrix Computations*, 4th ed., section 8.5): plane rotations annihilate each off-diagonal
/// entry in turn until the off-diagonal norm is below `1e-15` of the matrix norm. Accurate to
/// machine precision for symmetric input, `O(n^3)` per sweep, a handful of sweeps.
///
/// `a` is row-major `[n, n]` (its lower triangle is used, like faer's `Side::Lower`); returns the
/// eigenvalues ascending and the eigenvectors as the columns of a row-major `[n, n]` matrix.
///
/// # Errors
/// [`LinalgError::NoConvergence`] if 100 sweeps do not converge (not seen for finite input).
pub fn jacobi_eigh(a: &[f64], n: usize) -> Result<(Vec<f64>, Vec<f64>)> {
    debug_assert_eq!(a.len(), n * n);
    // symmetrise from the lower triangle
    let mut m = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..=i {
            m[i * n + j] = a[i * n + j];
            m[j * n + i] = a[i * n + j];
        }
    }
    let mut v = vec![0.0; n * n];
    for i in 0..n {
        v[i * n + i] = 1.0;
    }
    let norm2: f64 = m.iter().map(|x| x * x).sum();
    let mut converged = n <= 1;
    for _sweep in 0..100 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..i).map(move |j| (i, j)))
            .map(|(i, j)| 2.0 * m[i * n + j] * m[i * n + j])
            .sum();
        if off <= 1e-30 * norm2 || off == 0.0 {
            converged = true;
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = m[p * n + q];
                if apq == 0.0 {
                    continue;
                }
                let (app, aqq) = (m[p * n + p], m[q * n + q]);
                let theta = (aqq - app) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..n {
                    let (mkp, mkq) = (m[k * n + p], m[k * n + q]);
                    m[k * n + p] = c * mkp - s * mkq;
                    m[k * n + q] = s * mkp + c * mkq;
                }
                for k in 0..n {
                    let (mpk, mqk) = (m[p * n + k], m[q * n + k]);
                    m[p * n + k] = c * mpk - s * mqk;
                    m[q * n + k] = s * mpk + c * mqk;
                }
                for k in 0..n {
                    let (vkp, vkq) = (v[k * n + p], v[k * n + q]);
                    v[k * n + p] = c * vkp - s * vkq;
                    v[k * n + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    if !converged {
        return Err(LinalgError::NoConvergence(
            "symmetric eigendecomposition (Jacobi)",
        ));
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&i, &j| m[i * n + i].total_cmp(&m[j * n + j]));
    let w = order.iter().map(|&i| m[i * n + i]).collect();
    let mut vecs = vec![0.0; n * n];
    for (col, &src) in order.iter().enumerate() {
        for k in 0..n {
            vecs[k * n + col] = v[k * n + src];
        }
    }
    Ok((w, vecs))
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

    #[test]
    fn small_inverse_matches_faer_and_rejects_indefinite_matrices() {
        for n in [1usize, 2, 7, 30, 64] {
            // A = B B^T + n I: symmetric positive definite
            let b: Vec<f64> = (0..n * n)
                .map(|i| ((i * 7919) % 23) as f64 / 11.0 - 1.0)
                .collect();
            let a = Mat::from_fn(n, n, |i, j| {
                (0..n).map(|k| b[i * n + k] * b[j * n + k]).sum::<f64>()
                    + if i == j { n as f64 } else { 0.0 }
            });
            let v: Vec<f64> = (0..n * n).map(|i| a[(i / n, i % n)]).collect();
            let small = small_inverse_spd(&v, n).unwrap();
            let faer_inv = a.llt(Side::Lower).unwrap().inverse();
            let scale = (0..n).map(|i| faer_inv[(i, i)].abs()).fold(0.0, f64::max);
            for i in 0..n {
                for j in 0..n {
                    let d = (small[i * n + j] - faer_inv[(i, j)]).abs();
                    assert!(d <= 1e-12 * scale, "n {n} ({i}, {j}): {d}");
                }
            }
            // the dispatching entry points agree with it
            let t = Tensor::from_vec(v.clone(), (n, n), &Device::Cpu).unwrap();
            let via: Vec<f64> = inverse_spd(&t)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            assert_eq!(via, small);
            let m = inverse_spd_faer(&a, None).unwrap();
            assert!((0..n * n).all(|i| m[(i / n, i % n)] == small[i]));
        }
        // indefinite, singular and non-finite pivots are the typed error
        for bad in [
            vec![1.0, 2.0, 2.0, 1.0],
            vec![1.0, 1.0, 1.0, 1.0],
            vec![f64::INFINITY, 0.0, 0.0, 1.0],
        ] {
            assert!(matches!(
                small_inverse_spd(&bad, 2),
                Err(LinalgError::NotPositiveDefinite)
            ));
        }
    }

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

    #[test]
    fn jacobi_matches_faer_and_is_orthonormal() {
        // random symmetric indefinite matrices, n = 1, 2, 40 and 64 (the largest Jacobi size)
        for n in [1usize, 2, 40, 64] {
            let mut state = 12345u64 + n as u64;
            let mut rnd = || {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((state >> 11) as f64 / (1u64 << 53) as f64) - 0.5
            };
            let mut a = vec![0.0; n * n];
            for i in 0..n {
                for j in 0..=i {
                    let x = rnd();
                    a[i * n + j] = x;
                    a[j * n + i] = x;
                }
            }
            let (w, v) = jacobi_eigh(&a, n).unwrap();
            let m = Mat::from_fn(n, n, |i, j| a[i * n + j]);
            let e = m.self_adjoint_eigen(Side::Lower).unwrap();
            for (i, wi) in w.iter().enumerate() {
                assert!(
                    (wi - e.S()[i]).abs() < 1e-12,
                    "n {n} eigenvalue {i}: {wi} vs {}",
                    e.S()[i]
                );
            }
            // A V = V diag(w), V^T V = I
            for c in 0..n {
                for r in 0..n {
                    let av: f64 = (0..n).map(|k| a[r * n + k] * v[k * n + c]).sum();
                    assert!((av - w[c] * v[r * n + c]).abs() < 1e-12);
                    let vtv: f64 = (0..n).map(|k| v[k * n + r] * v[k * n + c]).sum();
                    assert!((vtv - if r == c { 1.0 } else { 0.0 }).abs() < 1e-12);
                }
            }
        }
    }
}
