//! BaseModel operations for transfer learning (ULMFiT: Howard & Ruder 2018, "Universal Language
//! Model Fine-tuning for Text Classification", ACL): layer groups (embeddings, each block, the
//! head), freezing and unfreezing by group, layer surgery ([`replace_head`]) and the
//! [`TransferScheduler`]: gradual unfreezing from the top, one group per epoch, with
//! discriminative learning rates `lr / 2.6^depth`.
//!
//! Groups are read from the Hugging Face parameter names, so they work for every model whose
//! [`LoraModel::named_modules_mut`] uses them: `*embeddings.*` is the bottom group, `*.layer.{i}.*`
//! block `i`, everything else (pooler, `pre_classifier`, `classifier`) the head.

use crate::train::{is_no_decay, GroupPlan, ParamGroup, TrainConfig};
use crate::{ModelError, Result};
use candle_core::{DType, Var};
use forge_lora::{LoraLinear, LoraModel, ModuleMut};

/// ULMFiT's discriminative fine-tuning factor: each group below trains at `1 / 2.6` of the
/// rate of the group above (Howard & Ruder 2018, section 3.2).
pub const ULMFIT_DECAY: f64 = 2.6;

/// Hugging Face's `initializer_range` default: the std of a new head's normal initialisation.
pub const HF_INIT_STD: f64 = 0.02;

/// A layer group with the names of its parameters (base parameters and LoRA matrices).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerGroup {
    /// `"embeddings"`, `"layer.{i}"` or `"head"`.
    pub name: String,
    /// Full parameter names (`"bert.encoder.layer.0.attention.self.query.weight"`,
    /// `"...query.lora_A.weight"`).
    pub params: Vec<String>,
}

/// The group of a parameter name: 0 for embeddings, `1 + i` for block `i`, `usize::MAX` for the
/// head.
fn group_key(name: &str) -> usize {
    if name.contains("embeddings.") {
        return 0;
    }
    if let Some(pos) = name.find("layer.") {
        let rest = &name[pos + "layer.".len()..];
        if let Some(i) = rest.split('.').next().and_then(|s| s.parse::<usize>().ok()) {
            return 1 + i;
        }
    }
    usize::MAX
}

fn group_name(key: usize) -> String {
    match key {
        0 => "embeddings".into(),
        usize::MAX => "head".into(),
        k => format!("layer.{}", k - 1),
    }
}

/// Every parameter of a model (trainable or not) with its full name and a mutable handle, in
/// module order: base parameters as `"<path>.<local>"`, adapters as `"<path>.lora_A.weight"`.
fn for_each_param<M: LoraModel + ?Sized>(
    model: &mut M,
    mut f: impl FnMut(&str, &mut forge_lora::Param),
) {
    for (path, m) in model.named_modules_mut() {
        match m {
            ModuleMut::Linear(l) => {
                if let Some(ad) = l.adapter_mut() {
                    f(&format!("{path}.lora_A.weight"), ad.a_mut());
                    f(&format!("{path}.lora_B.weight"), ad.b_mut());
                }
                for (local, p) in l.base_params_mut() {
                    f(&format!("{path}.{local}"), p);
                }
            }
            ModuleMut::Params(ps) => {
                for (local, p) in ps {
                    f(&format!("{path}.{local}"), p);
                }
            }
        }
    }
}

/// The layer groups of a model, bottom to top: embeddings, each block, the head (groups with no
/// parameter are left out).
pub fn layer_groups<M: LoraModel + ?Sized>(model: &mut M) -> Vec<LayerGroup> {
    let mut by_key: std::collections::BTreeMap<usize, Vec<String>> = Default::default();
    for_each_param(model, |n, _| {
        by_key.entry(group_key(n)).or_default().push(n.to_string())
    });
    by_key
        .into_iter()
        .map(|(k, params)| LayerGroup {
            name: group_name(k),
            params,
        })
        .collect()
}

/// Which parameters of a group [`set_group_trainable`] touches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Scope {
    /// Every parameter: base weights, biases, norms and adapters (full fine-tuning).
    #[default]
    All,
    /// Only LoRA matrices (A, B) where a linear has an adapter; other parameters of the group
    /// (e.g. a head without adapter) as `All`.
    Adapters,
}

