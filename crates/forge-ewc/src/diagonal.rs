//! [`FisherDiagonal`]: the estimated diagonal (one tensor per named parameter) and the checks
//! shared by estimation, the penalty and loading (unique names, finite, non-negative).

use crate::fisher::FisherEstimator;
use crate::{EwcError, Result};
use candle_core::{DType, Tensor};
use std::collections::HashSet;

/// A diagonal Fisher: one non-negative, finite tensor per named parameter, with the estimator
/// and sample count that produced it.
#[derive(Clone, Debug)]
pub struct FisherDiagonal {
    pub(crate) entries: Vec<(String, Tensor)>,
    pub(crate) estimator: FisherEstimator,
    pub(crate) n_samples: usize,
}

impl FisherDiagonal {
    /// Wraps precomputed tensors (e.g. from another library), checking them.
    ///
    /// # Errors
    /// [`EwcError::NoParameters`] if empty, [`EwcError::DuplicateParameter`],
    /// [`EwcError::NonFinite`] / [`EwcError::NegativeFisher`] naming the tensor and index.
    pub fn from_tensors(
        entries: Vec<(String, Tensor)>,
        estimator: FisherEstimator,
        n_samples: usize,
    ) -> Result<Self> {
        if entries.is_empty() {
            return Err(EwcError::NoParameters {
                context: "build a Fisher diagonal from",
            });
        }
        check_unique(entries.iter().map(|(n, _)| n.as_str()))?;
        for (name, t) in &entries {
            check_fisher_values(name, t)?;
        }
        Ok(Self {
            entries,
            estimator,
            n_samples,
        })
    }

    /// The named tensors, in parameter order.
    pub fn entries(&self) -> &[(String, Tensor)] {
        &self.entries
    }

    /// The tensor of parameter `name`.
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.entries.iter().find(|(n, _)| n == name).map(|(_, t)| t)
    }

    /// The estimator that produced it.
    pub fn estimator(&self) -> &FisherEstimator {
        &self.estimator
    }

    /// Number of samples it was estimated on.
    pub fn n_samples(&self) -> usize {
        self.n_samples
    }

    /// Number of scalar entries over all tensors.
    pub fn elem_count(&self) -> usize {
        self.entries.iter().map(|(_, t)| t.elem_count()).sum()
    }

    /// Sum of all entries (the trace of the diagonal Fisher).
    ///
    /// # Errors
    /// Candle errors only.
    pub fn trace(&self) -> Result<f64> {
        let mut s = 0.0;
        for (_, t) in &self.entries {
            s += t.to_dtype(DType::F64)?.sum_all()?.to_scalar::<f64>()?;
        }
        Ok(s)
    }
}

/// Checks names are unique.
pub(crate) fn check_unique<'a>(names: impl Iterator<Item = &'a str>) -> Result<()> {
    let mut seen = HashSet::new();
    for n in names {
        if !seen.insert(n) {
            return Err(EwcError::DuplicateParameter {
                name: n.to_string(),
            });
        }
    }
    Ok(())
}

/// The values of `t` as f64 (f64 tensors directly, other float types through f32).
fn values_f64(t: &Tensor) -> Result<Vec<f64>> {
    let flat = t.flatten_all()?;
    Ok(if t.dtype() == DType::F64 {
        flat.to_vec1::<f64>()?
    } else {
        flat.to_dtype(DType::F32)?
            .to_vec1::<f32>()?
            .into_iter()
            .map(f64::from)
            .collect()
    })
}

/// Checks that every value is finite (`what` names the tensor kind in the error).
pub(crate) fn check_finite(what: &'static str, name: &str, t: &Tensor) -> Result<()> {
    if let Some((index, value)) = values_f64(t)?
        .into_iter()
        .enumerate()
        .find(|(_, v)| !v.is_finite())
    {
        return Err(EwcError::NonFinite {
            what,
            name: name.to_string(),
            index,
            value,
        });
    }
    Ok(())
}

/// Checks that a Fisher tensor is finite and non-negative.
pub(crate) fn check_fisher_values(name: &str, t: &Tensor) -> Result<()> {
    for (index, value) in values_f64(t)?.into_iter().enumerate() {
        if !value.is_finite() {
            return Err(EwcError::NonFinite {
                what: "Fisher",
                name: name.to_string(),
                index,
                value,
            });
        }
        if value < 0.0 {
            return Err(EwcError::NegativeFisher {
                name: name.to_string(),
                index,
                value,
            });
        }
    }
    Ok(())
}
