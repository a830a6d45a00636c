//! The merge driver: plans every tensor (merge, keep, take from a named model, skip), then
//! computes them one at a time from any [`TensorSource`] (in-memory state dicts or files), so
//! memory stays at a few tensors.

use crate::config::{MergeConfig, MismatchPolicy};
use crate::error::{MergeError, Result};
use crate::kernels;
use crate::method::{MergeMethod, TensorParams};
use crate::params::{layer_t, num_layers};
use candle_core::{DType, Device, Tensor};
use forge_linalg::io::{candle_dtype, TensorSpec};
use safetensors::Dtype;
use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

/// Where one model's tensors come from. Implemented by [`StateDict`] (in memory) and
/// [`crate::files::ModelFiles`] (memory-mapped safetensors, single or sharded).
pub trait TensorSource: Sync {
    /// The model's name as used in the config (`models[].model`, `base_model`).
    fn label(&self) -> &str;
    /// Name, dtype and shape of every tensor, in the model's order.
    fn specs(&self) -> Vec<TensorSpec>;
    /// Name, dtype and shape of one tensor.
    fn spec(&self, name: &str) -> Option<TensorSpec>;
    /// The values of a float tensor as f32 (borrowed where the storage already is f32).
    ///
    /// # Errors
    /// [`MergeError::MissingTensor`], [`MergeError::UnsupportedDtype`], I/O errors.
    fn read_f32(&self, name: &str) -> Result<Cow<'_, [f32]>>;
    /// The raw little-endian bytes of a tensor (any dtype), for copying it unchanged.
    ///
    /// # Errors
    /// [`MergeError::MissingTensor`], I/O errors.
    fn read_raw(&self, name: &str) -> Result<Cow<'_, [u8]>>;
    /// Drop cached pages of a tensor that is no longer needed (files); a no-op by default.
    fn release(&self, _name: &str) {}
}

/// Named tensors in memory, as a [`TensorSource`].
#[derive(Debug, Clone)]
pub struct StateDict {
    label: String,
    tensors: Vec<(String, Tensor)>,
    index: HashMap<String, usize>,
}

impl StateDict {
    /// Wrap named tensors under a label (the name the config uses for this model).
    pub fn new(label: impl Into<String>, tensors: Vec<(String, Tensor)>) -> Self {
        let index = tensors
            .iter()
            .enumerate()
            .map(|(i, (n, _))| (n.clone(), i))
            .collect();
        Self {
            label: label.into(),
            tensors,
            index,
        }
    }

    /// The tensors.
    pub fn tensors(&self) -> &[(String, Tensor)] {
        &self.tensors
    }

    /// One tensor.
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.index.get(name).map(|&i| &self.tensors[i].1)
    }

    fn get_or_missing(&self, name: &str) -> Result<&Tensor> {
        self.get(name).ok_or_else(|| MergeError::MissingTensor {
            model: self.label.clone(),
            tensor: name.to_string(),
        })
    }
}

impl TensorSource for StateDict {
    fn label(&self) -> &str {
        &self.label
    }
    fn specs(&self) -> Vec<TensorSpec> {
        self.tensors
            .iter()
            .map(|(n, t)| TensorSpec::of(n.clone(), t))
            .collect()
    }
    fn spec(&self, name: &str) -> Option<TensorSpec> {
        self.get(name).map(|t| TensorSpec::of(name, t))
    }
    fn read_f32(&self, name: &str) -> Result<Cow<'_, [f32]>> {
        let t = self.get_or_missing(name)?;
        if candle_dtype(t.dtype().into()).is_none() {
            return Err(MergeError::UnsupportedDtype {
                model: self.label.clone(),
                tensor: name.to_string(),
                dtype: format!("{:?}", t.dtype()),
            });
        }
        Ok(Cow::Owned(
            t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?,
        ))
    }
    fn read_raw(&self, name: &str) -> Result<Cow<'_, [u8]>> {
        let t = self.get_or_missing(name)?;
        Ok(Cow::Owned(tensor_bytes(t)?))
    }
}

