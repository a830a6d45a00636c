//! Centered kernel alignment (CKA): how similar two representations of the same examples are.
//!
//! Kornblith, Norouzi, Lee & Hinton (2019), "Similarity of Neural Network Representations
//! Revisited", ICML: for representations `X` `[n, d_x]` and `Y` `[n, d_y]` of the same `n`
//! examples with kernel matrices `K` and `L`,
//! `CKA(K, L) = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L))`.
//!
//! - **Biased** estimator: `HSIC = tr(K H L H)` with `H = I - 11^T / n` (Gretton et al. 2005);
//!   for the linear kernel `CKA = ||Y_c^T X_c||_F^2 / (||X_c^T X_c||_F ||Y_c^T Y_c||_F)` on
//!   column-centred features. It is biased upwards for `d` comparable to `n`: independent random
//!   features at n = 64, d = 32 score about 0.3.
//! - **Unbiased** estimator: the U-statistic of Song, Smola, Gretton, Bedo & Borgwardt (2012),
//!   "Feature Selection via Dependence Maximization", JMLR 13, Theorem 2:
//!   `HSIC_u = [tr(K~ L~) + 1^T K~ 1 1^T L~ 1 / ((n-1)(n-2)) - 2 / (n-2) 1^T K~ L~ 1] / (n (n-3))`
//!   with `K~ = K - diag(K)`; needs `n >= 4`. Independent features score about 0 (it can be
//!   slightly negative). For the linear kernel it is evaluated in feature space without any
//!   `n x n` matrix (Kornblith et al.'s `feature_space_linear_cka(debiased=True)`):
//!   `||Y_c^T X_c||^2 - n / (n-2) <r_x, r_y> + ||X_c||^2 ||Y_c||^2 / ((n-1)(n-2))` with `r` the
//!   squared row norms.
//! - **RBF** kernel `k(a, b) = exp(-||a - b||^2 / (2 sigma^2))` with
//!   `sigma^2 = threshold^2 * median(all n^2 squared distances)`, as Kornblith et al.'s `gram_rbf`
//!   (the median includes the zero diagonal); `n x n` matrices, so O(n^2) memory.
//!
//! Both estimators are invariant to orthogonal transforms and isotropic scaling of either
//! representation (tested to 1e-6), and the values equal Kornblith et al.'s reference code
//! (fixture `tests/fixtures/transferability.json`).
//!
//! Cost: linear CKA is three `[d, n] x [n, d]` products in f64 (`n = 2000`, `d = 768`: see the
//! `cka` bench); [`CkaReport::compute`] prepares each layer once and then does one product per
//! pair.

use crate::input::Rows;
use crate::{Result, SafetyError};
use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

/// Which HSIC estimator CKA uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum CkaEstimator {
    /// `tr(K H L H)` (Kornblith et al. 2019); biased upwards when `d` is not small against `n`.
    Biased,
    /// The U-statistic of Song et al. (2012); needs `n >= 4`.
    #[default]
    Unbiased,
}

/// The kernel on representations.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum CkaKernel {
    /// `k(a, b) = a . b`.
    Linear,
    /// Gaussian kernel with `sigma = threshold * sqrt(median squared distance)`.
    Rbf {
        /// Bandwidth as a fraction of the median distance (Kornblith et al. use 0.2 to 1.0).
        threshold: f64,
    },
}

/// CKA settings.
///
/// | field | default | range |
/// |---|---|---|
/// | `kernel` | `Linear` | RBF `threshold` > 0 |
/// | `estimator` | `Unbiased` | |
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CkaConfig {
    /// Kernel.
    pub kernel: CkaKernel,
    /// HSIC estimator.
    pub estimator: CkaEstimator,
}

impl Default for CkaConfig {
    fn default() -> Self {
        Self {
            kernel: CkaKernel::Linear,
            estimator: CkaEstimator::Unbiased,
        }
    }
}

