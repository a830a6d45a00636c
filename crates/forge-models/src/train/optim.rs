//! Parameter groups, gradient clipping and AdamW as an in-place update over contiguous storage.
//!
//! candle's own `AdamW` is a chain of about ten tensor ops per parameter (fresh buffers each
//! time: ~1 s per step on 67M parameters, see FIELD-NOTES); here the update of a parameter, its
//! first and second moments is one pass over its `f32` storage.

use crate::kernels::multiversion;
use crate::{ModelError, Result};
use candle_core::backprop::GradStore;
use candle_core::{CpuStorage, DType, InplaceOp2, Layout, Tensor, TensorId, Var};
use forge_lora::LoraModel;
use rayon::prelude::*;
use std::cell::RefCell;
use std::collections::HashMap;

/// One optimizer parameter group: its own learning rate and weight decay.
#[derive(Clone, Debug)]
pub struct ParamGroup {
    /// Group name (for logs: `"decay"`, `"no_decay"`, `"lora_B"`, `"layer.3"`...).
    pub name: String,
    /// Parameter names, one per var (Hugging Face / PEFT names).
    pub names: Vec<String>,
    /// The parameters.
    pub vars: Vec<Var>,
    /// Base learning rate (multiplied by the schedule's factor).
    pub lr: f64,
    /// Decoupled weight decay.
    pub weight_decay: f64,
}

/// Whether Hugging Face's Trainer exempts a parameter from weight decay: biases and the
/// parameters of layer-norm modules (`LayerNorm`, `sa_layer_norm`, `output_layer_norm`...).
pub fn is_no_decay(name: &str) -> bool {
    let module = name.rsplit_once('.').map_or("", |(m, _)| m);
    let last = module.rsplit('.').next().unwrap_or("").to_ascii_lowercase();
    name.ends_with("bias") || last.contains("layernorm") || last.contains("layer_norm")
}

/// Split named parameters into a `"decay"` group (weight decay `weight_decay`) and a
/// `"no_decay"` group (biases and layer-norm weights, decay 0), both at `lr`. Empty groups are
/// left out.
pub fn decay_groups(named: Vec<(String, Var)>, lr: f64, weight_decay: f64) -> Vec<ParamGroup> {
    let mut decay = ParamGroup {
        name: "decay".into(),
        names: vec![],
        vars: vec![],
        lr,
        weight_decay,
    };
    let mut no_decay = ParamGroup {
        name: "no_decay".into(),
        names: vec![],
        vars: vec![],
        lr,
        weight_decay: 0.0,
    };
    for (n, v) in named {
        let g = if is_no_decay(&n) {
            &mut no_decay
        } else {
            &mut decay
        };
        g.names.push(n);
        g.vars.push(v);
    }
    [decay, no_decay]
        .into_iter()
        .filter(|g| !g.vars.is_empty())
        .collect()
}

/// The default groups of a model: every trainable parameter at `lr`, split by
/// [`decay_groups`].
pub fn default_groups<M: LoraModel + ?Sized>(
    model: &mut M,
    lr: f64,
    weight_decay: f64,
) -> Vec<ParamGroup> {
    decay_groups(forge_lora::named_trainable(model), lr, weight_decay)
}

/// LoRA+ groups (Hayou, Ghosh & Yu 2024) from [`forge_lora::lora_plus_groups`]: B matrices at
/// `ratio * lr`, the rest at `lr`; each is split by [`is_no_decay`].
///
/// # Errors
/// [`ModelError::Lora`] for a non-positive `lr` or `ratio`.
pub fn lora_plus_param_groups<M: LoraModel + ?Sized>(
    model: &mut M,
    lr: f64,
    ratio: f64,
    weight_decay: f64,
) -> Result<Vec<ParamGroup>> {
    let names: HashMap<TensorId, String> = forge_lora::named_trainable(model)
        .into_iter()
        .map(|(n, v)| (v.id(), n))
        .collect();
    let mut out = Vec::new();
    for g in forge_lora::lora_plus_groups(model, lr, ratio)? {
        let named = g
            .vars
            .into_iter()
            .map(|v| (names.get(&v.id()).cloned().unwrap_or_default(), v))
            .collect();
        for mut sub in decay_groups(named, g.lr, weight_decay) {
            sub.name = format!("{}/{}", g.name, sub.name);
            out.push(sub);
        }
    }
    Ok(out)
}

