//! [`LoraLinear`]: a frozen linear layer with an optional low-rank adapter.

use crate::config::InitLoraWeights;
use crate::{DeepClone, LoraError, Param, Result};
use candle_core::{DType, Tensor};
use forge_linalg::rng::{rand_uniform, randn, ForgeRng};
use std::sync::Arc;

/// A gate of an [`AdapterMixture`]: maps the layer input `x` `[n, in]` to mixing weights
/// `[n, k]` (one row per token, typically a softmax over the `k` adapters).
pub type MixtureGate = Arc<dyn Fn(&Tensor) -> candle_core::Result<Tensor> + Send + Sync>;

/// Several frozen low-rank updates of one layer mixed per token by a learned gate, as LoRA-Flow
/// (Wang et al. 2024, "LoRA-Flow: Dynamic LoRA Fusion for Large Language Models in Generative
/// Tasks"): `y = x W^T + b + sum_i w_i(x) s_i x A_i^T B_i^T` with `w(x)` from the gate. The
/// adapters are constants (no gradient); gradients flow to whatever the gate closes over.
#[derive(Clone)]
pub struct AdapterMixture {
    adapters: Vec<(Tensor, Tensor, f64)>,
    gate: MixtureGate,
}

impl std::fmt::Debug for AdapterMixture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdapterMixture")
            .field("adapters", &self.adapters.len())
            .finish_non_exhaustive()
    }
}

impl AdapterMixture {
    /// A mixture of `adapters` (`(A [r_i, in], B [out, r_i], scaling_i)`, detached) weighted
    /// by `gate`.
    ///
    /// # Errors
    /// [`LoraError::ShapeMismatch`] when there is no adapter or an A / B pair does not chain.
    pub fn new(adapters: Vec<(Tensor, Tensor, f64)>, gate: MixtureGate) -> Result<Self> {
        if adapters.is_empty() {
            return Err(LoraError::ShapeMismatch {
                tensor: "adapter mixture (no adapter)".into(),
                expected: vec![1],
                got: vec![0],
            });
        }
        let mut out = Vec::with_capacity(adapters.len());
        for (i, (a, b, s)) in adapters.into_iter().enumerate() {
            let (r, _) = a.dims2().map_err(|_| LoraError::ShapeMismatch {
                tensor: format!("mixture adapter {i} A"),
                expected: vec![0, 0],
                got: a.dims().to_vec(),
            })?;
            let (_, rb) = b.dims2().map_err(|_| LoraError::ShapeMismatch {
                tensor: format!("mixture adapter {i} B"),
                expected: vec![0, 0],
                got: b.dims().to_vec(),
            })?;
            if rb != r {
                return Err(LoraError::ShapeMismatch {
                    tensor: format!("mixture adapter {i} B"),
                    expected: vec![b.dims()[0], r],
                    got: b.dims().to_vec(),
                });
            }
            out.push((a.detach(), b.detach(), s));
        }
        Ok(Self {
            adapters: out,
            gate,
        })
    }

    /// Number of adapters mixed.
    pub fn len(&self) -> usize {
        self.adapters.len()
    }

    /// Always false (a mixture has at least one adapter).
    pub fn is_empty(&self) -> bool {
        self.adapters.is_empty()
    }
}

/// The low-rank update of one layer: `delta W = scaling * B A`. Not `Clone` (it would share
/// storage): see [`crate::DeepClone`].
#[derive(Debug)]
pub struct LoraAdapter {
    a: Param,
    b: Param,
    r: usize,
    scaling: f64,
    dropout: f64,
}