impl CkaConfig {
    /// Linear kernel with `estimator`.
    pub fn linear(estimator: CkaEstimator) -> Self {
        Self {
            kernel: CkaKernel::Linear,
            estimator,
        }
    }

    /// RBF kernel with `threshold` and `estimator`.
    pub fn rbf(threshold: f64, estimator: CkaEstimator) -> Self {
        Self {
            kernel: CkaKernel::Rbf { threshold },
            estimator,
        }
    }

    fn validate(&self) -> Result<()> {
        if let CkaKernel::Rbf { threshold } = self.kernel {
            if !(threshold.is_finite() && threshold > 0.0) {
                return Err(SafetyError::InvalidArgument {
                    name: "threshold",
                    reason: format!(
                        "the RBF bandwidth fraction must be finite and > 0, got {threshold}"
                    ),
                });
            }
        }
        Ok(())
    }

    fn min_rows(&self) -> usize {
        match self.estimator {
            CkaEstimator::Biased => 2,
            CkaEstimator::Unbiased => 4,
        }
    }
}

/// Linear CKA between two representations of the same examples.
///
/// # Shapes
/// `x`: `[n, d_x]`, `y`: `[n, d_y]` (any float dtype) -> a scalar, 1 for representations equal
/// up to an orthogonal transform, a translation and an isotropic scaling.
///
/// # Errors
/// [`SafetyError::RowMismatch`] when the row counts differ; [`SafetyError::TooFewSamples`] below
/// 2 rows (4 for the unbiased estimator); NaN/inf features ([`forge_linalg::LinalgError::NonFinite`]);
/// [`SafetyError::Degenerate`] for constant features (zero self-similarity).
///
/// ```
/// use candle_core::{DType, Device};
/// use forge_linalg::rng::{randn, seeded_rng};
/// use forge_safety::cka::{linear_cka, CkaEstimator};
/// let mut rng = seeded_rng(0);
/// let x = randn(&[100, 8], DType::F64, &Device::Cpu, &mut rng)?;
/// let y = ((&x * 3.0)? + 1.0)?; // scaled and shifted: the same representation
/// assert!((linear_cka(&x, &y, CkaEstimator::Unbiased)? - 1.0).abs() < 1e-9);
/// # Ok::<(), forge_safety::SafetyError>(())
/// ```
pub fn linear_cka(x: &Tensor, y: &Tensor, estimator: CkaEstimator) -> Result<f64> {
    cka(x, y, &CkaConfig::linear(estimator))
}

/// RBF CKA with `sigma = threshold * sqrt(median squared distance)` (Kornblith et al. 2019).
///
/// # Shapes
/// `x`: `[n, d_x]`, `y`: `[n, d_y]` -> a scalar.
///
/// # Errors
/// As [`linear_cka`]; [`SafetyError::InvalidArgument`] for `threshold <= 0`.
pub fn rbf_cka(x: &Tensor, y: &Tensor, threshold: f64, estimator: CkaEstimator) -> Result<f64> {
    cka(x, y, &CkaConfig::rbf(threshold, estimator))
}

/// CKA with any kernel and estimator.
///
/// # Shapes
/// `x`: `[n, d_x]`, `y`: `[n, d_y]` -> a scalar.
///
/// # Errors
/// As [`linear_cka`] and [`rbf_cka`].
pub fn cka(x: &Tensor, y: &Tensor, config: &CkaConfig) -> Result<f64> {
    config.validate()?;
    let px = Prepared::new(x, "x", config)?;
    let py = Prepared::new(y, "y", config)?;
    px.cka(&py)
}

/// A representation prepared once for many CKA evaluations.
pub(crate) struct Prepared {
    what: String,
    n: usize,
    estimator: CkaEstimator,
    kind: PreparedKind,
    /// `HSIC(K, K)` in the estimator's scale.
    self_hsic: f64,
}

enum PreparedKind {
    /// Centred features `[n, d]` f64, squared row norms and their sum.
    Linear {
        xc: Tensor,
        row_sq: Vec<f64>,
        total_sq: f64,
    },
    /// Centred Gram matrix `[n, n]` (biased or unbiased centring), row-major.
    Gram(Vec<f64>),
}

