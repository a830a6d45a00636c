//! Building blocks with a backward pass: layer norm, embeddings, dropout, attention, pooling.
//!
//! candle's fused `LayerNorm` and `softmax_last_dim` have no backward pass (gradients silently
//! stop there). Layer norm, exact GELU and the attention softmax run as Forge's own fused
//! kernels with a backward pass on the CPU in f32 (`kernels`), and as differentiable candle
//! ops everywhere else.

use crate::config::Activation;
use crate::{ModelError, Result};
use candle_core::{DType, Tensor, D};
use forge_lora::{DeepClone, LoraLinear, Param};

/// Layer normalisation (Ba et al. 2016): `y = (x - mean) / sqrt(var + eps) * weight + bias`
/// over the last dimension, with the biased variance (as PyTorch).
#[derive(Debug)]
pub struct LayerNorm {
    /// Scale, `[dim]`.
    pub weight: Param,
    /// Shift, `[dim]`.
    pub bias: Param,
    /// Epsilon added to the variance.
    pub eps: f64,
}

impl LayerNorm {
    /// Forward pass.
    ///
    /// # Shapes
    /// `[..., dim]` -> `[..., dim]`.
    ///
    /// # Errors
    /// Candle errors on a shape mismatch.
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (w, b) = (self.weight.tensor(), self.bias.tensor());
        if crate::kernels::eligible(x)
            && crate::kernels::eligible(&w)
            && crate::kernels::eligible(&b)
        {
            return crate::kernels::layer_norm(x, &w, &b, self.eps);
        }
        let mean = x.mean_keepdim(D::Minus1)?;
        let xc = x.broadcast_sub(&mean)?;
        let var = xc.sqr()?.mean_keepdim(D::Minus1)?;
        let xn = xc.broadcast_div(&(var + self.eps)?.sqrt()?)?;
        xn.broadcast_mul(&self.weight.tensor())?
            .broadcast_add(&self.bias.tensor())
    }

    /// `[("weight", w), ("bias", b)]`.
    pub fn params_mut(&mut self) -> Vec<(&'static str, &mut Param)> {
        vec![("weight", &mut self.weight), ("bias", &mut self.bias)]
    }
}

/// A lookup table `[num, dim]`. As PyTorch's `nn.Embedding(padding_idx=...)`, the row of the
/// padding id receives no gradient.
#[derive(Debug)]
pub struct Embedding {
    /// The table, `[num, dim]`.
    pub weight: Param,
    /// Row that receives no gradient.
    pub padding_idx: Option<u32>,
}

impl Embedding {
    /// Look up rows.
    ///
    /// # Shapes
    /// ids `[b, s]` (u32) -> `[b, s, dim]`.
    ///
    /// # Errors
    /// Candle errors (an id out of range is checked by the callers).
    pub fn forward(&self, ids: &Tensor) -> candle_core::Result<Tensor> {
        let (b, s) = ids.dims2()?;
        let flat = ids.flatten_all()?;
        let w = self.weight.tensor();
        let dim = w.dim(1)?;
        if crate::kernels::eligible(&w) && flat.dtype() == candle_core::DType::U32 {
            // one op with its backward (padding row skipped there): no extra ops for it
            let e = crate::kernels::embedding_lookup(&w, &flat, self.padding_idx)?;
            return e.reshape((b, s, dim));
        }
        let mut e = w.index_select(&flat, 0)?;
        if let (Some(pad), true) = (self.padding_idx, self.weight.is_trainable()) {
            // forward value unchanged; padding rows come from a detached table (no gradient)
            let frozen = w.detach().index_select(&flat, 0)?;
            let is_pad = flat.eq(pad)?.to_dtype(e.dtype())?.unsqueeze(1)?;
            let keep = (1.0 - &is_pad)?;
            e = (e.broadcast_mul(&keep)? + frozen.broadcast_mul(&is_pad)?)?;
        }
        e.reshape((b, s, dim))
    }
}

impl DeepClone for LayerNorm {
    fn try_clone_deep(&self) -> forge_lora::Result<Self> {
        Ok(Self {
            weight: self.weight.try_clone_deep()?,
            bias: self.bias.try_clone_deep()?,
            eps: self.eps,
        })
    }
}