/// AdamW's constants (defaults as `torch.optim.AdamW`: 0.9, 0.999, 1e-8).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamWParams {
    /// First-moment decay.
    pub beta1: f64,
    /// Second-moment decay.
    pub beta2: f64,
    /// Denominator epsilon.
    pub eps: f64,
}

impl Default for AdamWParams {
    fn default() -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        }
    }
}

enum Moments {
    /// f32 parameters on the CPU: updated in place.
    Cpu { m: Vec<f32>, v: Vec<f32> },
    /// Anything else: tensor ops.
    Tensor { m: Tensor, v: Tensor },
}

struct State {
    step: u64,
    moments: Moments,
}

/// AdamW (Loshchilov & Hutter 2019, "Decoupled Weight Decay Regularization") with parameter
/// groups, exactly as `torch.optim.AdamW` (non-amsgrad, non-fused): for each parameter with a
/// gradient `g`, at its step `t` (counted per parameter; a parameter without a gradient is
/// skipped and keeps its state),
///
/// ```text
/// theta <- theta * (1 - lr * wd)
/// m <- b1 m + (1 - b1) g;   v <- b2 v + (1 - b2) g^2
/// theta <- theta - (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
/// ```
///
/// with `lr = group lr * schedule factor`. f32 parameters on the CPU are updated in place in one
/// pass; other devices and dtypes use tensor ops.
pub struct AdamW {
    groups: Vec<ParamGroup>,
    params: AdamWParams,
    state: HashMap<TensorId, State>,
}

impl AdamW {
    /// A new optimizer over `groups`.
    ///
    /// # Errors
    /// [`ModelError::TrainConfig`] for a non-finite or negative lr / weight decay, or betas
    /// outside [0, 1), or eps <= 0.
    pub fn new(groups: Vec<ParamGroup>, params: AdamWParams) -> Result<Self> {
        for (field, b) in [("adam_beta1", params.beta1), ("adam_beta2", params.beta2)] {
            if !(0.0..1.0).contains(&b) {
                return Err(ModelError::TrainConfig {
                    field,
                    reason: format!("must be in [0, 1), got {b}"),
                });
            }
        }
        if !(params.eps.is_finite() && params.eps > 0.0) {
            return Err(ModelError::TrainConfig {
                field: "adam_epsilon",
                reason: format!("must be finite and > 0, got {}", params.eps),
            });
        }
        let mut o = Self {
            groups: vec![],
            params,
            state: HashMap::new(),
        };
        o.set_groups(groups)?;
        Ok(o)
    }

    /// Replace the groups (e.g. when a layer group is unfrozen); the moments of parameters that
    /// stay are kept, those of parameters that leave are dropped.
    ///
    /// # Errors
    /// [`ModelError::TrainConfig`] for a bad lr or weight decay, naming the group.
    pub fn set_groups(&mut self, groups: Vec<ParamGroup>) -> Result<()> {
        for g in &groups {
            if !(g.lr.is_finite() && g.lr >= 0.0) {
                return Err(ModelError::TrainConfig {
                    field: "learning_rate",
                    reason: format!("group {:?}: must be finite and >= 0, got {}", g.name, g.lr),
                });
            }
            if !(g.weight_decay.is_finite() && g.weight_decay >= 0.0) {
                return Err(ModelError::TrainConfig {
                    field: "weight_decay",
                    reason: format!(
                        "group {:?}: must be finite and >= 0, got {}",
                        g.name, g.weight_decay
                    ),
                });
            }
        }
        let keep: std::collections::HashSet<TensorId> = groups
            .iter()
            .flat_map(|g| g.vars.iter().map(|v| v.id()))
            .collect();
        self.state.retain(|id, _| keep.contains(id));
        self.groups = groups;
        Ok(())
    }

    /// The groups.
    pub fn groups(&self) -> &[ParamGroup] {
        &self.groups
    }

    /// Every parameter of every group.
    pub fn vars(&self) -> Vec<Var> {
        self.groups.iter().flat_map(|g| g.vars.clone()).collect()
    }

