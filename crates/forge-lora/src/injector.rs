//! [`LoraInjector`] and model-level LoRA operations: freeze, count, LoRA+ groups, merge.

use crate::config::name_matches;
use crate::model::{named_base_params_mut, named_linears_mut, ModuleMut};
use crate::{LoraConfig, LoraError, LoraModel, Result};
use candle_core::{Tensor, Var};

/// What [`LoraInjector::inject`] did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Injection {
    /// Paths of the linear layers that received an adapter, in model order.
    pub adapted: Vec<String>,
    /// Paths of the modules trained in full (`modules_to_save` that exist in the model).
    pub modules_to_save: Vec<String>,
}

/// Injects LoRA adapters into a [`LoraModel`] by module name, PEFT-style.
///
/// Target rule (PEFT): a linear layer at path `p` is adapted if, for some target name `t`,
/// `p == t` or `p` ends with `"." + t`; `"all-linear"` selects every linear layer. Modules listed
/// in `modules_to_save` are never adapted but trained in full. After injection the base is frozen:
/// only adapters and `modules_to_save` are trainable.
#[derive(Clone, Debug)]
pub struct LoraInjector {
    config: LoraConfig,
    seed: u64,
}

impl LoraInjector {
    /// An injector for a validated config (seed 0 for the adapters' initialisation).
    ///
    /// # Errors
    /// As [`LoraConfig::validate`].
    pub fn new(config: LoraConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self { config, seed: 0 })
    }

    /// Seed of the Kaiming-uniform initialisation of A.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// The config.
    pub fn config(&self) -> &LoraConfig {
        &self.config
    }

    /// The linear layers the config targets, in model order.
    ///
    /// # Errors
    /// [`LoraError::TargetNotFound`] naming the first target that matches no linear layer.
    pub fn resolve_targets<M: LoraModel + ?Sized>(&self, model: &mut M) -> Result<Vec<String>> {
        let arch = model.architecture();
        let paths: Vec<String> = named_linears_mut(model)
            .into_iter()
            .map(|(p, _)| p)
            .collect();
        let candidates: Vec<&String> = paths
            .iter()
            .filter(|p| !self.config.is_module_to_save(p))
            .collect();
        let not_found = |t: &str| LoraError::TargetNotFound {
            target: t.to_string(),
            architecture: arch.clone(),
            example: paths.first().cloned().unwrap_or_default(),
        };
        let names: Vec<String> = match &self.config.target_modules {
            crate::TargetModules::Single(s) if s == "all-linear" => {
                if candidates.is_empty() {
                    return Err(not_found("all-linear"));
                }
                return Ok(candidates.into_iter().cloned().collect());
            }
            crate::TargetModules::Single(s) => vec![s.clone()],
            crate::TargetModules::Names(v) => v.clone(),
        };
        for t in &names {
            if !candidates.iter().any(|p| name_matches(p, t)) {
                return Err(not_found(t));
            }
        }
        Ok(candidates
            .into_iter()
            .filter(|p| names.iter().any(|t| name_matches(p, t)))
            .cloned()
            .collect())
    }

    /// Resolve the targets and check, without changing or allocating anything, that every
    /// targeted layer can take an adapter of this config (see
    /// [`crate::LoraLinear::check_new_adapter`]). Returns the target paths.
    ///
    /// # Errors
    /// As [`LoraInjector::resolve_targets`]; [`LoraError::InvalidState`] naming a layer that
    /// already has an adapter; [`LoraError::InvalidConfig`] for a rank too large for a layer.
    pub fn check_targets<M: LoraModel + ?Sized>(&self, model: &mut M) -> Result<Vec<String>> {
        let targets = self.resolve_targets(model)?;
        let scaling = self.config.scaling();
        for (path, lin) in named_linears_mut(model) {
            if targets.contains(&path) {
                lin.check_new_adapter(self.config.r, scaling, self.config.lora_dropout)
                    .map_err(|e| with_module(e, &path))?;
            }
        }
        Ok(targets)
    }

    /// Inject adapters (A Kaiming-uniform, B zero by default), freeze the base and unfreeze
    /// `modules_to_save`. All-or-nothing: every target is checked first
    /// ([`LoraInjector::check_targets`]), so an error leaves the model unchanged.
    ///
    /// # Errors
    /// [`LoraError::TargetNotFound`] when a target matches nothing; [`LoraError::InvalidState`]
    /// when a targeted layer already has an adapter; [`LoraError::InvalidConfig`] when the rank
    /// exceeds a targeted layer's `max(in, out)`.
    pub fn inject<M: LoraModel + ?Sized>(&self, model: &mut M) -> Result<Injection> {
        let targets = self.check_targets(model)?;
        freeze_base(model);
        let mut rng = forge_linalg::seeded_rng(self.seed);
        let scaling = self.config.scaling();
        let mut inj = Injection::default();
        for (path, lin) in named_linears_mut(model) {
            if targets.contains(&path) {
                lin.add_adapter(
                    self.config.r,
                    scaling,
                    self.config.lora_dropout,
                    &self.config.init_lora_weights,
                    &mut rng,
                )
                .map_err(|e| with_module(e, &path))?;
                inj.adapted.push(path);
            }
        }
        for (path, m) in model.named_modules_mut() {
            if !self.config.is_module_to_save(&path) {
                continue;
            }
            let params = match m {
                ModuleMut::Linear(l) => l.base_params_mut(),
                ModuleMut::Params(p) => p,
            };
            for (_, p) in params {
                p.set_trainable(true);
            }
            inj.modules_to_save.push(path);
        }
        tracing::debug!(
            adapted = inj.adapted.len(),
            saved = inj.modules_to_save.len(),
            "LoRA injected"
        );
        Ok(inj)
    }
}

