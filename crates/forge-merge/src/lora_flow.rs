//! LoRA-Flow (Wang et al. 2024, "LoRA-Flow: Dynamic LoRA Fusion for Large Language Models in
//! Generative Tasks"): a small learned gate per layer that mixes the outputs of several frozen
//! LoRA adapters, with input-dependent weights `w^l(h) = softmax(W^l h + b^l)` over the `k`
//! adapters; layer `l`'s adapted output is `W_0 x + sum_i w^l_i(h) s_i B_i A_i x`.
//!
//! Only the gate (`k x (hidden + 1)` numbers per layer) is trained, on a few target-task
//! samples; base model and adapters stay frozen. The gate is model-agnostic: the model's forward
//! pass is a closure that calls [`LoraFlowGate::fuse`] (or [`LoraFlowGate::weights`]) in each
//! adapted layer, so forge-merge needs no model code. The gate starts at zero, i.e. uniform
//! weights `1/k` (an equal-weight soup), and training moves it from there.

use crate::error::{MergeError, Result};
use candle_core::{DType, Device, Tensor, Var, D};
use candle_nn::optim::{AdamW, Optimizer, ParamsAdamW};

/// One softmax gate per layer over `k` adapters.
#[derive(Debug, Clone)]
pub struct LoraFlowGate {
    /// `[layers, k, hidden]`.
    w: Var,
    /// `[layers, k]`.
    b: Var,
    layers: usize,
    k: usize,
    hidden: usize,
}

/// Training settings of [`train_gate`].
#[derive(Debug, Clone, PartialEq)]
pub struct GateTrainConfig {
    /// AdamW learning rate (default 1e-2).
    pub lr: f64,
    /// Passes over the batches (default 20).
    pub epochs: usize,
    /// AdamW weight decay (default 0).
    pub weight_decay: f64,
}

impl Default for GateTrainConfig {
    fn default() -> Self {
        Self {
            lr: 1e-2,
            epochs: 20,
            weight_decay: 0.0,
        }
    }
}

impl LoraFlowGate {
    /// A zero-initialised gate (uniform weights) for `layers` layers, `k` adapters and hidden
    /// size `hidden`.
    ///
    /// # Errors
    /// [`MergeError::OutOfRange`] for a zero size; candle errors.
    pub fn new(layers: usize, k: usize, hidden: usize, device: &Device) -> Result<Self> {
        for (name, v) in [("layers", layers), ("adapters", k), ("hidden", hidden)] {
            if v == 0 {
                return Err(MergeError::OutOfRange {
                    name: format!("LoRA-Flow gate {name}"),
                    value: 0.0,
                    reason: "must be >= 1".into(),
                });
            }
        }
        Ok(Self {
            w: Var::zeros((layers, k, hidden), DType::F32, device)?,
            b: Var::zeros((layers, k), DType::F32, device)?,
            layers,
            k,
            hidden,
        })
    }

    /// The trainable variables (gate matrices and biases).
    pub fn vars(&self) -> Vec<Var> {
        vec![self.w.clone(), self.b.clone()]
    }

    /// Number of adapters.
    pub fn num_adapters(&self) -> usize {
        self.k
    }

    /// Number of layers.
    pub fn num_layers(&self) -> usize {
        self.layers
    }

    /// Fusion weights of layer `layer` for hidden states `h`.
    ///
    /// # Shapes
    /// `h`: `[..., hidden]` -> `[..., k]`, summing to 1 over the last dimension.
    ///
    /// # Errors
    /// [`MergeError::OutOfRange`] for a layer index out of range; candle shape errors.
    pub fn weights(&self, layer: usize, h: &Tensor) -> Result<Tensor> {
        if layer >= self.layers {
            return Err(MergeError::OutOfRange {
                name: "LoRA-Flow layer".into(),
                value: layer as f64,
                reason: format!("must be < {}", self.layers),
            });
        }
        let w = self.w.as_tensor().get(layer)?; // [k, hidden]
        let b = self.b.as_tensor().get(layer)?; // [k]
        let dims = h.dims().to_vec();
        let last = *dims.last().unwrap_or(&0);
        if last != self.hidden {
            return Err(MergeError::OutOfRange {
                name: "LoRA-Flow hidden size".into(),
                value: last as f64,
                reason: format!("gate expects {}", self.hidden),
            });
        }
        let flat = h.to_dtype(DType::F32)?.reshape(((), self.hidden))?;
        let logits = flat.matmul(&w.t()?)?.broadcast_add(&b)?;
        // candle_nn::ops::softmax (not softmax_last_dim) keeps a backward pass.
        let p = candle_nn::ops::softmax(&logits, D::Minus1)?;
        let mut out_dims = dims;
        *out_dims.last_mut().expect("non-empty") = self.k;
        Ok(p.reshape(out_dims)?)
    }

