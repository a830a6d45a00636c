//! [`MergeConfig`]: a merge described in mergekit's YAML, plus Forge's extensions.
//!
//! ```yaml
//! merge_method: ties            # linear | slerp | task_arithmetic | ties | dare_ties |
//!                               # dare_linear | breadcrumbs | breadcrumbs_ties
//! base_model: models/base
//! parameters:                   # shared: normalize, rescale, lambda, t, int8_mask, and
//!   normalize: true             # defaults for the per-model ones below
//! models:
//!   - model: models/ft1
//!     parameters:
//!       weight: [0.2, 0.8]      # a gradient over layers
//!       density: 0.5
//!   - model: models/ft2
//!     parameters:
//!       weight:                 # name filters, first match wins
//!         - filter: attention
//!           value: 0.9
//!         - value: 0.3
//!       density: 0.7
//! dtype: float32                # output dtype: float32 | float16 | bfloat16
//! # Forge extensions (not mergekit):
//! seed: 0                       # DARE's random drops
//! mismatch: error               # error | skip | {take_from: models/ft1}
//! ```
//!
//! Parameter precedence is mergekit's: a model's own `parameters`, then the shared
//! `parameters`, then the method's default. Keys mergekit accepts but that do not change the
//! tensors (`tokenizer_source`, `tokenizer`, `chat_template`, `name`, `out_dtype` aside from its
//! dtype) are accepted; any other key is an error naming it, so a typo never silently changes a
//! merge.

use crate::error::{MergeError, Result};
use crate::method::{MergeMethod, TensorParams};
use crate::params::ParamValue;
use candle_core::DType;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// What to do with a tensor whose shape differs between models, or that some models lack
/// (backbone-only merges of models with different heads).
///
/// In YAML: `mismatch: error`, `mismatch: skip` or `mismatch: {take_from: MODEL}`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum MismatchPolicy {
    /// Fail with [`MergeError::ShapeMismatch`] / [`MergeError::MissingTensor`] (the default).
    #[default]
    Error,
    /// Leave the tensor out of the output (reported as skipped).
    Skip,
    /// Copy the tensor unchanged from the named model (reported as taken).
    TakeFrom(String),
}

/// The YAML / JSON forms of [`MismatchPolicy`].
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum MismatchRepr {
    /// `error` or `skip`.
    Word(String),
    /// `{take_from: MODEL}`.
    Map { take_from: String },
}

impl Serialize for MismatchPolicy {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            MismatchPolicy::Error => MismatchRepr::Word("error".into()),
            MismatchPolicy::Skip => MismatchRepr::Word("skip".into()),
            MismatchPolicy::TakeFrom(m) => MismatchRepr::Map {
                take_from: m.clone(),
            },
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for MismatchPolicy {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        match MismatchRepr::deserialize(d)? {
            MismatchRepr::Word(w) => match w.as_str() {
                "error" => Ok(MismatchPolicy::Error),
                "skip" => Ok(MismatchPolicy::Skip),
                other => Err(serde::de::Error::custom(format!(
                    "unknown mismatch policy {other:?}: expected error, skip or {{take_from: MODEL}}"
                ))),
            },
            MismatchRepr::Map { take_from } => Ok(MismatchPolicy::TakeFrom(take_from)),
        }
    }
}

/// One entry of `models:`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelEntry {
    /// The model: a folder (files) or a label (in-memory state dicts).
    pub model: String,
    /// Its parameters (`weight`, `density`, `gamma`).
    #[serde(default)]
    pub parameters: BTreeMap<String, ParamValue>,
}

/// Shared parameters: numbers (possibly per layer) and booleans.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SharedValue {
    /// `normalize`, `rescale`, `int8_mask`.
    Bool(bool),
    /// `lambda`, `t`, and defaults of `weight`/`density`/`gamma`.
    Number(ParamValue),
}