impl Prepared {
    pub(crate) fn new(t: &Tensor, what: &str, config: &CkaConfig) -> Result<Self> {
        let rows = Rows::from_tensor(t, what, config.min_rows())?;
        let n = rows.n;
        let kind = match config.kernel {
            CkaKernel::Linear => {
                let mut data = rows.data;
                center_columns(&mut data, n, rows.d);
                let row_sq: Vec<f64> = data
                    .chunks(rows.d)
                    .map(|r| r.iter().map(|v| v * v).sum())
                    .collect();
                let total_sq = row_sq.iter().sum();
                let xc = Tensor::from_vec(data, (n, rows.d), &Device::Cpu)?;
                PreparedKind::Linear {
                    xc,
                    row_sq,
                    total_sq,
                }
            }
            CkaKernel::Rbf { threshold } => {
                let mut g = rbf_gram(&rows, threshold)?;
                center_gram(&mut g, n, config.estimator);
                PreparedKind::Gram(g)
            }
        };
        let mut p = Self {
            what: what.to_string(),
            n,
            estimator: config.estimator,
            kind,
            self_hsic: 0.0,
        };
        let s = p.hsic(&p)?;
        if !(s.is_finite() && s > 0.0) {
            return Err(SafetyError::Degenerate {
                what: what.to_string(),
                reason: format!(
                    "its HSIC with itself is {s:e} (constant or nearly constant features)"
                ),
            });
        }
        p.self_hsic = s;
        Ok(p)
    }

    /// HSIC between two prepared representations, up to a factor common to all pairs.
    fn hsic(&self, other: &Prepared) -> Result<f64> {
        if self.n != other.n {
            return Err(SafetyError::RowMismatch {
                what_a: self.what.clone(),
                rows_a: self.n,
                what_b: other.what.clone(),
                rows_b: other.n,
            });
        }
        let n = self.n as f64;
        match (&self.kind, &other.kind) {
            (
                PreparedKind::Linear {
                    xc: a,
                    row_sq: ra,
                    total_sq: ta,
                },
                PreparedKind::Linear {
                    xc: b,
                    row_sq: rb,
                    total_sq: tb,
                },
            ) => {
                let cross = a.t()?.matmul(b)?;
                let xty = cross.sqr()?.sum_all()?.to_scalar::<f64>()?;
                Ok(match self.estimator {
                    CkaEstimator::Biased => xty,
                    CkaEstimator::Unbiased => {
                        let rr: f64 = ra.iter().zip(rb).map(|(p, q)| p * q).sum();
                        xty - n / (n - 2.0) * rr + ta * tb / ((n - 1.0) * (n - 2.0))
                    }
                })
            }
            (PreparedKind::Gram(a), PreparedKind::Gram(b)) => {
                Ok(a.iter().zip(b).map(|(p, q)| p * q).sum())
            }
            _ => Err(SafetyError::InvalidArgument {
                name: "kernel",
                reason: "both representations must be prepared with the same kernel".into(),
            }),
        }
    }

    /// CKA between two prepared representations.
    pub(crate) fn cka(&self, other: &Prepared) -> Result<f64> {
        let h = self.hsic(other)?;
        Ok(h / (self.self_hsic * other.self_hsic).sqrt())
    }
}

/// Subtracts each column's mean (row-major `[n, d]`).
fn center_columns(data: &mut [f64], n: usize, d: usize) {
    let mut mean = vec![0.0; d];
    for r in data.chunks(d) {
        for (m, v) in mean.iter_mut().zip(r) {
            *m += v;
        }
    }
    for m in &mut mean {
        *m /= n as f64;
    }
    for r in data.chunks_mut(d) {
        for (v, m) in r.iter_mut().zip(&mean) {
            *v -= m;
        }
    }
}