impl LoraAdapter {
    /// LoRA A, shape `[r, in]`.
    pub fn a(&self) -> &Param {
        &self.a
    }
    /// LoRA B, shape `[out, r]`.
    pub fn b(&self) -> &Param {
        &self.b
    }
    /// Mutable LoRA A.
    pub fn a_mut(&mut self) -> &mut Param {
        &mut self.a
    }
    /// Mutable LoRA B.
    pub fn b_mut(&mut self) -> &mut Param {
        &mut self.b
    }
    /// Rank r.
    pub fn rank(&self) -> usize {
        self.r
    }
    /// The scaling alpha / r (or alpha / sqrt(r) for rsLoRA).
    pub fn scaling(&self) -> f64 {
        self.scaling
    }
    /// Dropout probability on the adapter input.
    pub fn dropout(&self) -> f64 {
        self.dropout
    }
    /// `scaling * B A`, shape `[out, in]`.
    ///
    /// # Errors
    /// Candle errors only.
    pub fn delta_weight(&self) -> Result<Tensor> {
        Ok((self.b.tensor().matmul(&self.a.tensor())? * self.scaling)?)
    }
    /// Number of adapter parameters, `r * (in + out)`.
    pub fn num_params(&self) -> usize {
        self.a.elem_count() + self.b.elem_count()
    }
}

/// A linear layer `y = x W^T + b` whose base weights can be frozen and which can carry a LoRA
/// adapter: `y = x W^T + b + scaling * dropout(x) A^T B^T` (Hu et al. 2021, eq. 3).
///
/// Shapes follow PyTorch / Hugging Face: `weight` `[out, in]`, `bias` `[out]`, A `[r, in]`,
/// B `[out, r]`. When merged, `W <- W + scaling * B A` and the adapter branch is skipped.
///
/// Not `Clone` (a clone would share parameter storage with the original): use
/// [`crate::DeepClone::try_clone_deep`] for an independent copy.
///
/// # Shapes
/// input `[..., in]` -> output `[..., out]`.
#[derive(Debug)]
pub struct LoraLinear {
    weight: Param,
    bias: Option<Param>,
    adapter: Option<LoraAdapter>,
    mixture: Option<AdapterMixture>,
    merged: bool,
    training: bool,
}

impl LoraLinear {
    /// A layer from a weight `[out, in]` and an optional bias `[out]`; base weights start trainable
    /// (full fine-tuning) until frozen.
    ///
    /// # Errors
    /// [`LoraError::ShapeMismatch`] when the weight is not a matrix or the bias length is not `out`.
    pub fn new(weight: &Tensor, bias: Option<&Tensor>) -> Result<Self> {
        let (out_f, _) = weight.dims2().map_err(|_| LoraError::ShapeMismatch {
            tensor: "weight".into(),
            expected: vec![0, 0],
            got: weight.dims().to_vec(),
        })?;
        if let Some(b) = bias {
            if b.dims() != [out_f] {
                return Err(LoraError::ShapeMismatch {
                    tensor: "bias".into(),
                    expected: vec![out_f],
                    got: b.dims().to_vec(),
                });
            }
        }
        Ok(Self {
            weight: Param::new(weight, true)?,
            bias: bias.map(|b| Param::new(b, true)).transpose()?,
            adapter: None,
            mixture: None,
            merged: false,
            training: false,
        })
    }

    /// A layer with Hugging Face's default init: weight ~ N(0, std^2), bias 0.
    ///
    /// # Errors
    /// Candle errors only.
    pub fn new_random(
        in_f: usize,
        out_f: usize,
        with_bias: bool,
        std: f64,
        device: &candle_core::Device,
        rng: &mut ForgeRng,
    ) -> Result<Self> {
        let w = (randn(&[out_f, in_f], DType::F32, device, rng)? * std)?;
        let b = if with_bias {
            Some(Tensor::zeros(out_f, DType::F32, device)?)
        } else {
            None
        };
        Self::new(&w, b.as_ref())
    }