/// A merge: mergekit's YAML fields plus Forge's `seed` and `mismatch`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MergeConfig {
    /// The strategy.
    #[serde(with = "method_name")]
    pub merge_method: MergeMethod,
    /// The base model (task vectors are taken from it; SLERP's t = 0 end).
    #[serde(default)]
    pub base_model: Option<String>,
    /// The models and their parameters.
    #[serde(default)]
    pub models: Vec<ModelEntry>,
    /// Shared parameters.
    #[serde(default)]
    pub parameters: BTreeMap<String, SharedValue>,
    /// Output dtype (`float32`, `float16`, `bfloat16`); default: the base (or first) model's.
    /// Forge always computes in f32 and rounds once at the end.
    #[serde(default)]
    pub dtype: Option<String>,
    /// mergekit's output dtype; takes precedence over `dtype` when both are set.
    #[serde(default)]
    pub out_dtype: Option<String>,
    /// Seed of DARE's random drops (Forge extension; default 0).
    #[serde(default)]
    pub seed: Option<u64>,
    /// Mismatched-shape policy (Forge extension; default `error`).
    #[serde(default)]
    pub mismatch: MismatchPolicy,
    /// Accepted for compatibility; does not affect tensors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokenizer_source: Option<serde_yaml_ng::Value>,
    /// Accepted for compatibility; does not affect tensors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokenizer: Option<serde_yaml_ng::Value>,
    /// Accepted for compatibility; does not affect tensors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat_template: Option<serde_yaml_ng::Value>,
    /// Accepted for compatibility; does not affect tensors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

mod method_name {
    use super::MergeMethod;
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(m: &MergeMethod, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(m.name())
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<MergeMethod, D::Error> {
        let s = String::deserialize(d)?;
        MergeMethod::from_name(&s).map_err(serde::de::Error::custom)
    }
}

/// Parse a dtype name as mergekit writes it.
///
/// # Errors
/// [`MergeError::Config`] for anything but float32/float16/bfloat16 (and their short forms).
pub fn parse_dtype(s: &str) -> Result<DType> {
    match s {
        "float32" | "fp32" | "f32" => Ok(DType::F32),
        "float16" | "fp16" | "f16" | "half" => Ok(DType::F16),
        "bfloat16" | "bf16" => Ok(DType::BF16),
        other => Err(MergeError::Config {
            path: "dtype".into(),
            reason: format!("unsupported dtype {other:?}; use float32, float16 or bfloat16"),
        }),
    }
}

const KNOWN_SHARED: [&str; 9] = [
    "normalize",
    "rescale",
    "int8_mask",
    "lambda",
    "t",
    "weight",
    "density",
    "gamma",
    "epsilon",
];
const KNOWN_PER_MODEL: [&str; 4] = ["weight", "density", "gamma", "epsilon"];

impl MergeConfig {
    /// A config with no models and the method's defaults.
    pub fn new(method: MergeMethod) -> Self {
        Self {
            merge_method: method,
            base_model: None,
            models: Vec::new(),
            parameters: BTreeMap::new(),
            dtype: None,
            out_dtype: None,
            seed: None,
            mismatch: MismatchPolicy::Error,
            tokenizer_source: None,
            tokenizer: None,
            chat_template: None,
            name: None,
        }
    }

    /// Builder: set the base model.
    pub fn with_base(mut self, base: impl Into<String>) -> Self {
        self.base_model = Some(base.into());
        self
    }

    /// Builder: add a model with a weight and optional density.
    pub fn with_model(
        mut self,
        model: impl Into<String>,
        weight: f64,
        density: Option<f64>,
    ) -> Self {
        let mut parameters = BTreeMap::new();
        parameters.insert("weight".to_string(), ParamValue::Scalar(weight));
        if let Some(d) = density {
            parameters.insert("density".to_string(), ParamValue::Scalar(d));
        }
        self.models.push(ModelEntry {
            model: model.into(),
            parameters,
        });
        self
    }

    /// Builder: add a model without parameters (SLERP).
    pub fn with_plain_model(mut self, model: impl Into<String>) -> Self {
        self.models.push(ModelEntry {
            model: model.into(),
            parameters: BTreeMap::new(),
        });
        self
    }

    /// Builder: set a shared numeric parameter (`lambda`, `t`, ...).
    pub fn with_param(mut self, name: &str, value: f64) -> Self {
        self.parameters.insert(
            name.to_string(),
            SharedValue::Number(ParamValue::Scalar(value)),
        );
        self
    }

