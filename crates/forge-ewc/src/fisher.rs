//! The diagonal of the Fisher information matrix of a model's parameters, estimated three ways
//! (empirical, mini-batch, true), over named candle [`Var`]s and a closure that runs the model.
//!
//! For a model with predictive distribution `p(y | x, theta)` and data `x_1..x_N`:
//!
//! - **true Fisher** `F = (1/N) sum_n E_{y ~ p(y|x_n)} [ (d log p(y|x_n) / d theta)^2 ]`
//!   (Kirkpatrick et al. 2017 use this diagonal; Martens 2020, "New insights and perspectives on
//!   the natural gradient method", section 11, for the distinction). Estimated exactly by
//!   summing over classes ([`FisherEstimator::TrueExact`], one backward pass per non-zero
//!   eigenvalue of the softmax covariance: at most `C - 1` per sample) or by sampling labels
//!   from the model ([`FisherEstimator::TrueSampled`], seeded).
//! - **empirical Fisher** `F_emp = (1/N) sum_n (d log p(y_n|x_n) / d theta)^2` at the true labels
//!   `y_n` ([`FisherEstimator::Empirical`]): one backward pass per sample. It equals the true
//!   Fisher only where the model's predictive distribution matches the data's (Kunstner et al.
//!   2019, "Limitations of the empirical Fisher approximation").
//! - **mini-batch approximation** ([`FisherEstimator::Batch`]): squared gradients of mini-batch
//!   *mean* log-likelihoods, one backward pass per batch. See the variant for what it
//!   approximates and its bias.
//!
//! Squares are element-wise: only the diagonal is kept. The gradient of the log-likelihood and of
//! the negative log-likelihood differ only in sign, so their squares agree.

use crate::diagonal::{check_fisher_values, check_unique, FisherDiagonal};
use crate::{EwcError, Result};
use candle_core::{DType, Tensor, Var};
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::fmt;

/// How the Fisher diagonal is estimated. Serialised (as JSON) into saved EWC states.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FisherEstimator {
    /// The empirical Fisher: mean over samples of the squared per-sample gradient of
    /// `log p(y_n | x_n)` at the true label. The closure is called with one sample index at a
    /// time (`N` forward and `N` backward passes).
    Empirical,
    /// The mini-batch approximation: for consecutive batches `b` of at most `batch_size` samples
    /// with mean gradient `g_b = (1/|b|) sum_{n in b} grad log p(y_n|x_n)`,
    /// `F_batch = (1/N) sum_b |b|^2 g_b^2`.
    ///
    /// With `|b| = 1` this is exactly [`FisherEstimator::Empirical`]. For larger batches,
    /// `|b|^2 g_b^2 = sum_{n in b} g_n^2 + sum_{n != m in b} g_n g_m`: it is the empirical Fisher
    /// plus the within-batch cross products. If the per-sample gradients of a batch are
    /// i.i.d. with mean `mu`, its expectation is `F_emp + (|b| - 1) mu^2`, so it is unbiased only
    /// where the mean gradient vanishes (at a minimum of the training loss, where EWC is
    /// normally applied), and biased upwards elsewhere; its variance is higher than the
    /// empirical Fisher's. The `|b|^2` factor puts it on the per-sample scale, so lambda means
    /// the same for every estimator; codes that accumulate the unscaled `g_b^2` (e.g.
    /// Avalanche's `EWCPlugin`) estimate roughly `F_emp / |b|`. Cost: `N / |b|` forward and
    /// backward passes of batches.
    Batch {
        /// Samples per batch (`>= 1`); the last batch may be smaller.
        batch_size: usize,
    },
    /// The true Fisher with labels drawn from the model's predictive distribution
    /// `softmax(logits)`: `samples_per_input` draws per input, seeded. Unbiased for the true
    /// Fisher. One forward pass per input and one backward pass per distinct drawn class.
    TrueSampled {
        /// Draws per input (`>= 1`).
        samples_per_input: usize,
        /// The seed of the label draws.
        seed: u64,
    },
    /// The true Fisher computed exactly: `(1/N) sum_n sum_c p(c|x_n) (grad log p(c|x_n))^2`, one
    /// forward pass and at most `C - 1` backward passes per input (one for two classes): the sum
    /// is `diag(J^T (diag(p) - p p^T) J)` with `J` the logits' Jacobian, and the middle matrix is
    /// factored into its non-zero eigen-directions, each one backward pass of `l . logits`. For
    /// small class counts.
    TrueExact,
}

