//! # forge-merge
//!
//! Model merging for [Forge](https://github.com/forge-ml/forge): reuse fine-tuned models with
//! no training at all.
//!
//! - [`MergeMethod`]: linear (model soups), SLERP, task arithmetic, TIES, DARE (with TIES or
//!   linear), breadcrumbs, DELLA (with TIES or linear) — the arithmetic of mergekit, element for
//!   element ([`kernels`]).
//! - [`MergeConfig`]: mergekit's YAML (`merge_method`, `base_model`, `models` with
//!   `weight`/`density`, shared `parameters`, per-layer gradients and name filters, `dtype`).
//! - [`merge_files`]: merges checkpoints on disk tensor by tensor (memory-mapped inputs; memory
//!   stays at a few tensors), writes the output atomically, sharded when large, with the source
//!   `config.json`. [`merge_state_dicts`] does the same in memory; [`ops`] has one function per
//!   method on tensors.
//! - Backbone-only merges: tensors whose shapes differ (a 2-class and a 4-class head) are taken
//!   from a named model or skipped ([`MismatchPolicy`]), and every tensor is reported
//!   ([`MergeReport`]).
//! - [`task_vector()`] and [`task_vector_similarity`]: cosine similarity of task vectors, overall
//!   and per layer.
//! - LoRA: [`merge_lora_adapters`] (LoRA soups, combining `B A` per module, optional SVD
//!   re-compression; saved as a PEFT adapter) and [`LoraFlowGate`] (LoRA-Flow's learned
//!   per-layer gate, trained with [`train_gate`] over any forward closure).
//!
//! ## Agreement with mergekit
//! The fixture script `tests/fixtures/make_fixtures.py` merges tiny random DistilBERT and BERT
//! checkpoints with mergekit 0.1.5; `tests/mergekit.rs` checks forge-merge against it. Linear,
//! task arithmetic and TIES (also with per-layer gradients and filters) match bit for bit: the
//! kernels repeat PyTorch's f32 operation order (sequential sums from +0, fused multiply-adds in
//! `addcmul_`, the same trim count `max(1, int(density * n))`). SLERP matches to float rounding,
//! not bit for bit: PyTorch reduces the norms and the dot product in f32 in its own vectorised
//! order and evaluates `acos`/`sin` with SLEEF, so the two interpolation coefficients can differ
//! in their last bits (relative differences ~1e-7, up to ~1e-5 next to the collinearity
//! threshold, where the coefficients are ill-conditioned). DARE's and DELLA's drops use a different RNG than PyTorch's, so
//! they are tested on their statistics (kept fraction by magnitude rank, rescaled mean). Both
//! rescale survivors by their inverse keep probability as in the papers; mergekit instead
//! matches the L1 norm of the task vector.
//!
//! ```
//! use forge_merge::{MergeConfig, MergeMethod};
//! let cfg = MergeConfig::from_yaml(
//!     "merge_method: ties\nbase_model: base\nmodels:\n  - model: ft\n    parameters: {weight: 1.0, density: 0.5}\n",
//! )?;
//! assert_eq!(cfg.merge_method, MergeMethod::Ties);
//! # Ok::<(), forge_merge::MergeError>(())
//! ```
#![deny(missing_docs)]

pub mod config;
mod error;
pub mod files;
pub mod kernels;
pub mod lora;
pub mod lora_flow;
pub mod merge;
pub mod method;
pub mod ops;
pub mod params;
pub mod task_vector;

pub use config::{MergeConfig, MismatchPolicy, ModelEntry};
pub use error::{MergeError, Result};
pub use files::{merge_files, merge_opened, ModelFiles, WriteOptions};
pub use lora::{merge_lora_adapters, LoraSoupReport};
pub use lora_flow::{train_gate, GateTrainConfig, LoraFlowGate};
pub use merge::{
    merge_state_dicts, merge_tensor, MergeReport, StateDict, TensorOutcome, TensorReport,
    TensorSource,
};
pub use method::{MergeMethod, Sparsification, TensorParams};
pub use params::ParamValue;
pub use task_vector::{task_vector, task_vector_similarity, Similarity, TaskVector};
