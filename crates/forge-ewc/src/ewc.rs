//! The EWC penalty (Kirkpatrick et al. 2017) and online EWC (Schwarz et al. 2018) over named
//! candle [`Var`]s that share storage with the model being trained.
//!
//! # Convention
//! ```text
//! penalty(theta) = (lambda / 2) * sum_i F_i (theta_i - theta*_i)^2
//! d penalty / d theta_i = lambda * F_i (theta_i - theta*_i)
//! ```
//! with `F` the diagonal Fisher of the previous task(s) and `theta*` the anchor (the parameters
//! at the end of the previous task). This is equation 3 of Kirkpatrick et al. (2017, PNAS,
//! "Overcoming catastrophic forgetting in neural networks"), `L(theta) = L_B(theta) +
//! sum_i (lambda/2) F_i (theta_i - theta*_A,i)^2`, and the penalty is *added* to the new task's
//! (mean) loss. Other codes differ by constant factors, so lambdas do not transfer unchanged:
//! Avalanche's `EWCPlugin` adds `lambda * sum F (theta - theta*)^2` without the 1/2 (its lambda is
//! half of ours), and van de Ven's continual-learning code (like Schwarz et al.) multiplies the
//! stored online Fisher by `gamma` inside the penalty (its lambda is ours divided by gamma).
//!
//! # Online EWC
//! After each task with a new Fisher `F_new` estimated at the end of that task,
//! `F <- gamma * F + F_new` and `theta* <- theta` (Schwarz et al. 2018, "Progress & Compress",
//! section 2.3): one penalty whatever the number of tasks, older tasks decayed by `gamma`.
//! `gamma = 1` accumulates all tasks equally (Huszár 2018, "Note on the quadratic penalties in
//! elastic weight consolidation"). For offline multi-task EWC (one penalty per previous task
//! with its own anchor, as in Kirkpatrick et al.), keep one [`Ewc`] per task and add their
//! penalties.

use crate::diagonal::{check_unique, FisherDiagonal};
use crate::filter::{BindReport, ParamFilter};
use crate::fisher::FisherEstimator;
use crate::{EwcError, Result};
use candle_core::{DType, Tensor, Var};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::fmt;

/// Hyper-parameters of EWC.
///
/// | field | default | range | meaning |
/// |---|---|---|---|
/// | `lambda` | 1.0 | `>= 0`, finite | weight of the penalty `(lambda/2) sum F (theta - theta*)^2` |
/// | `gamma` | 1.0 | `[0, 1]` | online EWC decay: `F <- gamma F_old + F_new` (unused before the first [`Ewc::update_online`]) |
///
/// Useful lambdas depend on the Fisher's scale (mean NLL gradients: per-sample scale) and on the
/// loss; pick it on a validation split of the old and new tasks (the paper's values range from
/// tens to hundreds of thousands).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EwcConfig {
    /// Penalty weight.
    pub lambda: f64,
    /// Online decay.
    pub gamma: f64,
}

impl Default for EwcConfig {
    fn default() -> Self {
        Self {
            lambda: 1.0,
            gamma: 1.0,
        }
    }
}

impl EwcConfig {
    /// A config with this lambda and `gamma = 1`.
    pub fn new(lambda: f64) -> Self {
        Self {
            lambda,
            ..Self::default()
        }
    }

    /// The same config with another gamma.
    pub fn with_gamma(mut self, gamma: f64) -> Self {
        self.gamma = gamma;
        self
    }

    /// Checks the fields.
    ///
    /// # Errors
    /// [`EwcError::InvalidLambda`] for a negative or non-finite lambda, [`EwcError::InvalidGamma`]
    /// for a gamma outside `[0, 1]` (or NaN).
    pub fn validate(&self) -> Result<()> {
        if !(self.lambda.is_finite() && self.lambda >= 0.0) {
            return Err(EwcError::InvalidLambda { value: self.lambda });
        }
        if !(0.0..=1.0).contains(&self.gamma) {
            return Err(EwcError::InvalidGamma { value: self.gamma });
        }
        Ok(())
    }
}

/// One penalised parameter.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    pub(crate) name: String,
    pub(crate) var: Var,
    pub(crate) fisher: Tensor,
    pub(crate) anchor: Tensor,
}