impl fmt::Display for FisherEstimator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empirical => write!(f, "empirical"),
            Self::Batch { batch_size } => write!(f, "batch (batch_size {batch_size})"),
            Self::TrueSampled {
                samples_per_input,
                seed,
            } => write!(
                f,
                "true (sampled, {samples_per_input} draws per input, seed {seed})"
            ),
            Self::TrueExact => write!(f, "true (exact)"),
        }
    }
}

/// Configuration of [`fisher_diagonal`].
///
/// | field | default | range |
/// |---|---|---|
/// | `estimator` | [`FisherEstimator::Empirical`] | see the variants |
/// | `max_samples` | `None` (all) | `>= 1`; the first `max_samples` indices are used (shuffle the data first for a random subset) |
/// | `allow_missing_gradients` | `false` | `true` gives parameters without a gradient a zero Fisher instead of an error |
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FisherConfig {
    /// The estimator.
    pub estimator: FisherEstimator,
    /// Use at most this many samples.
    pub max_samples: Option<usize>,
    /// Accept parameters that receive no gradient (zero Fisher) instead of failing.
    pub allow_missing_gradients: bool,
}

impl Default for FisherConfig {
    fn default() -> Self {
        Self {
            estimator: FisherEstimator::Empirical,
            max_samples: None,
            allow_missing_gradients: false,
        }
    }
}

impl FisherConfig {
    /// A default config with the given estimator.
    pub fn new(estimator: FisherEstimator) -> Self {
        Self {
            estimator,
            ..Self::default()
        }
    }

    /// Checks the fields.
    ///
    /// # Errors
    /// [`EwcError::InvalidConfig`] for a zero batch size, zero draws or `max_samples == Some(0)`.
    pub fn validate(&self) -> Result<()> {
        match self.estimator {
            FisherEstimator::Batch { batch_size: 0 } => {
                return Err(EwcError::InvalidConfig {
                    field: "batch_size",
                    reason: "must be >= 1, got 0".into(),
                })
            }
            FisherEstimator::TrueSampled {
                samples_per_input: 0,
                ..
            } => {
                return Err(EwcError::InvalidConfig {
                    field: "samples_per_input",
                    reason: "must be >= 1, got 0".into(),
                })
            }
            _ => {}
        }
        if self.max_samples == Some(0) {
            return Err(EwcError::InvalidConfig {
                field: "max_samples",
                reason: "must be >= 1 when set, got 0".into(),
            });
        }
        Ok(())
    }
}

/// The targets of the data the Fisher is estimated on.
#[derive(Clone, Copy, Debug)]
pub enum Targets<'a> {
    /// The true class of each sample (required by the empirical and batch estimators).
    Labels(&'a [usize]),
    /// `n` samples without labels (enough for the true Fisher).
    Unlabelled(usize),
}

