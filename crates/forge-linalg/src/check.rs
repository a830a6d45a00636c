//! Input validation shared by every Forge crate: rank, shape and finiteness checks that
//! turn bad input into a [`LinalgError`] naming the argument instead of a panic or a NaN.

use crate::{LinalgError, Result};
use candle_core::{DType, Tensor};

/// Checks that `t` is a matrix (rank 2) with at least one row and one column and returns `(rows, cols)`.
///
/// # Errors
/// [`LinalgError::Shape`] if the rank is not 2, [`LinalgError::Empty`] if a dimension is 0.
pub fn ensure_matrix(t: &Tensor, what: &str) -> Result<(usize, usize)> {
    let dims = t.dims();
    if dims.len() != 2 {
        return Err(LinalgError::Shape {
            what: what.to_string(),
            expected: "a matrix [rows, cols]".into(),
            got: dims.to_vec(),
        });
    }
    if dims[0] == 0 || dims[1] == 0 {
        return Err(LinalgError::Empty(format!("{what} (shape {dims:?})")));
    }
    Ok((dims[0], dims[1]))
}

/// Checks that `t` is a non-empty vector (rank 1) and returns its length.
///
/// # Errors
/// [`LinalgError::Shape`] if the rank is not 1, [`LinalgError::Empty`] if it has no element.
pub fn ensure_vector(t: &Tensor, what: &str) -> Result<usize> {
    let dims = t.dims();
    if dims.len() != 1 {
        return Err(LinalgError::Shape {
            what: what.to_string(),
            expected: "a vector [n]".into(),
            got: dims.to_vec(),
        });
    }
    if dims[0] == 0 {
        return Err(LinalgError::Empty(what.to_string()));
    }
    Ok(dims[0])
}

/// Checks that every element of `t` is finite.
///
/// # Errors
/// [`LinalgError::NonFinite`] with the first offending value and its flat index.
pub fn ensure_finite(t: &Tensor, what: &str) -> Result<()> {
    let v: Vec<f64> = t.flatten_all()?.to_dtype(DType::F64)?.to_vec1()?;
    ensure_finite_slice(&v, what)
}

/// Checks that a slice is finite.
///
/// # Errors
/// [`LinalgError::NonFinite`] with the first offending value and its index.
pub fn ensure_finite_slice(v: &[f64], what: &str) -> Result<()> {
    if let Some((index, value)) = v.iter().enumerate().find(|(_, x)| !x.is_finite()) {
        return Err(LinalgError::NonFinite {
            what: what.to_string(),
            value: *value,
            index,
        });
    }
    Ok(())
}

/// Checks that a design matrix `x` `[n, d]` and a target `y` `[n]` agree and are finite; returns `(n, d)`.
///
/// # Errors
/// Shape, emptiness and finiteness errors naming `x` or `y`.
pub fn ensure_xy(x: &Tensor, y: &Tensor) -> Result<(usize, usize)> {
    let (n, d) = ensure_matrix(x, "x")?;
    let ny = ensure_vector(y, "y")?;
    if ny != n {
        return Err(LinalgError::Shape {
            what: "y".into(),
            expected: format!("[{n}] (one target per row of x)"),
            got: vec![ny],
        });
    }
    ensure_finite(x, "x")?;
    ensure_finite(y, "y")?;
    Ok((n, d))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn rejects_bad_inputs() {
        let dev = Device::Cpu;
        let v = Tensor::new(&[1.0f64, 2.0], &dev).unwrap();
        assert!(matches!(
            ensure_matrix(&v, "x"),
            Err(LinalgError::Shape { .. })
        ));
        let e = Tensor::zeros((0, 3), DType::F64, &dev).unwrap();
        assert!(matches!(ensure_matrix(&e, "x"), Err(LinalgError::Empty(_))));
        let nan = Tensor::new(&[1.0f64, f64::NAN], &dev).unwrap();
        match ensure_finite(&nan, "y") {
            Err(LinalgError::NonFinite { index, .. }) => assert_eq!(index, 1),
            other => panic!("{other:?}"),
        }
        let x = Tensor::zeros((3, 2), DType::F64, &dev).unwrap();
        assert!(ensure_xy(&x, &v).is_err());
    }
}