/// Freeze (`trainable = false`) or unfreeze a layer group by name; returns how many parameters
/// changed.
///
/// # Errors
/// [`ModelError::InvalidInput`] (`what = "layer group"`) naming an unknown group and the known ones.
pub fn set_group_trainable<M: LoraModel + ?Sized>(
    model: &mut M,
    group: &str,
    trainable: bool,
    scope: Scope,
) -> Result<usize> {
    let names: Vec<String> = layer_groups(model).into_iter().map(|g| g.name).collect();
    if !names.iter().any(|n| n == group) {
        return Err(ModelError::InvalidInput {
            what: "layer group",
            reason: format!("unknown group {group:?}; the model has {names:?}"),
        });
    }
    let adapted: std::collections::HashSet<String> = forge_lora::named_linears_mut(model)
        .into_iter()
        .filter(|(_, l)| l.adapter().is_some())
        .map(|(p, _)| p)
        .collect();
    let mut n = 0;
    for_each_param(model, |name, p| {
        if group_name(group_key(name)) != group {
            return;
        }
        let is_adapter = name.ends_with(".lora_A.weight") || name.ends_with(".lora_B.weight");
        let module = name.rsplit_once('.').map_or("", |(m, _)| m);
        let in_adapted = adapted.contains(module);
        if scope == Scope::Adapters && !is_adapter && in_adapted {
            return;
        }
        if p.is_trainable() != trainable {
            p.set_trainable(trainable);
            n += 1;
        }
    });
    Ok(n)
}

/// Freeze every parameter of the model (base and adapters).
pub fn freeze_all<M: LoraModel + ?Sized>(model: &mut M) {
    for_each_param(model, |_, p| p.set_trainable(false));
}

/// Replace the classification head (the linear layer named `classifier`) by a new one with
/// `num_labels` outputs, initialised as transformers does (`normal(0, std)` weights with a
/// seeded RNG, zero bias; `std` is the config's `initializer_range`, [`HF_INIT_STD`] by
/// default); the backbone is kept. Returns the old head, so that it can be re-attached with
/// [`set_head`] (e.g. to measure retention on the first task).
///
/// # Errors
/// [`ModelError::InvalidInput`] when `num_labels == 0`, `std` is not finite and > 0, or the model
/// has no linear layer named `classifier`.
pub fn replace_head<M: LoraModel + ?Sized>(
    model: &mut M,
    num_labels: usize,
    std: f64,
    seed: u64,
) -> Result<LoraLinear> {
    if num_labels == 0 || !(std.is_finite() && std > 0.0) {
        return Err(ModelError::InvalidInput {
            what: "num_labels",
            reason: format!(
                "a new head needs num_labels >= 1 and std > 0, got {num_labels} and {std}"
            ),
        });
    }
    let head = classifier_mut(model)?;
    let dev = head.weight().var().device().clone();
    let in_f = head.in_features();
    let w = (forge_linalg::rng::randn(
        &[num_labels, in_f],
        DType::F32,
        &dev,
        &mut forge_linalg::seeded_rng(seed),
    )? * std)?;
    let b = candle_core::Tensor::zeros(num_labels, DType::F32, &dev)?;
    let new = LoraLinear::new(&w, Some(&b))?;
    Ok(std::mem::replace(head, new))
}

/// Put `head` in place of the model's `classifier`; returns the head it replaces.
///
/// # Errors
/// [`ModelError::InvalidInput`] when the model has no `classifier` or `head` takes a different
/// input width.
pub fn set_head<M: LoraModel + ?Sized>(model: &mut M, head: LoraLinear) -> Result<LoraLinear> {
    let cur = classifier_mut(model)?;
    if cur.in_features() != head.in_features() {
        return Err(ModelError::InvalidInput {
            what: "head",
            reason: format!(
                "the model's classifier takes {} inputs, the new head {}",
                cur.in_features(),
                head.in_features()
            ),
        });
    }
    Ok(std::mem::replace(cur, head))
}

fn classifier_mut<M: LoraModel + ?Sized>(model: &mut M) -> Result<&mut LoraLinear> {
    forge_lora::named_linears_mut(model)
        .into_iter()
        .find(|(p, _)| p == "classifier" || p.ends_with(".classifier"))
        .map(|(_, l)| l)
        .ok_or(ModelError::InvalidInput {
            what: "head",
            reason: "the model has no linear layer named \"classifier\"".into(),
        })
}

/// Gradual unfreezing with discriminative learning rates (Howard & Ruder 2018, sections 3.2 and
/// 3.3): at epoch `e` the top `e + 1` layer groups train (the head first, then the last block,
/// ... down to the embeddings), the group at depth `d` from the top at `lr / decay^d`
/// (`decay` = [`ULMFIT_DECAY`] by default), weight decay as Hugging Face (none on biases and
/// layer-norm weights). Once every group is unfrozen it stays so.
#[derive(Clone, Debug)]
pub struct TransferScheduler {
    /// Base learning rate of the top group (the head).
    pub lr: f64,
    /// Factor between consecutive groups' learning rates.
    pub decay: f64,
    /// Weight decay of the decayed parameters.
    pub weight_decay: f64,
    /// Groups unfrozen at epoch 0 (1 in ULMFiT: the head only).
    pub initial_groups: usize,
    /// Groups unfrozen per epoch after the first (1 in ULMFiT).
    pub groups_per_epoch: usize,
    /// What unfreezing touches (full fine-tuning or adapters only).
    pub scope: Scope,
}