    /// Input features.
    pub fn in_features(&self) -> usize {
        self.weight.dims()[1]
    }
    /// Output features.
    pub fn out_features(&self) -> usize {
        self.weight.dims()[0]
    }
    /// The base weight `[out, in]`.
    pub fn weight(&self) -> &Param {
        &self.weight
    }
    /// Mutable base weight.
    pub fn weight_mut(&mut self) -> &mut Param {
        &mut self.weight
    }
    /// The base bias `[out]`.
    pub fn bias(&self) -> Option<&Param> {
        self.bias.as_ref()
    }
    /// Mutable base bias.
    pub fn bias_mut(&mut self) -> Option<&mut Param> {
        self.bias.as_mut()
    }
    /// Base parameters with their local names (`"weight"`, `"bias"`).
    pub fn base_params_mut(&mut self) -> Vec<(&'static str, &mut Param)> {
        let mut v = vec![("weight", &mut self.weight)];
        if let Some(b) = self.bias.as_mut() {
            v.push(("bias", b));
        }
        v
    }
    /// The adapter, if any.
    pub fn adapter(&self) -> Option<&LoraAdapter> {
        self.adapter.as_ref()
    }
    /// The mutable adapter, if any.
    pub fn adapter_mut(&mut self) -> Option<&mut LoraAdapter> {
        self.adapter.as_mut()
    }
    /// Whether the adapter is merged into the base weight.
    pub fn is_merged(&self) -> bool {
        self.merged
    }
    /// Whether dropout is active.
    pub fn is_training(&self) -> bool {
        self.training
    }
    /// Switch adapter dropout on (training) or off (evaluation).
    pub fn set_training(&mut self, training: bool) {
        self.training = training;
    }

    /// Attach a new trainable adapter of rank `r` with the given `scaling` (alpha / r or
    /// alpha / sqrt(r)) and input dropout. Initialisation as PEFT: A Kaiming-uniform with
    /// a = sqrt(5), i.e. U(-1/sqrt(in), 1/sqrt(in)) (He et al. 2015; PyTorch's `nn.Linear` init),
    /// B = 0 so that the adapted layer starts equal to the base layer.
    ///
    /// # Errors
    /// [`LoraError::InvalidState`] if an adapter is already attached or merged; invalid `r`,
    /// `scaling` or `dropout` -> [`LoraError::InvalidConfig`].
    pub fn add_adapter(
        &mut self,
        r: usize,
        scaling: f64,
        dropout: f64,
        init: &InitLoraWeights,
        rng: &mut ForgeRng,
    ) -> Result<()> {
        self.check_new_adapter(r, scaling, dropout)?;
        let (out_f, in_f) = (self.out_features(), self.in_features());
        let dev = self.weight.var().device().clone();
        let dtype = self.weight.var().dtype();
        let bound_a = 1.0 / (in_f as f64).sqrt();
        let (a, b) = match init {
            InitLoraWeights::Named(s) if s == "gaussian" => (
                (randn(&[r, in_f], dtype, &dev, rng)? * (1.0 / r as f64))?,
                Tensor::zeros((out_f, r), dtype, &dev)?,
            ),
            InitLoraWeights::Bool(false) => {
                let bound_b = 1.0 / (r as f64).sqrt();
                (
                    rand_uniform(&[r, in_f], -bound_a, bound_a, dtype, &dev, rng)?,
                    rand_uniform(&[out_f, r], -bound_b, bound_b, dtype, &dev, rng)?,
                )
            }
            _ => (
                rand_uniform(&[r, in_f], -bound_a, bound_a, dtype, &dev, rng)?,
                Tensor::zeros((out_f, r), dtype, &dev)?,
            ),
        };
        self.adapter = Some(LoraAdapter {
            a: Param::new(&a, true)?,
            b: Param::new(&b, true)?,
            r,
            scaling,
            dropout,
        });
        Ok(())
    }

