//! [`ParamBuilder`]: the one place where a parameter gets its Hugging Face name.
//!
//! In the style of candle's `VarBuilder::pp`: an architecture builds its modules through a
//! builder whose path grows with [`ParamBuilder::pp`]; each call that creates a module both loads
//! (or randomly initialises) its tensors and registers them under the full path, and the module
//! comes back wrapped in [`Named`], which carries that path. [`VisitModules`] then lists the
//! modules with their paths for [`forge_lora::LoraModel::named_modules_mut`], so an architecture
//! writes each name exactly once.
//!
//! ```
//! use candle_core::Device;
//! use forge_lora::{LoraModel, ModuleMut};
//! use forge_models::builder::{Named, ParamBuilder, VisitModules};
//! use forge_models::layers::LayerNorm;
//! use forge_lora::LoraLinear;
//!
//! struct Tiny { dense: Named<LoraLinear>, norm: Named<LayerNorm> }
//! impl VisitModules for Tiny {
//!     fn visit_modules<'a>(&'a mut self, out: &mut Vec<(String, ModuleMut<'a>)>) {
//!         let Self { dense, norm } = self; // no `..`: a forgotten field does not compile
//!         dense.visit_modules(out);
//!         norm.visit_modules(out);
//!     }
//! }
//! let vb = ParamBuilder::random(0, 0.02, &Device::Cpu).pp("head");
//! let mut m = Tiny { dense: vb.pp("dense").linear(8, 4)?, norm: vb.pp("LayerNorm").layer_norm(4, 1e-12)? };
//! let names: Vec<String> = forge_models::builder::module_paths(&mut m);
//! assert_eq!(names, ["head.dense", "head.LayerNorm"]);
//! assert_eq!(vb.registered(), ["head.dense.weight", "head.dense.bias",
//!                              "head.LayerNorm.weight", "head.LayerNorm.bias"]);
//! # Ok::<(), forge_models::ModelError>(())
//! ```

use crate::layers::{Embedding, LayerNorm};
use crate::{ModelError, Result, Weights};
use candle_core::{DType, Device, Tensor};
use forge_linalg::ForgeRng;
use forge_lora::{DeepClone, LoraLinear, ModuleMut, Param};
use std::cell::RefCell;
use std::collections::HashSet;
use std::ops::{Deref, DerefMut};
use std::rc::Rc;

/// A module together with its full Hugging Face path (e.g.
/// `"distilbert.transformer.layer.0.attention.q_lin"`). Dereferences to the module, so
/// `block.q_lin.forward_t(..)` works as on the bare module, and `*head = new_linear` replaces
/// the module while keeping its name.
#[derive(Debug)]
pub struct Named<T> {
    path: String,
    module: T,
}

impl<T> Named<T> {
    /// Wrap `module` under `path`.
    pub fn new(path: impl Into<String>, module: T) -> Self {
        Self {
            path: path.into(),
            module,
        }
    }

    /// The full module path.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The module without its name.
    pub fn into_inner(self) -> T {
        self.module
    }
}

impl<T> Deref for Named<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.module
    }
}

impl<T> DerefMut for Named<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.module
    }
}

impl<T: DeepClone> DeepClone for Named<T> {
    fn try_clone_deep(&self) -> forge_lora::Result<Self> {
        Ok(Self {
            path: self.path.clone(),
            module: self.module.try_clone_deep()?,
        })
    }
}

