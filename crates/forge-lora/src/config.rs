//! [`LoraConfig`]: PEFT's `LoraConfig`, with its JSON field names.

use crate::{LoraError, Result};
use serde::{Deserialize, Serialize};

/// Which linear layers receive an adapter (`target_modules` in PEFT).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TargetModules {
    /// Module names: a module matches a name if its path equals it or ends with `"." + name`.
    Names(Vec<String>),
    /// A single string: `"all-linear"` (every linear layer except `modules_to_save`), or one
    /// full module path. PEFT treats other strings as regular expressions; Forge rejects strings
    /// that contain regex metacharacters.
    Single(String),
}

impl TargetModules {
    /// `"all-linear"`.
    pub fn all_linear() -> Self {
        TargetModules::Single("all-linear".to_string())
    }

    /// Whether this is `"all-linear"`.
    pub fn is_all_linear(&self) -> bool {
        matches!(self, TargetModules::Single(s) if s == "all-linear")
    }
}

/// How the LoRA weights are initialised (`init_lora_weights` in PEFT).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum InitLoraWeights {
    /// `true`: A Kaiming-uniform (a = sqrt(5)), B = 0 (the adapter starts as a no-op).
    /// `false`: A and B both Kaiming-uniform (a random, non-zero update).
    Bool(bool),
    /// `"gaussian"`: A ~ N(0, 1/r), B = 0.
    Named(String),
}