/// Distance of the current parameters from the anchor.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AnchorDistance {
    /// `||theta - theta*||_2` over all penalised parameters.
    pub l2: f64,
    /// `||theta*||_2`.
    pub anchor_norm: f64,
    /// `l2 / anchor_norm` (0 when the anchor is all zeros and the parameters did not move).
    pub relative: f64,
}

/// The EWC penalty over named `Var`s: Fisher diagonals, anchors and the `Var`s themselves
/// (shared storage with the model, so [`Ewc::penalty`] follows training).
///
/// ```
/// use candle_core::{DType, Device, Tensor, Var};
/// use forge_ewc::{Ewc, EwcConfig, FisherDiagonal, FisherEstimator};
/// let dev = Device::Cpu;
/// let w = Var::from_tensor(&Tensor::new(&[1.0f64, 2.0], &dev)?)?;
/// let params = vec![("w".to_string(), w.clone())];
/// let fisher = FisherDiagonal::from_tensors(
///     vec![("w".into(), Tensor::new(&[4.0f64, 0.5], &dev)?)], FisherEstimator::Empirical, 10)?;
/// let ewc = Ewc::new(&params, &fisher, EwcConfig::new(2.0))?; // anchor = (1, 2)
/// w.set(&Tensor::new(&[2.0f64, 0.0], &dev)?)?;
/// // (2/2) * (4 * 1^2 + 0.5 * 2^2) = 6
/// assert!((ewc.penalty_value()? - 6.0).abs() < 1e-12);
/// let g = ewc.penalty()?.backward()?;
/// let grad: Vec<f64> = g.get(w.as_tensor()).unwrap().to_vec1()?;
/// assert_eq!(grad, vec![2.0 * 4.0 * 1.0, 2.0 * 0.5 * -2.0]); // lambda F (theta - theta*)
/// # Ok::<(), forge_ewc::EwcError>(())
/// ```
#[derive(Clone, Debug)]
pub struct Ewc {
    pub(crate) config: EwcConfig,
    pub(crate) estimator: FisherEstimator,
    pub(crate) entries: Vec<Entry>,
    pub(crate) tasks: usize,
    pub(crate) n_samples: usize,
}

impl fmt::Display for Ewc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ewc(lambda={}, gamma={}, tasks={}, tensors={}, fisher={})",
            self.config.lambda,
            self.config.gamma,
            self.tasks,
            self.entries.len(),
            self.estimator
        )
    }
}

/// Anchor copy of a `Var`'s current value (detached, own storage).
fn snapshot(var: &Var) -> Result<Tensor> {
    Ok(var.as_detached_tensor().copy()?)
}

impl Ewc {
    /// EWC after one task: penalises every parameter in `params`, anchored at their current
    /// values, weighted by `fisher`.
    ///
    /// # Errors
    /// [`EwcError::InvalidLambda`] / [`EwcError::InvalidGamma`], [`EwcError::NoParameters`],
    /// [`EwcError::DuplicateParameter`], [`EwcError::MissingFisher`], [`EwcError::ShapeMismatch`].
    pub fn new(
        params: &[(String, Var)],
        fisher: &FisherDiagonal,
        config: EwcConfig,
    ) -> Result<Self> {
        Self::new_filtered(params, fisher, config, &ParamFilter::new()).map(|(e, _)| e)
    }

    /// [`Ewc::new`] with a [`ParamFilter`]: excluded names and (if the filter allows) parameters
    /// whose shape differs from their Fisher are left out; the report lists what happened.
    ///
    /// # Errors
    /// As [`Ewc::new`].
    pub fn new_filtered(
        params: &[(String, Var)],
        fisher: &FisherDiagonal,
        config: EwcConfig,
        filter: &ParamFilter,
    ) -> Result<(Self, BindReport)> {
        config.validate()?;
        check_unique(params.iter().map(|(n, _)| n.as_str()))?;
        let mut report = BindReport::default();
        let mut entries = Vec::new();
        for (name, var) in params {
            if filter.excludes(name) {
                report.excluded.push(name.clone());
                continue;
            }
            let f = fisher
                .get(name)
                .ok_or_else(|| EwcError::MissingFisher { name: name.clone() })?;
            if f.dims() != var.dims() {
                if filter.skips_shape_mismatch() {
                    report.skipped_shape.push((
                        name.clone(),
                        f.dims().to_vec(),
                        var.dims().to_vec(),
                    ));
                    continue;
                }
                return Err(EwcError::ShapeMismatch {
                    name: name.clone(),
                    expected: f.dims().to_vec(),
                    got: var.dims().to_vec(),
                });
            }
            entries.push(Entry {
                name: name.clone(),
                var: var.clone(),
                fisher: f.to_dtype(var.dtype())?.to_device(var.device())?,
                anchor: snapshot(var)?,
            });
            report.bound.push(name.clone());
        }
        if entries.is_empty() {
            return Err(EwcError::NoParameters {
                context: "penalise",
            });
        }
        let unused: Vec<&str> = fisher
            .entries()
            .iter()
            .map(|(n, _)| n.as_str())
            .filter(|n| !params.iter().any(|(p, _)| p == n))
            .collect();
        if !unused.is_empty() {
            tracing::debug!(?unused, "Fisher entries without a parameter are ignored");
        }
        Ok((
            Self {
                config,
                estimator: fisher.estimator().clone(),
                entries,
                tasks: 1,
                n_samples: fisher.n_samples(),
            },
            report,
        ))
    }