impl Targets<'_> {
    /// Number of samples.
    pub fn len(&self) -> usize {
        match self {
            Self::Labels(l) => l.len(),
            Self::Unlabelled(n) => *n,
        }
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Progress of a running estimate, passed to the optional callback.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FisherProgress {
    /// Samples processed so far.
    pub done: usize,
    /// Samples to process.
    pub total: usize,
}

/// Row-wise log-softmax from primitive ops (every op has a backward pass).
///
/// # Shapes
/// `[n, c]` -> `[n, c]`.
fn log_softmax_rows(logits: &Tensor) -> candle_core::Result<Tensor> {
    let max = logits.max_keepdim(1)?.detach();
    let shifted = logits.broadcast_sub(&max)?;
    let lse = shifted.exp()?.sum_keepdim(1)?.log()?;
    shifted.broadcast_sub(&lse)
}

/// Values per rayon task in the accumulator passes.
const CHUNK: usize = 64 * 1024;

/// Whether a tensor takes the fused accumulator passes ([`FirstSquares`], [`AddSquares`]):
/// contiguous f32 or f64 on the CPU (elsewhere, tensor ops).
fn fused_eligible(t: &Tensor) -> bool {
    t.device().is_cpu() && matches!(t.dtype(), DType::F32 | DType::F64) && t.is_contiguous()
}

/// The element types of the fused accumulator passes.
trait Value:
    Copy + Send + Sync + PartialOrd + std::ops::Mul<Output = Self> + std::ops::Add<Output = Self>
{
    const MAX: Self;
    const ZERO: Self;
    fn of(x: f64) -> Self;
}

impl Value for f32 {
    const MAX: Self = f32::MAX;
    const ZERO: Self = 0.0;
    fn of(x: f64) -> Self {
        x as f32
    }
}

impl Value for f64 {
    const MAX: Self = f64::MAX;
    const ZERO: Self = 0.0;
    fn of(x: f64) -> Self {
        x
    }
}

/// Whether `v` is not a valid Fisher value (NaN, infinite or negative: the predicate of
/// [`check_fisher_values`]), written as two compares that vectorise.
#[inline(always)]
fn invalid<T: Value>(v: T) -> bool {
    !(v >= T::ZERO && v <= T::MAX)
}

/// `w g^2` as a new vector, split over rayon's threads, and whether any value is [`invalid`].
fn fresh_squares<T: Value>(g: &[T], w: T) -> (Vec<T>, bool) {
    use rayon::prelude::*;
    use std::mem::MaybeUninit;
    let mut out: Vec<T> = Vec::with_capacity(g.len());
    let bad = out.spare_capacity_mut()[..g.len()]
        .par_chunks_mut(CHUNK)
        .zip(g.par_chunks(CHUNK))
        .map(|(o, g)| {
            o.iter_mut().zip(g).fold(false, |bad, (o, &g)| {
                let v = w * (g * g);
                *o = MaybeUninit::new(v);
                bad | invalid(v)
            })
        })
        .reduce(|| false, |x, y| x | y);
    // SAFETY: the chunks above cover the first g.len() values and wrote each of them.
    unsafe { out.set_len(g.len()) };
    (out, bad)
}

/// `a += w g^2` in place, split over rayon's threads; whether any result is [`invalid`].
fn add_squares<T: Value>(a: &mut [T], g: &[T], w: T) -> bool {
    use rayon::prelude::*;
    a.par_chunks_mut(CHUNK)
        .zip(g.par_chunks(CHUNK))
        .map(|(a, g)| {
            a.iter_mut().zip(g).fold(false, |bad, (a, &g)| {
                *a = *a + w * (g * g);
                bad | invalid(*a)
            })
        })
        .reduce(|| false, |x, y| x | y)
}

/// `w g^2` as a new tensor in one pass over CPU storage, noting whether a value is not a valid
/// Fisher value (so that [`check_fisher_values`] runs only where one is).
struct FirstSquares {
    weight: f64,
    bad: std::sync::atomic::AtomicBool,
}

impl candle_core::CustomOp1 for FirstSquares {
    fn name(&self) -> &'static str {
        "forge-fisher-first-squares"
    }

    fn cpu_fwd(
        &self,
        s: &candle_core::CpuStorage,
        l: &candle_core::Layout,
    ) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
        use candle_core::CpuStorage;
        let Some((g0, g1)) = l.contiguous_offsets() else {
            candle_core::bail!("fisher squares: a contiguous tensor expected")
        };
        let (out, bad) = match s {
            CpuStorage::F32(g) => {
                let (v, bad) = fresh_squares(&g[g0..g1], f32::of(self.weight));
                (CpuStorage::F32(v), bad)
            }
            CpuStorage::F64(g) => {
                let (v, bad) = fresh_squares(&g[g0..g1], self.weight);
                (CpuStorage::F64(v), bad)
            }
            _ => candle_core::bail!("fisher squares: f32 or f64 expected"),
        };
        self.bad.fetch_or(bad, std::sync::atomic::Ordering::Relaxed);
        Ok((out, l.shape().clone()))
    }
}

/// `acc += w g^2` in place, in one pass over CPU storage split over rayon's threads (the
/// tensor-op chain allocated three parameter-sized buffers per parameter and step), noting
/// whether a result is not a valid Fisher value.
struct AddSquares {
    weight: f64,
    bad: std::sync::atomic::AtomicBool,
}

impl candle_core::InplaceOp2 for AddSquares {
    fn name(&self) -> &'static str {
        "forge-fisher-add-squares"
    }

    fn cpu_fwd(
        &self,
        s1: &mut candle_core::CpuStorage,
        l1: &candle_core::Layout,
        s2: &candle_core::CpuStorage,
        l2: &candle_core::Layout,
    ) -> candle_core::Result<()> {
        use candle_core::CpuStorage;
        let (Some((a0, a1)), Some((g0, g1))) = (l1.contiguous_offsets(), l2.contiguous_offsets())
        else {
            candle_core::bail!("fisher accumulation: contiguous tensors expected")
        };
        if a1 - a0 != g1 - g0 {
            candle_core::bail!("fisher accumulation: {} vs {} values", a1 - a0, g1 - g0)
        }
        let bad = match (s1, s2) {
            (CpuStorage::F32(a), CpuStorage::F32(g)) => {
                add_squares(&mut a[a0..a1], &g[g0..g1], f32::of(self.weight))
            }
            (CpuStorage::F64(a), CpuStorage::F64(g)) => {
                add_squares(&mut a[a0..a1], &g[g0..g1], self.weight)
            }
            _ => {
                candle_core::bail!("fisher accumulation: f32 or f64 tensors of one dtype expected")
            }
        };
        self.bad.fetch_or(bad, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }
}