impl DeepClone for Embedding {
    fn try_clone_deep(&self) -> forge_lora::Result<Self> {
        Ok(Self {
            weight: self.weight.try_clone_deep()?,
            padding_idx: self.padding_idx,
        })
    }
}

/// Inverted dropout (Srivastava et al. 2014) when `train` and `p > 0`, identity otherwise.
///
/// # Errors
/// Candle errors only.
pub fn dropout(x: &Tensor, p: f64, train: bool) -> candle_core::Result<Tensor> {
    if train && p > 0.0 {
        // seeded (crate::dropout::set_dropout_seed), unlike candle_nn::ops::dropout
        crate::dropout::seeded_dropout(x, p)
    } else {
        Ok(x.clone())
    }
}

/// Apply an activation: exact GELU `x * 0.5 * (1 + erf(x / sqrt 2))` (Hendrycks & Gimpel 2016),
/// its tanh approximation, or ReLU.
///
/// # Errors
/// Candle errors only.
pub fn activate(x: &Tensor, act: Activation) -> candle_core::Result<Tensor> {
    match act {
        Activation::Gelu if crate::kernels::eligible(x) => crate::kernels::gelu_erf(x),
        Activation::Gelu => x.gelu_erf(),
        Activation::GeluTanh => x.gelu(),
        Activation::Relu => x.relu(),
    }
}

/// The additive attention mask: 0 where `mask == 1`, the most negative f32 where `mask == 0`
/// (as Hugging Face: `(1 - mask) * finfo(float32).min`).
///
/// # Shapes
/// `[b, s]` (any numeric dtype) -> `[b, 1, 1, s]` f32.
///
/// # Errors
/// Candle errors only.
pub fn additive_mask(mask: &Tensor) -> candle_core::Result<Tensor> {
    let (b, s) = mask.dims2()?;
    let m = mask.to_dtype(DType::F32)?;
    ((1.0 - m)? * f32::MIN as f64)?.reshape((b, 1, 1, s))
}

/// Multi-head scaled dot-product attention (Vaswani et al. 2017):
/// `softmax(Q K^T / sqrt(d_head) + mask) V`, with dropout on the probabilities, heads merged.
/// Returns the context before the output projection.
///
/// # Shapes
/// x `[b, s, dim]`, mask `[b, 1, 1, s]` -> `[b, s, dim]`.
///
/// # Errors
/// Candle errors only.
#[allow(clippy::too_many_arguments)]
pub fn self_attention(
    q_lin: &LoraLinear,
    k_lin: &LoraLinear,
    v_lin: &LoraLinear,
    x: &Tensor,
    mask: &Tensor,
    n_heads: usize,
    attn_dropout: f64,
    train: bool,
) -> candle_core::Result<Tensor> {
    let (b, s, _) = x.dims3()?;
    let tokens = TokenRows::dense(b, s);
    let ctx = attend(
        q_lin,
        k_lin,
        v_lin,
        &tokens.rows(x)?,
        &tokens,
        mask,
        n_heads,
        attn_dropout,
        train,
    )?;
    tokens.batch(&ctx)
}