    /// The differentiable penalty `(lambda / 2) * sum_i F_i (theta_i - theta*_i)^2`, a scalar in
    /// the dtype of the first parameter. Its gradient is `lambda F (theta - theta*)`.
    ///
    /// To plug it into a training loop whose penalty hook is `Fn() -> candle_core::Result<Tensor>`:
    /// `move || Ok(ewc.penalty()?)` (an [`EwcError`] converts into a candle error).
    ///
    /// # Shapes
    /// -> `[]`.
    ///
    /// # Errors
    /// Candle errors only (e.g. a `Var` moved to another device).
    pub fn penalty(&self) -> Result<Tensor> {
        let dtype = self.entries[0].var.dtype();
        let mut total: Option<Tensor> = None;
        for e in &self.entries {
            let s = quadratic(e)?.to_dtype(dtype)?;
            total = Some(match total {
                None => s,
                Some(t) => (t + s)?,
            });
        }
        let total = total.ok_or(EwcError::NoParameters {
            context: "penalise",
        })?;
        Ok(total.affine(self.config.lambda / 2.0, 0.0)?)
    }

    /// The penalty's value as `f64` (no graph kept).
    ///
    /// # Errors
    /// Candle errors only.
    pub fn penalty_value(&self) -> Result<f64> {
        let mut total = 0.0;
        for e in &self.entries {
            let d = (e.var.as_detached_tensor() - &e.anchor)?;
            total += (d.sqr()? * &e.fisher)?
                .sum_all()?
                .to_dtype(DType::F64)?
                .to_scalar::<f64>()?;
        }
        Ok(self.config.lambda / 2.0 * total)
    }

    /// Online EWC update after a task: `F <- gamma * F + F_new` and `theta* <- theta` (current
    /// values of the bound `Var`s). Parameters of `fisher_new` that are not penalised (a new
    /// head) are ignored; call [`Ewc::bind`] first if the model's parameters changed.
    ///
    /// # Errors
    /// [`EwcError::MissingFisher`] if a penalised parameter has no entry in `fisher_new`,
    /// [`EwcError::ShapeMismatch`], candle errors. On error nothing is changed.
    pub fn update_online(&mut self, fisher_new: &FisherDiagonal) -> Result<()> {
        let gamma = self.config.gamma;
        let mut updated = Vec::with_capacity(self.entries.len());
        for e in &self.entries {
            let f = fisher_new
                .get(&e.name)
                .ok_or_else(|| EwcError::MissingFisher {
                    name: e.name.clone(),
                })?;
            if f.dims() != e.fisher.dims() {
                return Err(EwcError::ShapeMismatch {
                    name: e.name.clone(),
                    expected: e.fisher.dims().to_vec(),
                    got: f.dims().to_vec(),
                });
            }
            let f = f.to_dtype(e.fisher.dtype())?.to_device(e.fisher.device())?;
            let fisher = (e.fisher.affine(gamma, 0.0)? + f)?;
            updated.push((fisher, snapshot(&e.var)?));
        }
        for (e, (fisher, anchor)) in self.entries.iter_mut().zip(updated) {
            e.fisher = fisher;
            e.anchor = anchor;
        }
        if fisher_new.estimator() != &self.estimator {
            tracing::warn!(old = %self.estimator, new = %fisher_new.estimator(), "online EWC mixes Fisher estimators");
            self.estimator = fisher_new.estimator().clone();
        }
        self.tasks += 1;
        self.n_samples = fisher_new.n_samples();
        Ok(())
    }