/// The RBF Gram matrix `[n, n]` of `rows` with Kornblith et al.'s bandwidth.
fn rbf_gram(rows: &Rows, threshold: f64) -> Result<Vec<f64>> {
    let n = rows.n;
    let x = Tensor::from_slice(&rows.data, (n, rows.d), &Device::Cpu)?;
    let d2: Vec<f64> = forge_linalg::ops::pairwise_sq_dists(&x, &x)?
        .to_dtype(DType::F64)?
        .flatten_all()?
        .to_vec1()?;
    let med = median(&d2);
    if med.is_nan() || med <= 0.0 {
        return Err(SafetyError::Degenerate {
            what: "representation".into(),
            reason: format!(
                "the median squared distance is {med:e}: more than half the pairs coincide"
            ),
        });
    }
    let scale = -1.0 / (2.0 * threshold * threshold * med);
    Ok(d2.iter().map(|v| (v * scale).exp()).collect())
}

/// The median as numpy computes it (mean of the two middle values for an even count).
fn median(v: &[f64]) -> f64 {
    let mut w = v.to_vec();
    let k = w.len() / 2;
    let (_, hi, _) = w.select_nth_unstable_by(k, f64::total_cmp);
    let hi = *hi;
    if w.len() % 2 == 1 {
        return hi;
    }
    let lo = w[..k].iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (lo + hi) / 2.0
}

/// Centres a Gram matrix in place: `H K H` (biased) or Kornblith et al.'s unbiased centring
/// (zero diagonal, Song et al.'s U-statistic up to a factor).
fn center_gram(g: &mut [f64], n: usize, estimator: CkaEstimator) {
    let nf = n as f64;
    let mut means = vec![0.0; n];
    match estimator {
        CkaEstimator::Biased => {
            for i in 0..n {
                means[i] = g[i * n..(i + 1) * n].iter().sum::<f64>() / nf;
            }
            let mm = means.iter().sum::<f64>() / nf / 2.0;
            for m in &mut means {
                *m -= mm;
            }
            for i in 0..n {
                for j in 0..n {
                    g[i * n + j] -= means[i] + means[j];
                }
            }
        }
        CkaEstimator::Unbiased => {
            for i in 0..n {
                g[i * n + i] = 0.0;
            }
            for i in 0..n {
                means[i] = g[i * n..(i + 1) * n].iter().sum::<f64>() / (nf - 2.0);
            }
            let mm = means.iter().sum::<f64>() / (2.0 * (nf - 1.0));
            for m in &mut means {
                *m -= mm;
            }
            for i in 0..n {
                for j in 0..n {
                    g[i * n + j] -= means[i] + means[j];
                }
                g[i * n + i] = 0.0;
            }
        }
    }
}

/// CKA between every layer of one model (rows) and every layer of another (columns), or one
/// model's layers on two data sets: a heat-map-ready matrix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CkaReport {
    /// Row labels (e.g. `"A layer 0"`).
    pub rows: Vec<String>,
    /// Column labels.
    pub cols: Vec<String>,
    /// `values[i][j]` = CKA(row i, column j).
    pub values: Vec<Vec<f64>>,
    /// The settings used.
    pub config: CkaConfig,
}