/// Zeros of `t`'s shape: f32 CPU ones filled in parallel chunks (a model's worth of
/// accumulators is 91 MB at MiniLM size, one core's memset otherwise), others by candle.
fn zeros_like_par(t: &Tensor) -> candle_core::Result<Tensor> {
    if t.device().is_cpu() && t.dtype() == candle_core::DType::F32 {
        let z = forge_linalg::par::par_new(t.elem_count(), 1 << 16, |_, _| {});
        Tensor::from_vec(z, t.shape(), t.device())
    } else {
        t.zeros_like()
    }
}

/// Accumulates weighted squared gradients per parameter, already divided by the sample count:
/// the first gradient of a parameter is squared into a new tensor (no zero-filled accumulator
/// to add it to), later ones are added in place, and each pass notes whether it produced a
/// value that is not a valid Fisher value, so that the full check runs only then.
struct SquaredGradients<'a> {
    params: &'a [(String, Var)],
    /// Per parameter: the sum so far (None before its first gradient).
    acc: Vec<Option<Tensor>>,
    /// Per parameter: whether its values may be invalid (a fused pass saw one, or they came
    /// from tensor ops that were not watched).
    suspect: Vec<bool>,
    allow_missing: bool,
    /// Samples the estimate is over.
    n: usize,
}

impl<'a> SquaredGradients<'a> {
    fn new(params: &'a [(String, Var)], allow_missing: bool, n: usize) -> Result<Self> {
        if params.is_empty() {
            return Err(EwcError::NoParameters {
                context: "estimate the Fisher of",
            });
        }
        check_unique(params.iter().map(|(n, _)| n.as_str()))?;
        Ok(Self {
            params,
            acc: vec![None; params.len()],
            suspect: vec![false; params.len()],
            allow_missing,
            n: n.max(1),
        })
    }

    /// Backward pass of the scalar `loss`, then `acc += (weight / n) * grad^2`.
    ///
    /// # Errors
    /// [`EwcError::NonFiniteLoss`] (naming `sample`, the first input behind `loss`) when `loss`
    /// is NaN or infinite, before any gradient is accumulated; candle errors.
    fn add(&mut self, loss: &Tensor, weight: f64, sample: usize) -> Result<()> {
        let value = scalar_f64(loss)?;
        if !value.is_finite() {
            return Err(EwcError::NonFiniteLoss { sample, value });
        }
        let w = weight / self.n as f64;
        let grads = loss.backward()?;
        let slots = self.acc.iter_mut().zip(self.suspect.iter_mut());
        for ((name, var), (acc, suspect)) in self.params.iter().zip(slots) {
            let Some(g) = grads.get(var.as_tensor()) else {
                if self.allow_missing {
                    continue;
                }
                return Err(EwcError::NoGradient { name: name.clone() });
            };
            let g = g.detach().contiguous()?;
            let bad = std::sync::atomic::AtomicBool::new(false);
            *acc = Some(match acc.take() {
                None if fused_eligible(&g) => {
                    let op = FirstSquares { weight: w, bad };
                    let t = g.apply_op1_no_bwd(&op)?;
                    *suspect |= op.bad.into_inner();
                    t
                }
                Some(a) if fused_eligible(&a) && fused_eligible(&g) && a.dtype() == g.dtype() => {
                    let op = AddSquares { weight: w, bad };
                    a.inplace_op2(&g, &op)?;
                    *suspect |= op.bad.into_inner();
                    a
                }
                prev => {
                    *suspect = true;
                    let sq = g.sqr()?.affine(w, 0.0)?;
                    match prev {
                        Some(a) => (a + sq)?,
                        None => sq,
                    }
                }
            });
        }
        Ok(())
    }