    /// One update with learning rates `group.lr * lr_factor`. Parameters absent from `grads`
    /// are skipped. Returns how many parameters were updated.
    ///
    /// # Errors
    /// [`ModelError::Diverged`] if a gradient holds NaN or infinity (nothing is updated then
    /// for that parameter and the ones after it); candle errors.
    pub fn step(&mut self, grads: &GradStore, lr_factor: f64) -> Result<usize> {
        let mut n = 0;
        let (b1, b2, eps) = (self.params.beta1, self.params.beta2, self.params.eps);
        for g in &self.groups {
            let lr = g.lr * lr_factor;
            for (k, var) in g.vars.iter().enumerate() {
                let Some(grad) = grads.get(var) else { continue };
                let st = match self.state.entry(var.id()) {
                    std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                    std::collections::hash_map::Entry::Vacant(e) => e.insert(State {
                        step: 0,
                        moments: new_moments(var)?,
                    }),
                };
                st.step += 1;
                let t = st.step as i32;
                let bc1 = 1.0 - b1.powi(t);
                let bc2 = 1.0 - b2.powi(t);
                let c = Coeffs {
                    decay: 1.0 - lr * g.weight_decay,
                    b1,
                    b2,
                    step_size: lr / bc1,
                    bc2_sqrt: bc2.sqrt(),
                    eps,
                };
                let name = g.names.get(k).map_or("?", String::as_str);
                match &mut st.moments {
                    Moments::Cpu { m, v } => {
                        let grad = grad.contiguous()?;
                        let op = InPlaceAdamW {
                            m: RefCell::new(m),
                            v: RefCell::new(v),
                            c,
                            non_finite: RefCell::new(false),
                        };
                        var.as_tensor().inplace_op2(&grad, &op)?;
                        if *op.non_finite.borrow() {
                            return Err(ModelError::Diverged {
                                what: format!("gradient of {name}"),
                            });
                        }
                    }
                    Moments::Tensor { m, v } => {
                        tensor_update(var, grad, m, v, &c)?;
                    }
                }
                n += 1;
            }
        }
        Ok(n)
    }
}

fn new_moments(var: &Var) -> Result<Moments> {
    let cpu_f32 = var.device().is_cpu() && var.dtype() == DType::F32 && var.is_contiguous();
    Ok(if cpu_f32 {
        let n = var.elem_count();
        Moments::Cpu {
            m: vec![0.0; n],
            v: vec![0.0; n],
        }
    } else {
        let z = var.zeros_like()?;
        Moments::Tensor { m: z.clone(), v: z }
    })
}

#[derive(Clone, Copy)]
struct Coeffs {
    decay: f64,
    b1: f64,
    b2: f64,
    step_size: f64,
    bc2_sqrt: f64,
    eps: f64,
}

/// Entries per parallel task of the in-place update.
const CHUNK: usize = 64 * 1024;

struct InPlaceAdamW<'a> {
    m: RefCell<&'a mut Vec<f32>>,
    v: RefCell<&'a mut Vec<f32>>,
    c: Coeffs,
    non_finite: RefCell<bool>,
}

impl InplaceOp2 for InPlaceAdamW<'_> {
    fn name(&self) -> &'static str {
        "forge-adamw"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<()> {
        let (Some((p0, p1)), Some((g0, g1))) = (l1.contiguous_offsets(), l2.contiguous_offsets())
        else {
            candle_core::bail!("forge-adamw: parameter and gradient must be contiguous")
        };
        let (CpuStorage::F32(p), CpuStorage::F32(g)) = (s1, s2) else {
            candle_core::bail!("forge-adamw: f32 parameter and gradient expected")
        };
        let (p, g) = (&mut p[p0..p1], &g[g0..g1]);
        let mut m = self.m.borrow_mut();
        let mut v = self.v.borrow_mut();
        if p.len() != g.len() || p.len() != m.len() {
            candle_core::bail!(
                "forge-adamw: sizes differ (param {}, grad {}, state {})",
                p.len(),
                g.len(),
                m.len()
            )
        }
        if g.par_chunks(CHUNK).any(has_non_finite) {
            *self.non_finite.borrow_mut() = true;
            return Ok(());
        }
        // f32 arithmetic, as torch's f32 kernels; the scalar coefficients are computed in f64
        // and rounded once, as torch does with Python floats.
        let c = self.c;
        let decay = c.decay as f32;
        let (b1, b2) = (c.b1 as f32, c.b2 as f32);
        let (ob1, ob2) = ((1.0 - c.b1) as f32, (1.0 - c.b2) as f32);
        let step_size = c.step_size as f32;
        let bc2_sqrt = c.bc2_sqrt as f32;
        let eps = c.eps as f32;
        // memory-bound: the chunks are spread over rayon's threads (same arithmetic per entry)
        p.par_chunks_mut(CHUNK)
            .zip(g.par_chunks(CHUNK))
            .zip(m.par_chunks_mut(CHUNK))
            .zip(v.par_chunks_mut(CHUNK))
            .for_each(|(((p, g), m), v)| {
                adamw_chunk(
                    p,
                    g,
                    m,
                    v,
                    [decay, b1, b2, ob1, ob2, step_size, bc2_sqrt, eps],
                )
            });
        Ok(())
    }
}