    /// Re-binds the penalty to a model's (possibly new) `Var`s by name, e.g. after a deep copy,
    /// a reload or a head replacement. Entries excluded by `filter`, or whose shape changed when
    /// the filter skips mismatches, are dropped (listed in the report); model parameters
    /// without an entry are listed as unpenalised.
    ///
    /// # Errors
    /// [`EwcError::MissingParameter`] (an entry has no parameter of that name and is not
    /// excluded), [`EwcError::ShapeMismatch`], [`EwcError::DuplicateParameter`],
    /// [`EwcError::NoParameters`] if nothing would remain. On error nothing is changed.
    pub fn bind(&mut self, params: &[(String, Var)], filter: &ParamFilter) -> Result<BindReport> {
        check_unique(params.iter().map(|(n, _)| n.as_str()))?;
        let by_name: HashMap<&str, &Var> = params.iter().map(|(n, v)| (n.as_str(), v)).collect();
        let mut report = BindReport::default();
        let mut kept = Vec::with_capacity(self.entries.len());
        for e in &self.entries {
            if filter.excludes(&e.name) {
                report.excluded.push(e.name.clone());
                continue;
            }
            let var = by_name
                .get(e.name.as_str())
                .ok_or_else(|| EwcError::MissingParameter {
                    name: e.name.clone(),
                })?;
            if var.dims() != e.fisher.dims() {
                if filter.skips_shape_mismatch() {
                    report.skipped_shape.push((
                        e.name.clone(),
                        e.fisher.dims().to_vec(),
                        var.dims().to_vec(),
                    ));
                    continue;
                }
                return Err(EwcError::ShapeMismatch {
                    name: e.name.clone(),
                    expected: e.fisher.dims().to_vec(),
                    got: var.dims().to_vec(),
                });
            }
            kept.push(Entry {
                name: e.name.clone(),
                var: (*var).clone(),
                fisher: e.fisher.to_dtype(var.dtype())?.to_device(var.device())?,
                anchor: e.anchor.to_dtype(var.dtype())?.to_device(var.device())?,
            });
            report.bound.push(e.name.clone());
        }
        if kept.is_empty() {
            return Err(EwcError::NoParameters {
                context: "penalise",
            });
        }
        let bound: HashSet<&str> = report.bound.iter().map(String::as_str).collect();
        report.unpenalised = params
            .iter()
            .map(|(n, _)| n.clone())
            .filter(|n| !bound.contains(n.as_str()))
            .collect();
        self.entries = kept;
        Ok(report)
    }

    /// Distance of the bound parameters from the anchor (L2 and relative to the anchor's norm).
    ///
    /// # Errors
    /// Candle errors only.
    pub fn anchor_distance(&self) -> Result<AnchorDistance> {
        let (mut d2, mut a2) = (0.0, 0.0);
        for e in &self.entries {
            let anchor = e.anchor.to_dtype(DType::F64)?;
            let d = (e.var.as_detached_tensor().to_dtype(DType::F64)? - &anchor)?;
            d2 += d.sqr()?.sum_all()?.to_scalar::<f64>()?;
            a2 += anchor.sqr()?.sum_all()?.to_scalar::<f64>()?;
        }
        let (l2, anchor_norm) = (d2.sqrt(), a2.sqrt());
        let relative = if anchor_norm > 0.0 {
            l2 / anchor_norm
        } else {
            0.0
        };
        Ok(AnchorDistance {
            l2,
            anchor_norm,
            relative,
        })
    }

    /// The hyper-parameters.
    pub fn config(&self) -> &EwcConfig {
        &self.config
    }

    /// Changes lambda (e.g. for a grid search that reuses one Fisher).
    ///
    /// # Errors
    /// [`EwcError::InvalidLambda`].
    pub fn set_lambda(&mut self, lambda: f64) -> Result<()> {
        EwcConfig {
            lambda,
            ..self.config.clone()
        }
        .validate()?;
        self.config.lambda = lambda;
        Ok(())
    }

    /// Changes gamma.
    ///
    /// # Errors
    /// [`EwcError::InvalidGamma`].
    pub fn set_gamma(&mut self, gamma: f64) -> Result<()> {
        EwcConfig {
            gamma,
            ..self.config.clone()
        }
        .validate()?;
        self.config.gamma = gamma;
        Ok(())
    }

