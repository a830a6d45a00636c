//! Tokenisation with the `tokenizers` crate; padding and truncation are set in code (a
//! `tokenizer.json` may carry its own fixed padding, e.g. to 128, which is overridden).

use crate::{ModelError, Result};
use candle_core::{Device, Tensor};
use std::path::Path;
use tokenizers::{
    PaddingDirection, PaddingParams, PaddingStrategy, Tokenizer, TruncationParams,
    TruncationStrategy,
};

/// A batch of token ids and its attention mask.
#[derive(Clone, Debug)]
pub struct Encoded {
    /// Token ids `[b, s]` (u32).
    pub input_ids: Tensor,
    /// 1 for tokens, 0 for padding, `[b, s]` (u32).
    pub attention_mask: Tensor,
}

/// A Hugging Face tokenizer that pads each batch to its longest sequence (right side) and
/// truncates to `max_length` tokens (special tokens included).
#[derive(Clone, Debug)]
pub struct TextTokenizer {
    inner: Tokenizer,
    max_length: usize,
}

impl TextTokenizer {
    /// Load `tokenizer.json` and set padding to the batch's longest sequence and truncation to
    /// `max_length`.
    ///
    /// # Errors
    /// [`ModelError::MissingFile`], [`ModelError::Corrupt`]; [`ModelError::InvalidInput`] for
    /// `max_length == 0`.
    pub fn from_file(path: &Path, max_length: usize) -> Result<Self> {
        if !path.is_file() {
            return Err(ModelError::MissingFile {
                path: path.to_path_buf(),
                hint: " (expected a Hugging Face tokenizer.json)".into(),
            });
        }
        let inner = Tokenizer::from_file(path).map_err(|e| ModelError::Corrupt {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        Self::from_tokenizer(inner, max_length)
    }

    /// Wrap a `tokenizers::Tokenizer` (padding and truncation are overridden).
    ///
    /// # Errors
    /// [`ModelError::InvalidInput`] for `max_length == 0`, [`ModelError::Tokenizer`].
    pub fn from_tokenizer(mut inner: Tokenizer, max_length: usize) -> Result<Self> {
        if max_length == 0 {
            return Err(ModelError::InvalidInput {
                what: "max_length",
                reason: "must be > 0".into(),
            });
        }
        let (pad_id, pad_token, pad_type_id) = match inner.get_padding() {
            Some(p) => (p.pad_id, p.pad_token.clone(), p.pad_type_id),
            None => {
                let tok = ["[PAD]", "<pad>"]
                    .into_iter()
                    .find(|t| inner.token_to_id(t).is_some())
                    .unwrap_or("[PAD]");
                (inner.token_to_id(tok).unwrap_or(0), tok.to_string(), 0)
            }
        };
        inner.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            direction: PaddingDirection::Right,
            pad_to_multiple_of: None,
            pad_id,
            pad_type_id,
            pad_token,
        }));
        inner
            .with_truncation(Some(TruncationParams {
                max_length,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
                ..Default::default()
            }))
            .map_err(|e| ModelError::Tokenizer(e.to_string()))?;
        Ok(Self { inner, max_length })
    }

    /// The truncation length.
    pub fn max_length(&self) -> usize {
        self.max_length
    }

    /// The wrapped tokenizer.
    pub fn inner(&self) -> &Tokenizer {
        &self.inner
    }

    /// Encode a batch of texts with special tokens.
    ///
    /// # Shapes
    /// `b` texts -> ids and mask `[b, s]`, `s` = longest (truncated) sequence.
    ///
    /// # Errors
    /// [`ModelError::InvalidInput`] for an empty batch, [`ModelError::Tokenizer`].
    pub fn encode_batch(&self, texts: &[&str], device: &Device) -> Result<Encoded> {
        if texts.is_empty() {
            return Err(ModelError::InvalidInput {
                what: "texts",
                reason: "the batch is empty".into(),
            });
        }
        let enc = self
            .inner
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| ModelError::Tokenizer(e.to_string()))?;
        let b = enc.len();
        let s = enc.iter().map(|e| e.get_ids().len()).max().unwrap_or(0);
        let ids: Vec<u32> = enc.iter().flat_map(|e| e.get_ids().to_vec()).collect();
        let mask: Vec<u32> = enc
            .iter()
            .flat_map(|e| e.get_attention_mask().to_vec())
            .collect();
        Ok(Encoded {
            input_ids: Tensor::from_vec(ids, (b, s), device)?,
            attention_mask: Tensor::from_vec(mask, (b, s), device)?,
        })
    }
}
