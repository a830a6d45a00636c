//! Parameter drift: how far fine-tuning moved each layer from its pretrained values.
//!
//! For named tensors before (pretrained) and after (fine-tuned) training, per tensor and per
//! layer: the L2 distance `||theta - theta_0||_2` and the distance relative to the pretrained
//! norm `||theta - theta_0||_2 / ||theta_0||_2`. Large relative drift of the lower layers is a
//! sign of catastrophic forgetting (the representation the transfer relied on is being
//! overwritten; cf. Kirkpatrick et al. 2017, and the L2-SP regulariser of Li, Grandvalet &
//! Davoine 2018, "Explicit Inductive Bias for Transfer Learning with Convolutional Networks",
//! ICML, which penalises exactly this distance).
//!
//! Layers are found from Hugging Face style names: everything up to and including the first
//! all-digit path component (`encoder.layer.3.attention.self.query.weight` ->
//! `encoder.layer.3`); names without one are grouped by their path without the last
//! component (`embeddings.word_embeddings.weight` -> `embeddings.word_embeddings`), except that
//! everything under an `embeddings` component forms one group (`...embeddings`).

use crate::{Result, SafetyError};
use candle_core::{DType, Tensor};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Drift of one tensor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TensorDrift {
    /// The parameter name.
    pub name: String,
    /// Its layer group.
    pub layer: String,
    /// `||after - before||_2`.
    pub l2: f64,
    /// `||before||_2`.
    pub pretrained_norm: f64,
    /// `l2 / pretrained_norm` (`None` when the pretrained tensor is all zeros).
    pub relative: Option<f64>,
    /// Number of elements.
    pub numel: usize,
}

/// Drift of one layer group (norms over all its tensors together).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerDrift {
    /// The group name.
    pub layer: String,
    /// `sqrt(sum of squared L2 distances)`.
    pub l2: f64,
    /// `sqrt(sum of squared pretrained norms)`.
    pub pretrained_norm: f64,
    /// `l2 / pretrained_norm` (`None` when it is 0).
    pub relative: Option<f64>,
    /// Tensors in the group.
    pub tensors: usize,
}

/// Per-tensor and per-layer drift, layers in first-appearance order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriftReport {
    /// Every tensor, in the order of `after`.
    pub tensors: Vec<TensorDrift>,
    /// Layer groups.
    pub layers: Vec<LayerDrift>,
    /// All tensors together.
    pub total: LayerDrift,
}

impl DriftReport {
    /// The layer with the largest relative drift.
    pub fn max_relative(&self) -> Option<&LayerDrift> {
        self.layers
            .iter()
            .filter(|l| l.relative.is_some())
            .max_by(|a, b| {
                a.relative
                    .partial_cmp(&b.relative)
                    .unwrap_or(std::cmp::Ordering::Equal)
            })
    }
}