    /// Mix adapter outputs with layer `layer`'s weights for hidden states `h`:
    /// `sum_i w_i(h) * deltas[i]`.
    ///
    /// # Shapes
    /// `h`: `[..., hidden]`; each of the `k` `deltas`: `[..., out]` -> `[..., out]`.
    ///
    /// # Errors
    /// [`MergeError::WrongInputs`] when `deltas.len() != k`; shape errors.
    pub fn fuse(&self, layer: usize, h: &Tensor, deltas: &[Tensor]) -> Result<Tensor> {
        if deltas.len() != self.k {
            return Err(MergeError::WrongInputs {
                method: "LoRA-Flow fuse".into(),
                expected: format!("{} adapter outputs", self.k),
                got: format!("{}", deltas.len()),
            });
        }
        let w = self.weights(layer, h)?;
        let mut acc: Option<Tensor> = None;
        for (i, d) in deltas.iter().enumerate() {
            let wi = w.narrow(D::Minus1, i, 1)?;
            let term = d.to_dtype(DType::F32)?.broadcast_mul(&wi)?;
            acc = Some(match acc {
                None => term,
                Some(a) => (a + term)?,
            });
        }
        Ok(acc.expect("k >= 1"))
    }
}

/// Train the gate on `batches` with the loss computed by `loss` (the model's forward pass with
/// [`LoraFlowGate::fuse`] in its adapted layers, then e.g. cross-entropy), updating only the
/// gate's variables with AdamW. Returns the mean loss of each epoch.
///
/// # Errors
/// [`MergeError::OutOfRange`] for no batch, zero epochs, or a non-positive learning rate;
/// [`MergeError::NonFinite`] when a loss is NaN or infinite; errors of the closure.
pub fn train_gate<B>(
    gate: &LoraFlowGate,
    batches: &[B],
    cfg: &GateTrainConfig,
    mut loss: impl FnMut(&LoraFlowGate, &B) -> Result<Tensor>,
) -> Result<Vec<f64>> {
    if batches.is_empty() || cfg.epochs == 0 || !(cfg.lr > 0.0 && cfg.lr.is_finite()) {
        return Err(MergeError::OutOfRange {
            name: "LoRA-Flow training (batches, epochs, lr)".into(),
            value: cfg.lr,
            reason: format!(
                "need >= 1 batch (got {}), >= 1 epoch (got {}) and a finite lr > 0",
                batches.len(),
                cfg.epochs
            ),
        });
    }
    let mut opt = AdamW::new(
        gate.vars(),
        ParamsAdamW {
            lr: cfg.lr,
            weight_decay: cfg.weight_decay,
            ..Default::default()
        },
    )?;
    let mut history = Vec::with_capacity(cfg.epochs);
    for epoch in 0..cfg.epochs {
        let mut total = 0.0;
        for b in batches {
            let l = loss(gate, b)?;
            let v = l.to_dtype(DType::F64)?.to_scalar::<f64>()?;
            if !v.is_finite() {
                return Err(MergeError::NonFinite {
                    tensor: format!("LoRA-Flow loss (epoch {epoch})"),
                    value: v as f32,
                    index: 0,
                });
            }
            opt.backward_step(&l)?;
            total += v;
        }
        history.push(total / batches.len() as f64);
    }
    Ok(history)
}
