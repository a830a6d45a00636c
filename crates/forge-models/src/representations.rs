//! Per-layer sentence representations from Forge encoders, for representation analysis (CKA,
//! representation MMD, LogME in forge-safety).
//!
//! [`HiddenStates`] returns every hidden state of an encoder: index 0 is the embedding output
//! (after the embedding layer norm, as Hugging Face's `output_hidden_states=True`), index `i` the
//! output of block `i`; the last equals the encoder's `forward`. [`extract_representations`]
//! runs an encoder over pre-tokenised batches and pools the chosen layers per sentence: the
//! first (`[CLS]`) token, or the mean over valid tokens (sentence-transformers' pooling,
//! [`crate::mean_pool`]), with a progress callback after each batch.

use crate::bert::BertModel;
use crate::distilbert::DistilBertModel;
use crate::layers::mean_pool;
use crate::loading::AnyEncoder;
use crate::tokenize::Encoded;
use crate::{ModelError, Result, TextTokenizer};
use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

/// An encoder that can return all its hidden states.
pub trait HiddenStates {
    /// Every hidden state: `[embeddings, block 1, ..., block L]`.
    ///
    /// # Shapes
    /// ids `[b, s]`, mask `[b, s]` -> `L + 1` tensors `[b, s, hidden]`.
    ///
    /// # Errors
    /// [`ModelError::InvalidInput`] for bad ids or mask.
    fn hidden_states(
        &self,
        input_ids: &Tensor,
        attention_mask: Option<&Tensor>,
    ) -> Result<Vec<Tensor>>;
    /// Number of transformer blocks `L` (hidden states are `L + 1`).
    fn num_layers(&self) -> usize;
}

impl HiddenStates for DistilBertModel {
    fn hidden_states(
        &self,
        input_ids: &Tensor,
        attention_mask: Option<&Tensor>,
    ) -> Result<Vec<Tensor>> {
        self.all_hidden_states(input_ids, attention_mask)
    }

    fn num_layers(&self) -> usize {
        self.layers.len()
    }
}

impl HiddenStates for BertModel {
    fn hidden_states(
        &self,
        input_ids: &Tensor,
        attention_mask: Option<&Tensor>,
    ) -> Result<Vec<Tensor>> {
        self.all_hidden_states(input_ids, attention_mask)
    }

    fn num_layers(&self) -> usize {
        self.layers.len()
    }
}

impl HiddenStates for AnyEncoder {
    fn hidden_states(
        &self,
        input_ids: &Tensor,
        attention_mask: Option<&Tensor>,
    ) -> Result<Vec<Tensor>> {
        match self {
            AnyEncoder::DistilBert(m) => m.hidden_states(input_ids, attention_mask),
            AnyEncoder::Bert(m) => m.hidden_states(input_ids, attention_mask),
        }
    }

    fn num_layers(&self) -> usize {
        match self {
            AnyEncoder::DistilBert(m) => m.num_layers(),
            AnyEncoder::Bert(m) => m.num_layers(),
        }
    }
}

/// How a sentence's token states become one vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Pooling {
    /// The first token (`[CLS]`).
    Cls,
    /// The mean over valid (mask = 1) tokens.
    #[default]
    Mean,
}

/// Which hidden states to keep.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum LayerSelection {
    /// Every hidden state, embeddings (0) to the last block (`L`).
    #[default]
    All,
    /// Only the last block.
    Last,
    /// These indices (0 = embeddings, `i` = block `i`), in this order.
    Indices(Vec<usize>),
}

/// Progress of an extraction, passed to the callback after each batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtractProgress {
    /// Batches done.
    pub batches_done: usize,
    /// Batches in all.
    pub batches_total: usize,
    /// Examples done.
    pub examples_done: usize,
}

/// Pooled features per layer.
#[derive(Debug, Clone)]
pub struct Representations {
    /// Hidden-state indices (0 = embeddings).
    pub layers: Vec<usize>,
    /// One `[n, hidden]` f32 tensor per entry of `layers`, on the CPU.
    pub features: Vec<Tensor>,
    /// The pooling used.
    pub pooling: Pooling,
}

impl Representations {
    /// The features of hidden state `layer`, if extracted.
    pub fn layer(&self, layer: usize) -> Option<&Tensor> {
        self.layers
            .iter()
            .position(|l| *l == layer)
            .map(|i| &self.features[i])
    }