/// Put the module path into a layer-level error.
fn with_module(e: LoraError, path: &str) -> LoraError {
    match e {
        LoraError::InvalidState { reason, .. } => LoraError::InvalidState {
            module: path.to_string(),
            reason,
        },
        LoraError::InvalidConfig { field, reason } => LoraError::InvalidConfig {
            field,
            reason: format!("{reason} (layer {path})"),
        },
        e => e,
    }
}

/// Freeze every base parameter (adapters keep their state).
pub fn freeze_base<M: LoraModel + ?Sized>(model: &mut M) {
    for (_, p) in named_base_params_mut(model) {
        p.set_trainable(false);
    }
}

/// Make every base parameter trainable (full fine-tuning).
pub fn unfreeze_base<M: LoraModel + ?Sized>(model: &mut M) {
    for (_, p) in named_base_params_mut(model) {
        p.set_trainable(true);
    }
}

/// Every trainable parameter with its name: base parameters as `"<path>.<local>"`, adapters as
/// `"<path>.lora_A.weight"` / `"<path>.lora_B.weight"`.
pub fn named_trainable<M: LoraModel + ?Sized>(model: &mut M) -> Vec<(String, Var)> {
    let mut out = Vec::new();
    for (path, m) in model.named_modules_mut() {
        match m {
            ModuleMut::Linear(l) => {
                if let Some(ad) = l.adapter() {
                    for (kind, p) in [("lora_A", ad.a()), ("lora_B", ad.b())] {
                        if p.is_trainable() {
                            out.push((format!("{path}.{kind}.weight"), p.var().clone()));
                        }
                    }
                }
                for (local, p) in l.base_params_mut() {
                    if p.is_trainable() {
                        out.push((format!("{path}.{local}"), p.var().clone()));
                    }
                }
            }
            ModuleMut::Params(ps) => {
                for (local, p) in ps {
                    if p.is_trainable() {
                        out.push((format!("{path}.{local}"), p.var().clone()));
                    }
                }
            }
        }
    }
    out
}

/// The trainable `Var`s (what an optimizer should update).
pub fn trainable_vars<M: LoraModel + ?Sized>(model: &mut M) -> Vec<Var> {
    named_trainable(model).into_iter().map(|(_, v)| v).collect()
}

/// Parameter counts of a model.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ParamCount {
    /// All parameters: base + adapters.
    pub total: usize,
    /// Trainable parameters.
    pub trainable: usize,
    /// LoRA adapter parameters (A and B), trainable or not.
    pub adapter: usize,
}

/// Count parameters (PEFT's `print_trainable_parameters`).
pub fn count_parameters<M: LoraModel + ?Sized>(model: &mut M) -> ParamCount {
    let mut c = ParamCount::default();
    for (_, m) in model.named_modules_mut() {
        let params = match m {
            ModuleMut::Linear(l) => {
                if let Some(ad) = l.adapter() {
                    c.adapter += ad.num_params();
                    c.total += ad.num_params();
                    c.trainable += [ad.a(), ad.b()]
                        .iter()
                        .filter(|p| p.is_trainable())
                        .map(|p| p.elem_count())
                        .sum::<usize>();
                }
                l.base_params_mut()
            }
            ModuleMut::Params(p) => p,
        };
        for (_, p) in params {
            c.total += p.elem_count();
            if p.is_trainable() {
                c.trainable += p.elem_count();
            }
        }
    }
    c
}