/// The layer group of a parameter name (see the module docs).
pub fn layer_of(name: &str) -> String {
    let parts: Vec<&str> = name.split('.').collect();
    if let Some(i) = parts
        .iter()
        .position(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    {
        return parts[..=i].join(".");
    }
    if let Some(i) = parts.iter().position(|p| *p == "embeddings") {
        return parts[..=i].join(".");
    }
    if parts.len() > 1 {
        parts[..parts.len() - 1].join(".")
    } else {
        name.to_string()
    }
}

/// Per-tensor and per-layer drift between pretrained (`before`) and fine-tuned (`after`)
/// parameters. Every name in `after` must be in `before` with the same shape; names only in
/// `before` (e.g. a dropped head) are ignored.
///
/// # Shapes
/// matching names have matching shapes (any rank).
///
/// # Errors
/// [`SafetyError::ParameterMismatch`] naming a missing or reshaped parameter;
/// [`SafetyError::InvalidArgument`] when `after` is empty or names repeat; NaN/inf values
/// ([`forge_linalg::LinalgError::NonFinite`]).
pub fn parameter_drift(
    before: &[(String, Tensor)],
    after: &[(String, Tensor)],
) -> Result<DriftReport> {
    if after.is_empty() {
        return Err(SafetyError::InvalidArgument {
            name: "after",
            reason: "no parameters given".into(),
        });
    }
    let mut index: HashMap<&str, &Tensor> = HashMap::with_capacity(before.len());
    for (n, t) in before {
        if index.insert(n.as_str(), t).is_some() {
            return Err(SafetyError::InvalidArgument {
                name: "before",
                reason: format!("parameter name {n:?} appears twice"),
            });
        }
    }
    let mut seen = std::collections::HashSet::new();
    let mut tensors = Vec::with_capacity(after.len());
    for (name, t1) in after {
        if !seen.insert(name.as_str()) {
            return Err(SafetyError::InvalidArgument {
                name: "after",
                reason: format!("parameter name {name:?} appears twice"),
            });
        }
        let t0 = index
            .get(name.as_str())
            .ok_or_else(|| SafetyError::ParameterMismatch {
                name: name.clone(),
                reason: "missing from the pretrained parameters".into(),
            })?;
        if t0.dims() != t1.dims() {
            return Err(SafetyError::ParameterMismatch {
                name: name.clone(),
                reason: format!(
                    "shape {:?} after training but {:?} before",
                    t1.dims(),
                    t0.dims()
                ),
            });
        }
        let a = t0
            .to_dtype(DType::F64)?
            .to_device(&candle_core::Device::Cpu)?;
        let b = t1
            .to_dtype(DType::F64)?
            .to_device(&candle_core::Device::Cpu)?;
        let l2 = (&b - &a)?.sqr()?.sum_all()?.to_scalar::<f64>()?.sqrt();
        let norm = a.sqr()?.sum_all()?.to_scalar::<f64>()?.sqrt();
        for (what, v) in [("after", l2), ("before", norm)] {
            if !v.is_finite() {
                return Err(forge_linalg::LinalgError::NonFinite {
                    what: format!("{name} ({what})"),
                    value: v,
                    index: 0,
                }
                .into());
            }
        }
        tensors.push(TensorDrift {
            name: name.clone(),
            layer: layer_of(name),
            l2,
            pretrained_norm: norm,
            relative: (norm > 0.0).then(|| l2 / norm),
            numel: t1.elem_count(),
        });
    }
    let mut order: Vec<String> = Vec::new();
    let mut acc: HashMap<String, (f64, f64, usize)> = HashMap::new();
    for t in &tensors {
        let e = acc.entry(t.layer.clone()).or_insert_with(|| {
            order.push(t.layer.clone());
            (0.0, 0.0, 0)
        });
        e.0 += t.l2 * t.l2;
        e.1 += t.pretrained_norm * t.pretrained_norm;
        e.2 += 1;
    }
    let group = |layer: String, (d2, n2, c): (f64, f64, usize)| {
        let (l2, norm) = (d2.sqrt(), n2.sqrt());
        LayerDrift {
            layer,
            l2,
            pretrained_norm: norm,
            relative: (norm > 0.0).then(|| l2 / norm),
            tensors: c,
        }
    };
    let layers: Vec<LayerDrift> = order.iter().map(|l| group(l.clone(), acc[l])).collect();
    let total = group(
        "total".into(),
        tensors.iter().fold((0.0, 0.0, 0), |(a, b, c), t| {
            (
                a + t.l2 * t.l2,
                b + t.pretrained_norm * t.pretrained_norm,
                c + 1,
            )
        }),
    );
    Ok(DriftReport {
        tensors,
        layers,
        total,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_names() {
        assert_eq!(
            layer_of("encoder.layer.3.attention.self.query.weight"),
            "encoder.layer.3"
        );
        assert_eq!(
            layer_of("distilbert.transformer.layer.0.ffn.lin1.bias"),
            "distilbert.transformer.layer.0"
        );
        assert_eq!(layer_of("embeddings.word_embeddings.weight"), "embeddings");
        assert_eq!(layer_of("classifier.weight"), "classifier");
        assert_eq!(layer_of("w"), "w");
    }
}