    /// The estimator of the (latest) Fisher.
    pub fn estimator(&self) -> &FisherEstimator {
        &self.estimator
    }

    /// Number of tasks folded into the Fisher (1 after [`Ewc::new`], +1 per online update).
    pub fn tasks(&self) -> usize {
        self.tasks
    }

    /// Samples of the latest Fisher estimate.
    pub fn n_samples(&self) -> usize {
        self.n_samples
    }

    /// Names of the penalised parameters, in order.
    pub fn names(&self) -> Vec<&str> {
        self.entries.iter().map(|e| e.name.as_str()).collect()
    }

    /// Number of penalised tensors.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is penalised (never true for a constructed `Ewc`).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The (accumulated) Fisher of `name`.
    pub fn fisher(&self, name: &str) -> Option<&Tensor> {
        self.entries
            .iter()
            .find(|e| e.name == name)
            .map(|e| &e.fisher)
    }

    /// The anchor of `name`.
    pub fn anchor(&self, name: &str) -> Option<&Tensor> {
        self.entries
            .iter()
            .find(|e| e.name == name)
            .map(|e| &e.anchor)
    }

    /// The current Fisher as a [`FisherDiagonal`] (e.g. to inspect or to start another `Ewc`).
    ///
    /// # Errors
    /// Never in practice (the entries were checked when stored).
    pub fn fisher_diagonal(&self) -> Result<FisherDiagonal> {
        FisherDiagonal::from_tensors(
            self.entries
                .iter()
                .map(|e| (e.name.clone(), e.fisher.clone()))
                .collect(),
            self.estimator.clone(),
            self.n_samples,
        )
    }
}

/// `sum F (theta - theta*)^2` of one entry: one fused pass on the CPU for f32 (forward) and one
/// for its gradient `2 F (theta - theta*) g` (backward), instead of a chain of tensor ops that
/// allocated four parameter-sized buffers per parameter and step and made an EWC training step
/// of MiniLM about four times as slow as a plain one; candle ops elsewhere.
fn quadratic(e: &Entry) -> candle_core::Result<Tensor> {
    let theta = e.var.as_tensor();
    let fused = theta.device().is_cpu()
        && [theta, &e.anchor, &e.fisher]
            .iter()
            .all(|t| t.dtype() == DType::F32 && t.is_contiguous());
    if !fused {
        let d = (theta - &e.anchor)?;
        return (d.sqr()? * &e.fisher)?.sum_all();
    }
    theta.apply_op1(Quadratic {
        anchor: e.anchor.clone(),
        fisher: e.fisher.clone(),
    })
}

/// Values per rayon task in the fused penalty passes.
const PENALTY_CHUNK: usize = 32 * 1024;

/// `f` on the f32 slice of a contiguous CPU tensor, read where it lies; a candle error naming
/// `what` for another device, dtype or layout.
pub(crate) fn with_f32<R>(
    t: &Tensor,
    what: &str,
    f: impl FnOnce(&[f32]) -> R,
) -> candle_core::Result<R> {
    let (s, l) = t.storage_and_layout();
    let candle_core::Storage::Cpu(s) = &*s else {
        candle_core::bail!("{what}: a CPU tensor expected")
    };
    Ok(f(forge_linalg::ops::contiguous_f32(s, l, what)?))
}

/// The anchor's and the Fisher's f32 values, each checked to have `n` values (the parameter's).
fn with_anchor_and_fisher<R>(
    anchor: &Tensor,
    fisher: &Tensor,
    n: usize,
    f: impl FnOnce(&[f32], &[f32]) -> R,
) -> candle_core::Result<R> {
    with_f32(anchor, "ewc penalty", |a| {
        with_f32(fisher, "ewc penalty", |fi| {
            if a.len() != n || fi.len() != n {
                candle_core::bail!(
                    "ewc penalty: {n} parameter values, anchor {}, fisher {}",
                    a.len(),
                    fi.len()
                )
            }
            Ok(f(a, fi))
        })
    })??
}

struct Quadratic {
    anchor: Tensor,
    fisher: Tensor,
}