/// Little-endian bytes of a tensor (any dtype safetensors can hold).
fn tensor_bytes(t: &Tensor) -> Result<Vec<u8>> {
    let t = t.flatten_all()?;
    Ok(match t.dtype() {
        DType::F32 => bytemuck::cast_slice(&t.to_vec1::<f32>()?).to_vec(),
        DType::F64 => bytemuck::cast_slice(&t.to_vec1::<f64>()?).to_vec(),
        DType::F16 => t
            .to_vec1::<half::f16>()?
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect(),
        DType::BF16 => t
            .to_vec1::<half::bf16>()?
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect(),
        DType::U8 => t.to_vec1::<u8>()?,
        DType::U32 => bytemuck::cast_slice(&t.to_vec1::<u32>()?).to_vec(),
        DType::I64 => bytemuck::cast_slice(&t.to_vec1::<i64>()?).to_vec(),
        other => {
            return Err(MergeError::UnsupportedDtype {
                model: "<tensor>".into(),
                tensor: String::new(),
                dtype: format!("{other:?}"),
            })
        }
    })
}

/// f32 values -> little-endian bytes of `dtype` (round to nearest even for f16/bf16).
pub(crate) fn encode(values: &[f32], dtype: Dtype) -> Vec<u8> {
    match dtype {
        Dtype::F16 => values
            .iter()
            .flat_map(|&x| half::f16::from_f32(x).to_le_bytes())
            .collect(),
        Dtype::BF16 => values
            .iter()
            .flat_map(|&x| half::bf16::from_f32(x).to_le_bytes())
            .collect(),
        _ => bytemuck::cast_slice(values).to_vec(),
    }
}

/// Little-endian bytes of a float dtype -> f32 values.
pub(crate) fn decode<'a>(bytes: &'a [u8], dtype: Dtype) -> Option<Cow<'a, [f32]>> {
    match dtype {
        Dtype::F32 => Some(match bytemuck::try_cast_slice::<u8, f32>(bytes) {
            Ok(s) => Cow::Borrowed(s),
            Err(_) => Cow::Owned(
                bytes
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            ),
        }),
        Dtype::F16 => Some(Cow::Owned(
            bytes
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
        )),
        Dtype::BF16 => Some(Cow::Owned(
            bytes
                .chunks_exact(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
        )),
        _ => None,
    }
}

/// What happened to one tensor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TensorOutcome {
    /// Merged with the configured method.
    Merged,
    /// Not a float tensor (e.g. integer `position_ids`): copied unchanged from a model.
    Kept {
        /// The model it was copied from.
        from: String,
    },
    /// Shapes differ or some model lacks it; copied unchanged from the named model.
    Taken {
        /// The model it was copied from.
        from: String,
        /// Why it was not merged.
        reason: String,
    },
    /// Left out of the output.
    Skipped {
        /// Why.
        reason: String,
    },
}

/// One tensor of a merge report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorReport {
    /// Tensor name.
    pub name: String,
    /// Shape in the output (or in the reference model when skipped).
    pub shape: Vec<usize>,
    /// What happened to it.
    pub outcome: TensorOutcome,
}

/// Every tensor of every input, and what the merge did with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeReport {
    /// The method used.
    pub method: MergeMethod,
    /// One entry per tensor name found in any input, in output order (skipped ones included).
    pub tensors: Vec<TensorReport>,
}

impl MergeReport {
    /// Counts of (merged, kept, taken, skipped).
    pub fn counts(&self) -> (usize, usize, usize, usize) {
        let mut c = (0, 0, 0, 0);
        for t in &self.tensors {
            match t.outcome {
                TensorOutcome::Merged => c.0 += 1,
                TensorOutcome::Kept { .. } => c.1 += 1,
                TensorOutcome::Taken { .. } => c.2 += 1,
                TensorOutcome::Skipped { .. } => c.3 += 1,
            }
        }
        c
    }

    /// The outcome of one tensor.
    pub fn outcome(&self, name: &str) -> Option<&TensorOutcome> {
        self.tensors
            .iter()
            .find(|t| t.name == name)
            .map(|t| &t.outcome)
    }
}

#[derive(Debug, Clone)]
pub(crate) enum Action {
    Merge,
    Copy { from: usize },
    Skip,
}

/// One planned output tensor.
#[derive(Debug, Clone)]
pub(crate) struct Planned {
    pub spec: TensorSpec,
    pub action: Action,
}

/// The inputs of a merge, aligned with `config.input_names()`.
pub(crate) struct Inputs<'a> {
    pub sources: Vec<&'a dyn TensorSource>,
    /// Index of the base in `sources`, if any.
    pub base: Option<usize>,
    /// Indices of the merged (non-base) models, in config order.
    pub others: Vec<usize>,
    /// Indices of all sources the method reads (base first for task vectors).
    pub participants: Vec<usize>,
}