/// [`self_attention`] on the rows of `tokens` ([`TokenRows`]): x `[n, dim]` -> `[n, dim]`. The
/// projections run on those rows only; the heads see the batch laid out as `[b, s]` again,
/// padding masked as before.
///
/// # Errors
/// Candle errors only.
#[allow(clippy::too_many_arguments)]
pub(crate) fn attend(
    q_lin: &LoraLinear,
    k_lin: &LoraLinear,
    v_lin: &LoraLinear,
    x: &Tensor,
    tokens: &TokenRows,
    mask: &Tensor,
    n_heads: usize,
    attn_dropout: f64,
    train: bool,
) -> candle_core::Result<Tensor> {
    let (b, s) = (tokens.b, tokens.s);
    let dim = x.dim(1)?;
    let hd = dim / n_heads;
    let scale = 1.0 / (hd as f64).sqrt();
    // each projection as [b * s, dim], one row per position
    let project = |lin: &LoraLinear| tokens.spread_for_attention(&lin.forward_t(x, train)?);
    let (q, k, v) = (project(q_lin)?, project(k_lin)?, project(v_lin)?);
    let fused = crate::kernels::eligible(&q)
        && crate::kernels::eligible(mask)
        && (!train || attn_dropout == 0.0)
        && forge_linalg::bf16::matmul_precision() == forge_linalg::bf16::MatmulPrecision::F32;
    let ctx = if fused {
        // no dropout on the probabilities: scores, softmax and context in one op per head
        crate::kernels::fused_attention(&q, &k, &v, mask, n_heads, scale)?
    } else if crate::kernels::eligible(&q) && crate::kernels::eligible(mask) {
        use crate::kernels::{heads_matmul, Form};
        // the heads are read straight out of the projections and the context is written with
        // its heads merged: no split, merge or transpose, forward or backward
        let scores = heads_matmul(
            (&q, Form::PACKED),
            (&k, Form::PACKED.t()),
            Form::PLAIN,
            scale,
            b,
            n_heads,
        )?;
        let probs = crate::kernels::masked_softmax(&scores, mask)?;
        let probs = dropout(&probs, attn_dropout, train)?;
        heads_matmul(
            (&probs, Form::PLAIN),
            (&v, Form::PACKED),
            Form::PACKED,
            1.0,
            b,
            n_heads,
        )?
    } else {
        let heads = |t: &Tensor| {
            t.reshape((b, s, n_heads, hd))?
                .transpose(1, 2)?
                .contiguous()
        };
        let scores = (heads(&q)? * scale)?
            .matmul(&heads(&k)?.t()?)?
            .broadcast_add(mask)?;
        let probs = candle_nn::ops::softmax(&scores, D::Minus1)?;
        let probs = dropout(&probs, attn_dropout, train)?;
        probs
            .matmul(&heads(&v)?)?
            .transpose(1, 2)?
            .reshape((b * s, dim))?
    };
    tokens.gather(&ctx)
}

/// The rows the position-wise layers (projections, feed-forward, layer norms, residuals,
/// dropout) run on: one per real token of a padded batch ([`Unpadded`]), or one per position
/// when there is no padding. The encoders hold their hidden states as these rows from the
/// embeddings to the output, so every dense layer takes a 2-D input as it is (a reshape is one
/// more graph node, and one more gradient accumulation in candle's backward pass).
#[derive(Debug, Clone)]
pub(crate) struct TokenRows {
    b: usize,
    s: usize,
    unpad: Option<Unpadded>,
}

impl TokenRows {
    /// For a `[b, s]` 0/1 attention mask: the real tokens only where there is padding.
    pub(crate) fn from_mask(mask: &Tensor) -> candle_core::Result<Self> {
        let (b, s) = mask.dims2()?;
        Ok(Self {
            b,
            s,
            unpad: Unpadded::from_mask(mask)?,
        })
    }

    /// Every one of the `b * s` positions.
    pub(crate) fn dense(b: usize, s: usize) -> Self {
        Self { b, s, unpad: None }
    }

    /// `[b, s, h]` -> the rows `[n, h]`.
    pub(crate) fn rows(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let flat = x.reshape((self.b * self.s, x.dim(D::Minus1)?))?;
        self.gather(&flat)
    }

    /// The rows `[n, h]` -> `[b, s, h]`, zeros at padded positions.
    pub(crate) fn batch(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match &self.unpad {
            Some(u) => u.unpack(x, (self.b, self.s)),
            None => x.reshape((self.b, self.s, x.dim(D::Minus1)?)),
        }
    }

    /// `[b * s, h]` (every position) -> the rows `[n, h]`.
    fn gather(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match &self.unpad {
            Some(u) => u.pack(x),
            None => Ok(x.clone()),
        }
    }

    /// The rows `[n, h]` -> `[b * s, h]`, arbitrary (finite) values at padded positions: for the
    /// attention heads, which mask them as keys and whose outputs there [`Self::gather`] drops.
    fn spread_for_attention(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match &self.unpad {
            Some(u) => u.spread_for_attention(x),
            None => Ok(x.clone()),
        }
    }
}

/// Where the real tokens of a padded batch are, to run the position-wise layers (projections,
/// feed-forward, layer norms, residuals, dropout) on those tokens only: padding removal, as in
/// NVIDIA's FasterTransformer "effective transformer" and the `unpad_input` of FlashAttention
/// (Dao et al. 2022). A padded position can only influence others as an attention key, where it
/// is masked, so the real tokens' outputs are the same as on the padded batch up to rounding;
/// the padded positions' outputs are zeros instead of values nothing should read. SST-2's
/// training batches of 16 are about 60% padding.
#[derive(Debug, Clone)]
struct Unpadded {
    /// Flat indices (`i * s + j`) of the real tokens, `[T]` u32.
    keep: Tensor,
    /// For each flat position, its row among the `T` packed tokens (padding: row 0; its value
    /// is masked wherever it is read), `[b * s]` u32.
    spread: Tensor,
    /// For each flat position, its row among the `T` packed tokens, padding: row `T` (a zero
    /// row appended), `[b * s]` u32.
    spread_zeroed: Tensor,
    t: usize,
}

