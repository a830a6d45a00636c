//! Task vectors (Ilharco et al. 2023, "Editing models with task arithmetic"): the difference
//! between a fine-tuned model and its base, and the cosine similarity of two task vectors,
//! overall and per layer — a cheap check of whether two fine-tunes interfere before merging.

use crate::error::{MergeError, Result};
use crate::merge::{StateDict, TensorSource};
use crate::params::layer_index;
use candle_core::Tensor;
use std::collections::BTreeMap;

/// Named deltas `finetuned - base`.
#[derive(Debug, Clone)]
pub struct TaskVector {
    /// The deltas, in the fine-tuned model's order.
    pub tensors: Vec<(String, Tensor)>,
}

/// Task vector of `finetuned` relative to `base`, over the float tensors both have with equal
/// shapes. Tensors only one side has, or with different shapes (a new head), are left out and
/// listed in the second return value.
///
/// # Errors
/// candle errors (e.g. dtype conversion).
pub fn task_vector(
    base: &[(String, Tensor)],
    finetuned: &[(String, Tensor)],
) -> Result<(TaskVector, Vec<String>)> {
    let b: BTreeMap<&str, &Tensor> = base.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let mut out = Vec::new();
    let mut left_out = Vec::new();
    for (n, t) in finetuned {
        match b.get(n.as_str()) {
            Some(bt) if bt.dims() == t.dims() && t.dtype().is_float() => {
                out.push((n.clone(), (t - bt.to_dtype(t.dtype())?)?));
            }
            _ => left_out.push(n.clone()),
        }
    }
    Ok((TaskVector { tensors: out }, left_out))
}

/// Cosine similarities of two task vectors.
#[derive(Debug, Clone, PartialEq)]
pub struct Similarity {
    /// Over all shared tensors, as one flat vector.
    pub overall: f64,
    /// Per layer (`layer 0`, `layer 1`, ...) and one group for the tensors outside the layer
    /// stack (`other`), in layer order.
    pub per_layer: Vec<(String, f64)>,
    /// Per tensor.
    pub per_tensor: Vec<(String, f64)>,
    /// Tensors not compared (missing from one side or different shapes).
    pub skipped: Vec<String>,
}

#[derive(Default, Clone, Copy)]
struct Acc {
    dot: f64,
    na: f64,
    nb: f64,
}

impl Acc {
    fn add(&mut self, o: Acc) {
        self.dot += o.dot;
        self.na += o.na;
        self.nb += o.nb;
    }
    fn cos(&self) -> f64 {
        if self.na == 0.0 || self.nb == 0.0 {
            0.0
        } else {
            self.dot / (self.na.sqrt() * self.nb.sqrt())
        }
    }
}

/// Cosine similarity of the task vectors `a - base` and `b - base`, computed in f64 tensor by
/// tensor from any [`TensorSource`]s (files are streamed, never loaded whole).
///
/// # Errors
/// Read errors of the sources; [`MergeError::NonFinite`] if an input holds NaN or infinity.
pub fn task_vector_similarity_sources(
    base: &dyn TensorSource,
    a: &dyn TensorSource,
    b: &dyn TensorSource,
) -> Result<Similarity> {
    let mut per_tensor = Vec::new();
    let mut groups: BTreeMap<(usize, String), Acc> = BTreeMap::new();
    let mut total = Acc::default();
    let mut skipped = Vec::new();
    for spec in a.specs() {
        let name = spec.name.clone();
        let same = |s: &dyn TensorSource| s.spec(&name).is_some_and(|x| x.shape == spec.shape);
        if !same(base) || !same(b) || forge_linalg::io::candle_dtype(spec.dtype).is_none() {
            skipped.push(name);
            continue;
        }
        let (x0, xa, xb) = (
            base.read_f32(&name)?,
            a.read_f32(&name)?,
            b.read_f32(&name)?,
        );
        let mut acc = Acc::default();
        for ((&z, &p), &q) in x0.iter().zip(xa.iter()).zip(xb.iter()) {
            let (da, db) = (f64::from(p) - f64::from(z), f64::from(q) - f64::from(z));
            acc.dot += da * db;
            acc.na += da * da;
            acc.nb += db * db;
        }
        if !(acc.dot.is_finite() && acc.na.is_finite() && acc.nb.is_finite()) {
            return Err(MergeError::NonFinite {
                tensor: name,
                value: f32::NAN,
                index: 0,
            });
        }
        for s in [base, a, b] {
            s.release(&name);
        }
        let key = match layer_index(&name) {
            Some(i) => (i, format!("layer {i}")),
            None => (usize::MAX, "other".to_string()),
        };
        groups.entry(key).or_default().add(acc);
        total.add(acc);
        per_tensor.push((name, acc.cos()));
    }
    Ok(Similarity {
        overall: total.cos(),
        per_layer: groups.into_iter().map(|((_, k), v)| (k, v.cos())).collect(),
        per_tensor,
        skipped,
    })
}

/// Cosine similarity of two in-memory task vectors (see [`task_vector_similarity_sources`]).
///
/// # Errors
/// As [`task_vector_similarity_sources`].
pub fn task_vector_similarity(a: &TaskVector, b: &TaskVector) -> Result<Similarity> {
    // Zero base of a's shapes: the deltas themselves are compared.
    let zeros: Vec<(String, Tensor)> = a
        .tensors
        .iter()
        .map(|(n, t)| Ok((n.clone(), t.zeros_like()?)))
        .collect::<Result<_>>()?;
    task_vector_similarity_sources(
        &StateDict::new("zero", zeros),
        &StateDict::new("a", a.tensors.clone()),
        &StateDict::new("b", b.tensors.clone()),
    )
}