impl<'a> Inputs<'a> {
    pub fn new(config: &MergeConfig, sources: &[&'a dyn TensorSource]) -> Result<Self> {
        config.validate()?;
        let find = |name: &str| -> Result<usize> {
            sources
                .iter()
                .position(|s| s.label() == name)
                .ok_or_else(|| MergeError::UnknownModel {
                    name: name.to_string(),
                    known: sources
                        .iter()
                        .map(|s| s.label().to_string())
                        .collect::<Vec<_>>()
                        .join(", "),
                })
        };
        let others: Vec<usize> = config
            .non_base_models()
            .iter()
            .map(|m| find(&m.model))
            .collect::<Result<_>>()?;
        let base = if config.merge_method.needs_base() {
            Some(find(config.base_model.as_deref().unwrap_or_default())?)
        } else {
            None
        };
        let mut participants: Vec<usize> = base.into_iter().collect();
        participants.extend(others.iter().copied());
        Ok(Self {
            sources: sources.to_vec(),
            base,
            others,
            participants,
        })
    }
}

/// Plan every tensor: the output spec and action, and the report entry.
pub(crate) fn plan(
    config: &MergeConfig,
    inputs: &Inputs<'_>,
) -> Result<(Vec<Planned>, MergeReport)> {
    let out_dtype: Option<Dtype> = config.output_dtype()?.map(Into::into);
    let reference = inputs.participants[0];
    // Union of names, reference order first.
    let mut names: Vec<String> = Vec::new();
    let mut seen = HashSet::new();
    let mut order: Vec<usize> = vec![reference];
    order.extend(
        inputs
            .participants
            .iter()
            .copied()
            .filter(|&i| i != reference),
    );
    for &i in &order {
        for s in inputs.sources[i].specs() {
            if seen.insert(s.name.clone()) {
                names.push(s.name);
            }
        }
    }
    let take_from = match &config.mismatch {
        MismatchPolicy::TakeFrom(m) => Some(
            inputs
                .sources
                .iter()
                .position(|s| s.label() == m)
                .ok_or_else(|| MergeError::UnknownModel {
                    name: m.clone(),
                    known: config.input_names().join(", "),
                })?,
        ),
        _ => None,
    };
    let mut planned = Vec::with_capacity(names.len());
    let mut reports = Vec::with_capacity(names.len());
    for name in names {
        let specs: Vec<Option<TensorSpec>> = inputs
            .participants
            .iter()
            .map(|&i| inputs.sources[i].spec(&name))
            .collect();
        let first = specs
            .iter()
            .flatten()
            .next()
            .cloned()
            .expect("name came from a source");
        // Find the first disagreement, if any.
        let mut problem: Option<(String, MergeError)> = None;
        for (k, s) in specs.iter().enumerate() {
            let label = inputs.sources[inputs.participants[k]].label().to_string();
            match s {
                None => {
                    problem = Some((
                        format!("missing from {label}"),
                        MergeError::MissingTensor {
                            model: label,
                            tensor: name.clone(),
                        },
                    ));
                    break;
                }
                Some(s) if s.shape != first.shape => {
                    let ref_label = specs
                        .iter()
                        .position(|x| x.as_ref().is_some_and(|x| x.shape == first.shape))
                        .map(|k| inputs.sources[inputs.participants[k]].label().to_string())
                        .unwrap_or_default();
                    problem = Some((
                        format!(
                            "shape {:?} in {label} differs from {:?} in {ref_label}",
                            s.shape, first.shape
                        ),
                        MergeError::ShapeMismatch {
                            tensor: name.clone(),
                            model: label,
                            got: s.shape.clone().into(),
                            reference: ref_label,
                            expected: first.shape.clone().into(),
                        },
                    ));
                    break;
                }
                _ => {}
            }
        }
        let (action, spec, outcome) = match problem {
            None if candle_dtype(first.dtype).is_some() => (
                Action::Merge,
                TensorSpec {
                    dtype: out_dtype.unwrap_or(first.dtype),
                    ..first.clone()
                },
                TensorOutcome::Merged,
            ),
            None => {
                let from = inputs.participants[0];
                (
                    Action::Copy { from },
                    first.clone(),
                    TensorOutcome::Kept {
                        from: inputs.sources[from].label().to_string(),
                    },
                )
            }
            Some((reason, err)) => match (&config.mismatch, take_from) {
                (MismatchPolicy::Error, _) => return Err(err),
                (MismatchPolicy::TakeFrom(_), Some(from)) => {
                    match inputs.sources[from].spec(&name) {
                        Some(s) => {
                            let dtype = match (candle_dtype(s.dtype), out_dtype) {
                                (Some(_), Some(o)) => o,
                                _ => s.dtype,
                            };
                            (
                                Action::Copy { from },
                                TensorSpec { dtype, ..s },
                                TensorOutcome::Taken {
                                    from: inputs.sources[from].label().to_string(),
                                    reason,
                                },
                            )
                        }
                        None => (
                            Action::Skip,
                            first.clone(),
                            TensorOutcome::Skipped {
                                reason: format!(
                                    "{reason}; not in {}",
                                    inputs.sources[from].label()
                                ),
                            },
                        ),
                    }
                }
                _ => (
                    Action::Skip,
                    first.clone(),
                    TensorOutcome::Skipped { reason },
                ),
            },
        };
        reports.push(TensorReport {
            name: name.clone(),
            shape: spec.shape.clone(),
            outcome,
        });
        planned.push(Planned { spec, action });
    }
    // Per-tensor parameters are validated up front, so that no output is written for a
    // config that fails on a later tensor.
    let layers = num_layers(planned.iter().map(|p| p.spec.name.as_str()));
    for p in &planned {
        if matches!(p.action, Action::Merge) {
            config.tensor_params(&p.spec.name, layer_t(&p.spec.name, layers))?;
        }
    }
    Ok((
        planned,
        MergeReport {
            method: config.merge_method,
            tensors: reports,
        },
    ))
}

/// Compute one planned tensor's output bytes.
pub(crate) fn execute(
    config: &MergeConfig,
    inputs: &Inputs<'_>,
    p: &Planned,
    layers: usize,
) -> Result<Vec<u8>> {
    let name = &p.spec.name;
    match p.action {
        Action::Skip => Ok(Vec::new()),
        Action::Copy { from } => {
            let src = inputs.sources[from];
            let s = src.spec(name).expect("planned from this source");
            let out = if s.dtype == p.spec.dtype {
                src.read_raw(name)?.into_owned()
            } else {
                encode(&src.read_f32(name)?, p.spec.dtype)
            };
            src.release(name);
            Ok(out)
        }
        Action::Merge => {
            let mut params = config.tensor_params(name, layer_t(name, layers))?;
            // Row-wise sparsification (DELLA) ranks within the last dimension.
            if p.spec.shape.len() >= 2 {
                params.row_len = p.spec.shape.last().copied().unwrap_or(0);
            }
            let values = merge_values(config.merge_method, inputs, name, &params)?;
            if let Some((index, value)) = kernels::first_non_finite(&values) {
                return Err(MergeError::NonFinite {
                    tensor: name.clone(),
                    value,
                    index,
                });
            }
            Ok(encode(&values, p.spec.dtype))
        }
    }
}

fn merge_values(
    method: MergeMethod,
    inputs: &Inputs<'_>,
    name: &str,
    params: &TensorParams,
) -> Result<Vec<f32>> {
    let read = |i: usize| inputs.sources[i].read_f32(name);
    let others: Vec<Cow<'_, [f32]>> = inputs
        .others
        .iter()
        .map(|&i| read(i))
        .collect::<Result<_>>()?;
    let other_refs: Vec<&[f32]> = others.iter().map(|c| c.as_ref()).collect();
    let out = match method {
        MergeMethod::Linear => kernels::linear(&other_refs, &params.weights, params.normalize),
        MergeMethod::Slerp => {
            let base = read(inputs.base.expect("validated"))?;
            kernels::slerp(params.t, &base, other_refs[0])
        }
        _ => {
            let base = read(inputs.base.expect("validated"))?;
            kernels::task_arithmetic_family(method, &base, &other_refs, params, name)
        }
    };
    drop(others);
    for &i in &inputs.participants {
        inputs.sources[i].release(name);
    }
    Ok(out)
}

/// Merge in-memory state dicts. `models` are matched to the config's `base_model` and
/// `models[].model` by their labels. Returns the merged tensors (in the base's order, skipped
/// ones left out; on `device`) and the report of every tensor.
///
/// # Errors
/// Config and range errors; [`MergeError::UnknownModel`] when a config name has no state dict;
/// [`MergeError::MissingTensor`] / [`MergeError::ShapeMismatch`] naming the tensor and model
/// (with the `error` mismatch policy); [`MergeError::NonFinite`].
pub fn merge_state_dicts(
    config: &MergeConfig,
    models: &[StateDict],
    device: &Device,
) -> Result<(Vec<(String, Tensor)>, MergeReport)> {
    let sources: Vec<&dyn TensorSource> = models.iter().map(|m| m as &dyn TensorSource).collect();
    let inputs = Inputs::new(config, &sources)?;
    let (planned, report) = plan(config, &inputs)?;
    let layers = num_layers(planned.iter().map(|p| p.spec.name.as_str()));
    let mut out = Vec::new();
    for p in &planned {
        if matches!(p.action, Action::Skip) {
            continue;
        }
        let bytes = execute(config, &inputs, p, layers)?;
        let dtype = candle_dtype(p.spec.dtype).unwrap_or(DType::F32);
        let t = if candle_dtype(p.spec.dtype).is_some() {
            Tensor::from_raw_buffer(&bytes, dtype, &p.spec.shape, device)?
        } else {
            let d: DType = p.spec.dtype.try_into()?;
            Tensor::from_raw_buffer(&bytes, d, &p.spec.shape, device)?
        };
        out.push((p.spec.name.clone(), t));
    }
    Ok((out, report))
}

/// Merge single tensors with `method` and explicit parameters (the building block of the named
/// functions in [`crate::ops`]). `base` is required except for linear; all shapes must match.
///
/// # Shapes
/// Every tensor the same shape; the result has it too, in the dtype of the first model.
///
/// # Errors
/// [`MergeError::ShapeMismatch`], [`MergeError::WrongInputs`], [`MergeError::OutOfRange`],
/// [`MergeError::NonFinite`].
pub fn merge_tensor(
    method: MergeMethod,
    base: Option<&Tensor>,
    models: &[&Tensor],
    params: &TensorParams,
) -> Result<Tensor> {
    let name = "tensor";
    params.validate(method, name)?;
    let first = models.first().ok_or_else(|| MergeError::WrongInputs {
        method: method.to_string(),
        expected: "at least one model".into(),
        got: "none".into(),
    })?;
    if params.weights.len() != models.len() && method != MergeMethod::Slerp {
        return Err(MergeError::WrongInputs {
            method: method.to_string(),
            expected: format!("one weight per model ({})", models.len()),
            got: format!("{} weights", params.weights.len()),
        });
    }
    let mut dicts = Vec::new();
    let mut config = MergeConfig::new(method);
    if method.needs_base() {
        let b = base.ok_or_else(|| MergeError::WrongInputs {
            method: method.to_string(),
            expected: "a base tensor".into(),
            got: "none".into(),
        })?;
        dicts.push(StateDict::new("base", vec![(name.to_string(), b.clone())]));
        config = config.with_base("base");
    }
    if method == MergeMethod::Slerp && models.len() != 1 {
        return Err(MergeError::WrongInputs {
            method: method.to_string(),
            expected: "exactly one model besides the base".into(),
            got: format!("{}", models.len()),
        });
    }
    for (i, m) in models.iter().enumerate() {
        let label = format!("model{i}");
        dicts.push(StateDict::new(
            label.clone(),
            vec![(name.to_string(), (*m).clone())],
        ));
        config = if method == MergeMethod::Slerp {
            config.with_plain_model(label)
        } else {
            config.with_model(
                label,
                params.weights[i],
                method.uses_density().then(|| params.densities[i]),
            )
        };
        if method.sparsification() == crate::method::Sparsification::MagnitudeOutliers {
            let last = config.models.last_mut().expect("just pushed");
            last.parameters
                .insert("gamma".into(), crate::ParamValue::Scalar(params.gammas[i]));
        }
        if method.sparsification() == crate::method::Sparsification::MagnitudeSampling {
            let last = config.models.last_mut().expect("just pushed");
            last.parameters.insert(
                "epsilon".into(),
                crate::ParamValue::Scalar(params.epsilons[i]),
            );
        }
    }
    config = config
        .with_flag("normalize", params.normalize)
        .with_flag("rescale", params.rescale)
        .with_param("lambda", params.lambda);
    if method == MergeMethod::Slerp {
        config = config.with_param("t", params.t);
    }
    config.seed = Some(params.seed);
    let (mut out, _) = merge_state_dicts(&config, &dicts, first.device())?;
    let (_, t) = out.pop().expect("one tensor");
    Ok(t.to_dtype(first.dtype())?)
}