impl Unpadded {
    /// From a `[b, s]` 0/1 mask. `None` when there is no padding, or when a sequence's first
    /// token is masked (the padded path keeps the reference implementation's outputs there).
    fn from_mask(mask: &Tensor) -> candle_core::Result<Option<Self>> {
        let (b, s) = mask.dims2()?;
        let m = mask.to_dtype(DType::F32)?.to_vec2::<f32>()?;
        if m.iter().any(|row| row[0] == 0.0) {
            return Ok(None);
        }
        let keep: Vec<u32> = (0..b * s)
            .filter(|&f| m[f / s][f % s] != 0.0)
            .map(|f| f as u32)
            .collect();
        let t = keep.len();
        if t == b * s {
            return Ok(None);
        }
        let mut spread = vec![0u32; b * s];
        let mut spread_zeroed = vec![t as u32; b * s];
        for (row, &f) in keep.iter().enumerate() {
            spread[f as usize] = row as u32;
            spread_zeroed[f as usize] = row as u32;
        }
        let dev = mask.device();
        Ok(Some(Self {
            keep: Tensor::from_vec(keep, t, dev)?,
            spread: Tensor::from_vec(spread, b * s, dev)?,
            spread_zeroed: Tensor::from_vec(spread_zeroed, b * s, dev)?,
            t,
        }))
    }

    /// `[b * s, h]` -> the real tokens `[T, h]`.
    fn pack(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        x.index_select(&self.keep, 0)
    }

    /// `[T, h]` -> `[b * s, h]` with arbitrary (finite) values at the padded positions: for the
    /// attention heads, which mask them as keys and whose outputs there [`Self::pack`] drops.
    fn spread_for_attention(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        x.index_select(&self.spread, 0)
    }

    /// `[T, h]` -> `[b, s, h]` with zeros at the padded positions.
    fn unpack(&self, x: &Tensor, (b, s): (usize, usize)) -> candle_core::Result<Tensor> {
        let h = x.dim(D::Minus1)?;
        debug_assert_eq!(x.dim(0)?, self.t);
        let zero = Tensor::zeros((1, h), x.dtype(), x.device())?;
        Tensor::cat(&[x, &zero], 0)?
            .index_select(&self.spread_zeroed, 0)?
            .reshape((b, s, h))
    }
}

/// Mean pooling over valid tokens (sentence-transformers): `sum_t h_t m_t / max(sum_t m_t, 1e-9)`.
///
/// # Shapes
/// hidden `[b, s, h]`, mask `[b, s]` -> `[b, h]`.
///
/// # Errors
/// [`ModelError::InvalidInput`] when the shapes disagree.
pub fn mean_pool(hidden: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let (b, s, _) = hidden.dims3()?;
    if mask.dims() != [b, s] {
        return Err(ModelError::InvalidInput {
            what: "attention_mask",
            reason: format!("expected shape [{b}, {s}], got {:?}", mask.dims()),
        });
    }
    let m = mask.to_dtype(hidden.dtype())?.unsqueeze(2)?;
    let summed = hidden.broadcast_mul(&m)?.sum(1)?;
    let counts = m.sum(1)?.clamp(1e-9, f64::MAX)?;
    Ok(summed.broadcast_div(&counts)?)
}

