//! The training API: fine-tuning sequence classifiers end to end.
//!
//! - [`TrainConfig`] (serde, validated) and [`Schedule`]: linear warmup + linear decay
//!   (transformers' `get_linear_schedule_with_warmup`), constant, slanted triangular
//!   (Howard & Ruder 2018).
//! - [`TextDataset`] / [`Batch`]: texts tokenised once, dynamic padding per batch, seeded
//!   shuffling.
//! - The pieces of a step, usable alone: [`cross_entropy_loss`], candle's `backward`,
//!   [`clip_grad_norm`], [`AdamW`] (in place over contiguous storage, `torch.optim.AdamW`
//!   semantics) over [`ParamGroup`]s (each its own learning rate and weight decay;
//!   [`default_groups`] exempts biases and layer-norm weights as Hugging Face does;
//!   [`lora_plus_param_groups`] for LoRA+).
//! - The loop: [`fine_tune`] / [`fine_tune_with`] (a [`GroupPlan`] per epoch, e.g.
//!   [`crate::transfer::TransferScheduler`]), [`train_epoch`], [`evaluate`] (loss, accuracy,
//!   macro-F1, confusion matrix), a [`History`] serialisable to JSON.
//! - Hooks instead of dependencies: [`Penalty`] (a differentiable term added to the loss, how
//!   EWC plugs in) and [`Callback`] (step / epoch / evaluation / end events, can stop the run and
//!   add named scalars such as energy and CO2 to the history).
//! - Reproducibility: shuffling and dropout masks are seeded from [`TrainConfig::seed`]
//!   ([`crate::dropout::set_dropout_seed`]), LoRA adapters' input dropout included; two runs
//!   with the same seed give bit-identical losses.
//!
//! ```
//! use candle_core::Device;
//! use forge_models::train::{fine_tune, Hooks, TextDataset, TrainConfig};
//! use forge_models::{DistilBertConfig, DistilBertForSequenceClassification};
//!
//! let cfg = DistilBertConfig { vocab_size: 20, dim: 16, n_layers: 1, n_heads: 2, hidden_dim: 32,
//!                              ..Default::default() };
//! let mut model = DistilBertForSequenceClassification::new_random(&cfg, 0, &Device::Cpu)?;
//! // token 3 means class 0, token 4 means class 1
//! let ids: Vec<Vec<u32>> = (0..16).map(|i| vec![1, 3 + (i % 2) as u32, 2]).collect();
//! let labels: Vec<u32> = (0..16).map(|i| (i % 2) as u32).collect();
//! let data = TextDataset::from_ids(ids, labels, 0)?;
//! let config = TrainConfig { epochs: 2, batch_size: 4, learning_rate: 1e-3, ..Default::default() };
//! let history = fine_tune(&mut model, &data, Some(&data), &config, &mut Hooks::new())?;
//! assert_eq!(history.steps, 8);
//! assert!(history.last_val().is_some());
//! # Ok::<(), forge_models::ModelError>(())
//! ```

mod config;
mod data;
mod fit;
mod history;
mod hooks;
mod loss;
mod metrics;
mod optim;
mod schedule;

pub use config::{Schedule, TrainConfig};
pub use data::{Batch, TextDataset};
pub use fit::{
    derive_seed, evaluate, fine_tune, fine_tune_with, train_epoch, DefaultGroups, EpochStats,
    FixedGroups, GroupPlan, Optimization,
};
pub use history::{EpochRecord, History};
pub use hooks::{Callback, Control, Hooks, Penalty, StepEvent};
pub use loss::{cross_entropy_loss, train_step};
pub use metrics::{accuracy, confusion_matrix, macro_f1, EvalMetrics};
pub use optim::{
    clip_grad_norm, decay_groups, default_groups, grad_norm, is_no_decay, lora_plus_param_groups,
    AdamW, AdamWParams, ParamGroup,
};
pub use schedule::lr_factor;
