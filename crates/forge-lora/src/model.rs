//! [`LoraModel`]: the small trait a candle model implements to become LoRA-adaptable.

use crate::{LoraLinear, Param};

/// A mutable view of one named module of a model.
#[derive(Debug)]
pub enum ModuleMut<'a> {
    /// An adaptable linear layer (LoRA targets are chosen among these).
    Linear(&'a mut LoraLinear),
    /// Any other module's parameters with their local names, e.g. a layer norm's
    /// `[("weight", w), ("bias", b)]` or an embedding's `[("weight", w)]`.
    Params(Vec<(&'static str, &'a mut Param)>),
}

/// A candle model whose modules are listed by name, so that LoRA can be injected, the base
/// frozen and adapters saved in PEFT's format.
///
/// Module paths use Hugging Face / PyTorch names (`"distilbert.transformer.layer.0.attention.q_lin"`),
/// so that adapter keys become `base_model.model.<path>.lora_A.weight` exactly as in PEFT.
///
/// ```
/// use candle_core::{Device, Module, Tensor};
/// use forge_lora::{LoraConfig, LoraInjector, LoraLinear, LoraModel, ModuleMut};
///
/// struct Mlp { fc1: LoraLinear, fc2: LoraLinear }
/// impl LoraModel for Mlp {
///     fn named_modules_mut(&mut self) -> Vec<(String, ModuleMut<'_>)> {
///         vec![("fc1".into(), ModuleMut::Linear(&mut self.fc1)),
///              ("fc2".into(), ModuleMut::Linear(&mut self.fc2))]
///     }
/// }
/// let mut rng = forge_linalg::seeded_rng(0);
/// let dev = Device::Cpu;
/// let mut mlp = Mlp { fc1: LoraLinear::new_random(8, 16, true, 0.02, &dev, &mut rng)?,
///                     fc2: LoraLinear::new_random(16, 2, true, 0.02, &dev, &mut rng)? };
/// LoraInjector::new(LoraConfig::new(4, 8.0, &["fc1"]))?.inject(&mut mlp)?;
/// let counts = forge_lora::count_parameters(&mut mlp);
/// assert_eq!(counts.trainable, 4 * (8 + 16));
/// # Ok::<(), forge_lora::LoraError>(())
/// ```
pub trait LoraModel {
    /// The architecture name used in error messages (e.g. `"distilbert"`).
    fn architecture(&self) -> String {
        "custom".to_string()
    }

    /// Every module that owns parameters, with its full path. Each parameter must appear once.
    fn named_modules_mut(&mut self) -> Vec<(String, ModuleMut<'_>)>;
}

/// The model's linear layers with their paths.
pub fn named_linears_mut<M: LoraModel + ?Sized>(model: &mut M) -> Vec<(String, &mut LoraLinear)> {
    model
        .named_modules_mut()
        .into_iter()
        .filter_map(|(n, m)| match m {
            ModuleMut::Linear(l) => Some((n, l)),
            ModuleMut::Params(_) => None,
        })
        .collect()
}

/// Every base parameter (adapters excluded) with its full name `"<module path>.<local name>"`.
pub fn named_base_params_mut<M: LoraModel + ?Sized>(model: &mut M) -> Vec<(String, &mut Param)> {
    let mut out = Vec::new();
    for (path, m) in model.named_modules_mut() {
        let params = match m {
            ModuleMut::Linear(l) => l.base_params_mut(),
            ModuleMut::Params(p) => p,
        };
        for (local, p) in params {
            out.push((format!("{path}.{local}"), p));
        }
    }
    out
}