    /// `("layer i", features)` pairs (`"embeddings"` for 0), e.g. for forge-safety's CKA report.
    pub fn named(&self) -> Vec<(String, Tensor)> {
        self.layers
            .iter()
            .zip(&self.features)
            .map(|(l, t)| {
                let name = if *l == 0 {
                    "embeddings".to_string()
                } else {
                    format!("layer {l}")
                };
                (name, t.clone())
            })
            .collect()
    }
}

/// Runs `encoder` (in its current training mode; call `set_training(false)` for deterministic
/// features) over `batches` and pools the selected hidden states; `progress` is called after
/// every batch.
///
/// # Shapes
/// each batch ids/mask `[b_k, s_k]` -> per layer `[sum b_k, hidden]` f32.
///
/// # Errors
/// [`ModelError::InvalidInput`] for no batches, a layer index above `num_layers()` or bad
/// batch tensors.
pub fn extract_representations<E: HiddenStates + ?Sized>(
    encoder: &E,
    batches: &[Encoded],
    layers: &LayerSelection,
    pooling: Pooling,
    mut progress: impl FnMut(ExtractProgress),
) -> Result<Representations> {
    if batches.is_empty() {
        return Err(ModelError::InvalidInput {
            what: "batches",
            reason: "no batches given".into(),
        });
    }
    let max = encoder.num_layers();
    let idx: Vec<usize> = match layers {
        LayerSelection::All => (0..=max).collect(),
        LayerSelection::Last => vec![max],
        LayerSelection::Indices(v) => {
            if v.is_empty() {
                return Err(ModelError::InvalidInput {
                    what: "layers",
                    reason: "no layer indices given".into(),
                });
            }
            if let Some(bad) = v.iter().find(|i| **i > max) {
                return Err(ModelError::InvalidInput {
                    what: "layers",
                    reason: format!(
                        "hidden-state index {bad} out of range: this encoder has 0 (embeddings) to {max}"
                    ),
                });
            }
            v.clone()
        }
    };
    let mut parts: Vec<Vec<Tensor>> = vec![Vec::with_capacity(batches.len()); idx.len()];
    let mut done = 0;
    for (k, b) in batches.iter().enumerate() {
        // no graph recorded (forge_lora::no_grad): the forward's intermediates are freed as
        // soon as each layer is done
        let hs =
            forge_lora::no_grad(|| encoder.hidden_states(&b.input_ids, Some(&b.attention_mask)))?;
        for (slot, &l) in idx.iter().enumerate() {
            let h = &hs[l];
            let pooled = match pooling {
                Pooling::Cls => h.narrow(1, 0, 1)?.squeeze(1)?,
                Pooling::Mean => mean_pool(h, &b.attention_mask)?,
            };
            // detach as well (a no-op here): the pooled features must never keep a forward
            // graph alive
            parts[slot].push(
                pooled
                    .to_dtype(DType::F32)?
                    .to_device(&Device::Cpu)?
                    .detach(),
            );
        }
        done += b.input_ids.dim(0)?;
        progress(ExtractProgress {
            batches_done: k + 1,
            batches_total: batches.len(),
            examples_done: done,
        });
    }
    let features = parts
        .iter()
        .map(|p| Tensor::cat(p, 0))
        .collect::<candle_core::Result<Vec<_>>>()?;
    Ok(Representations {
        layers: idx,
        features,
        pooling,
    })
}

/// Tokenises `texts` in batches of `batch_size` (each padded to its longest sentence).
///
/// # Errors
/// [`ModelError::InvalidInput`] for `batch_size = 0` or no texts; tokenizer errors.
pub fn encode_in_batches<S: AsRef<str>>(
    tokenizer: &TextTokenizer,
    texts: &[S],
    batch_size: usize,
    device: &Device,
) -> Result<Vec<Encoded>> {
    if batch_size == 0 {
        return Err(ModelError::InvalidInput {
            what: "batch_size",
            reason: "must be >= 1, got 0".into(),
        });
    }
    if texts.is_empty() {
        return Err(ModelError::InvalidInput {
            what: "texts",
            reason: "no texts given".into(),
        });
    }
    texts
        .chunks(batch_size)
        .map(|c| {
            let v: Vec<&str> = c.iter().map(|s| s.as_ref()).collect();
            tokenizer.encode_batch(&v, device)
        })
        .collect()
}
