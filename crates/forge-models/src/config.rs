//! Hugging Face `config.json` of the supported encoders, with Hugging Face's field names.

use crate::{ModelError, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// The hidden activation of the feed-forward block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// Exact GELU, `x * Phi(x)` with the error function (Hugging Face `"gelu"`).
    Gelu,
    /// The tanh approximation (`"gelu_new"`, `"gelu_pytorch_tanh"`).
    GeluTanh,
    /// `max(x, 0)`.
    Relu,
}

impl Activation {
    /// Parse a Hugging Face activation name.
    ///
    /// # Errors
    /// [`ModelError::Config`] naming the unsupported value.
    pub fn parse(field: &'static str, s: &str) -> Result<Self> {
        match s {
            "gelu" => Ok(Self::Gelu),
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Ok(Self::GeluTanh),
            "relu" => Ok(Self::Relu),
            other => Err(ModelError::Config {
                field,
                reason: format!("unsupported activation {other:?}"),
            }),
        }
    }
}

fn labels_of(num_labels: Option<usize>, id2label: &Option<BTreeMap<String, String>>) -> usize {
    num_labels
        .or_else(|| id2label.as_ref().map(|m| m.len()))
        .filter(|n| *n > 0)
        .unwrap_or(2)
}

/// DistilBERT's `config.json` (Sanh et al. 2019, "DistilBERT, a distilled version of BERT").
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DistilBertConfig {
    /// Vocabulary size.
    #[serde(default = "d_vocab")]
    pub vocab_size: usize,
    /// Hidden size.
    #[serde(default = "d_dim")]
    pub dim: usize,
    /// Number of transformer blocks.
    #[serde(default = "d_layers")]
    pub n_layers: usize,
    /// Number of attention heads.
    #[serde(default = "d_heads")]
    pub n_heads: usize,
    /// Feed-forward inner size.
    #[serde(default = "d_hidden")]
    pub hidden_dim: usize,
    /// Maximum sequence length.
    #[serde(default = "d_pos")]
    pub max_position_embeddings: usize,
    /// Dropout on embeddings and block outputs.
    #[serde(default = "d_drop")]
    pub dropout: f64,
    /// Dropout on attention probabilities.
    #[serde(default = "d_drop")]
    pub attention_dropout: f64,
    /// Feed-forward activation.
    #[serde(default = "d_act")]
    pub activation: String,
    /// Dropout of the classification head.
    #[serde(default = "d_cls_drop")]
    pub seq_classif_dropout: f64,
    /// Padding token id.
    #[serde(default)]
    pub pad_token_id: Option<u32>,
    /// Std of the normal initialisation.
    #[serde(default = "d_init")]
    pub initializer_range: f64,
    /// Number of classes of the head.
    #[serde(default)]
    pub num_labels: Option<usize>,
    /// Label names by id.
    #[serde(default)]
    pub id2label: Option<BTreeMap<String, String>>,
}

fn d_vocab() -> usize {
    30522
}
fn d_dim() -> usize {
    768
}
fn d_layers() -> usize {
    6
}
fn d_heads() -> usize {
    12
}
fn d_hidden() -> usize {
    3072
}
fn d_pos() -> usize {
    512
}
fn d_drop() -> f64 {
    0.1
}
fn d_act() -> String {
    "gelu".into()
}
fn d_cls_drop() -> f64 {
    0.2
}
fn d_init() -> f64 {
    0.02
}
fn d_bert_layers() -> usize {
    12
}
fn d_type_vocab() -> usize {
    2
}
fn d_eps() -> f64 {
    1e-12
}
fn d_pos_type() -> String {
    "absolute".into()
}

impl Default for DistilBertConfig {
    fn default() -> Self {
        serde_json::from_str("{}").expect("all fields have defaults")
    }
}

impl DistilBertConfig {
    /// Number of classes (`num_labels`, else the size of `id2label`, else 2).
    pub fn num_labels(&self) -> usize {
        labels_of(self.num_labels, &self.id2label)
    }

    /// Check dimensions and probabilities.
    ///
    /// # Errors
    /// [`ModelError::Config`] naming the field.
    pub fn validate(&self) -> Result<()> {
        check_dims(&[
            ("vocab_size", self.vocab_size),
            ("dim", self.dim),
            ("n_layers", self.n_layers),
            ("n_heads", self.n_heads),
            ("hidden_dim", self.hidden_dim),
            ("max_position_embeddings", self.max_position_embeddings),
        ])?;
        if !self.dim.is_multiple_of(self.n_heads) {
            return Err(ModelError::Config {
                field: "n_heads",
                reason: format!(
                    "dim {} is not divisible by n_heads {}",
                    self.dim, self.n_heads
                ),
            });
        }
        check_probs(&[
            ("dropout", self.dropout),
            ("attention_dropout", self.attention_dropout),
            ("seq_classif_dropout", self.seq_classif_dropout),
        ])?;
        Activation::parse("activation", &self.activation)?;
        Ok(())
    }
}