    /// Check, without allocating, that an adapter of rank `r` with `scaling` and `dropout` can be
    /// attached: no adapter yet, `0 < r <= max(in, out)` (a larger rank adds nothing, since
    /// `rank(B A) <= min(in, out)`, and only costs memory: this also stops absurd ranks such as
    /// 2^40 before any allocation), finite `scaling` of at most [`crate::MAX_SCALING`], dropout in
    /// \[0, 1).
    ///
    /// # Errors
    /// [`LoraError::InvalidState`] if an adapter is already attached; [`LoraError::InvalidConfig`]
    /// naming `r`, `lora_alpha` or `lora_dropout`.
    pub fn check_new_adapter(&self, r: usize, scaling: f64, dropout: f64) -> Result<()> {
        if self.adapter.is_some() {
            return Err(LoraError::InvalidState {
                module: "<layer>".into(),
                reason: "already has a LoRA adapter".into(),
            });
        }
        let (out_f, in_f) = (self.out_features(), self.in_features());
        if r == 0 || r > in_f.max(out_f) {
            return Err(LoraError::InvalidConfig {
                field: "r",
                reason: format!(
                    "rank must be in [1, max(in, out)] = [1, {}] for a [{out_f}, {in_f}] layer, got {r}",
                    in_f.max(out_f)
                ),
            });
        }
        if !(scaling.is_finite() && scaling.abs() <= crate::MAX_SCALING) {
            return Err(LoraError::InvalidConfig {
                field: "lora_alpha",
                reason: format!(
                    "scaling {scaling} is not finite or exceeds {}",
                    crate::MAX_SCALING
                ),
            });
        }
        if !(0.0..1.0).contains(&dropout) {
            return Err(LoraError::InvalidConfig {
                field: "lora_dropout",
                reason: format!("must be in [0, 1), got {dropout}"),
            });
        }
        Ok(())
    }

    /// Attach (or with `None` remove) a gated mixture of frozen adapters (LoRA-Flow), added to
    /// the output on top of the base layer and any own adapter. Returns the previous mixture.
    /// The mixture is not part of the layer's weights: [`LoraLinear::effective_weight`], merging
    /// and saving ignore it (its output depends on the input).
    ///
    /// # Errors
    /// [`LoraError::ShapeMismatch`] when an adapter's A is not `[r, in]` or its B not `[out, r]`.
    pub fn set_mixture(
        &mut self,
        mixture: Option<AdapterMixture>,
    ) -> Result<Option<AdapterMixture>> {
        if let Some(m) = &mixture {
            for (i, (a, b, _)) in m.adapters.iter().enumerate() {
                if a.dims()[1] != self.in_features() || b.dims()[0] != self.out_features() {
                    return Err(LoraError::ShapeMismatch {
                        tensor: format!("mixture adapter {i} (B A)"),
                        expected: vec![self.out_features(), self.in_features()],
                        got: vec![b.dims()[0], a.dims()[1]],
                    });
                }
            }
        }
        Ok(std::mem::replace(&mut self.mixture, mixture))
    }

    /// The attached adapter mixture, if any.
    pub fn mixture(&self) -> Option<&AdapterMixture> {
        self.mixture.as_ref()
    }

    /// The weight the layer computes with: `W + scaling * B A` when an adapter is attached and
    /// not merged, else `W`, detached. The layer is not changed; without an unmerged adapter the
    /// result shares storage with `W` (copy it to keep a snapshot). This is what PEFT's
    /// `merge_and_unload` leaves in the layer.
    ///
    /// # Errors
    /// Candle errors only.
    pub fn effective_weight(&self) -> Result<Tensor> {
        let w = self.weight.var().as_detached_tensor();
        match (&self.adapter, self.merged) {
            (Some(ad), false) => Ok((w + ad.delta_weight()?.detach())?),
            _ => Ok(w),
        }
    }

    /// Remove the adapter (unmerging it first if merged) and return it.
    ///
    /// # Errors
    /// Candle errors from unmerging.
    pub fn remove_adapter(&mut self) -> Result<Option<LoraAdapter>> {
        if self.merged {
            self.unmerge()?;
        }
        Ok(self.adapter.take())
    }