/// One optimizer parameter group.
#[derive(Clone, Debug)]
pub struct ParamGroup {
    /// Group name (`"lora_B"` or `"default"`).
    pub name: String,
    /// The parameters.
    pub vars: Vec<Var>,
    /// Learning rate of the group.
    pub lr: f64,
}

/// LoRA+ parameter groups (Hayou, Ghosh & Yu 2024, "LoRA+: Efficient Low Rank Adaptation of
/// Large Models"): every B matrix gets `lr_B = ratio * lr`, everything else trainable (A matrices,
/// `modules_to_save`) gets `lr`. The paper recommends `ratio` around 16.
///
/// # Errors
/// [`LoraError::InvalidConfig`] for a non-positive or non-finite `lr` or `ratio`.
pub fn lora_plus_groups<M: LoraModel + ?Sized>(
    model: &mut M,
    lr: f64,
    ratio: f64,
) -> Result<Vec<ParamGroup>> {
    if !(lr.is_finite() && lr > 0.0) {
        return Err(LoraError::InvalidConfig {
            field: "lr",
            reason: format!("must be finite and > 0, got {lr}"),
        });
    }
    if !(ratio.is_finite() && ratio > 0.0) {
        return Err(LoraError::InvalidConfig {
            field: "loraplus_lr_ratio",
            reason: format!("must be finite and > 0, got {ratio}"),
        });
    }
    let (b, rest): (Vec<_>, Vec<_>) = named_trainable(model)
        .into_iter()
        .partition(|(n, _)| n.ends_with(".lora_B.weight"));
    Ok(vec![
        ParamGroup {
            name: "default".into(),
            vars: rest.into_iter().map(|(_, v)| v).collect(),
            lr,
        },
        ParamGroup {
            name: "lora_B".into(),
            vars: b.into_iter().map(|(_, v)| v).collect(),
            lr: lr * ratio,
        },
    ])
}

/// Merge every adapter into its base weight; returns how many were merged (already merged
/// layers are skipped).
///
/// # Errors
/// Candle errors only.
pub fn merge_all<M: LoraModel + ?Sized>(model: &mut M) -> Result<usize> {
    let mut n = 0;
    for (_, l) in named_linears_mut(model) {
        if l.adapter().is_some() && !l.is_merged() {
            l.merge()?;
            n += 1;
        }
    }
    Ok(n)
}

/// Unmerge every merged adapter; returns how many were unmerged.
///
/// # Errors
/// Candle errors only.
pub fn unmerge_all<M: LoraModel + ?Sized>(model: &mut M) -> Result<usize> {
    let mut n = 0;
    for (_, l) in named_linears_mut(model) {
        if l.is_merged() {
            l.unmerge()?;
            n += 1;
        }
    }
    Ok(n)
}

/// Switch adapter dropout of every linear layer on or off.
pub fn set_lora_training<M: LoraModel + ?Sized>(model: &mut M, training: bool) {
    for (_, l) in named_linears_mut(model) {
        l.set_training(training);
    }
}

/// The PEFT prefix of adapter keys.
pub const PEFT_PREFIX: &str = "base_model.model.";

/// The adapter state dict with PEFT's keys: `base_model.model.<path>.lora_A.weight` `[r, in]`,
/// `base_model.model.<path>.lora_B.weight` `[out, r]`, and every parameter of the
/// `modules_to_save` modules as `base_model.model.<path>.<local>` (PEFT strips the adapter name
/// `modules_to_save.default` when saving).
pub fn lora_state_dict<M: LoraModel + ?Sized>(
    model: &mut M,
    config: &LoraConfig,
) -> Vec<(String, Tensor)> {
    let mut out = Vec::new();
    for (path, m) in model.named_modules_mut() {
        let save_all = config.is_module_to_save(&path);
        match m {
            ModuleMut::Linear(l) => {
                if let Some(ad) = l.adapter() {
                    out.push((
                        format!("{PEFT_PREFIX}{path}.lora_A.weight"),
                        ad.a().var().as_detached_tensor(),
                    ));
                    out.push((
                        format!("{PEFT_PREFIX}{path}.lora_B.weight"),
                        ad.b().var().as_detached_tensor(),
                    ));
                }
                if save_all {
                    for (local, p) in l.base_params_mut() {
                        out.push((
                            format!("{PEFT_PREFIX}{path}.{local}"),
                            p.var().as_detached_tensor(),
                        ));
                    }
                }
            }
            ModuleMut::Params(ps) if save_all => {
                for (local, p) in ps {
                    out.push((
                        format!("{PEFT_PREFIX}{path}.{local}"),
                        p.var().as_detached_tensor(),
                    ));
                }
            }
            ModuleMut::Params(_) => {}
        }
    }
    out
}