/// Check model inputs and build default masks: ids `[b, s]` as u32 within the vocabulary, the
/// attention mask `[b, s]` (all ones when absent). Returns (ids as u32, mask as f32).
///
/// # Errors
/// [`ModelError::InvalidInput`] naming the input.
pub fn check_inputs(
    ids: &Tensor,
    mask: Option<&Tensor>,
    vocab: usize,
    max_len: usize,
) -> Result<(Tensor, Tensor)> {
    let (b, s) = ids.dims2().map_err(|_| ModelError::InvalidInput {
        what: "input_ids",
        reason: format!("expected [batch, seq], got shape {:?}", ids.dims()),
    })?;
    if b == 0 || s == 0 {
        return Err(ModelError::InvalidInput {
            what: "input_ids",
            reason: format!("empty batch, shape {:?}", ids.dims()),
        });
    }
    if s > max_len {
        return Err(ModelError::InvalidInput {
            what: "input_ids",
            reason: format!("sequence length {s} exceeds max_position_embeddings {max_len}"),
        });
    }
    if ids.dtype().is_float() {
        return Err(ModelError::InvalidInput {
            what: "input_ids",
            reason: format!("expected an integer dtype, got {:?}", ids.dtype()),
        });
    }
    let ids = ids.to_dtype(DType::I64)?;
    let (lo, hi) = (
        ids.min_all()?.to_scalar::<i64>()?,
        ids.max_all()?.to_scalar::<i64>()?,
    );
    if lo < 0 || hi as usize >= vocab {
        return Err(ModelError::InvalidInput {
            what: "input_ids",
            reason: format!("token ids must be in [0, {vocab}), got range [{lo}, {hi}]"),
        });
    }
    let ids = ids.to_dtype(DType::U32)?;
    let mask = match mask {
        Some(m) => {
            if m.dims() != [b, s] {
                return Err(ModelError::InvalidInput {
                    what: "attention_mask",
                    reason: format!("expected shape [{b}, {s}], got {:?}", m.dims()),
                });
            }
            m.to_dtype(DType::F32)?
        }
        None => Tensor::ones((b, s), DType::F32, ids.device())?,
    };
    Ok((ids, mask))
}

/// The last of an encoder's hidden states (the forward output).
///
/// # Errors
/// [`ModelError::InvalidInput`] when there is none (cannot happen for a built encoder).
pub(crate) fn last_state(mut states: Vec<Tensor>) -> Result<Tensor> {
    states.pop().ok_or_else(|| ModelError::InvalidInput {
        what: "encoder",
        reason: "the forward pass produced no hidden state".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn layer_norm_matches_closed_form() {
        let dev = Device::Cpu;
        let ln = LayerNorm {
            weight: Param::new(&Tensor::new(&[1.0f32, 2.0], &dev).unwrap(), true).unwrap(),
            bias: Param::new(&Tensor::new(&[0.0f32, 1.0], &dev).unwrap(), true).unwrap(),
            eps: 0.0,
        };
        // x = [1, 3]: mean 2, var 1 -> [-1, 1] -> [-1, 3]
        let y: Vec<Vec<f32>> = ln
            .forward(&Tensor::new(&[[1.0f32, 3.0]], &dev).unwrap())
            .unwrap()
            .to_vec2()
            .unwrap();
        assert_eq!(y, vec![vec![-1.0, 3.0]]);
    }

    #[test]
    fn mean_pool_ignores_padding() {
        let dev = Device::Cpu;
        let h = Tensor::new(&[[[1.0f32, 2.0], [3.0, 4.0], [100.0, 100.0]]], &dev).unwrap();
        let m = Tensor::new(&[[1u32, 1, 0]], &dev).unwrap();
        let p: Vec<Vec<f32>> = mean_pool(&h, &m).unwrap().to_vec2().unwrap();
        assert_eq!(p, vec![vec![2.0, 3.0]]);
        assert!(mean_pool(&h, &Tensor::new(&[[1u32, 1]], &dev).unwrap()).is_err());
    }

    #[test]
    fn bad_inputs_are_typed() {
        let dev = Device::Cpu;
        let ids = Tensor::new(&[[1u32, 70]], &dev).unwrap();
        let e = check_inputs(&ids, None, 64, 32).unwrap_err();
        assert!(
            matches!(
                e,
                ModelError::InvalidInput {
                    what: "input_ids",
                    ..
                }
            ),
            "{e}"
        );
        let ids = Tensor::new(&[[1u32, 2]], &dev).unwrap();
        let m = Tensor::new(&[[1u32, 1, 1]], &dev).unwrap();
        assert!(matches!(
            check_inputs(&ids, Some(&m), 64, 32),
            Err(ModelError::InvalidInput {
                what: "attention_mask",
                ..
            })
        ));
        let f = Tensor::new(&[[1.0f32, 2.0]], &dev).unwrap();
        assert!(check_inputs(&f, None, 64, 32).is_err());
    }
}
