//! [`TextDataset`]: labelled texts tokenised once, batched with dynamic padding and seeded
//! shuffling.

use crate::{ModelError, Result, TextTokenizer};
use candle_core::{Device, Tensor};

/// A labelled text classification set, tokenised once (special tokens included, no padding).
///
/// Batches are padded to their own longest sequence (dynamic padding, as transformers'
/// `DataCollatorWithPadding`), so short sentences cost short sequences.
#[derive(Clone, Debug)]
pub struct TextDataset {
    ids: Vec<Vec<u32>>,
    labels: Vec<u32>,
    pad_id: u32,
}

/// One batch on a device.
#[derive(Clone, Debug)]
pub struct Batch {
    /// Token ids `[b, s]` (u32), padded on the right with the pad id.
    pub input_ids: Tensor,
    /// 1 for tokens, 0 for padding, `[b, s]` (u32).
    pub attention_mask: Tensor,
    /// Class ids `[b]` (u32).
    pub labels: Tensor,
    /// Number of examples `b`.
    pub size: usize,
}

impl TextDataset {
    /// Tokenise `texts` with `tokenizer` (truncated to its `max_length`) and pair them with `labels`.
    ///
    /// # Errors
    /// [`ModelError::InvalidInput`] (`what = "dataset"`) when the lengths differ or a text
    /// tokenises to nothing; [`ModelError::Tokenizer`].
    pub fn new<S: AsRef<str>>(
        texts: &[S],
        labels: &[u32],
        tokenizer: &TextTokenizer,
    ) -> Result<Self> {
        if texts.len() != labels.len() {
            return Err(ModelError::InvalidInput {
                what: "dataset",
                reason: format!("{} texts but {} labels", texts.len(), labels.len()),
            });
        }
        let inner = tokenizer.inner();
        let pad_id = inner.get_padding().map_or(0, |p| p.pad_id);
        let refs: Vec<&str> = texts.iter().map(AsRef::as_ref).collect();
        let enc = if refs.is_empty() {
            Vec::new()
        } else {
            inner
                .encode_batch(refs, true)
                .map_err(|e| ModelError::Tokenizer(e.to_string()))?
        };
        let ids = enc
            .iter()
            .map(|e| {
                // right padding: keep the tokens whose mask is 1
                let n = e.get_attention_mask().iter().filter(|m| **m == 1).count();
                e.get_ids()[..n].to_vec()
            })
            .collect();
        Self::from_ids(ids, labels.to_vec(), pad_id)
    }

    /// A data set of already tokenised sequences (e.g. for tests with a tiny vocabulary).
    ///
    /// # Errors
    /// [`ModelError::InvalidInput`] (`what = "dataset"`) when the lengths differ or a sequence
    /// is empty.
    pub fn from_ids(ids: Vec<Vec<u32>>, labels: Vec<u32>, pad_id: u32) -> Result<Self> {
        if ids.len() != labels.len() {
            return Err(ModelError::InvalidInput {
                what: "dataset",
                reason: format!("{} sequences but {} labels", ids.len(), labels.len()),
            });
        }
        if let Some(i) = ids.iter().position(Vec::is_empty) {
            return Err(ModelError::InvalidInput {
                what: "dataset",
                reason: format!("example {i} has no tokens"),
            });
        }
        Ok(Self {
            ids,
            labels,
            pad_id,
        })
    }

    /// Number of examples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there is no example.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The labels.
    pub fn labels(&self) -> &[u32] {
        &self.labels
    }

    /// The token ids of example `i`.
    pub fn ids(&self, i: usize) -> Option<&[u32]> {
        self.ids.get(i).map(Vec::as_slice)
    }

    /// The padding id.
    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// A subset by indices (in the given order).
    ///
    /// # Errors
    /// [`ModelError::InvalidInput`] naming an index out of range.
    pub fn select(&self, idx: &[usize]) -> Result<Self> {
        if let Some(&i) = idx.iter().find(|&&i| i >= self.len()) {
            return Err(ModelError::InvalidInput {
                what: "dataset",
                reason: format!("index {i} out of range for {} examples", self.len()),
            });
        }
        Ok(Self {
            ids: idx.iter().map(|&i| self.ids[i].clone()).collect(),
            labels: idx.iter().map(|&i| self.labels[i]).collect(),
            pad_id: self.pad_id,
        })
    }

    /// Check that the set is not empty and every label is below `num_labels`.
    ///
    /// # Errors
    /// [`ModelError::InvalidInput`]: `what = "dataset"` when empty, `what = "labels"` naming
    /// the first label out of range, its position and `num_labels`.
    pub fn check_labels(&self, name: &str, num_labels: usize) -> Result<()> {
        if self.is_empty() {
            return Err(ModelError::InvalidInput {
                what: "dataset",
                reason: format!("the {name} set is empty"),
            });
        }
        if let Some((i, &l)) = self
            .labels
            .iter()
            .enumerate()
            .find(|(_, &l)| l as usize >= num_labels)
        {
            return Err(ModelError::InvalidInput {
                what: "labels",
                reason: format!(
                    "{name} example {i} has label {l}, but the model head has {num_labels} classes (labels must be in [0, {num_labels}))"
                ),
            });
        }
        Ok(())
    }

