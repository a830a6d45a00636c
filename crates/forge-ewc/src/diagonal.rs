//! [`FisherDiagonal`]: the estimated diagonal (one tensor per named parameter) and the checks
//! shared by estimation, the penalty and loading (unique names, finite, non-negative).

use crate::fisher::FisherEstimator;
use crate::{EwcError, Result};
use candle_core::{DType, Tensor};
use rayon::prelude::*;
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

/// The first value of `t` (flat row-major index, value) for which `bad` holds. A contiguous
/// f32 CPU tensor is scanned where it lies, in blocks checked branch-free (vectorised) before
/// one is searched, the blocks spread over rayon's threads (the first bad block in order
/// decides); other tensors are read out as f64 first.
fn first_where(t: &Tensor, bad: impl Fn(f64) -> bool + Sync) -> Result<Option<(usize, f64)>> {
    const BLOCK: usize = 4096;
    if t.device().is_cpu() && t.dtype() == DType::F32 && t.is_contiguous() {
        return Ok(crate::ewc::with_f32(t, "ewc value check", |v| {
            v.par_chunks(BLOCK)
                .enumerate()
                .find_map_first(|(b, block)| {
                    if !block.iter().fold(false, |any, &x| any | bad(f64::from(x))) {
                        return None;
                    }
                    let i = block.iter().position(|&x| bad(f64::from(x)))?;
                    Some((b * BLOCK + i, f64::from(block[i])))
                })
        })?);
    }
    Ok(values_f64(t)?
        .into_iter()
        .enumerate()
        .find(|(_, v)| bad(*v)))
}

/// Checks that every value is finite (`what` names the tensor kind in the error).
pub(crate) fn check_finite(what: &'static str, name: &str, t: &Tensor) -> Result<()> {
    if let Some((index, value)) = first_where(t, |v| !v.is_finite())? {
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
    // the first value that is either non-finite or negative decides the error
    if let Some((index, value)) = first_where(t, |v| !v.is_finite() || v < 0.0)? {
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

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn value_checks_name_the_first_bad_value_past_the_first_block() {
        let mut v = vec![0.5f32; 10_000];
        v[9_000] = -2.0;
        v[5_000] = f32::NAN;
        let t = Tensor::from_vec(v.clone(), (100, 100), &Device::Cpu).unwrap();
        let e = check_fisher_values("w", &t).unwrap_err();
        assert!(
            matches!(e, EwcError::NonFinite { index: 5_000, .. }),
            "{e:?}"
        );
        v[5_000] = 0.5;
        let t = Tensor::from_vec(v.clone(), (100, 100), &Device::Cpu).unwrap();
        let e = check_fisher_values("w", &t).unwrap_err();
        assert!(matches!(e, EwcError::NegativeFisher { index: 9_000, value, .. } if value == -2.0));
        check_finite("Fisher", "w", &t).unwrap();
        // a strided (transposed) view takes the f64 path: index 9_000 = row 90, column 0 of the
        // original is row 0, column 90 of the transpose, flat index 90
        let e = check_fisher_values("w", &t.t().unwrap()).unwrap_err();
        assert!(
            matches!(e, EwcError::NegativeFisher { index: 90, .. }),
            "{e:?}"
        );
        v[9_000] = 0.5;
        let t = Tensor::from_vec(v, (100, 100), &Device::Cpu).unwrap();
        check_fisher_values("w", &t).unwrap();
    }
}