multiversion! {
    /// One chunk of the in-place AdamW update; `k` = decay, b1, b2, 1 - b1, 1 - b2, step size,
    /// sqrt(bias correction 2), eps. Compiled per instruction set (the same IEEE operations in
    /// the same order on each, without contraction into FMAs: identical results).
    fn adamw_chunk(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], k: [f32; 8]) {
        let [decay, b1, b2, ob1, ob2, step_size, bc2_sqrt, eps] = k;
        for (((pi, &gi), mi), vi) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
            *pi *= decay;
            *mi = b1 * *mi + ob1 * gi;
            *vi = b2 * *vi + ob2 * gi * gi;
            let denom = vi.sqrt() / bc2_sqrt + eps;
            *pi -= step_size * (*mi / denom);
        }
    }
}

multiversion! {
    /// Whether `x` holds an infinity or a NaN: `x * 0` is (+-)0 for a finite value and NaN
    /// otherwise, summed over 16 lanes so that the loop vectorises (no early exit).
    fn has_non_finite(x: &[f32]) -> bool {
        let mut acc = [0f32; 16];
        let mut chunks = x.chunks_exact(16);
        for c in &mut chunks {
            for (a, &v) in acc.iter_mut().zip(c) {
                *a += v * 0.0;
            }
        }
        let tail = chunks.remainder().iter().fold(0f32, |a, &v| a + v * 0.0);
        acc.iter().fold(tail, |a, &v| a + v).is_nan()
    }
}

fn tensor_update(
    var: &Var,
    grad: &Tensor,
    m: &mut Tensor,
    v: &mut Tensor,
    c: &Coeffs,
) -> Result<()> {
    let grad = grad.to_dtype(var.dtype())?;
    let finite = grad
        .sqr()?
        .sum_all()?
        .to_dtype(DType::F64)?
        .to_scalar::<f64>()?;
    if !finite.is_finite() {
        return Err(ModelError::Diverged {
            what: "gradient".into(),
        });
    }
    *m = ((&*m * c.b1)? + (&grad * (1.0 - c.b1))?)?;
    *v = ((&*v * c.b2)? + (grad.sqr()? * (1.0 - c.b2))?)?;
    let denom = ((v.sqrt()? / c.bc2_sqrt)? + c.eps)?;
    let theta = ((var.as_tensor() * c.decay)? - ((&*m / denom)? * c.step_size)?)?;
    var.set(&theta)?;
    Ok(())
}

/// The global L2 norm of the gradients of `vars` (those present in `grads`).
///
/// # Errors
/// Candle errors only.
pub fn grad_norm(grads: &GradStore, vars: &[Var]) -> Result<f64> {
    let mut sq = 0.0f64;
    for v in vars {
        if let Some(g) = grads.get(v) {
            // per-tensor sums in the tensor's dtype (as torch's per-tensor norms), total in f64
            sq += g
                .sqr()?
                .sum_all()?
                .to_dtype(DType::F64)?
                .to_scalar::<f64>()?;
        }
    }
    Ok(sq.sqrt())
}

