//! Internal conversion between candle tensors and row-major f64 buffers, plus the argument
//! checks every public function runs once at its boundary.

use crate::{ClassicalError, Result};
use candle_core::{DType, Device, Tensor};
use forge_linalg::check::{ensure_finite_slice, ensure_matrix, ensure_vector};

/// A dense row-major f64 matrix `[n, d]`.
#[derive(Debug, Clone)]
pub(crate) struct Mat64 {
    pub v: Vec<f64>,
    pub n: usize,
    pub d: usize,
}

impl Mat64 {
    pub fn row(&self, i: usize) -> &[f64] {
        &self.v[i * self.d..(i + 1) * self.d]
    }

    /// `X w + b` for every row.
    pub fn affine(&self, w: &[f64], b: f64) -> Vec<f64> {
        self.v.chunks_exact(self.d).map(|r| dot(r, w) + b).collect()
    }

    /// Rows `idx` of the matrix.
    pub fn take(&self, idx: &[usize]) -> Mat64 {
        let mut v = Vec::with_capacity(idx.len() * self.d);
        for &i in idx {
            v.extend_from_slice(self.row(i));
        }
        Mat64 {
            v,
            n: idx.len(),
            d: self.d,
        }
    }

    pub fn to_tensor(&self, device: &Device) -> Result<Tensor> {
        Ok(Tensor::from_vec(self.v.clone(), (self.n, self.d), device)?)
    }
}

#[inline]
pub(crate) fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Runs `f` on the f64 contents of `t` in row-major order without copying when `t` is a
/// contiguous f64 CPU tensor (otherwise on a converted copy). No finiteness check.
pub(crate) fn with_f64<R>(t: &Tensor, f: impl FnOnce(&[f64]) -> R) -> Result<R> {
    if t.dtype() == DType::F64 {
        let (storage, layout) = t.storage_and_layout();
        if let (candle_core::Storage::Cpu(cpu), Some((a, b))) =
            (&*storage, layout.contiguous_offsets())
        {
            let sl = cpu.as_slice::<f64>()?;
            return Ok(f(&sl[a..b]));
        }
    }
    let v: Vec<f64> = t.to_dtype(DType::F64)?.flatten_all()?.to_vec1()?;
    Ok(f(&v))
}

/// Reads a finite, non-empty `[n, d]` matrix as f64.
pub(crate) fn matrix(x: &Tensor, what: &str) -> Result<Mat64> {
    let (n, d) = ensure_matrix(x, what)?;
    let v: Vec<f64> = x.to_dtype(DType::F64)?.flatten_all()?.to_vec1()?;
    ensure_finite_slice(&v, what)?;
    Ok(Mat64 { v, n, d })
}

/// Reads a finite, non-empty `[n, d]` matrix and checks its column count.
pub(crate) fn matrix_cols(x: &Tensor, what: &str, d: usize) -> Result<Mat64> {
    let m = matrix(x, what)?;
    if m.d != d {
        return Err(ClassicalError::Shape {
            what: what.to_string(),
            expected: format!("[n, {d}] (the model has {d} features)"),
            got: x.dims().to_vec(),
        });
    }
    Ok(m)
}

/// Reads a finite, non-empty vector as f64.
pub(crate) fn vector(y: &Tensor, what: &str) -> Result<Vec<f64>> {
    ensure_vector(y, what)?;
    let v: Vec<f64> = y.to_dtype(DType::F64)?.to_vec1()?;
    ensure_finite_slice(&v, what)?;
    Ok(v)
}

/// Reads a design matrix and a target of matching length.
pub(crate) fn xy(x: &Tensor, y: &Tensor) -> Result<(Mat64, Vec<f64>)> {
    let xm = matrix(x, "x")?;
    let ny = ensure_vector(y, "y")?;
    if ny != xm.n {
        return Err(ClassicalError::Shape {
            what: "y".into(),
            expected: format!("[{}] (one target per row of x)", xm.n),
            got: y.dims().to_vec(),
        });
    }
    let yv = vector(y, "y")?;
    Ok((xm, yv))
}

/// Checks that a vector has `n` elements.
pub(crate) fn check_len(v: &[f64], n: usize, what: &str) -> Result<()> {
    if v.len() != n {
        return Err(ClassicalError::Shape {
            what: what.to_string(),
            expected: format!("[{n}]"),
            got: vec![v.len()],
        });
    }
    Ok(())
}

/// Checks 0/1 labels; `require_both` also rejects a single class.
pub(crate) fn check_binary(y: &[f64], what: &str, require_both: bool) -> Result<()> {
    for (i, &v) in y.iter().enumerate() {
        if v != 0.0 && v != 1.0 {
            return Err(ClassicalError::InvalidLabel {
                what: what.to_string(),
                value: v,
                index: i,
                expected: "0 or 1".into(),
            });
        }
    }
    if require_both {
        let first = y[0];
        if y.iter().all(|&v| v == first) {
            return Err(ClassicalError::SingleClass {
                what: what.to_string(),
                class: first,
            });
        }
    }
    Ok(())
}

/// Checks integer class ids in `0..k` and returns them.
pub(crate) fn class_ids(y: &[f64], k: usize, what: &str) -> Result<Vec<usize>> {
    y.iter()
        .enumerate()
        .map(|(i, &v)| {
            if v >= 0.0 && v.fract() == 0.0 && (v as usize) < k {
                Ok(v as usize)
            } else {
                Err(ClassicalError::InvalidLabel {
                    what: what.to_string(),
                    value: v,
                    index: i,
                    expected: format!("an integer class id in 0..{k}"),
                })
            }
        })
        .collect()
}

/// Checks a regularisation strength: finite and `>= 0`.
pub(crate) fn check_lam(name: &'static str, lam: f64) -> Result<()> {
    if !(lam.is_finite() && lam >= 0.0) {
        return Err(ClassicalError::InvalidParameter {
            name,
            reason: format!("must be finite and >= 0, got {lam}"),
        });
    }
    Ok(())
}

/// Checks a strictly positive finite parameter.
pub(crate) fn check_pos(name: &'static str, v: f64) -> Result<()> {
    if !(v.is_finite() && v > 0.0) {
        return Err(ClassicalError::InvalidParameter {
            name,
            reason: format!("must be finite and > 0, got {v}"),
        });
    }
    Ok(())
}

/// Reads model weights `[d]` as f64 (any float dtype), checking finiteness.
pub(crate) fn weights(w: &Tensor, what: &str) -> Result<Vec<f64>> {
    vector(w, what)
}

/// A 1-D f64 tensor on `device`.
pub(crate) fn tensor1(v: Vec<f64>, device: &Device) -> Result<Tensor> {
    let n = v.len();
    Ok(Tensor::from_vec(v, n, device)?)
}

/// Numerically stable logistic sigmoid.
#[inline]
pub(crate) fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

/// Numerically stable `log(1 + exp(z))`.
#[inline]
pub(crate) fn softplus(z: f64) -> f64 {
    if z > 0.0 {
        z + (-z).exp().ln_1p()
    } else {
        z.exp().ln_1p()
    }
}