/// Lists the modules of a model (or of a part of one) with their full paths, in a fixed order.
/// Implemented by [`Named`] modules, `Vec`, `Option`, and each architecture's structs (which
/// destructure `self` without `..`, so that a forgotten field is a compile error).
pub trait VisitModules {
    /// Append `(path, module)` for every module that owns parameters.
    fn visit_modules<'a>(&'a mut self, out: &mut Vec<(String, ModuleMut<'a>)>);
}

impl VisitModules for Named<LoraLinear> {
    fn visit_modules<'a>(&'a mut self, out: &mut Vec<(String, ModuleMut<'a>)>) {
        out.push((self.path.clone(), ModuleMut::Linear(&mut self.module)));
    }
}

impl VisitModules for Named<LayerNorm> {
    fn visit_modules<'a>(&'a mut self, out: &mut Vec<(String, ModuleMut<'a>)>) {
        out.push((
            self.path.clone(),
            ModuleMut::Params(self.module.params_mut()),
        ));
    }
}

impl VisitModules for Named<Embedding> {
    fn visit_modules<'a>(&'a mut self, out: &mut Vec<(String, ModuleMut<'a>)>) {
        out.push((
            self.path.clone(),
            ModuleMut::Params(vec![("weight", &mut self.module.weight)]),
        ));
    }
}

impl<T: VisitModules> VisitModules for Vec<T> {
    fn visit_modules<'a>(&'a mut self, out: &mut Vec<(String, ModuleMut<'a>)>) {
        for m in self {
            m.visit_modules(out);
        }
    }
}

impl<T: VisitModules> VisitModules for Option<T> {
    fn visit_modules<'a>(&'a mut self, out: &mut Vec<(String, ModuleMut<'a>)>) {
        if let Some(m) = self {
            m.visit_modules(out);
        }
    }
}

/// The paths [`VisitModules::visit_modules`] lists, in order.
pub fn module_paths<M: VisitModules + ?Sized>(model: &mut M) -> Vec<String> {
    let mut v = Vec::new();
    model.visit_modules(&mut v);
    v.into_iter().map(|(p, _)| p).collect()
}

/// How a tensor absent from the checkpoint (or every tensor, without one) is initialised, as
/// Hugging Face's `_init_weights`: normal(0, `initializer_range`) weights, zero biases, unit
/// layer-norm scales.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Init {
    /// Normal with mean 0 and the builder's standard deviation.
    Normal,
    /// All zeros.
    Zeros,
    /// All ones.
    Ones,
}

struct BuildState<'w> {
    weights: Option<&'w Weights>,
    /// The architecture's prefix in checkpoints (`"distilbert"`, `"bert"`), tried added or
    /// removed, so that a bare encoder loads from a classifier checkpoint and the reverse.
    checkpoint_prefix: Option<String>,
    rng: ForgeRng,
    std: f64,
    device: Device,
    registered: Vec<String>,
    used_keys: HashSet<String>,
}

/// Builds modules under a growing path, loading each tensor from a checkpoint (or initialising
/// it) and registering its name; see the [module docs](self).
///
/// Clones share the registry, as candle's `VarBuilder`.
#[derive(Clone)]
pub struct ParamBuilder<'w> {
    state: Rc<RefCell<BuildState<'w>>>,
    prefix: String,
    required: bool,
}

impl std::fmt::Debug for ParamBuilder<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParamBuilder")
            .field("prefix", &self.prefix)
            .field("required", &self.required)
            .finish()
    }
}

impl<'w> ParamBuilder<'w> {
    fn with_state(weights: Option<&'w Weights>, seed: u64, std: f64, device: &Device) -> Self {
        Self {
            state: Rc::new(RefCell::new(BuildState {
                weights,
                checkpoint_prefix: None,
                rng: forge_linalg::seeded_rng(seed),
                std,
                device: device.clone(),
                registered: Vec::new(),
                used_keys: HashSet::new(),
            })),
            prefix: String::new(),
            required: true,
        }
    }

    /// A builder that initialises every tensor randomly (seeded; `std` is the config's
    /// `initializer_range`).
    pub fn random(seed: u64, std: f64, device: &Device) -> Self {
        Self::with_state(None, seed, std, device)
    }

    /// A builder that loads tensors from `weights`; tensors under an [`ParamBuilder::optional`]
    /// path that are absent are initialised with `seed`, as Hugging Face does for a new head.
    pub fn from_weights(weights: &'w Weights, seed: u64, std: f64, device: &Device) -> Self {
        Self::with_state(Some(weights), seed, std, device)
    }

    /// Also accept checkpoint names with `prefix + "."` added or removed (a `DistilBertModel`
    /// checkpoint has no `distilbert.` prefix, a classifier's has).
    pub fn with_checkpoint_prefix(self, prefix: &str) -> Self {
        self.state.borrow_mut().checkpoint_prefix = Some(prefix.to_string());
        self
    }

