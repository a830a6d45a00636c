//! Distribution shift in a model's representation space: MMD between the learned features of
//! source-domain and target-domain examples.
//!
//! The features (e.g. an encoder's pooled hidden states) are optionally projected on the top
//! principal components of the pooled sample (PCA, Pearson 1901 / Hotelling 1933) — transformer
//! features have a few dominant directions, and an RBF kernel on hundreds of dimensions loses
//! power — and optionally standardised on the pooled sample; then the kernel two-sample test of
//! [`crate::mmd`] runs unchanged (Gretton et al. 2012: unbiased MMD^2 with median-heuristic RBF
//! kernels and the permutation test `p = (k + 1) / (n_perm + 1)`). The projection is fitted on
//! the pooled sample without labels of which side a row is from, so the permutation test stays
//! valid.

use crate::input::two_samples;
use crate::mmd::{mmd_test, MmdConfig, MmdResult};
use crate::{Result, SafetyError};
use candle_core::{Device, Tensor};
use forge_linalg::Standardizer;
use serde::{Deserialize, Serialize};

/// Settings of [`representation_mmd`].
///
/// | field | default | range |
/// |---|---|---|
/// | `pca_dims` | `Some(32)` | `>= 1`; `None` keeps every feature |
/// | `standardize` | false (PCA scores keep their variances) | |
/// | `mmd` | [`MmdConfig::default`] | |
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RepresentationMmdConfig {
    /// Project on this many principal components of the pooled sample first.
    pub pca_dims: Option<usize>,
    /// Standardise each (projected) feature on the pooled sample.
    pub standardize: bool,
    /// The MMD test.
    pub mmd: MmdConfig,
}

impl Default for RepresentationMmdConfig {
    fn default() -> Self {
        Self {
            pca_dims: Some(32),
            standardize: false,
            mmd: MmdConfig::default(),
        }
    }
}

/// The MMD test on representations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RepresentationMmd {
    /// The test on the (projected) features.
    pub mmd: MmdResult,
    /// Feature dimension the test ran on.
    pub dims: usize,
    /// Fraction of the pooled variance kept by the projection (1 without PCA).
    pub explained_variance: f64,
}

/// MMD two-sample test between source-domain and target-domain representations.
///
/// # Shapes
/// `source`: `[m, d]`, `target`: `[n, d]`.
///
/// # Errors
/// [`SafetyError::FeatureMismatch`]; NaN/inf features; [`SafetyError::TooFewSamples`] below 2
/// rows per side; [`SafetyError::InvalidArgument`] for `pca_dims = Some(0)` or a bad
/// [`MmdConfig`].
pub fn representation_mmd(
    source: &Tensor,
    target: &Tensor,
    config: &RepresentationMmdConfig,
) -> Result<RepresentationMmd> {
    if config.pca_dims == Some(0) {
        return Err(SafetyError::InvalidArgument {
            name: "pca_dims",
            reason: "must be >= 1, got 0".into(),
        });
    }
    let (s, t) = two_samples(source, target, 2)?;
    let d = s.d;
    let mut pooled = s.data.clone();
    pooled.extend_from_slice(&t.data);
    let pooled = Tensor::from_vec(pooled, (s.n + t.n, d), &Device::Cpu)?;
    let (mut xs, mut xt) = (
        Tensor::from_vec(s.data, (s.n, d), &Device::Cpu)?,
        Tensor::from_vec(t.data, (t.n, d), &Device::Cpu)?,
    );
    let mut pooled_proj = pooled.clone();
    let mut explained = 1.0;
    let mut dims = d;
    if let Some(k) = config.pca_dims.filter(|k| *k < d) {
        let mean = pooled.mean_keepdim(0)?;
        let c = pooled.broadcast_sub(&mean)?;
        let cov = c.t()?.matmul(&c)?;
        let (w, v) = forge_linalg::dense::eigh(&cov)?;
        let w: Vec<f64> = w.to_vec1()?;
        let total: f64 = w.iter().map(|x| x.max(0.0)).sum();
        let top: f64 = w[d - k..].iter().map(|x| x.max(0.0)).sum();
        explained = if total > 0.0 { top / total } else { 1.0 };
        let basis = v.narrow(1, d - k, k)?;
        xs = xs.broadcast_sub(&mean)?.matmul(&basis)?;
        xt = xt.broadcast_sub(&mean)?.matmul(&basis)?;
        pooled_proj = c.matmul(&basis)?;
        dims = k;
    }
    if config.standardize {
        let st = Standardizer::fit(&pooled_proj)?;
        xs = st.transform(&xs)?;
        xt = st.transform(&xt)?;
    }
    let mmd = mmd_test(&xs, &xt, &config.mmd)?;
    Ok(RepresentationMmd {
        mmd,
        dims,
        explained_variance: explained,
    })
}