impl CkaReport {
    /// CKA between each of `a` and each of `b` (labelled representations of the same examples).
    ///
    /// # Shapes
    /// every tensor `[n, d_i]` with the same `n` -> `values` `[a.len()][b.len()]`.
    ///
    /// # Errors
    /// As [`cka`]; [`SafetyError::InvalidArgument`] when `a` or `b` is empty.
    pub fn compute(
        a: &[(String, Tensor)],
        b: &[(String, Tensor)],
        config: &CkaConfig,
    ) -> Result<Self> {
        config.validate()?;
        for (name, side) in [("a", a), ("b", b)] {
            if side.is_empty() {
                return Err(SafetyError::InvalidArgument {
                    name: if name == "a" { "a" } else { "b" },
                    reason: "needs at least one representation, got none".into(),
                });
            }
        }
        let pa = a
            .iter()
            .map(|(l, t)| Prepared::new(t, l, config))
            .collect::<Result<Vec<_>>>()?;
        let pb = b
            .iter()
            .map(|(l, t)| Prepared::new(t, l, config))
            .collect::<Result<Vec<_>>>()?;
        let values = pa
            .iter()
            .map(|x| pb.iter().map(|y| x.cka(y)).collect::<Result<Vec<_>>>())
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            rows: a.iter().map(|(l, _)| l.clone()).collect(),
            cols: b.iter().map(|(l, _)| l.clone()).collect(),
            values,
            config: *config,
        })
    }

    /// `values[i][i]` for `i < min(rows, cols)` (layer i against the same layer i).
    pub fn diagonal(&self) -> Vec<f64> {
        (0..self.rows.len().min(self.cols.len()))
            .map(|i| self.values[i][i])
            .collect()
    }

    /// For each row, the column with the highest CKA and its value.
    pub fn best_match(&self) -> Vec<(usize, f64)> {
        self.values
            .iter()
            .map(|r| {
                r.iter()
                    .copied()
                    .enumerate()
                    .fold(
                        (0, f64::NEG_INFINITY),
                        |b, (j, v)| if v > b.1 { (j, v) } else { b },
                    )
            })
            .collect()
    }

    /// The matrix as CSV with a header row of column labels and a first column of row labels.
    pub fn to_csv(&self) -> String {
        let esc = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
        let mut out = String::from("\"\"");
        for c in &self.cols {
            out.push(',');
            out.push_str(&esc(c));
        }
        out.push('\n');
        for (r, row) in self.rows.iter().zip(&self.values) {
            out.push_str(&esc(r));
            for v in row {
                out.push_str(&format!(",{v:.6}"));
            }
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_like_numpy() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
    }

    /// The feature-space unbiased linear CKA equals Song et al.'s formula on explicit Gram
    /// matrices (an independent computation).
    #[test]
    fn unbiased_feature_space_equals_song_formula() {
        let mut rng = forge_linalg::seeded_rng(3);
        let n = 9;
        let x = forge_linalg::rng::randn(&[n, 3], DType::F64, &Device::Cpu, &mut rng).unwrap();
        let y = forge_linalg::rng::randn(&[n, 4], DType::F64, &Device::Cpu, &mut rng).unwrap();
        let y = (&y + x.narrow(1, 0, 1).unwrap().broadcast_as((n, 4)).unwrap()).unwrap();
        let song = |k: &Tensor, l: &Tensor| -> f64 {
            let k: Vec<Vec<f64>> = k.to_vec2().unwrap();
            let l: Vec<Vec<f64>> = l.to_vec2().unwrap();
            let nf = n as f64;
            let kt = |i: usize, j: usize| if i == j { 0.0 } else { k[i][j] };
            let lt = |i: usize, j: usize| if i == j { 0.0 } else { l[i][j] };
            let (mut tr, mut sk, mut sl, mut kl1) = (0.0, 0.0, 0.0, 0.0);
            for i in 0..n {
                for j in 0..n {
                    tr += kt(i, j) * lt(j, i);
                    sk += kt(i, j);
                    sl += lt(i, j);
                }
            }
            for i in 0..n {
                let ki: f64 = (0..n).map(|j| kt(i, j)).sum();
                let li: f64 = (0..n).map(|j| lt(i, j)).sum();
                kl1 += ki * li;
            }
            (tr + sk * sl / ((nf - 1.0) * (nf - 2.0)) - 2.0 / (nf - 2.0) * kl1) / (nf * (nf - 3.0))
        };
        let k = x.matmul(&x.t().unwrap()).unwrap();
        let l = y.matmul(&y.t().unwrap()).unwrap();
        let want = song(&k, &l) / (song(&k, &k) * song(&l, &l)).sqrt();
        let got = linear_cka(&x, &y, CkaEstimator::Unbiased).unwrap();
        assert!((got - want).abs() < 1e-12, "{got} vs {want}");
    }
}