/// BERT's `config.json` (Devlin et al. 2019, "BERT: Pre-training of Deep Bidirectional
/// Transformers for Language Understanding"); also MiniLM checkpoints such as all-MiniLM-L6-v2.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BertConfig {
    /// Vocabulary size.
    #[serde(default = "d_vocab")]
    pub vocab_size: usize,
    /// Hidden size.
    #[serde(default = "d_dim")]
    pub hidden_size: usize,
    /// Number of transformer blocks.
    #[serde(default = "d_bert_layers")]
    pub num_hidden_layers: usize,
    /// Number of attention heads.
    #[serde(default = "d_heads")]
    pub num_attention_heads: usize,
    /// Feed-forward inner size.
    #[serde(default = "d_hidden")]
    pub intermediate_size: usize,
    /// Feed-forward activation.
    #[serde(default = "d_act")]
    pub hidden_act: String,
    /// Dropout on embeddings and block outputs.
    #[serde(default = "d_drop")]
    pub hidden_dropout_prob: f64,
    /// Dropout on attention probabilities.
    #[serde(default = "d_drop")]
    pub attention_probs_dropout_prob: f64,
    /// Maximum sequence length.
    #[serde(default = "d_pos")]
    pub max_position_embeddings: usize,
    /// Number of token types (segments).
    #[serde(default = "d_type_vocab")]
    pub type_vocab_size: usize,
    /// Layer-norm epsilon.
    #[serde(default = "d_eps")]
    pub layer_norm_eps: f64,
    /// Padding token id.
    #[serde(default)]
    pub pad_token_id: Option<u32>,
    /// Std of the normal initialisation.
    #[serde(default = "d_init")]
    pub initializer_range: f64,
    /// Dropout of the classification head (defaults to `hidden_dropout_prob`).
    #[serde(default)]
    pub classifier_dropout: Option<f64>,
    /// Position embedding type; only `"absolute"`.
    #[serde(default = "d_pos_type")]
    pub position_embedding_type: String,
    /// Number of classes of the head.
    #[serde(default)]
    pub num_labels: Option<usize>,
    /// Label names by id.
    #[serde(default)]
    pub id2label: Option<BTreeMap<String, String>>,
}

impl Default for BertConfig {
    fn default() -> Self {
        serde_json::from_str("{}").expect("all fields have defaults")
    }
}

impl BertConfig {
    /// Number of classes (`num_labels`, else the size of `id2label`, else 2).
    pub fn num_labels(&self) -> usize {
        labels_of(self.num_labels, &self.id2label)
    }

    /// Dropout before the classifier.
    pub fn classifier_dropout(&self) -> f64 {
        self.classifier_dropout.unwrap_or(self.hidden_dropout_prob)
    }

    /// Check dimensions, probabilities and supported options.
    ///
    /// # Errors
    /// [`ModelError::Config`] naming the field.
    pub fn validate(&self) -> Result<()> {
        check_dims(&[
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("intermediate_size", self.intermediate_size),
            ("max_position_embeddings", self.max_position_embeddings),
            ("type_vocab_size", self.type_vocab_size),
        ])?;
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return Err(ModelError::Config {
                field: "num_attention_heads",
                reason: format!(
                    "hidden_size {} is not divisible by num_attention_heads {}",
                    self.hidden_size, self.num_attention_heads
                ),
            });
        }
        check_probs(&[
            ("hidden_dropout_prob", self.hidden_dropout_prob),
            (
                "attention_probs_dropout_prob",
                self.attention_probs_dropout_prob,
            ),
            ("classifier_dropout", self.classifier_dropout()),
        ])?;
        if !(self.layer_norm_eps.is_finite() && self.layer_norm_eps > 0.0) {
            return Err(ModelError::Config {
                field: "layer_norm_eps",
                reason: format!("must be > 0, got {}", self.layer_norm_eps),
            });
        }
        if self.position_embedding_type != "absolute" {
            return Err(ModelError::Config {
                field: "position_embedding_type",
                reason: format!(
                    "only \"absolute\" is supported, got {:?}",
                    self.position_embedding_type
                ),
            });
        }
        Activation::parse("hidden_act", &self.hidden_act)?;
        Ok(())
    }
}