    /// The number of classes the labels imply: `max label + 1` (0 when empty).
    pub fn implied_num_labels(&self) -> usize {
        self.labels.iter().max().map_or(0, |&m| m as usize + 1)
    }

    /// The batch of the examples `idx`, padded to their longest sequence (at most `max_length`
    /// tokens: a longer sequence keeps its first `max_length - 1` tokens and its last one).
    ///
    /// # Shapes
    /// `idx.len() = b` -> ids, mask `[b, s]`, labels `[b]`.
    ///
    /// # Errors
    /// [`ModelError::InvalidInput`] for an empty `idx`, an index out of range or
    /// `max_length < 2`; candle errors.
    pub fn batch(&self, idx: &[usize], max_length: usize, device: &Device) -> Result<Batch> {
        if idx.is_empty() || max_length < 2 {
            return Err(ModelError::InvalidInput {
                what: "batch",
                reason: format!(
                    "needs at least one example and max_length >= 2, got {} examples and max_length {max_length}",
                    idx.len()
                ),
            });
        }
        if let Some(&i) = idx.iter().find(|&&i| i >= self.len()) {
            return Err(ModelError::InvalidInput {
                what: "batch",
                reason: format!("index {i} out of range for {} examples", self.len()),
            });
        }
        let b = idx.len();
        let s = idx
            .iter()
            .map(|&i| self.ids[i].len().min(max_length))
            .max()
            .unwrap_or(1);
        let mut ids = vec![self.pad_id; b * s];
        let mut mask = vec![0u32; b * s];
        for (r, &i) in idx.iter().enumerate() {
            let seq = &self.ids[i];
            let row = &mut ids[r * s..(r + 1) * s];
            if seq.len() <= max_length {
                row[..seq.len()].copy_from_slice(seq);
            } else {
                row[..max_length - 1].copy_from_slice(&seq[..max_length - 1]);
                row[max_length - 1] = seq[seq.len() - 1];
            }
            let n = seq.len().min(max_length);
            mask[r * s..r * s + n].fill(1);
        }
        let labels: Vec<u32> = idx.iter().map(|&i| self.labels[i]).collect();
        Ok(Batch {
            input_ids: Tensor::from_vec(ids, (b, s), device)?,
            attention_mask: Tensor::from_vec(mask, (b, s), device)?,
            labels: Tensor::from_vec(labels, b, device)?,
            size: b,
        })
    }

    /// The example order of one epoch: a permutation of `0..len` from `seed` (ChaCha8), or
    /// `0..len` when `seed` is `None`.
    pub fn order(&self, seed: Option<u64>) -> Vec<usize> {
        match seed {
            Some(s) => forge_linalg::rng::permutation(self.len(), &mut forge_linalg::seeded_rng(s)),
            None => (0..self.len()).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dynamic_padding_and_truncation() {
        let d = TextDataset::from_ids(vec![vec![1, 5, 2], vec![1, 6, 7, 8, 9, 2]], vec![0, 1], 0)
            .unwrap();
        let b = d.batch(&[0, 1], 4, &Device::Cpu).unwrap();
        assert_eq!(
            b.input_ids.to_vec2::<u32>().unwrap(),
            vec![vec![1, 5, 2, 0], vec![1, 6, 7, 2]]
        );
        assert_eq!(
            b.attention_mask.to_vec2::<u32>().unwrap(),
            vec![vec![1, 1, 1, 0], vec![1, 1, 1, 1]]
        );
        let b = d.batch(&[0], 64, &Device::Cpu).unwrap();
        assert_eq!(b.input_ids.dims(), &[1, 3]);
        assert!(d.batch(&[2], 4, &Device::Cpu).is_err());
    }

    #[test]
    fn seeded_order_is_a_reproducible_permutation() {
        let d = TextDataset::from_ids(vec![vec![1]; 50], vec![0; 50], 0).unwrap();
        let a = d.order(Some(3));
        assert_eq!(a, d.order(Some(3)));
        assert_ne!(a, d.order(Some(4)));
        let mut s = a.clone();
        s.sort_unstable();
        assert_eq!(s, (0..50).collect::<Vec<_>>());
    }

    #[test]
    fn bad_labels_are_named() {
        let d = TextDataset::from_ids(vec![vec![1], vec![2]], vec![0, 3], 0).unwrap();
        let e = d.check_labels("train", 2).unwrap_err().to_string();
        assert!(e.contains("label 3") && e.contains("2 classes"), "{e}");
        let empty = TextDataset::from_ids(vec![], vec![], 0).unwrap();
        assert!(empty
            .check_labels("train", 2)
            .unwrap_err()
            .to_string()
            .contains("empty"));
        assert!(TextDataset::from_ids(vec![vec![1]], vec![], 0).is_err());
    }
}