    /// Builder: set a shared boolean parameter (`normalize`, `rescale`).
    pub fn with_flag(mut self, name: &str, value: bool) -> Self {
        self.parameters
            .insert(name.to_string(), SharedValue::Bool(value));
        self
    }

    /// Parse mergekit YAML text.
    ///
    /// # Errors
    /// [`MergeError::UnknownMethod`] for an unknown `merge_method`; [`MergeError::Config`] for
    /// malformed YAML, unknown keys or parameters; the errors of [`validate`](Self::validate).
    pub fn from_yaml(text: &str) -> Result<Self> {
        Self::from_yaml_named(text, "<string>")
    }

    fn from_yaml_named(text: &str, path: &str) -> Result<Self> {
        // Look at merge_method first so that an unknown method gets its own typed error.
        if let Ok(v) = serde_yaml_ng::from_str::<serde_yaml_ng::Value>(text) {
            if let Some(m) = v.get("merge_method").and_then(|m| m.as_str()) {
                MergeMethod::from_name(m)?;
            }
        }
        let cfg: MergeConfig = serde_yaml_ng::from_str(text).map_err(|e| MergeError::Config {
            path: path.to_string(),
            reason: e.to_string(),
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Read a mergekit YAML file.
    ///
    /// # Errors
    /// [`MergeError::Io`] naming the file, and those of [`from_yaml`](Self::from_yaml).
    pub fn from_yaml_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| crate::error::io_err(path, e))?;
        Self::from_yaml_named(&text, &path.display().to_string())
    }

    /// Serialise as YAML (mergekit reads it, apart from Forge's `seed` / `mismatch`).
    ///
    /// # Errors
    /// [`MergeError::Config`] if serialisation fails.
    pub fn to_yaml(&self) -> Result<String> {
        serde_yaml_ng::to_string(self).map_err(|e| MergeError::Config {
            path: "<config>".into(),
            reason: e.to_string(),
        })
    }

    /// Check the structure: parameter names, the number of models, base model presence, dtype,
    /// and every numeric value that can be checked without tensor names (densities, t, ...).
    ///
    /// # Errors
    /// [`MergeError::Config`], [`MergeError::WrongInputs`], [`MergeError::OutOfRange`].
    pub fn validate(&self) -> Result<()> {
        let cfg_err = |reason: String| MergeError::Config {
            path: "<config>".into(),
            reason,
        };
        for k in self.parameters.keys() {
            if !KNOWN_SHARED.contains(&k.as_str()) {
                return Err(cfg_err(format!(
                    "unknown parameter {k:?}; known: {}",
                    KNOWN_SHARED.join(", ")
                )));
            }
        }
        for m in &self.models {
            for k in m.parameters.keys() {
                if !KNOWN_PER_MODEL.contains(&k.as_str()) {
                    return Err(cfg_err(format!(
                        "unknown parameter {k:?} for model {}; known: {}",
                        m.model,
                        KNOWN_PER_MODEL.join(", ")
                    )));
                }
            }
        }
        if let Some(d) = self.out_dtype.as_ref().or(self.dtype.as_ref()) {
            parse_dtype(d)?;
        }
        let method = self.merge_method;
        if self.models.is_empty() {
            return Err(MergeError::WrongInputs {
                method: method.to_string(),
                expected: "at least one model".into(),
                got: "none".into(),
            });
        }
        if method.needs_base() && self.base_model.is_none() {
            return Err(MergeError::WrongInputs {
                method: method.to_string(),
                expected: "a base_model".into(),
                got: "none".into(),
            });
        }
        let others = self.non_base_models();
        if method == MergeMethod::Slerp && others.len() != 1 {
            return Err(MergeError::WrongInputs {
                method: method.to_string(),
                expected: "the base model and exactly one other model".into(),
                got: format!("{} other models", others.len()),
            });
        }
        if method == MergeMethod::Slerp && self.shared_number("t").is_none() {
            return Err(cfg_err("slerp needs parameter t".into()));
        }
        if method.is_task_arithmetic_family() && others.is_empty() {
            return Err(MergeError::WrongInputs {
                method: method.to_string(),
                expected: "at least one model besides the base".into(),
                got: "only the base".into(),
            });
        }
        // Range checks on every value any tensor could get.
        let check_all = |name: &str, pv: &ParamValue, model: &str| -> Result<()> {
            for v in pv.values() {
                let mut p = TensorParams::new(method, 1);
                match name {
                    "weight" => p.weights[0] = v,
                    "density" => p.densities[0] = v,
                    "gamma" => p.gammas[0] = v,
                    "epsilon" => p.epsilons[0] = v,
                    "t" => p.t = v,
                    "lambda" => p.lambda = v,
                    _ => continue,
                }
                p.validate(method, &format!("model {model}"))?;
            }
            Ok(())
        };
        for (k, v) in &self.parameters {
            if let SharedValue::Number(pv) = v {
                check_all(k, pv, "(shared)")?;
            }
        }
        for m in &self.models {
            for (k, pv) in &m.parameters {
                check_all(k, pv, &m.model)?;
            }
        }
        if let MismatchPolicy::TakeFrom(name) = &self.mismatch {
            if !self.input_names().iter().any(|n| n == name) {
                return Err(MergeError::UnknownModel {
                    name: name.clone(),
                    known: self.input_names().join(", "),
                });
            }
        }
        Ok(())
    }

    /// Every input model, base first (when set), without duplicates.
    pub fn input_names(&self) -> Vec<String> {
        let mut v: Vec<String> = Vec::new();
        if let Some(b) = &self.base_model {
            v.push(b.clone());
        }
        for m in &self.models {
            if !v.contains(&m.model) {
                v.push(m.model.clone());
            }
        }
        v
    }

    /// The models that are merged into the base (all models for linear), in config order.
    pub fn non_base_models(&self) -> Vec<&ModelEntry> {
        let mut seen = Vec::new();
        self.models
            .iter()
            .filter(|m| {
                let keep = (self.merge_method == MergeMethod::Linear
                    || Some(&m.model) != self.base_model.as_ref())
                    && !seen.contains(&m.model);
                seen.push(m.model.clone());
                keep
            })
            .collect()
    }

    fn shared_number(&self, name: &str) -> Option<&ParamValue> {
        match self.parameters.get(name) {
            Some(SharedValue::Number(v)) => Some(v),
            _ => None,
        }
    }

    fn shared_bool(&self, name: &str) -> Option<bool> {
        match self.parameters.get(name) {
            Some(SharedValue::Bool(b)) => Some(*b),
            Some(SharedValue::Number(ParamValue::Scalar(v))) => Some(*v != 0.0),
            _ => None,
        }
    }

    /// The output dtype requested, if any.
    ///
    /// # Errors
    /// As [`parse_dtype`].
    pub fn output_dtype(&self) -> Result<Option<DType>> {
        self.out_dtype
            .as_ref()
            .or(self.dtype.as_ref())
            .map(|d| parse_dtype(d))
            .transpose()
    }

    /// Resolve every parameter for tensor `name` at layer position `t` (see
    /// [`crate::params::layer_t`]): model parameters, then shared ones, then defaults.
    ///
    /// # Errors
    /// [`MergeError::Config`] when a required parameter (`weight` for linear and the
    /// task-arithmetic family, `t` for SLERP) has no value for this tensor;
    /// [`MergeError::OutOfRange`] from [`TensorParams::validate`].
    pub fn tensor_params(&self, name: &str, t: f64) -> Result<TensorParams> {
        let method = self.merge_method;
        let models = self.non_base_models();
        let mut p = TensorParams::new(method, models.len());
        let lookup = |m: &ModelEntry, key: &str| -> Option<f64> {
            m.parameters
                .get(key)
                .and_then(|v| v.evaluate(name, t))
                .or_else(|| self.shared_number(key).and_then(|v| v.evaluate(name, t)))
        };
        for (i, m) in models.iter().enumerate() {
            if method != MergeMethod::Slerp {
                p.weights[i] = lookup(m, "weight").ok_or_else(|| MergeError::Config {
                    path: "<config>".into(),
                    reason: format!("model {} has no weight for tensor {name}", m.model),
                })?;
            }
            if let Some(d) = lookup(m, "density") {
                p.densities[i] = d;
            }
            if let Some(g) = lookup(m, "gamma") {
                p.gammas[i] = g;
            }
            if let Some(e) = lookup(m, "epsilon") {
                p.epsilons[i] = e;
            }
        }
        if let Some(b) = self.shared_bool("normalize") {
            p.normalize = b;
        }
        if let Some(b) = self.shared_bool("rescale") {
            p.rescale = b;
        }
        if let Some(l) = self
            .shared_number("lambda")
            .and_then(|v| v.evaluate(name, t))
        {
            p.lambda = l;
        }
        if method == MergeMethod::Slerp {
            p.t = self
                .shared_number("t")
                .and_then(|v| v.evaluate(name, t))
                .ok_or_else(|| MergeError::Config {
                    path: "<config>".into(),
                    reason: format!("no value of t for tensor {name}"),
                })?;
        }
        p.seed = self.seed.unwrap_or(0);
        p.validate(method, name)?;
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mismatch_policy_reads_the_documented_forms_and_round_trips() {
        // `take_from` must name one of the models.
        let base = "merge_method: linear\nmodels:\n  - model: a\n  - model: models/ft1\n";
        for (yaml, want) in [
            ("mismatch: error\n", MismatchPolicy::Error),
            ("mismatch: skip\n", MismatchPolicy::Skip),
            (
                "mismatch: {take_from: models/ft1}\n",
                MismatchPolicy::TakeFrom("models/ft1".into()),
            ),
        ] {
            let c = MergeConfig::from_yaml(&format!("{base}{yaml}")).unwrap();
            assert_eq!(c.mismatch, want, "{yaml}");
            let back = MergeConfig::from_yaml(&c.to_yaml().unwrap()).unwrap();
            assert_eq!(back.mismatch, want, "round trip of {yaml}");
        }
        let e = MergeConfig::from_yaml(&format!("{base}mismatch: ignore\n")).unwrap_err();
        assert!(e.to_string().contains("mismatch"), "{e}");
    }

    #[test]
    fn parses_mergekit_ties_yaml() {
        let y = r#"
merge_method: ties
base_model: base
parameters: {normalize: true, int8_mask: true}
models:
  - model: a
    parameters: {weight: [0.2, 0.8], density: 0.5}
  - model: b
    parameters:
      weight: [{filter: attention, value: 0.9}, {value: 0.3}]
      density: 0.7
  - model: base
dtype: bfloat16
"#;
        let c = MergeConfig::from_yaml(y).unwrap();
        assert_eq!(c.merge_method, MergeMethod::Ties);
        assert_eq!(c.non_base_models().len(), 2);
        let p = c
            .tensor_params("x.layer.1.attention.q.weight", 1.0)
            .unwrap();
        assert_eq!(p.weights, vec![0.8, 0.9]);
        assert_eq!(p.densities, vec![0.5, 0.7]);
        assert!(p.normalize);
        assert_eq!(c.output_dtype().unwrap(), Some(DType::BF16));
    }

    #[test]
    fn bad_configs_are_typed_errors() {
        let e = MergeConfig::from_yaml("merge_method: nope\nmodels: [{model: a}]").unwrap_err();
        assert!(matches!(e, MergeError::UnknownMethod { .. }), "{e}");
        let e = MergeConfig::from_yaml(
            "merge_method: ties\nbase_model: b\nmodels: [{model: a, parameters: {weight: 1, density: 1.5}}]",
        )
        .unwrap_err();
        assert!(matches!(e, MergeError::OutOfRange { .. }), "{e}");
        let e = MergeConfig::from_yaml(
            "merge_method: ties\nbase_model: b\nmodels: [{model: a, parameters: {wieght: 1}}]",
        )
        .unwrap_err();
        assert!(e.to_string().contains("wieght"), "{e}");
        let e = MergeConfig::from_yaml("merge_method: ties\nmodels: [{model: a}]").unwrap_err();
        assert!(matches!(e, MergeError::WrongInputs { .. }), "{e}");
        let e = MergeConfig::from_yaml("merge_method: linear\nmodels: [{model: a}]\nfoo: 1")
            .unwrap_err();
        assert!(e.to_string().contains("foo"), "{e}");
    }
}