    /// The builder of a sub-module: the path gains `"." + name`.
    pub fn pp(&self, name: impl std::fmt::Display) -> Self {
        let prefix = if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.prefix)
        };
        Self {
            state: self.state.clone(),
            prefix,
            required: self.required,
        }
    }

    /// Tensors under this path may be absent from the checkpoint: they are then newly
    /// initialised (with a `tracing` warning), as a new classification head.
    pub fn optional(&self) -> Self {
        Self {
            required: false,
            ..self.clone()
        }
    }

    /// The current path (`""` at the root).
    pub fn path(&self) -> &str {
        &self.prefix
    }

    /// The device tensors are created on.
    pub fn device(&self) -> Device {
        self.state.borrow().device.clone()
    }

    /// Every full parameter name created so far, in creation order.
    pub fn registered(&self) -> Vec<String> {
        self.state.borrow().registered.clone()
    }

    fn full(&self, local: &str) -> String {
        if self.prefix.is_empty() {
            local.to_string()
        } else {
            format!("{}.{local}", self.prefix)
        }
    }

    /// Checkpoint names that may hold `full`: itself, with the checkpoint prefix removed or
    /// added, and the `gamma` / `beta` names of old BERT layer norms.
    fn candidates(&self, full: &str) -> Vec<String> {
        let st = self.state.borrow();
        let mut v = vec![full.to_string()];
        if let Some(p) = &st.checkpoint_prefix {
            let dotted = format!("{p}.");
            match full.strip_prefix(&dotted) {
                Some(rest) => v.push(rest.to_string()),
                None => v.push(format!("{dotted}{full}")),
            }
        }
        if full.contains("LayerNorm.") {
            let old: Vec<String> = v
                .iter()
                .filter_map(|n| {
                    n.strip_suffix(".weight")
                        .map(|s| format!("{s}.gamma"))
                        .or_else(|| n.strip_suffix(".bias").map(|s| format!("{s}.beta")))
                })
                .collect();
            v.extend(old);
        }
        v
    }

    /// Whether the checkpoint holds the tensor `local` under this path (under any accepted
    /// name); always false for a random builder.
    pub fn contains(&self, local: &str) -> bool {
        let full = self.full(local);
        let cands = self.candidates(&full);
        let st = self.state.borrow();
        st.weights
            .is_some_and(|w| cands.iter().any(|c| w.contains(c.as_str())))
    }

    /// The tensor `local` under this path with `shape`, as f32: from the checkpoint (checked
    /// for shape, dtype and finiteness), else initialised with `init` when the builder is random
    /// or the path optional. Registers the full name.
    ///
    /// # Errors
    /// [`ModelError::MissingTensor`], [`ModelError::ShapeMismatch`], [`ModelError::BadDType`],
    /// [`ModelError::NonFinite`] naming the tensor.
    pub fn tensor(&self, local: &str, shape: &[usize], init: Init) -> Result<Tensor> {
        let full = self.full(local);
        let cands = self.candidates(&full);
        let mut st = self.state.borrow_mut();
        st.registered.push(full.clone());
        if let Some(w) = st.weights {
            if let Some(key) = cands.iter().find(|c| w.contains(c.as_str())) {
                let got = w.dims(key).unwrap_or_default();
                if got != shape {
                    return Err(ModelError::ShapeMismatch {
                        tensor: key.clone(),
                        expected: shape.to_vec(),
                        got,
                    });
                }
                let t = w.get(key)?;
                st.used_keys.insert(key.clone());
                return Ok(t);
            }
            if self.required {
                return Err(ModelError::MissingTensor {
                    tensor: full,
                    path: w.path().to_path_buf(),
                });
            }
            tracing::warn!(tensor = %full, "not in the checkpoint: newly initialised");
        }
        let device = st.device.clone();
        Ok(match init {
            Init::Normal => {
                let std = st.std;
                (forge_linalg::rng::randn(shape, DType::F32, &device, &mut st.rng)? * std)?
            }
            Init::Zeros => Tensor::zeros(shape, DType::F32, &device)?,
            Init::Ones => Tensor::ones(shape, DType::F32, &device)?,
        })
    }

    /// A parameter (trainable) for [`ParamBuilder::tensor`]; the fresh tensor becomes the
    /// parameter's storage without a second copy.
    fn param(&self, local: &str, shape: &[usize], init: Init) -> Result<Param> {
        let t = self.tensor(local, shape, init)?;
        Ok(Param::from_var(candle_core::Var::from_tensor(&t)?, true))
    }

    /// A linear layer `weight [out, in]`, `bias [out]` under this path.
    ///
    /// # Errors
    /// As [`ParamBuilder::tensor`].
    pub fn linear(&self, in_f: usize, out_f: usize) -> Result<Named<LoraLinear>> {
        let w = self.tensor("weight", &[out_f, in_f], Init::Normal)?;
        let b = self.tensor("bias", &[out_f], Init::Zeros)?;
        Ok(Named::new(&self.prefix, LoraLinear::new(&w, Some(&b))?))
    }

    /// A layer norm `weight [dim]`, `bias [dim]` under this path.
    ///
    /// # Errors
    /// As [`ParamBuilder::tensor`].
    pub fn layer_norm(&self, dim: usize, eps: f64) -> Result<Named<LayerNorm>> {
        Ok(Named::new(
            &self.prefix,
            LayerNorm {
                weight: self.param("weight", &[dim], Init::Ones)?,
                bias: self.param("bias", &[dim], Init::Zeros)?,
                eps,
            },
        ))
    }

    /// An embedding table `weight [num, dim]` under this path; at random initialisation the
    /// padding row is zero, as Hugging Face's.
    ///
    /// # Errors
    /// As [`ParamBuilder::tensor`].
    pub fn embedding(
        &self,
        num: usize,
        dim: usize,
        padding_idx: Option<u32>,
    ) -> Result<Named<Embedding>> {
        let from_file = self.contains("weight");
        let mut w = self.tensor("weight", &[num, dim], Init::Normal)?;
        if let (Some(p), false) = (padding_idx.filter(|p| (*p as usize) < num), from_file) {
            let keep: Vec<f32> = (0..num)
                .map(|i| if i == p as usize { 0.0 } else { 1.0 })
                .collect();
            let keep = Tensor::from_vec(keep, num, &self.device())?;
            w = w.broadcast_mul(&keep.unsqueeze(1)?)?;
        }
        Ok(Named::new(
            &self.prefix,
            Embedding {
                weight: Param::from_var(candle_core::Var::from_tensor(&w)?, true),
                padding_idx,
            },
        ))
    }

    /// After building: checkpoint tensors that were not used, with the checkpoint prefix
    /// removed, sorted.
    pub fn unused(&self) -> Vec<String> {
        let st = self.state.borrow();
        let Some(w) = st.weights else {
            return Vec::new();
        };
        let mut v: Vec<String> = w
            .names()
            .into_iter()
            .filter(|n| !st.used_keys.contains(*n))
            .map(str::to_string)
            .collect();
        v.sort();
        v
    }

    /// After building: fail if the checkpoint holds tensors that belong to the model's own
    /// namespace but were not used: names starting (after the checkpoint prefix) with one of
    /// `roots` (e.g. `"transformer."`), such as the layers of a 12-layer checkpoint loaded with a
    /// 6-layer config. Other unused tensors (a pre-training head, buffers such as
    /// `position_ids`) are reported with a `tracing` warning, as transformers does.
    ///
    /// # Errors
    /// [`ModelError::UnexpectedTensors`] listing them.
    pub fn finish(&self, roots: &[&str]) -> Result<()> {
        let unused = self.unused();
        if unused.is_empty() {
            return Ok(());
        }
        let prefix = self
            .state
            .borrow()
            .checkpoint_prefix
            .as_ref()
            .map(|p| format!("{p}."));
        let (bad, other): (Vec<String>, Vec<String>) = unused.into_iter().partition(|n| {
            let bare = prefix
                .as_deref()
                .and_then(|p| n.strip_prefix(p))
                .unwrap_or(n);
            !bare.ends_with("position_ids") && roots.iter().any(|r| bare.starts_with(r))
        });
        if !other.is_empty() {
            tracing::warn!(unused = ?other, "checkpoint tensors not used by this model");
        }
        if bad.is_empty() {
            return Ok(());
        }
        let path = self
            .state
            .borrow()
            .weights
            .map(|w| w.path().to_path_buf())
            .unwrap_or_default();
        Err(ModelError::UnexpectedTensors {
            tensors: bad,
            path,
            reason: "they belong to the encoder but the config has no place for them (e.g. a config with fewer layers than the checkpoint)".into(),
        })
    }
}
