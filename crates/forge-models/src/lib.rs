//! # forge-models
//!
//! Transformer encoders owned by Forge, built from [`forge_lora::LoraLinear`] so that LoRA can be
//! injected: DistilBERT (Sanh et al. 2019) and BERT (Devlin et al. 2019) with Hugging Face weight
//! names and semantics (exact GELU, layer-norm eps from the config, additive attention mask,
//! dropout in training mode), sequence-classification heads, mean pooling for embeddings.
//!
//! - Build from a config without weights ([`DistilBertForSequenceClassification::new_random`]),
//!   or load from a local folder, the Hugging Face cache or the Hub ([`ModelFiles`],
//!   [`AnyClassifier`], [`AnyEncoder`]).
//! - Tokenise with [`TextTokenizer`] (padding to the batch's longest sequence, truncation set
//!   in code).
//! - Parameters and checkpoints: modules are built through [`ParamBuilder`], which loads and
//!   registers each tensor under its Hugging Face name (written once per architecture);
//!   [`StateDict`] (`state_dict` / `load_state_dict`), [`DeepClone`] (models are not `Clone`,
//!   which would share parameter storage), [`SavePretrained`] (a folder transformers loads).
//!   [`Weights`] reads `model.safetensors` (memory-mapped), sharded checkpoints and
//!   `pytorch_model.bin`, rejecting integer or non-finite tensors by name.
//! - Every layer has a backward pass (no fused candle layer norm / softmax), so gradients reach
//!   every trainable parameter; frozen parameters are detached.
//!
//! ```
//! use candle_core::{Device, Tensor};
//! use forge_models::{DistilBertConfig, DistilBertForSequenceClassification, SequenceClassifier};
//! use forge_lora::{count_parameters, LoraConfig, LoraInjector};
//!
//! let cfg = DistilBertConfig { vocab_size: 100, dim: 32, n_layers: 2, n_heads: 4, hidden_dim: 64,
//!                              ..Default::default() };
//! let mut model = DistilBertForSequenceClassification::new_random(&cfg, 0, &Device::Cpu)?;
//! LoraInjector::new(LoraConfig::new(4, 8.0, &["q_lin", "v_lin"]))?.inject(&mut model)?;
//! assert_eq!(count_parameters(&mut model).adapter, 2 * 2 * 4 * (32 + 32));
//! let ids = Tensor::new(&[[1u32, 5, 7, 2]], &Device::Cpu)?;
//! let logits = model.forward(&ids, None)?;
//! assert_eq!(logits.dims(), &[1, 2]);
//! # Ok::<(), forge_models::ModelError>(())
//! ```
#![deny(missing_docs)]

pub mod bert;
pub mod builder;
pub mod checkpoint;
pub mod config;
pub mod distilbert;
pub mod dropout;
mod error;
mod kernels;
pub mod layers;
pub mod loading;
pub mod perf;
pub mod representations;
pub mod tokenize;
pub mod train;
pub mod transfer;
mod weights;

pub use bert::{BertForSequenceClassification, BertModel};
pub use builder::{Named, ParamBuilder, VisitModules};
pub use checkpoint::{SavePretrained, StateDict};
pub use config::{Activation, BertConfig, DistilBertConfig, ModelConfig};
pub use distilbert::{DistilBertForSequenceClassification, DistilBertModel};
pub use error::{ModelError, Result};
pub use forge_lora::DeepClone;
pub use layers::mean_pool;
pub use loading::{AnyClassifier, AnyEncoder, ModelFiles, DEFAULT_MODEL};
pub use representations::{extract_representations, HiddenStates, LayerSelection, Pooling};
pub use tokenize::{Encoded, TextTokenizer};
pub use train::{cross_entropy_loss, train_step};
pub use weights::Weights;

use candle_core::Tensor;

/// An encoder producing contextual token representations.
pub trait TextEncoder {
    /// Last hidden states.
    ///
    /// # Shapes
    /// ids `[b, s]`, mask `[b, s]` -> `[b, s, hidden]`.
    ///
    /// # Errors
    /// [`ModelError::InvalidInput`] for bad inputs.
    fn encode(&self, input_ids: &Tensor, attention_mask: Option<&Tensor>) -> Result<Tensor>;
    /// Hidden size.
    fn hidden_size(&self) -> usize;
}

/// A sequence classifier whose linear layers can carry LoRA adapters.
pub trait SequenceClassifier: forge_lora::LoraModel {
    /// Logits.
    ///
    /// # Shapes
    /// ids `[b, s]`, mask `[b, s]` -> `[b, num_labels]`.
    ///
    /// # Errors
    /// [`ModelError::InvalidInput`] for bad inputs.
    fn forward(&self, input_ids: &Tensor, attention_mask: Option<&Tensor>) -> Result<Tensor>;
    /// Dropout on (training) or off (evaluation) everywhere, adapters included.
    fn set_training(&mut self, training: bool);
    /// Whether dropout is active.
    fn is_training(&self) -> bool;
    /// Number of classes.
    fn num_labels(&self) -> usize;
    /// The encoder part.
    fn encoder(&self) -> &dyn TextEncoder;
}
