//! The classification loss and a single optimizer step with any candle optimizer.

use crate::{ModelError, Result, SequenceClassifier};
use candle_core::{DType, Tensor};

/// Mean cross-entropy `-(1/b) sum_i log softmax(z_i)[y_i]`, differentiable.
///
/// # Shapes
/// logits `[b, c]`, labels `[b]` (integer) -> scalar.
///
/// # Errors
/// [`ModelError::InvalidInput`] for mismatched shapes or labels outside `[0, c)`.
pub fn cross_entropy_loss(logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
    let (b, c) = logits.dims2()?;
    if labels.dims() != [b] {
        return Err(ModelError::InvalidInput {
            what: "labels",
            reason: format!("expected shape [{b}], got {:?}", labels.dims()),
        });
    }
    let labels = labels.to_dtype(DType::I64)?;
    let (lo, hi) = (
        labels.min_all()?.to_scalar::<i64>()?,
        labels.max_all()?.to_scalar::<i64>()?,
    );
    if lo < 0 || hi as usize >= c {
        return Err(ModelError::InvalidInput {
            what: "labels",
            reason: format!("labels must be in [0, {c}), got range [{lo}, {hi}]"),
        });
    }
    Ok(candle_nn::loss::cross_entropy(
        logits,
        &labels.to_dtype(DType::U32)?,
    )?)
}

/// One training step: forward in training mode, mean cross-entropy, backward, optimizer update.
/// Returns the loss.
///
/// # Errors
/// As [`cross_entropy_loss`], or candle errors.
pub fn train_step<M: SequenceClassifier + ?Sized, O: candle_nn::Optimizer>(
    model: &M,
    optimizer: &mut O,
    input_ids: &Tensor,
    attention_mask: Option<&Tensor>,
    labels: &Tensor,
) -> Result<f32> {
    let logits = model.forward(input_ids, attention_mask)?;
    let loss = cross_entropy_loss(&logits, labels)?;
    optimizer.backward_step(&loss)?;
    Ok(loss.to_scalar::<f32>()?)
}
