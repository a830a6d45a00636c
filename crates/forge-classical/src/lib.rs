//! # forge-classical
//!
//! Classical transfer learning for linear and logistic models on candle [`Tensor`](candle_core::Tensor)s
//! (computed in f64): the baselines and the transfer methods Forge compares, with exact
//! solvers where they exist.
//!
//! | method | function |
//! |---|---|
//! | ridge (closed form, Cholesky) | [`ridge`], [`ridge_weighted`] |
//! | mini-batch SGD, warm start | [`fit_linear_sgd`], [`fit_logistic_sgd`] |
//! | logistic / softmax regression (Newton) | [`fit_logistic`], [`fit_logistic_weighted`], [`fit_softmax`] |
//! | regularized transfer `lam ||w - w_src||^2` | [`regularized_transfer_linear`], [`regularized_transfer_logistic`] |
//! | Bayesian transfer (source = prior) | [`bayesian_transfer_linear`], [`bayesian_transfer_logistic`] (Laplace) |
//! | covariance-shift transfer | [`covariance_shift_transfer`], [`covariance_shift_transfer_logistic`] |
//! | moment mapping (zero gradient steps) | [`stat_mapping`] |
//! | low-rank adapters (source frozen) | [`fit_low_rank_adapter`] |
//! | metrics | [`metrics`] |
//! | cross-validation on target training data | [`cv`] |
//!
//! Inputs: `x` is `[n, d]`, `y` is `[n]`, any float dtype; fitted weights are f64 tensors on
//! the CPU; predictions come back as f64 on `x`'s device.
//!
//! ```
//! use candle_core::{Device, Tensor};
//! use forge_classical::{metrics, regularized_transfer_linear, ridge};
//!
//! let dev = Device::Cpu;
//! // Source: y = 2 x1 - x2 + 1. Target: a few rows of a slightly different task.
//! let xs = Tensor::new(&[[0.0f64, 1.0], [1.0, 0.0], [2.0, 1.0], [3.0, 3.0], [1.0, 2.0]], &dev)?;
//! let ys = Tensor::new(&[0.0f64, 3.0, 4.0, 4.0, 1.0], &dev)?;
//! let source = ridge(&xs, &ys, 1e-9)?;
//! let w: Vec<f64> = source.weights.to_vec1()?;
//! assert!((w[0] - 2.0).abs() < 1e-6 && (w[1] + 1.0).abs() < 1e-6);
//!
//! let xt = Tensor::new(&[[1.0f64, 1.0], [2.0, 0.0], [0.0, 2.0]], &dev)?;
//! let yt = Tensor::new(&[2.2f64, 5.1, -1.0], &dev)?;
//! let target = regularized_transfer_linear(&xt, &yt, &source, 1.0)?;
//! let r2 = metrics::r2(&yt, &target.predict(&xt)?)?;
//! assert!(r2 > 0.9);
//! # Ok::<(), forge_classical::ClassicalError>(())
//! ```
#![deny(missing_docs)]

mod adapter;
mod bayes;
mod covshift;
pub mod cv;
mod data;
mod error;
mod logistic;
mod mapping;
pub mod metrics;
mod model;
mod ridge;
mod sgd;

pub use adapter::{
    fit_low_rank_adapter, AdapterParams, LowRankAdapt, MatrixAdapter, VectorAdapter,
};
pub use bayes::{
    bayesian_transfer_linear, bayesian_transfer_logistic, BayesianLinear, BayesianLogistic,
};
pub use covshift::{
    covariance_shift_transfer, covariance_shift_transfer_logistic, importance_weights, CovShiftFit,
    CovShiftParams,
};
pub use error::{ClassicalError, Result};
pub use logistic::{
    fit_logistic, fit_logistic_weighted, fit_softmax, regularized_transfer_logistic,
    regularized_transfer_logistic_weighted,
};
pub use mapping::stat_mapping;
pub use model::{LinearModel, LogisticModel, SoftmaxModel};
pub use ridge::{
    regularized_transfer_linear, regularized_transfer_linear_weighted, ridge, ridge_weighted,
};
pub use sgd::{fit_linear_sgd, fit_logistic_sgd, SgdParams, TrainHistory};