    fn finish(self, estimator: FisherEstimator) -> Result<FisherDiagonal> {
        let entries = self
            .params
            .iter()
            .zip(self.acc)
            .zip(self.suspect)
            .map(|(((name, var), acc), suspect)| {
                let acc = match acc {
                    Some(a) => a,
                    // allowed to receive no gradient: zero information
                    None => zeros_like_par(var.as_tensor())?,
                };
                if suspect {
                    check_fisher_values(name, &acc)?;
                }
                Ok((name.clone(), acc))
            })
            .collect::<Result<Vec<_>>>()?;
        tracing::debug!(estimator = %estimator, n = self.n, tensors = entries.len(), "Fisher diagonal estimated");
        Ok(FisherDiagonal {
            entries,
            estimator,
            n_samples: self.n,
        })
    }
}

fn closure_err<E: Into<Box<dyn std::error::Error + Send + Sync>>>(e: E) -> EwcError {
    EwcError::Closure(e.into())
}

fn scalar_f64(t: &Tensor) -> Result<f64> {
    Ok(t.to_dtype(DType::F64)?.to_scalar::<f64>()?)
}

/// Number of samples to use, checked.
fn sample_count(n: usize, config: &FisherConfig) -> Result<usize> {
    config.validate()?;
    let m = config.max_samples.map_or(n, |c| c.min(n));
    if m == 0 {
        return Err(EwcError::EmptyData {
            n,
            max_samples: config.max_samples,
        });
    }
    Ok(m)
}

/// Estimates the diagonal Fisher of `params` for a classifier.
///
/// `logits_fn(indices)` runs the model on the samples with those indices (in `0..targets.len()`)
/// and returns their logits; log-likelihoods are `log_softmax(logits)`. It is called with one
/// index at a time by the per-sample estimators and with consecutive chunks of `batch_size`
/// indices by [`FisherEstimator::Batch`]. Run the model in evaluation mode (dropout off) and
/// compute with the tracked tensors of `params` (`var.as_tensor()`, or a model holding the same
/// `Var`s, e.g. from `forge_lora::named_trainable`), otherwise no gradient reaches them.
///
/// ```
/// use candle_core::{Device, Tensor, Var};
/// use forge_ewc::{fisher_diagonal, FisherConfig, FisherEstimator, Targets};
/// let dev = Device::Cpu;
/// let x = Tensor::new(&[[1.0f64, 0.0], [0.0, 2.0], [1.0, 1.0]], &dev)?;
/// let w = Var::from_tensor(&Tensor::zeros((2, 2), candle_core::DType::F64, &dev)?)?;
/// let params = vec![("w".to_string(), w.clone())];
/// let fisher = fisher_diagonal(
///     &params,
///     Targets::Labels(&[0, 1, 1]),
///     |idx: &[usize]| {
///         let rows = Tensor::new(idx.iter().map(|&i| i as u32).collect::<Vec<_>>(), &dev)?;
///         x.index_select(&rows, 0)?.matmul(&w.as_tensor().t()?)
///     },
///     &FisherConfig::new(FisherEstimator::TrueExact),
/// )?;
/// // p = (1/2, 1/2) everywhere, so F[k][j] = mean_n p_k (1 - p_k) x_nj^2 = 0.25 * mean x_j^2.
/// let f: Vec<Vec<f64>> = fisher.get("w").unwrap().to_vec2()?;
/// assert!((f[0][0] - 0.25 * 2.0 / 3.0).abs() < 1e-12 && (f[1][1] - 0.25 * 5.0 / 3.0).abs() < 1e-12);
/// # Ok::<(), forge_ewc::EwcError>(())
/// ```
///
/// # Shapes
/// `logits_fn(&[i_1..i_k])` -> `[k, classes]`; each Fisher tensor has its parameter's shape.
///
/// # Errors
/// [`EwcError::NoParameters`], [`EwcError::DuplicateParameter`], [`EwcError::EmptyData`],
/// [`EwcError::MissingLabels`] (empirical/batch on unlabelled data), [`EwcError::InvalidConfig`],
/// [`EwcError::OutputShape`], [`EwcError::LabelOutOfRange`], [`EwcError::NonFiniteLoss`],
/// [`EwcError::NoGradient`], [`EwcError::Closure`] (the closure's own error), candle errors.
pub fn fisher_diagonal<F, E>(
    params: &[(String, Var)],
    targets: Targets<'_>,
    logits_fn: F,
    config: &FisherConfig,
) -> Result<FisherDiagonal>
where
    F: FnMut(&[usize]) -> std::result::Result<Tensor, E>,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fisher_diagonal_with_progress(params, targets, logits_fn, config, &mut |_| {})
}