/// PEFT's `LoraConfig` (field names and meanings of `adapter_config.json`).
///
/// | field | default | range / meaning |
/// |---|---|---|
/// | `r` | 8 | rank, > 0 |
/// | `lora_alpha` | 8 | scaling numerator, > 0 |
/// | `lora_dropout` | 0.0 | dropout on the adapter input, in \[0, 1) |
/// | `target_modules` | `["q_lin", "v_lin"]` | names or `"all-linear"` |
/// | `bias` | `"none"` | only `"none"` is supported |
/// | `use_rslora` | false | scaling alpha / sqrt(r) (Kalajdzievski 2023) instead of alpha / r |
/// | `modules_to_save` | none | modules trained fully and saved with the adapter (e.g. `classifier`) |
/// | `init_lora_weights` | true | A Kaiming-uniform, B zero |
///
/// Unknown keys (PEFT adds new ones every release) are kept in `extra` and written back on save.
/// LoRA: Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models".
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LoraConfig {
    /// Rank of the update B A.
    #[serde(default = "default_r")]
    pub r: usize,
    /// Scaling numerator alpha.
    #[serde(default = "default_alpha")]
    pub lora_alpha: f64,
    /// Dropout probability on the adapter's input.
    #[serde(default)]
    pub lora_dropout: f64,
    /// Layers to adapt.
    #[serde(default = "default_targets")]
    pub target_modules: TargetModules,
    /// Bias training: only `"none"`.
    #[serde(default = "default_bias")]
    pub bias: String,
    /// Rank-stabilised scaling alpha / sqrt(r).
    #[serde(default)]
    pub use_rslora: bool,
    /// Modules trained in full and saved with the adapter.
    #[serde(default)]
    pub modules_to_save: Option<Vec<String>>,
    /// Initialisation of A and B.
    #[serde(default = "default_init")]
    pub init_lora_weights: InitLoraWeights,
    /// PEFT's method name; `"LORA"`.
    #[serde(default = "default_peft_type")]
    pub peft_type: String,
    /// PEFT task type, e.g. `"SEQ_CLS"`.
    #[serde(default)]
    pub task_type: Option<String>,
    /// The base model the adapter was trained on.
    #[serde(default)]
    pub base_model_name_or_path: Option<String>,
    /// Every other key of `adapter_config.json`, kept verbatim.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// Largest accepted `lora_alpha`. Published LoRA settings use alpha from 1 to a few hundred
/// (often `alpha = 2 r`); an alpha of 1e308 is finite yet makes every adapted activation
/// overflow f32, which then silently disappears behind ReLUs. 1e6 leaves room for any real
/// setting while stopping such values at validation.
pub const MAX_LORA_ALPHA: f64 = 1e6;

/// Largest accepted adapter scaling (`alpha / r` or `alpha / sqrt(r)`), for the same reason as
/// [`MAX_LORA_ALPHA`].
pub const MAX_SCALING: f64 = 1e6;

/// Largest accepted rank in a config, checked before anything is allocated. Ranks are further
/// bounded per layer by `max(in, out)` when adapters are attached; this cap rejects absurd
/// values (e.g. 2^40) even for models not yet seen. 65,536 exceeds the width of every
/// encoder Forge supports.
pub const MAX_LORA_RANK: usize = 1 << 16;

fn default_r() -> usize {
    8
}
fn default_alpha() -> f64 {
    8.0
}
fn default_targets() -> TargetModules {
    TargetModules::Names(vec!["q_lin".into(), "v_lin".into()])
}
fn default_bias() -> String {
    "none".into()
}
fn default_init() -> InitLoraWeights {
    InitLoraWeights::Bool(true)
}
fn default_peft_type() -> String {
    "LORA".into()
}

impl Default for LoraConfig {
    fn default() -> Self {
        Self {
            r: default_r(),
            lora_alpha: default_alpha(),
            lora_dropout: 0.0,
            target_modules: default_targets(),
            bias: default_bias(),
            use_rslora: false,
            modules_to_save: None,
            init_lora_weights: default_init(),
            peft_type: default_peft_type(),
            task_type: None,
            base_model_name_or_path: None,
            extra: serde_json::Map::new(),
        }
    }
}

fn invalid(field: &'static str, reason: String) -> LoraError {
    LoraError::InvalidConfig { field, reason }
}

impl LoraConfig {
    /// A config with rank `r`, `lora_alpha` and the given target names.
    pub fn new(r: usize, lora_alpha: f64, targets: &[&str]) -> Self {
        Self {
            r,
            lora_alpha,
            target_modules: TargetModules::Names(targets.iter().map(|s| s.to_string()).collect()),
            ..Self::default()
        }
    }

    /// Set `lora_dropout`.
    pub fn with_dropout(mut self, p: f64) -> Self {
        self.lora_dropout = p;
        self
    }

    /// Set `use_rslora`.
    pub fn with_rslora(mut self, on: bool) -> Self {
        self.use_rslora = on;
        self
    }

    /// Set `modules_to_save`.
    pub fn with_modules_to_save(mut self, names: &[&str]) -> Self {
        self.modules_to_save = Some(names.iter().map(|s| s.to_string()).collect());
        self
    }

    /// The adapter scaling: `lora_alpha / r`, or `lora_alpha / sqrt(r)` with `use_rslora`
    /// (Kalajdzievski 2023, "A Rank Stabilization Scaling Factor for Fine-Tuning with LoRA").
    pub fn scaling(&self) -> f64 {
        if self.use_rslora {
            self.lora_alpha / (self.r as f64).sqrt()
        } else {
            self.lora_alpha / self.r as f64
        }
    }

    /// Check every field once (the checked-params pattern).
    ///
    /// # Errors
    /// [`LoraError::InvalidConfig`] naming the field: `r` outside \[1, [`MAX_LORA_RANK`]\],
    /// `lora_alpha` non-finite or outside (0, [`MAX_LORA_ALPHA`]\], `lora_dropout` outside \[0, 1), `bias` other than `"none"`, a non-LoRA
    /// `peft_type`, an unsupported `init_lora_weights`, a regex `target_modules`, or PEFT
    /// options Forge does not implement (`use_dora`, `fan_in_fan_out`, `rank_pattern`,
    /// `alpha_pattern`, `layers_to_transform`, `lora_bias`).
    pub fn validate(&self) -> Result<()> {
        if self.r == 0 || self.r > MAX_LORA_RANK {
            return Err(invalid(
                "r",
                format!("rank must be in [1, {MAX_LORA_RANK}], got {}", self.r),
            ));
        }
        if !(self.lora_alpha.is_finite()
            && self.lora_alpha > 0.0
            && self.lora_alpha <= MAX_LORA_ALPHA)
        {
            return Err(invalid(
                "lora_alpha",
                format!(
                    "must be finite and in (0, {MAX_LORA_ALPHA:e}], got {}",
                    self.lora_alpha
                ),
            ));
        }
        if !(0.0..1.0).contains(&self.lora_dropout) {
            return Err(invalid(
                "lora_dropout",
                format!("must be in [0, 1), got {}", self.lora_dropout),
            ));
        }
        if self.bias != "none" {
            return Err(invalid(
                "bias",
                format!("only \"none\" is supported, got {:?}", self.bias),
            ));
        }
        if self.peft_type != "LORA" {
            return Err(invalid(
                "peft_type",
                format!("expected \"LORA\", got {:?}", self.peft_type),
            ));
        }
        match &self.init_lora_weights {
            InitLoraWeights::Bool(_) => {}
            InitLoraWeights::Named(s) if s == "gaussian" => {}
            InitLoraWeights::Named(s) => {
                return Err(invalid(
                    "init_lora_weights",
                    format!("supported: true, false, \"gaussian\"; got {s:?}"),
                ))
            }
        }
        match &self.target_modules {
            TargetModules::Names(v) if v.is_empty() => {
                return Err(invalid("target_modules", "the list is empty".into()))
            }
            TargetModules::Single(s)
                if !self.target_modules.is_all_linear()
                    && s.chars().any(|c| "*+?[](){}|^$\\".contains(c)) =>
            {
                return Err(invalid(
                    "target_modules",
                    format!(
                        "regular expressions are not supported, got {s:?}; pass a list of names"
                    ),
                ))
            }
            _ => {}
        }
        let unsupported_true = ["use_dora", "fan_in_fan_out", "lora_bias", "use_qalora"];
        for key in unsupported_true {
            if self.extra.get(key).and_then(|v| v.as_bool()) == Some(true) {
                return Err(LoraError::InvalidConfig {
                    field: "extra",
                    reason: format!("{key} = true is not supported by Forge"),
                });
            }
        }
        for key in ["rank_pattern", "alpha_pattern"] {
            if let Some(serde_json::Value::Object(m)) = self.extra.get(key) {
                if !m.is_empty() {
                    return Err(LoraError::InvalidConfig {
                        field: "extra",
                        reason: format!("a non-empty {key} is not supported by Forge"),
                    });
                }
            }
        }
        if let Some(v) = self.extra.get("layers_to_transform") {
            if !v.is_null() {
                return Err(LoraError::InvalidConfig {
                    field: "extra",
                    reason: format!("layers_to_transform = {v} is not supported by Forge"),
                });
            }
        }
        Ok(())
    }

    /// Parse `adapter_config.json` text (unknown keys tolerated) and validate it.
    ///
    /// # Errors
    /// [`LoraError::Corrupt`] for invalid JSON, else as [`LoraConfig::validate`].
    pub fn from_json_str(text: &str) -> Result<Self> {
        let cfg: Self = serde_json::from_str(text).map_err(|e| LoraError::Corrupt {
            path: "adapter_config.json".into(),
            reason: e.to_string(),
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Whether `module_path` is one of `modules_to_save`. PEFT's rule here is a plain string
    /// suffix (`key.endswith(name)`, unlike the dotted rule of `target_modules`), so
    /// `"classifier"` also selects `"pre_classifier"`; Forge follows it so that adapter files
    /// agree with PEFT's.
    pub fn is_module_to_save(&self, module_path: &str) -> bool {
        self.modules_to_save.as_ref().is_some_and(|v| {
            v.iter()
                .any(|n| !n.is_empty() && module_path.ends_with(n.as_str()))
        })
    }
}

/// PEFT's module-name rule: `path` matches `name` if it equals it or ends with `"." + name`.
///
/// ```
/// use forge_lora::name_matches;
/// assert!(name_matches("distilbert.transformer.layer.0.attention.q_lin", "q_lin"));
/// assert!(name_matches("classifier", "classifier"));
/// assert!(!name_matches("pre_classifier", "classifier"));
/// ```
pub fn name_matches(path: &str, name: &str) -> bool {
    path == name
        || (path.len() > name.len()
            && path.ends_with(name)
            && path.as_bytes()[path.len() - name.len() - 1] == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaling_plain_and_rslora() {
        let c = LoraConfig::new(4, 8.0, &["q"]);
        assert_eq!(c.scaling(), 2.0);
        assert_eq!(c.with_rslora(true).scaling(), 4.0);
    }

    #[test]
    fn validate_rejects_bad_fields() {
        let mut c = LoraConfig::new(0, 8.0, &["q"]);
        assert!(matches!(
            c.validate(),
            Err(LoraError::InvalidConfig { field: "r", .. })
        ));
        c.r = 2;
        c.lora_dropout = 1.0;
        assert!(matches!(
            c.validate(),
            Err(LoraError::InvalidConfig {
                field: "lora_dropout",
                ..
            })
        ));
        c.lora_dropout = 0.0;
        c.lora_alpha = f64::NAN;
        assert!(matches!(
            c.validate(),
            Err(LoraError::InvalidConfig {
                field: "lora_alpha",
                ..
            })
        ));
        c.lora_alpha = 1.0;
        c.bias = "all".into();
        assert!(matches!(
            c.validate(),
            Err(LoraError::InvalidConfig { field: "bias", .. })
        ));
        c.bias = "none".into();
        c.target_modules = TargetModules::Single(".*q".into());
        assert!(matches!(
            c.validate(),
            Err(LoraError::InvalidConfig {
                field: "target_modules",
                ..
            })
        ));
        c.target_modules = TargetModules::all_linear();
        assert!(c.validate().is_ok());
        c.extra
            .insert("use_dora".into(), serde_json::Value::Bool(true));
        assert!(c.validate().is_err());
    }

    #[test]
    fn unknown_keys_are_tolerated_and_kept() {
        let text = r#"{"r": 4, "lora_alpha": 8, "target_modules": ["q_lin"], "some_future_key": [1, 2],
                       "use_dora": false, "rank_pattern": {}, "layers_to_transform": null}"#;
        let c = LoraConfig::from_json_str(text).unwrap();
        assert_eq!(c.r, 4);
        assert_eq!(c.extra["some_future_key"], serde_json::json!([1, 2]));
        let back = serde_json::to_value(&c).unwrap();
        assert_eq!(back["some_future_key"], serde_json::json!([1, 2]));
        assert_eq!(back["r"], serde_json::json!(4));
    }

    #[test]
    fn modules_to_save_use_plain_suffix_as_peft() {
        let c = LoraConfig::default().with_modules_to_save(&["classifier"]);
        assert!(c.is_module_to_save("classifier"));
        assert!(c.is_module_to_save("pre_classifier"));
        assert!(!c.is_module_to_save("classifier.dense.x"));
    }

    #[test]
    fn corrupt_json_is_typed() {
        assert!(matches!(
            LoraConfig::from_json_str("{not json"),
            Err(LoraError::Corrupt { .. })
        ));
    }
}