impl TransferScheduler {
    /// ULMFiT's schedule: top group first, one more per epoch, `lr / 2.6^depth`.
    pub fn ulmfit(lr: f64, weight_decay: f64) -> Self {
        Self {
            lr,
            decay: ULMFIT_DECAY,
            weight_decay,
            initial_groups: 1,
            groups_per_epoch: 1,
            scope: Scope::All,
        }
    }

    /// All groups trainable from the start, still with discriminative learning rates.
    pub fn discriminative_only(lr: f64, weight_decay: f64) -> Self {
        Self {
            initial_groups: usize::MAX,
            ..Self::ulmfit(lr, weight_decay)
        }
    }

    /// How many groups (from the top) train at `epoch`.
    pub fn unfrozen_at(&self, epoch: usize, n_groups: usize) -> usize {
        self.initial_groups
            .saturating_add(epoch.saturating_mul(self.groups_per_epoch))
            .min(n_groups)
    }

    /// Learning rate of the group at `depth` from the top (0 = head).
    pub fn lr_at_depth(&self, depth: usize) -> f64 {
        self.lr / self.decay.powi(depth as i32)
    }

    /// Apply the schedule for `epoch`: freeze every group, unfreeze the top ones, and return
    /// one optimizer group per (layer group, decay / no decay) with its learning rate, top first.
    ///
    /// # Errors
    /// [`ModelError::TrainConfig`] for a non-positive `lr` / `decay` or zero `initial_groups`.
    pub fn apply<M: LoraModel + ?Sized>(
        &self,
        model: &mut M,
        epoch: usize,
    ) -> Result<Vec<ParamGroup>> {
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(ModelError::TrainConfig {
                field: "learning_rate",
                reason: format!("must be finite and > 0, got {}", self.lr),
            });
        }
        if !(self.decay.is_finite() && self.decay >= 1.0) {
            return Err(ModelError::TrainConfig {
                field: "decay",
                reason: format!(
                    "the discriminative factor must be finite and >= 1, got {}",
                    self.decay
                ),
            });
        }
        if self.initial_groups == 0 {
            return Err(ModelError::TrainConfig {
                field: "initial_groups",
                reason: "must be >= 1, got 0".into(),
            });
        }
        let groups = layer_groups(model);
        let k = self.unfrozen_at(epoch, groups.len());
        freeze_all(model);
        for g in groups.iter().rev().take(k) {
            set_group_trainable(model, &g.name, true, self.scope)?;
        }
        let named: std::collections::HashMap<String, Var> =
            forge_lora::named_trainable(model).into_iter().collect();
        let mut out = Vec::new();
        for (depth, g) in groups.iter().rev().take(k).enumerate() {
            let lr = self.lr_at_depth(depth);
            for (suffix, wd, no_decay) in [("", self.weight_decay, false), ("/no_decay", 0.0, true)]
            {
                let (names, vars): (Vec<String>, Vec<Var>) = g
                    .params
                    .iter()
                    .filter(|n| is_no_decay(n) == no_decay)
                    .filter_map(|n| named.get(n).map(|v| (n.clone(), v.clone())))
                    .unzip();
                if !vars.is_empty() {
                    out.push(ParamGroup {
                        name: format!("{}{suffix}", g.name),
                        names,
                        vars,
                        lr,
                        weight_decay: wd,
                    });
                }
            }
        }
        Ok(out)
    }
}

impl<M: LoraModel + ?Sized> GroupPlan<M> for TransferScheduler {
    fn groups(
        &mut self,
        model: &mut M,
        epoch: usize,
        _config: &TrainConfig,
    ) -> Result<Option<Vec<ParamGroup>>> {
        self.apply(model, epoch).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_keys() {
        assert_eq!(group_key("bert.embeddings.LayerNorm.weight"), 0);
        assert_eq!(group_key("bert.encoder.layer.3.output.dense.weight"), 4);
        assert_eq!(
            group_key("distilbert.transformer.layer.0.sa_layer_norm.bias"),
            1
        );
        assert_eq!(group_key("bert.pooler.dense.weight"), usize::MAX);
        assert_eq!(group_key("classifier.weight"), usize::MAX);
        assert_eq!(group_name(4), "layer.3");
    }
}