/// [`fisher_diagonal`] with a progress callback, called after each forward pass.
///
/// # Shapes
/// As [`fisher_diagonal`].
///
/// # Errors
/// As [`fisher_diagonal`].
pub fn fisher_diagonal_with_progress<F, E>(
    params: &[(String, Var)],
    targets: Targets<'_>,
    mut logits_fn: F,
    config: &FisherConfig,
    progress: &mut dyn FnMut(FisherProgress),
) -> Result<FisherDiagonal>
where
    F: FnMut(&[usize]) -> std::result::Result<Tensor, E>,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let m = sample_count(targets.len(), config)?;
    let labels = match (targets, &config.estimator) {
        (Targets::Labels(l), _) => Some(l),
        (Targets::Unlabelled(_), FisherEstimator::Empirical | FisherEstimator::Batch { .. }) => {
            return Err(EwcError::MissingLabels {
                estimator: config.estimator.to_string(),
            })
        }
        (Targets::Unlabelled(_), _) => None,
    };
    let mut acc = SquaredGradients::new(params, config.allow_missing_gradients, m)?;
    let mut logits_of = |idx: &[usize]| -> Result<Tensor> {
        let z = logits_fn(idx).map_err(closure_err)?;
        match z.dims() {
            [k, c] if *k == idx.len() && *c >= 1 => Ok(z),
            got => Err(EwcError::OutputShape {
                what: "logits",
                samples: idx.len(),
                expected: format!("[{}, classes]", idx.len()),
                got: got.to_vec(),
            }),
        }
    };
    let label_of = |i: usize, classes: usize| -> Result<usize> {
        let y = labels.map_or(0, |l| l[i]);
        if y >= classes {
            return Err(EwcError::LabelOutOfRange {
                sample: i,
                label: y,
                classes,
            });
        }
        Ok(y)
    };
    match &config.estimator {
        FisherEstimator::Batch { batch_size } => {
            let idx: Vec<usize> = (0..m).collect();
            for chunk in idx.chunks(*batch_size) {
                let logp = log_softmax_rows(&logits_of(chunk)?)?;
                let classes = logp.dim(1)?;
                let ys = chunk
                    .iter()
                    .map(|&i| label_of(i, classes).map(|y| y as u32))
                    .collect::<Result<Vec<_>>>()?;
                let ys = Tensor::from_vec(ys, (chunk.len(), 1), logp.device())?;
                let mean_nll = logp.gather(&ys, 1)?.mean_all()?.neg()?;
                let b = chunk.len() as f64;
                acc.add(&mean_nll, b * b, chunk[0])?;
                progress(FisherProgress {
                    done: chunk[chunk.len() - 1] + 1,
                    total: m,
                });
            }
        }
        FisherEstimator::TrueExact => {
            for i in 0..m {
                let row = logits_of(&[i])?;
                let p = probabilities(&log_softmax_rows(&row)?.squeeze(0)?, i)?;
                let logits = row.squeeze(0)?;
                // sum_c p_c (J^T (e_c - p))^2 = diag(J^T M J) with M = diag(p) - p p^T, and
                // M = sum_k l_k l_k^T over its (at most C - 1) non-zero eigenpairs: one backward
                // pass of l_k . logits per direction instead of one per class.
                for l in class_covariance_factors(&p)? {
                    let dir =
                        Tensor::from_vec(l, p.len(), logits.device())?.to_dtype(logits.dtype())?;
                    acc.add(&(&logits * &dir)?.sum_all()?, 1.0, i)?;
                }
                progress(FisherProgress {
                    done: i + 1,
                    total: m,
                });
            }
        }
        estimator => {
            let mut rng = match estimator {
                FisherEstimator::TrueSampled { seed, .. } => Some(forge_linalg::seeded_rng(*seed)),
                _ => None,
            };
            for i in 0..m {
                let logp = log_softmax_rows(&logits_of(&[i])?)?.squeeze(0)?;
                let classes = logp.dim(0)?;
                // (class, weight) pairs whose squared gradients enter the sum for this input.
                let terms: Vec<(usize, f64)> = match estimator {
                    FisherEstimator::Empirical => vec![(label_of(i, classes)?, 1.0)],
                    FisherEstimator::TrueSampled {
                        samples_per_input, ..
                    } => {
                        let p = probabilities(&logp, i)?;
                        let rng = rng.as_mut().expect("seeded above for TrueSampled");
                        let mut counts = vec![0usize; classes];
                        for _ in 0..*samples_per_input {
                            counts[sample_categorical(&p, rng)] += 1;
                        }
                        let k = *samples_per_input as f64;
                        counts
                            .into_iter()
                            .enumerate()
                            .filter(|(_, c)| *c > 0)
                            .map(|(c, n)| (c, n as f64 / k))
                            .collect()
                    }
                    FisherEstimator::Batch { .. } | FisherEstimator::TrueExact => {
                        unreachable!("handled above")
                    }
                };
                for (c, weight) in terms {
                    acc.add(&logp.get(c)?.neg()?, weight, i)?;
                }
                progress(FisherProgress {
                    done: i + 1,
                    total: m,
                });
            }
        }
    }
    acc.finish(config.estimator.clone())
}