    /// Merge: `W <- W + scaling * B A`; the forward pass then skips the adapter branch.
    ///
    /// # Errors
    /// [`LoraError::InvalidState`] without an adapter or when already merged.
    pub fn merge(&mut self) -> Result<()> {
        let delta = self.checked_delta(false)?;
        let w = (self.weight.var().as_tensor() + delta)?;
        self.weight.var().set(&w)?;
        self.merged = true;
        Ok(())
    }

    /// Unmerge: `W <- W - scaling * B A` (exact up to float rounding, as PEFT).
    ///
    /// # Errors
    /// [`LoraError::InvalidState`] without an adapter or when not merged.
    pub fn unmerge(&mut self) -> Result<()> {
        let delta = self.checked_delta(true)?;
        let w = (self.weight.var().as_tensor() - delta)?;
        self.weight.var().set(&w)?;
        self.merged = false;
        Ok(())
    }

    fn checked_delta(&self, want_merged: bool) -> Result<Tensor> {
        let ad = self
            .adapter
            .as_ref()
            .ok_or_else(|| LoraError::InvalidState {
                module: "<layer>".into(),
                reason: "has no LoRA adapter".into(),
            })?;
        if self.merged != want_merged {
            return Err(LoraError::InvalidState {
                module: "<layer>".into(),
                reason: if want_merged {
                    "is not merged".into()
                } else {
                    "is already merged".into()
                },
            });
        }
        ad.delta_weight()
    }

    /// Forward with an explicit training flag (dropout on the adapter input when `train`).
    ///
    /// # Shapes
    /// `[..., in]` -> `[..., out]`.
    ///
    /// # Errors
    /// Candle shape errors when the last dimension is not `in`.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        let dims = x.dims().to_vec();
        let in_f = self.in_features();
        let out_f = self.out_features();
        let last = dims.last().copied().unwrap_or(0);
        if last != in_f {
            return Err(candle_core::Error::Msg(format!(
                "linear layer expects last dimension {in_f}, got input shape {dims:?}"
            )));
        }
        let n = x.elem_count() / in_f.max(1);
        // a reshape is a graph node (one more gradient accumulation in the backward pass) even
        // when it changes nothing, so 2-D inputs are taken as they are
        let x2 = if dims.len() == 2 {
            x.clone()
        } else {
            x.reshape((n, in_f))?
        };
        let w = self.weight.tensor();
        let fused = match &self.bias {
            Some(b) => crate::frozen::fused_linear(&x2, &w, &b.tensor())?,
            None => None,
        };
        let mut y = match fused {
            Some(y) => y,
            None => {
                let mut y = if self.weight.is_trainable() {
                    x2.matmul(&w.t()?)?
                } else {
                    crate::frozen::frozen_matmul_t(&x2, &w)?
                };
                if let Some(b) = &self.bias {
                    y = y.broadcast_add(&b.tensor())?;
                }
                y
            }
        };
        if let (Some(ad), false) = (&self.adapter, self.merged) {
            let xd = if train && ad.dropout > 0.0 {
                // seeded ([`crate::dropout::set_dropout_seed`]), unlike candle's
                crate::dropout::seeded_dropout(&x2, ad.dropout)?
            } else {
                x2.clone()
            };
            let z = crate::delta::lora_delta(&xd, &ad.a.tensor(), &ad.b.tensor(), ad.scaling)?;
            y = (y + z)?;
        }
        if let Some(mix) = &self.mixture {
            let w = (mix.gate)(&x2)?;
            if w.dims() != [n, mix.adapters.len()] {
                return Err(candle_core::Error::Msg(format!(
                    "adapter mixture gate returned shape {:?}, expected [{n}, {}]",
                    w.dims(),
                    mix.adapters.len()
                )));
            }
            for (i, (a, b, s)) in mix.adapters.iter().enumerate() {
                let z = x2.matmul(&a.t()?)?.matmul(&b.t()?)?;
                let wi = (w.narrow(1, i, 1)? * *s)?;
                y = (y + z.broadcast_mul(&wi)?)?;
            }
        }
        if dims.len() == 2 {
            return Ok(y);
        }
        let mut out_dims = dims;
        *out_dims.last_mut().expect("rank >= 1 checked above") = out_f;
        y.reshape(out_dims)
    }
}