/// Clip gradients to a global L2 norm as `torch.nn.utils.clip_grad_norm_`: every gradient is
/// multiplied by `min(1, max_norm / (norm + 1e-6))`. Returns the norm before clipping.
///
/// # Errors
/// [`ModelError::Diverged`] when the norm is NaN or infinite; candle errors.
pub fn clip_grad_norm(grads: &mut GradStore, vars: &[Var], max_norm: f64) -> Result<f64> {
    let norm = grad_norm(grads, vars)?;
    if !norm.is_finite() {
        return Err(ModelError::Diverged {
            what: format!("gradient norm ({norm})"),
        });
    }
    let coef = max_norm / (norm + 1e-6);
    if coef < 1.0 {
        for v in vars {
            if let Some(g) = grads.remove(v) {
                grads.insert(v, (g * coef)?);
            }
        }
    }
    Ok(norm)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn non_finite_values_are_found_anywhere() {
        assert!(!has_non_finite(&[]));
        for len in [1usize, 15, 16, 17, 40] {
            let base: Vec<f32> = (0..len).map(|i| i as f32 * 8e36 - 1.6e38).collect();
            assert!(!has_non_finite(&base), "{len}");
            for at in 0..len {
                for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
                    let mut x = base.clone();
                    x[at] = bad;
                    assert!(has_non_finite(&x), "{len} {at} {bad}");
                }
            }
        }
        assert!(!has_non_finite(&[
            f32::MAX,
            f32::MIN,
            f32::MIN_POSITIVE,
            -0.0
        ]));
    }

    #[test]
    fn no_decay_names_follow_hugging_face() {
        assert!(is_no_decay("bert.embeddings.LayerNorm.weight"));
        assert!(is_no_decay(
            "distilbert.transformer.layer.0.sa_layer_norm.weight"
        ));
        assert!(is_no_decay("classifier.bias"));
        assert!(!is_no_decay(
            "bert.encoder.layer.0.attention.self.query.weight"
        ));
        assert!(!is_no_decay("bert.embeddings.word_embeddings.weight"));
        assert!(!is_no_decay(
            "bert.encoder.layer.0.attention.self.query.lora_A.weight"
        ));
    }

    #[test]
    fn cpu_and_tensor_paths_agree() {
        // f32 on the CPU goes in place; f64 takes the tensor path: same numbers
        let dev = Device::Cpu;
        let w32 = Var::from_tensor(&Tensor::new(&[0.5f32, -1.0, 2.0], &dev).unwrap()).unwrap();
        let w64 = Var::from_tensor(&Tensor::new(&[0.5f64, -1.0, 2.0], &dev).unwrap()).unwrap();
        let group = |v: &Var| ParamGroup {
            name: "g".into(),
            names: vec!["w".into()],
            vars: vec![v.clone()],
            lr: 0.1,
            weight_decay: 0.01,
        };
        let mut o32 = AdamW::new(vec![group(&w32)], AdamWParams::default()).unwrap();
        let mut o64 = AdamW::new(vec![group(&w64)], AdamWParams::default()).unwrap();
        for _ in 0..3 {
            let g32 = (w32.as_tensor().sqr().unwrap().sum_all().unwrap())
                .backward()
                .unwrap();
            let g64 = (w64.as_tensor().sqr().unwrap().sum_all().unwrap())
                .backward()
                .unwrap();
            o32.step(&g32, 1.0).unwrap();
            o64.step(&g64, 1.0).unwrap();
        }
        let a = w32.as_tensor().to_vec1::<f32>().unwrap();
        let b = w64.as_tensor().to_vec1::<f64>().unwrap();
        for (x, y) in a.iter().zip(&b) {
            assert!((*x as f64 - y).abs() < 1e-6, "{x} vs {y}");
        }
    }

    #[test]
    fn clipping_scales_to_the_max_norm() {
        let dev = Device::Cpu;
        let w = Var::from_tensor(&Tensor::new(&[3.0f32, 4.0], &dev).unwrap()).unwrap();
        // d/dw (w . w) / 2 = w, norm 5
        let mut g = (w.as_tensor().sqr().unwrap().sum_all().unwrap() * 0.5)
            .unwrap()
            .backward()
            .unwrap();
        let n = clip_grad_norm(&mut g, std::slice::from_ref(&w), 1.0).unwrap();
        assert!((n - 5.0).abs() < 1e-6);
        let after = grad_norm(&g, &[w]).unwrap();
        assert!((after - 1.0).abs() < 1e-5, "{after}");
    }
}