fn check_dims(dims: &[(&'static str, usize)]) -> Result<()> {
    for (field, v) in dims {
        if *v == 0 {
            return Err(ModelError::Config {
                field,
                reason: "must be > 0, got 0".into(),
            });
        }
    }
    Ok(())
}

fn check_probs(ps: &[(&'static str, f64)]) -> Result<()> {
    for (field, p) in ps {
        if !(0.0..1.0).contains(p) {
            return Err(ModelError::Config {
                field,
                reason: format!("must be in [0, 1), got {p}"),
            });
        }
    }
    Ok(())
}

/// A parsed `config.json` of a supported architecture.
#[derive(Clone, Debug, PartialEq)]
pub enum ModelConfig {
    /// `"model_type": "distilbert"`.
    DistilBert(DistilBertConfig),
    /// `"model_type": "bert"`.
    Bert(BertConfig),
}

impl ModelConfig {
    /// Parse `config.json` text, dispatching on `model_type`; unknown keys are ignored.
    ///
    /// # Errors
    /// [`ModelError::Corrupt`] for bad JSON, [`ModelError::Config`] for an unsupported
    /// `model_type` or an invalid field.
    pub fn from_json_str(text: &str, path: &Path) -> Result<Self> {
        let corrupt = |e: serde_json::Error| ModelError::Corrupt {
            path: path.to_path_buf(),
            reason: e.to_string(),
        };
        let v: serde_json::Value = serde_json::from_str(text).map_err(corrupt)?;
        let mt = v.get("model_type").and_then(|m| m.as_str()).unwrap_or("");
        let cfg = match mt {
            "distilbert" => ModelConfig::DistilBert(serde_json::from_value(v).map_err(corrupt)?),
            "bert" => ModelConfig::Bert(serde_json::from_value(v).map_err(corrupt)?),
            other => {
                return Err(ModelError::Config {
                    field: "model_type",
                    reason: format!("supported: \"distilbert\", \"bert\"; got {other:?}"),
                })
            }
        };
        match &cfg {
            ModelConfig::DistilBert(c) => c.validate()?,
            ModelConfig::Bert(c) => c.validate()?,
        }
        Ok(cfg)
    }

    /// Read and parse a `config.json` file.
    ///
    /// # Errors
    /// [`ModelError::MissingFile`] / [`ModelError::Io`], then as [`ModelConfig::from_json_str`].
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                ModelError::MissingFile {
                    path: path.to_path_buf(),
                    hint: String::new(),
                }
            } else {
                ModelError::Io {
                    path: path.to_path_buf(),
                    source: e,
                }
            }
        })?;
        Self::from_json_str(&text, path)
    }

    /// The architecture name (`"distilbert"` or `"bert"`).
    pub fn model_type(&self) -> &'static str {
        match self {
            ModelConfig::DistilBert(_) => "distilbert",
            ModelConfig::Bert(_) => "bert",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_base_models() {
        let d = DistilBertConfig::default();
        assert_eq!(
            (d.dim, d.n_layers, d.hidden_dim, d.num_labels()),
            (768, 6, 3072, 2)
        );
        let b = BertConfig::default();
        assert_eq!(
            (b.hidden_size, b.num_hidden_layers, b.layer_norm_eps),
            (768, 12, 1e-12)
        );
    }

    #[test]
    fn bad_configs_are_typed() {
        let p = Path::new("config.json");
        let e = ModelConfig::from_json_str(r#"{"model_type": "gpt2"}"#, p).unwrap_err();
        assert!(
            matches!(
                e,
                ModelError::Config {
                    field: "model_type",
                    ..
                }
            ),
            "{e}"
        );
        let e = ModelConfig::from_json_str(
            r#"{"model_type": "bert", "hidden_size": 30, "num_attention_heads": 4}"#,
            p,
        )
        .unwrap_err();
        assert!(
            matches!(
                e,
                ModelError::Config {
                    field: "num_attention_heads",
                    ..
                }
            ),
            "{e}"
        );
        let e =
            ModelConfig::from_json_str(r#"{"model_type": "distilbert", "activation": "swish"}"#, p)
                .unwrap_err();
        assert!(
            matches!(
                e,
                ModelError::Config {
                    field: "activation",
                    ..
                }
            ),
            "{e}"
        );
        assert!(matches!(
            ModelConfig::from_json_str("{", p),
            Err(ModelError::Corrupt { .. })
        ));
        let c = ModelConfig::from_json_str(r#"{"model_type": "distilbert", "id2label": {"0": "a", "1": "b", "2": "c"}, "whatever": 1}"#, p).unwrap();
        match c {
            ModelConfig::DistilBert(c) => assert_eq!(c.num_labels(), 3),
            _ => panic!("wrong type"),
        }
    }
}
