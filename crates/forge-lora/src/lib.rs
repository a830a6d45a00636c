//! # forge-lora
//!
//! LoRA (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models") for any candle
//! model, compatible with Hugging Face PEFT's adapter files.
//!
//! - [`LoraLinear`]: the adaptable linear layer — frozen base `W` `[out, in]`, bias, optional
//!   adapter A `[r, in]`, B `[out, r]`, `y = x W^T + b + scaling * dropout(x) A^T B^T`,
//!   merge / unmerge.
//! - [`LoraModel`]: a one-method trait listing a model's named modules, so that users can make
//!   their own candle models adaptable.
//! - [`LoraConfig`]: PEFT's config with its JSON field names; unknown keys tolerated.
//! - [`LoraInjector`]: injection by module name (PEFT's suffix rule), freezing, then
//!   [`count_parameters`], [`lora_plus_groups`] (Hayou et al. 2024), [`merge_all`],
//!   [`lora_state_dict`], [`save_adapter`] / [`load_adapter`] in PEFT's format.
//! - [`Param`]: a `Var`-backed parameter with a trainable flag; frozen parameters are
//!   detached so the backward pass skips them.
//!
//! ```
//! use candle_core::{Device, Module, Tensor};
//! use forge_lora::{LoraConfig, LoraInjector, LoraLinear, LoraModel, ModuleMut};
//!
//! struct Mlp { fc1: LoraLinear, fc2: LoraLinear }
//! impl LoraModel for Mlp {
//!     fn named_modules_mut(&mut self) -> Vec<(String, ModuleMut<'_>)> {
//!         vec![("fc1".into(), ModuleMut::Linear(&mut self.fc1)),
//!              ("fc2".into(), ModuleMut::Linear(&mut self.fc2))]
//!     }
//! }
//! let dev = Device::Cpu;
//! let mut rng = forge_linalg::seeded_rng(0);
//! let mut mlp = Mlp { fc1: LoraLinear::new_random(4, 8, true, 0.5, &dev, &mut rng)?,
//!                     fc2: LoraLinear::new_random(8, 2, true, 0.5, &dev, &mut rng)? };
//! let x = Tensor::ones((3, 4), candle_core::DType::F32, &dev)?;
//! let before = mlp.fc2.forward(&mlp.fc1.forward(&x)?.relu()?)?;
//! let inj = LoraInjector::new(LoraConfig::new(2, 4.0, &["fc1"]))?.inject(&mut mlp)?;
//! assert_eq!(inj.adapted, vec!["fc1".to_string()]);
//! // B starts at zero: the adapted model computes the same function.
//! let after = mlp.fc2.forward(&mlp.fc1.forward(&x)?.relu()?)?;
//! let diff = (before - after)?.abs()?.max_all()?.to_scalar::<f32>()?;
//! assert_eq!(diff, 0.0);
//! assert_eq!(forge_lora::count_parameters(&mut mlp).trainable, 2 * (4 + 8));
//! # Ok::<(), forge_lora::LoraError>(())
//! ```
#![deny(missing_docs)]

mod config;
mod delta;
pub mod dropout;
mod error;
mod frozen;
mod injector;
pub mod io;
mod linear;
mod model;
mod param;

pub use config::{
    name_matches, InitLoraWeights, LoraConfig, TargetModules, MAX_LORA_ALPHA, MAX_LORA_RANK,
    MAX_SCALING,
};
pub use error::{LoraError, Result};
pub use injector::{
    count_parameters, freeze_base, lora_plus_groups, lora_state_dict, merge_all, named_trainable,
    set_lora_training, trainable_vars, unfreeze_base, unmerge_all, Injection, LoraInjector,
    ParamCount, ParamGroup, PEFT_PREFIX,
};
pub use io::{load_adapter, read_adapter_config, save_adapter};
pub use linear::{AdapterMixture, LoraAdapter, LoraLinear, MixtureGate};
pub use model::{named_base_params_mut, named_linears_mut, LoraModel, ModuleMut};
pub use param::{grad_enabled, no_grad, DeepClone, Param};
