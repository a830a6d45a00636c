//! # forge-ewc
//!
//! Elastic weight consolidation (Kirkpatrick et al. 2017, "Overcoming catastrophic forgetting in
//! neural networks", PNAS 114(13)) and online EWC (Schwarz et al. 2018, "Progress & Compress: A
//! scalable framework for continual learning", ICML) for any candle model. It works over named
//! [`Var`](candle_core::Var)s and a closure that runs the model, so it needs nothing from the
//! model but its parameters (e.g. `forge_lora::named_trainable(&mut model)`) and a forward pass.
//!
//! - [`fisher_diagonal`]: the diagonal Fisher of a classifier from a closure returning logits,
//!   three estimators ([`FisherEstimator`]): empirical, mini-batch, true (sampled or exact);
//!   [`fisher_diagonal_nll`] for any likelihood from per-sample negative log-likelihoods.
//! - [`Ewc`]: the penalty `(lambda / 2) * sum_i F_i (theta_i - theta*_i)^2` (see [`ewc`] for the
//!   convention and how other codes scale it), differentiable; online updates
//!   `F <- gamma F + F_new`, `theta* <- theta`; re-binding to a changed model with a
//!   [`ParamFilter`] (leave out replaced heads by shape or name); [`Ewc::save`] / [`Ewc::load`]
//!   to one safetensors file with lambda, gamma and the estimator in its metadata.
//!
//! ```
//! use candle_core::{DType, Device, Tensor, Var};
//! use forge_ewc::{fisher_diagonal, Ewc, EwcConfig, FisherConfig, FisherEstimator, Targets};
//! let dev = Device::Cpu;
//! // A 2-class linear classifier: logits = x W^T.
//! let x = Tensor::new(&[[1.0f32, 0.5], [-1.0, 1.0], [0.5, -2.0], [2.0, 1.0]], &dev)?;
//! let labels = [0usize, 1, 1, 0];
//! let w = Var::from_tensor(&Tensor::new(&[[0.3f32, -0.2], [-0.1, 0.4]], &dev)?)?;
//! let params = vec![("w".to_string(), w.clone())];
//! let logits = |idx: &[usize]| -> candle_core::Result<Tensor> {
//!     let rows = Tensor::new(idx.iter().map(|&i| i as u32).collect::<Vec<_>>(), &dev)?;
//!     x.index_select(&rows, 0)?.matmul(&w.as_tensor().t()?)
//! };
//! let fisher = fisher_diagonal(&params, Targets::Labels(&labels), logits,
//!                              &FisherConfig::new(FisherEstimator::Empirical))?;
//! let ewc = Ewc::new(&params, &fisher, EwcConfig::new(100.0))?;
//! assert_eq!(ewc.penalty_value()?, 0.0); // at the anchor
//! // During the next task: loss = task_loss + ewc.penalty()?
//! w.set(&Tensor::new(&[[0.5f32, -0.2], [-0.1, 0.4]], &dev)?)?;
//! assert!(ewc.penalty()?.to_scalar::<f32>()? > 0.0);
//! # Ok::<(), forge_ewc::EwcError>(())
//! ```
#![deny(missing_docs)]

mod diagonal;
mod error;
pub mod ewc;
mod filter;
pub mod fisher;
pub mod io;

pub use diagonal::FisherDiagonal;
pub use error::{EwcError, Result};
pub use ewc::{AnchorDistance, Ewc, EwcConfig};
pub use filter::{BindReport, ParamFilter};
pub use fisher::{
    fisher_diagonal, fisher_diagonal_nll, fisher_diagonal_with_progress, FisherConfig,
    FisherEstimator, FisherProgress, Targets,
};
