//! Input validation shared by the tests: two samples with the same number of finite features
//! and enough rows, copied once into row-major f64 buffers.

use crate::{Result, SafetyError};
use candle_core::{DType, Tensor};
use forge_linalg::check::{ensure_finite_slice, ensure_matrix};

/// A row-major f64 copy of a matrix.
#[derive(Debug, Clone)]
pub(crate) struct Rows {
    pub data: Vec<f64>,
    pub n: usize,
    pub d: usize,
}

impl Rows {
    /// Copies `t` after checking that it is a non-empty finite matrix with at least `min` rows.
    pub fn from_tensor(t: &Tensor, what: &str, min: usize) -> Result<Self> {
        let (n, d) = ensure_matrix(t, what)?;
        if n < min {
            return Err(SafetyError::TooFewSamples {
                what: what.to_string(),
                got: n,
                min,
            });
        }
        let data: Vec<f64> = t.to_dtype(DType::F64)?.flatten_all()?.to_vec1()?;
        ensure_finite_slice(&data, what)?;
        Ok(Self { data, n, d })
    }

    /// Column `j` as a vector.
    pub fn column(&self, j: usize) -> Vec<f64> {
        (0..self.n).map(|i| self.data[i * self.d + j]).collect()
    }

    /// Row `i`.
    pub fn row(&self, i: usize) -> &[f64] {
        &self.data[i * self.d..(i + 1) * self.d]
    }

    /// The rows at `idx`, in that order.
    pub fn select(&self, idx: &[usize]) -> Rows {
        let mut data = Vec::with_capacity(idx.len() * self.d);
        for &i in idx {
            data.extend_from_slice(self.row(i));
        }
        Rows {
            data,
            n: idx.len(),
            d: self.d,
        }
    }
}

/// Validates a source/target pair: both matrices, equal feature counts, at least `min` rows each,
/// all values finite.
pub(crate) fn two_samples(source: &Tensor, target: &Tensor, min: usize) -> Result<(Rows, Rows)> {
    let (_, ds) = ensure_matrix(source, "source")?;
    let (_, dt) = ensure_matrix(target, "target")?;
    if ds != dt {
        return Err(SafetyError::FeatureMismatch {
            source_features: ds,
            target_features: dt,
        });
    }
    Ok((
        Rows::from_tensor(source, "source", min)?,
        Rows::from_tensor(target, "target", min)?,
    ))
}

/// Checks that `v` lies in the open interval (0, 1).
pub(crate) fn check_unit(name: &'static str, v: f64) -> Result<()> {
    if !(v > 0.0 && v < 1.0) {
        return Err(SafetyError::InvalidArgument {
            name,
            reason: format!("must lie in (0, 1), got {v}"),
        });
    }
    Ok(())
}