impl candle_core::CustomOp1 for Quadratic {
    fn name(&self) -> &'static str {
        "forge-ewc-quadratic"
    }

    fn cpu_fwd(
        &self,
        s: &candle_core::CpuStorage,
        l: &candle_core::Layout,
    ) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
        use rayon::prelude::*;
        let theta = forge_linalg::ops::contiguous_f32(s, l, "ewc penalty parameter")?;
        let total = with_anchor_and_fisher(&self.anchor, &self.fisher, theta.len(), |a, f| {
            theta
                .par_chunks(PENALTY_CHUNK)
                .zip(a.par_chunks(PENALTY_CHUNK))
                .zip(f.par_chunks(PENALTY_CHUNK))
                .map(|((t, a), f)| {
                    // f32 products, accumulated in f64 per chunk
                    t.iter()
                        .zip(a)
                        .zip(f)
                        .map(|((&t, &a), &f)| {
                            let d = t - a;
                            f64::from(f * d * d)
                        })
                        .sum::<f64>()
                })
                .sum::<f64>()
        })?;
        Ok((
            candle_core::CpuStorage::F32(vec![total as f32]),
            candle_core::Shape::from(()),
        ))
    }

    fn bwd(
        &self,
        arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let g = grad.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        arg.apply_op1_no_bwd(&QuadraticGrad {
            anchor: self.anchor.clone(),
            fisher: self.fisher.clone(),
            scale: 2.0 * g,
        })
        .map(Some)
    }
}

/// `scale * F (theta - theta*)`, one pass (no backward of its own).
struct QuadraticGrad {
    anchor: Tensor,
    fisher: Tensor,
    scale: f64,
}

impl candle_core::CustomOp1 for QuadraticGrad {
    fn name(&self) -> &'static str {
        "forge-ewc-quadratic-grad"
    }

    fn cpu_fwd(
        &self,
        s: &candle_core::CpuStorage,
        l: &candle_core::Layout,
    ) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
        use rayon::prelude::*;
        let theta = forge_linalg::ops::contiguous_f32(s, l, "ewc penalty parameter")?;
        let scale = self.scale as f32;
        let mut out = vec![0f32; theta.len()];
        with_anchor_and_fisher(&self.anchor, &self.fisher, theta.len(), |a, f| {
            out.par_chunks_mut(PENALTY_CHUNK)
                .zip(theta.par_chunks(PENALTY_CHUNK))
                .zip(a.par_chunks(PENALTY_CHUNK))
                .zip(f.par_chunks(PENALTY_CHUNK))
                .for_each(|(((o, t), a), f)| {
                    for (((o, &t), &a), &f) in o.iter_mut().zip(t).zip(a).zip(f) {
                        *o = scale * f * (t - a);
                    }
                });
        })?;
        Ok((candle_core::CpuStorage::F32(out), l.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// The fused passes give the tensor-op chain's value and gradient (several chunks, f32).
    #[test]
    fn fused_quadratic_matches_the_op_chain() {
        let dev = Device::Cpu;
        let n = 3 * PENALTY_CHUNK + 17;
        let var = Var::from_tensor(&Tensor::randn(0f32, 1.0, n, &dev).unwrap()).unwrap();
        let anchor = Tensor::randn(0f32, 1.0, n, &dev).unwrap();
        let fisher = Tensor::rand(0f32, 2.0, n, &dev).unwrap();
        let e = Entry {
            name: "w".into(),
            var: var.clone(),
            fisher: fisher.clone(),
            anchor: anchor.clone(),
        };
        let fused = quadratic(&e).unwrap();
        let chain = ((var.as_tensor() - &anchor).unwrap().sqr().unwrap() * &fisher)
            .unwrap()
            .sum_all()
            .unwrap();
        let (a, b) = (
            fused.to_scalar::<f32>().unwrap(),
            chain.to_scalar::<f32>().unwrap(),
        );
        assert!((a - b).abs() <= 1e-5 * b.abs(), "{a} vs {b}");
        let ga = fused.affine(3.0, 0.0).unwrap().backward().unwrap();
        let gb = chain.affine(3.0, 0.0).unwrap().backward().unwrap();
        let ga: Vec<f32> = ga.get(var.as_tensor()).unwrap().to_vec1().unwrap();
        let gb: Vec<f32> = gb.get(var.as_tensor()).unwrap().to_vec1().unwrap();
        let worst = ga
            .iter()
            .zip(&gb)
            .map(|(x, y)| (x - y).abs() / (1.0 + y.abs()))
            .fold(0f32, f32::max);
        assert!(worst <= 1e-5, "gradient differs by {worst}");
    }
}
