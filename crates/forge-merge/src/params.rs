//! Merge parameters that may vary by tensor: a scalar, a gradient over layers, or a list of
//! name filters, with mergekit's semantics (`mergekit/config.py::evaluate_setting`).
//!
//! - `0.5`: the same value for every tensor.
//! - `[0.2, 0.8]`: a gradient, linearly interpolated over the layer position
//!   `t = layer / (num_layers - 1)`; tensors outside the layer stack (embeddings, heads) use
//!   `t = 0`, as mergekit does.
//! - `[{filter: attention, value: 0.9}, {value: 0.3}]`: the first entry whose `filter` is a
//!   substring of the tensor name (or that has no filter, or `*`) wins; its value may itself be a
//!   gradient.

use serde::{Deserialize, Serialize};

/// One entry of a filtered parameter list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Conditional {
    /// Substring of the tensor name this entry applies to; `None` or `*` matches every tensor.
    #[serde(default)]
    pub filter: Option<String>,
    /// The value (scalar, gradient, or nested filters).
    pub value: ParamValue,
}

/// A parameter value that may depend on the tensor (see the module docs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ParamValue {
    /// One value for every tensor.
    Scalar(f64),
    /// Interpolated over the layer position.
    Gradient(Vec<f64>),
    /// The first matching filter wins.
    Filtered(Vec<Conditional>),
    /// A single filter entry.
    One(Box<Conditional>),
}

impl From<f64> for ParamValue {
    fn from(v: f64) -> Self {
        ParamValue::Scalar(v)
    }
}

impl ParamValue {
    /// The value for tensor `name` at layer position `t` in `[0, 1]`; `None` when no filter
    /// matches (the next, lower-precedence setting then applies, as in mergekit).
    pub fn evaluate(&self, name: &str, t: f64) -> Option<f64> {
        match self {
            ParamValue::Scalar(v) => Some(*v),
            ParamValue::Gradient(vs) => {
                if vs.is_empty() {
                    return None;
                }
                // Exactly mergekit's float arithmetic, so gradients match bit for bit.
                let scaled = t * (vs.len() - 1) as f64;
                let i0 = scaled as usize;
                let i1 = (vs.len() - 1).min(i0 + 1);
                let frac = scaled - i0 as f64;
                Some((1.0 - frac) * vs[i0.min(vs.len() - 1)] + frac * vs[i1])
            }
            ParamValue::Filtered(cs) => cs.iter().find_map(|c| c.matches(name, t)),
            ParamValue::One(c) => c.matches(name, t),
        }
    }

    /// Every number this value can produce (used to validate ranges up front).
    pub fn values(&self) -> Vec<f64> {
        match self {
            ParamValue::Scalar(v) => vec![*v],
            ParamValue::Gradient(vs) => vs.clone(),
            ParamValue::Filtered(cs) => cs.iter().flat_map(|c| c.value.values()).collect(),
            ParamValue::One(c) => c.value.values(),
        }
    }
}

impl Conditional {
    fn matches(&self, name: &str, t: f64) -> Option<f64> {
        match self.filter.as_deref() {
            None | Some("*") => self.value.evaluate(name, t),
            Some(f) if name.contains(f) => self.value.evaluate(name, t),
            _ => None,
        }
    }
}

/// The layer index in a tensor name: the number after `.layer.`, `.layers.`, `.h.` or `.blocks.`
/// (`distilbert.transformer.layer.3.ffn.lin1.weight` -> 3).
pub fn layer_index(name: &str) -> Option<usize> {
    let parts: Vec<&str> = name.split('.').collect();
    parts.windows(2).find_map(|w| {
        matches!(w[0], "layer" | "layers" | "h" | "blocks")
            .then(|| w[1].parse::<usize>().ok())
            .flatten()
    })
}

/// The layer position `t` mergekit uses for gradients: `layer / (num_layers - 1)` for tensors in
/// the layer stack (1 when there is a single layer), 0 for the others.
pub fn layer_t(name: &str, num_layers: usize) -> f64 {
    match layer_index(name) {
        Some(i) if num_layers > 1 => i as f64 / (num_layers - 1) as f64,
        Some(_) => 1.0,
        None => 0.0,
    }
}

/// The number of layers of a model from its tensor names (largest layer index + 1, or 0).
pub fn num_layers<'a>(names: impl IntoIterator<Item = &'a str>) -> usize {
    names
        .into_iter()
        .filter_map(layer_index)
        .max()
        .map_or(0, |m| m + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gradient_matches_mergekit_formula() {
        let g = ParamValue::Gradient(vec![0.2, 0.8]);
        assert_eq!(g.evaluate("x", 0.0), Some(0.2));
        assert_eq!(g.evaluate("x", 1.0), Some(0.8));
        let mid = g.evaluate("x", 0.5).unwrap();
        assert_eq!(mid, (1.0 - 0.5) * 0.2 + 0.5 * 0.8);
        let g3 = ParamValue::Gradient(vec![0.0, 1.0, 0.0]);
        assert_eq!(g3.evaluate("x", 0.25), Some(0.5));
    }

    #[test]
    fn filters_pick_the_first_match() {
        let v: ParamValue =
            serde_yaml_ng::from_str("[{filter: attention, value: 0.9}, {value: [0.1, 0.3]}]")
                .unwrap();
        assert_eq!(v.evaluate("a.attention.q", 0.0), Some(0.9));
        assert_eq!(v.evaluate("a.ffn.lin1", 1.0), Some(0.3));
        let only: ParamValue = serde_yaml_ng::from_str("[{filter: attention, value: 1}]").unwrap();
        assert_eq!(only.evaluate("ffn", 0.0), None);
    }

    #[test]
    fn layer_positions() {
        assert_eq!(
            layer_index("distilbert.transformer.layer.3.ffn.lin1.weight"),
            Some(3)
        );
        assert_eq!(
            layer_index("bert.encoder.layer.11.output.dense.bias"),
            Some(11)
        );
        assert_eq!(layer_index("classifier.weight"), None);
        assert_eq!(layer_t("x.layer.1.w", 2), 1.0);
        assert_eq!(layer_t("x.layer.1.w", 5), 0.25);
        assert_eq!(layer_t("embeddings.w", 5), 0.0);
        assert_eq!(num_layers(["a.layer.0.w", "a.layer.5.w", "b"]), 6);
    }
}