/// Vectors `l_k` with `sum_k l_k l_k^T = diag(p) - p p^T`, the covariance of the one-hot label
/// under `p` (the softmax's Jacobian): `sqrt(w_k) v_k` over its eigenpairs with `w_k` above
/// rounding. The gradient of the log-likelihood of class `c` is `J^T (e_c - p)` (`J` the
/// logits' Jacobian), so the exact true Fisher of one input,
/// `sum_c p_c (J^T (e_c - p))^2 = diag(J^T M J) = sum_k (J^T l_k)^2`, needs one backward pass
/// per `l_k`: at most `C - 1` (`M 1 = 0`), one for two classes (`l = sqrt(p_0 p_1) (1, -1)`).
fn class_covariance_factors(p: &[f64]) -> Result<Vec<Vec<f64>>> {
    let c = p.len();
    if c == 1 {
        return Ok(Vec::new());
    }
    if c == 2 {
        let s = (p[0] * p[1]).sqrt();
        return Ok(if s > 0.0 {
            vec![vec![s, -s]]
        } else {
            Vec::new()
        });
    }
    let mut cov = vec![0.0; c * c];
    for a in 0..c {
        for b in 0..c {
            cov[a * c + b] = if a == b { p[a] } else { 0.0 } - p[a] * p[b];
        }
    }
    let (w, v) =
        forge_linalg::dense::eigh(&Tensor::from_vec(cov, (c, c), &candle_core::Device::Cpu)?)?;
    let w: Vec<f64> = w.to_vec1()?;
    let v: Vec<Vec<f64>> = v.to_vec2()?;
    let top = w.iter().copied().fold(0.0f64, f64::max);
    Ok(w.iter()
        .enumerate()
        .filter(|(_, &wk)| wk > top * 1e-12 && wk > 0.0)
        .map(|(k, &wk)| (0..c).map(|a| wk.sqrt() * v[a][k]).collect())
        .collect())
}

/// The predictive distribution of one input, from its log-probabilities.
fn probabilities(logp: &Tensor, sample: usize) -> Result<Vec<f64>> {
    let p: Vec<f64> = logp
        .detach()
        .to_dtype(DType::F64)?
        .to_vec1::<f64>()?
        .into_iter()
        .map(f64::exp)
        .collect();
    if let Some(v) = p.iter().find(|v| !v.is_finite()) {
        return Err(EwcError::NonFiniteLoss { sample, value: *v });
    }
    Ok(p)
}

/// Inverse-CDF draw from a categorical distribution (renormalised against rounding).
fn sample_categorical(p: &[f64], rng: &mut forge_linalg::ForgeRng) -> usize {
    let total: f64 = p.iter().sum();
    let u: f64 = rng.random::<f64>() * total;
    let mut cum = 0.0;
    for (c, pc) in p.iter().enumerate() {
        cum += pc;
        if u < cum {
            return c;
        }
    }
    p.len() - 1
}