impl DeepClone for LoraAdapter {
    fn try_clone_deep(&self) -> Result<Self> {
        Ok(Self {
            a: self.a.try_clone_deep()?,
            b: self.b.try_clone_deep()?,
            r: self.r,
            scaling: self.scaling,
            dropout: self.dropout,
        })
    }
}

impl DeepClone for LoraLinear {
    fn try_clone_deep(&self) -> Result<Self> {
        Ok(Self {
            weight: self.weight.try_clone_deep()?,
            bias: self.bias.try_clone_deep()?,
            adapter: self.adapter.try_clone_deep()?,
            // The mixture's adapters are constants and its gate is shared on purpose (one gate
            // per layer drives several linears).
            mixture: self.mixture.clone(),
            merged: self.merged,
            training: self.training,
        })
    }
}

impl candle_core::Module for LoraLinear {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.forward_t(x, self.training)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Module};

    fn layer() -> LoraLinear {
        let w = Tensor::new(&[[1.0f32, 2.0, 3.0], [4.0, 5.0, 6.0]], &Device::Cpu).unwrap();
        let b = Tensor::new(&[0.5f32, -0.5], &Device::Cpu).unwrap();
        LoraLinear::new(&w, Some(&b)).unwrap()
    }

    #[test]
    fn adapter_mixture_adds_the_gate_weighted_updates_and_trains_the_gate() {
        let dev = Device::Cpu;
        let mut l = layer();
        let x = Tensor::new(&[[1.0f32, 0.0, -1.0], [0.5, 2.0, 1.0]], &dev).unwrap();
        let a1 = Tensor::new(&[[1.0f32, 2.0, 0.0]], &dev).unwrap();
        let b1 = Tensor::new(&[[1.0f32], [-1.0]], &dev).unwrap();
        let a2 = Tensor::new(&[[0.0f32, 1.0, 1.0], [1.0, 0.0, 0.0]], &dev).unwrap();
        let b2 = Tensor::new(&[[2.0f32, 0.0], [0.0, 3.0]], &dev).unwrap();
        // A gate with a trainable logit per adapter (the same for every token).
        let logits = candle_core::Var::new(&[0.0f32, 1.0], &dev).unwrap();
        let lg = logits.clone();
        let gate: MixtureGate = Arc::new(move |x: &Tensor| {
            let n = x.dims()[0];
            let w = candle_nn::ops::softmax(lg.as_tensor(), 0)?;
            w.unsqueeze(0)?.broadcast_as((n, 2))?.contiguous()
        });
        let mix = AdapterMixture::new(
            vec![(a1.clone(), b1.clone(), 0.5), (a2.clone(), b2.clone(), 2.0)],
            gate,
        )
        .unwrap();
        assert!(l.set_mixture(Some(mix)).unwrap().is_none());
        let y = l.forward(&x).unwrap();
        let e = [1.0f64.exp(), 0.0f64.exp()];
        let (w1, w2) = (1.0 / (1.0 + e[0]), e[0] / (1.0 + e[0]));
        let d1 = (b1.matmul(&a1).unwrap() * (0.5 * w1)).unwrap();
        let d2 = (b2.matmul(&a2).unwrap() * (2.0 * w2)).unwrap();
        let w_eff = ((l.weight().tensor() + d1).unwrap() + d2).unwrap();
        let want = x
            .matmul(&w_eff.t().unwrap())
            .unwrap()
            .broadcast_add(&l.bias().unwrap().tensor())
            .unwrap();
        let diff = forge_linalg::ops::max_abs_diff(&y, &want).unwrap();
        assert!(diff < 1e-5, "{diff}");
        // Gradients reach the gate; the weights of the mixture are constants.
        let grads = y.sum_all().unwrap().backward().unwrap();
        let g = grads.get(logits.as_tensor()).expect("gate gradient");
        let gn: f32 = g.abs().unwrap().sum_all().unwrap().to_scalar().unwrap();
        assert!(gn > 0.0);
        // A mixture is not part of the weights, and a wrong shape is refused.
        let ew = l.effective_weight().unwrap();
        let base: Vec<Vec<f32>> = l.weight().tensor().to_vec2().unwrap();
        assert_eq!(ew.to_vec2::<f32>().unwrap(), base);
        let bad = AdapterMixture::new(
            vec![(Tensor::zeros((1, 4), DType::F32, &dev).unwrap(), b1, 1.0)],
            Arc::new(|x: &Tensor| Tensor::ones((x.dims()[0], 1), DType::F32, x.device())),
        )
        .unwrap();
        assert!(l.set_mixture(Some(bad)).is_err());
        assert!(AdapterMixture::new(vec![], Arc::new(|x: &Tensor| Ok(x.clone()))).is_err());
        assert!(l.set_mixture(None).unwrap().is_some());
    }

    #[test]
    fn base_forward_is_affine_map() {
        let l = layer();
        let x = Tensor::new(&[[1.0f32, 0.0, -1.0]], &Device::Cpu).unwrap();
        let y: Vec<Vec<f32>> = l.forward(&x).unwrap().to_vec2().unwrap();
        assert_eq!(y, vec![vec![-1.5, -2.5]]);
    }

    #[test]
    fn adapter_starts_as_noop_and_merge_roundtrips() {
        let mut l = layer();
        let mut rng = forge_linalg::seeded_rng(0);
        l.add_adapter(2, 4.0, 0.0, &InitLoraWeights::Bool(true), &mut rng)
            .unwrap();
        let bound = 1.0 / 3f32.sqrt();
        let a: Vec<Vec<f32>> = l.adapter().unwrap().a().tensor().to_vec2().unwrap();
        assert!(a.iter().flatten().all(|v| v.abs() <= bound && *v != 0.0));
        let x = Tensor::new(&[[[1.0f32, 0.0, -1.0], [0.3, 0.2, 0.1]]], &Device::Cpu).unwrap();
        let y0 = l.forward(&x).unwrap();
        // a hand-set B: delta = 4 * B A
        let b = Tensor::new(&[[1.0f32, 0.0], [0.0, -2.0]], &Device::Cpu).unwrap();
        l.adapter().unwrap().b().set("b", &b).unwrap();
        let y1 = l.forward(&x).unwrap();
        let a_t = l.adapter().unwrap().a().tensor();
        let want = (&y0
            + x.broadcast_matmul(&(b.matmul(&a_t).unwrap() * 4.0).unwrap().t().unwrap())
                .unwrap())
        .unwrap();
        let d = (y1.clone() - want)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(d < 1e-6, "{d}");
        l.merge().unwrap();
        assert!(matches!(l.merge(), Err(LoraError::InvalidState { .. })));
        let y2 = l.forward(&x).unwrap();
        let d = (y1 - y2)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(d < 1e-6, "{d}");
        l.unmerge().unwrap();
        let w: Vec<Vec<f32>> = l.weight().tensor().to_vec2().unwrap();
        assert!((w[1][2] - 6.0).abs() < 1e-6);
    }

    #[test]
    fn wrong_input_width_is_an_error() {
        let l = layer();
        let x = Tensor::zeros((2, 4), DType::F32, &Device::Cpu).unwrap();
        assert!(l.forward(&x).is_err());
        let bad_bias = Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap();
        let w = Tensor::zeros((2, 3), DType::F32, &Device::Cpu).unwrap();
        assert!(matches!(
            LoraLinear::new(&w, Some(&bad_bias)),
            Err(LoraError::ShapeMismatch { .. })
        ));
    }
}