/// Estimates the diagonal Fisher from per-sample negative log-likelihoods, for models that are
/// not classifiers (regression with a Gaussian likelihood, sequence models, ...): the
/// likelihood is whatever `nll_fn` computes.
///
/// `nll_fn(indices)` returns `-log p(y_i | x_i)` for each index, at the observed targets, so only
/// [`FisherEstimator::Empirical`] and [`FisherEstimator::Batch`] apply (the true Fisher needs
/// samples from the model's distribution; use [`fisher_diagonal`] for classifiers).
///
/// # Shapes
/// `nll_fn(&[i_1..i_k])` -> `[k]`.
///
/// # Errors
/// As [`fisher_diagonal`], plus [`EwcError::UnsupportedEstimator`] for the true-Fisher estimators.
pub fn fisher_diagonal_nll<F, E>(
    params: &[(String, Var)],
    n: usize,
    mut nll_fn: F,
    config: &FisherConfig,
) -> Result<FisherDiagonal>
where
    F: FnMut(&[usize]) -> std::result::Result<Tensor, E>,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let batch = match config.estimator {
        FisherEstimator::Empirical => 1,
        FisherEstimator::Batch { batch_size } => batch_size,
        _ => {
            return Err(EwcError::UnsupportedEstimator {
                estimator: config.estimator.to_string(),
                reason: "a negative log-likelihood closure gives no predictive distribution to \
                         sample from; use fisher_diagonal with logits"
                    .into(),
            })
        }
    };
    let m = sample_count(n, config)?;
    let mut acc = SquaredGradients::new(params, config.allow_missing_gradients, m)?;
    let idx: Vec<usize> = (0..m).collect();
    for chunk in idx.chunks(batch.max(1)) {
        let nll = nll_fn(chunk).map_err(closure_err)?;
        if nll.dims() != [chunk.len()] {
            return Err(EwcError::OutputShape {
                what: "negative log-likelihoods",
                samples: chunk.len(),
                expected: format!("[{}]", chunk.len()),
                got: nll.dims().to_vec(),
            });
        }
        let b = chunk.len() as f64;
        acc.add(&nll.mean_all()?, b * b, chunk[0])?;
    }
    acc.finish(config.estimator.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn log_softmax_matches_direct_formula() {
        let z = Tensor::new(&[[1.0f64, 2.0, 3.0], [1000.0, 0.0, -1000.0]], &Device::Cpu).unwrap();
        let l: Vec<Vec<f64>> = log_softmax_rows(&z).unwrap().to_vec2().unwrap();
        let lse = (1f64.exp() + 2f64.exp() + 3f64.exp()).ln();
        assert!((l[0][0] - (1.0 - lse)).abs() < 1e-12);
        assert!(l[1][0].abs() < 1e-12 && (l[1][1] + 1000.0).abs() < 1e-9);
    }

    #[test]
    fn fused_squares_match_their_definition_and_flag_invalid_values_anywhere() {
        // lengths around and across CHUNK so that every task and the remainders are covered
        for n in [1, 17, CHUNK - 1, CHUNK + 3, 2 * CHUNK + 5] {
            let g: Vec<f32> = (0..n).map(|i| ((i % 97) as f32 - 48.0) * 0.25).collect();
            let (first, bad) = fresh_squares(&g, 0.5f32);
            assert!(!bad, "n {n}");
            assert!(first.iter().zip(&g).all(|(a, g)| *a == 0.5 * (g * g)));
            let mut acc = first.clone();
            assert!(!add_squares(&mut acc, &g, 2.0f32));
            assert!(acc
                .iter()
                .zip(&g)
                .all(|(a, g)| *a == 0.5 * (g * g) + 2.0 * (g * g)));
            for at in [0, n / 2, n - 1] {
                for v in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 1e30] {
                    let mut g2 = g.clone();
                    g2[at] = v;
                    // 1e30^2 overflows to infinity: invalid too
                    assert!(fresh_squares(&g2, 1.0f32).1, "n {n} at {at} value {v}");
                    let mut acc = first.clone();
                    assert!(
                        add_squares(&mut acc, &g2, 1.0f32),
                        "n {n} at {at} value {v}"
                    );
                }
                // a negative weight makes negative values, which no Fisher has
                let mut g2 = vec![0f32; n];
                g2[at] = 1.0;
                assert!(fresh_squares(&g2, -1.0f32).1);
            }
            let g64: Vec<f64> = g.iter().map(|&x| f64::from(x)).collect();
            let (f64s, bad) = fresh_squares(&g64, 0.5f64);
            assert!(!bad && f64s[n - 1] == 0.5 * g64[n - 1] * g64[n - 1]);
            let mut g64b = g64.clone();
            g64b[n - 1] = f64::NAN;
            let mut acc = f64s.clone();
            assert!(add_squares(&mut acc, &g64b, 1.0));
        }
    }

    #[test]
    fn categorical_sampling_follows_the_probabilities() {
        let p = [0.2, 0.0, 0.8];
        let mut rng = forge_linalg::seeded_rng(3);
        let mut counts = [0usize; 3];
        for _ in 0..20_000 {
            counts[sample_categorical(&p, &mut rng)] += 1;
        }
        assert_eq!(counts[1], 0);
        let f0 = counts[0] as f64 / 20_000.0;
        assert!((f0 - 0.2).abs() < 0.015, "{f0}");
    }
}
