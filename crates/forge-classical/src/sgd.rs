//! Mini-batch stochastic gradient descent for linear and logistic regression, seeded and with
//! an optional warm start (fine-tuning a source model on target data).

use crate::data::{self, check_lam, check_pos, sigmoid, softplus, Mat64};
use crate::model::{LinearModel, LogisticModel};
use crate::ridge::source_weights;
use crate::{ClassicalError, Result};
use candle_core::Tensor;
use serde::{Deserialize, Serialize};

/// Hyperparameters of [`fit_linear_sgd`] and [`fit_logistic_sgd`].
///
/// | field | default | range |
/// |---|---|---|
/// | `lr` | 0.01 | > 0 |
/// | `epochs` | 20 | >= 0 (0 returns the initial model) |
/// | `batch_size` | 32 | >= 1 (clamped to n) |
/// | `seed` | 0 | any |
/// | `l2` | 0.0 | >= 0 |
/// | `warm_start` | `None` (zeros) | a model with `d` weights |
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SgdParams {
    /// Learning rate (step size).
    pub lr: f64,
    /// Passes over the data.
    pub epochs: usize,
    /// Mini-batch size.
    pub batch_size: usize,
    /// Seed of the per-epoch shuffles.
    pub seed: u64,
    /// L2 penalty `l2/2 ||w||^2` on the weights (not the intercept).
    pub l2: f64,
    /// Initial model (e.g. the source model); `None` starts from zero. For logistic regression
    /// pass the source's [`LogisticModel::linear_part`].
    #[serde(skip)]
    pub warm_start: Option<LinearModel>,
}

impl Default for SgdParams {
    fn default() -> Self {
        Self {
            lr: 0.01,
            epochs: 20,
            batch_size: 32,
            seed: 0,
            l2: 0.0,
            warm_start: None,
        }
    }
}

impl SgdParams {
    /// Sets the learning rate.
    pub fn lr(mut self, lr: f64) -> Self {
        self.lr = lr;
        self
    }
    /// Sets the number of epochs.
    pub fn epochs(mut self, epochs: usize) -> Self {
        self.epochs = epochs;
        self
    }
    /// Sets the mini-batch size.
    pub fn batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size;
        self
    }
    /// Sets the seed.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
    /// Sets the L2 penalty.
    pub fn l2(mut self, l2: f64) -> Self {
        self.l2 = l2;
        self
    }
    /// Sets the warm start.
    pub fn warm_start(mut self, model: LinearModel) -> Self {
        self.warm_start = Some(model);
        self
    }

    fn validate(&self) -> Result<()> {
        check_pos("lr", self.lr)?;
        check_lam("l2", self.l2)?;
        if self.batch_size == 0 {
            return Err(ClassicalError::InvalidParameter {
                name: "batch_size",
                reason: "must be >= 1, got 0".into(),
            });
        }
        Ok(())
    }
}

/// What happened during SGD training.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TrainHistory {
    /// Full-data training objective after each epoch (mean loss + L2 term).
    pub epoch_loss: Vec<f64>,
    /// Number of gradient steps (mini-batch updates) taken.
    pub steps: usize,
}

#[derive(Clone, Copy)]
enum Loss {
    Squared,
    Logistic,
}

/// Mini-batch SGD for least squares (Robbins & Monro, 1951, "A Stochastic Approximation
/// Method"; Bottou, 2010, "Large-Scale Machine Learning with Stochastic Gradient Descent"):
/// minimises `1/(2n) sum_i (x_i^T w + b - y_i)^2 + l2/2 ||w||^2`.
/// Each epoch visits the rows in a fresh seeded permutation; each step uses the batch mean
/// gradient. With `warm_start` this is fine-tuning of a source model.
///
/// # Shapes
/// `x`: `[n, d]`, `y`: `[n]`
///
/// # Errors
/// Bad input/parameters; [`ClassicalError::Diverged`] if the loss becomes non-finite.
pub fn fit_linear_sgd(
    x: &Tensor,
    y: &Tensor,
    params: &SgdParams,
) -> Result<(LinearModel, TrainHistory)> {
    params.validate()?;
    let (xm, yv) = data::xy(x, y)?;
    let (w, b, h) = sgd(&xm, &yv, params, Loss::Squared)?;
    Ok((LinearModel::from_vec(w, b)?, h))
}

/// Mini-batch SGD for binary logistic regression: minimises the mean log-loss
/// `1/n sum_i [log(1 + exp(z_i)) - y_i z_i] + l2/2 ||w||^2`, `z_i = x_i^T w + b`, `y_i in {0, 1}`
/// (Bottou, 2010). Seeded shuffles; optional warm start from a source model.
///
/// # Shapes
/// `x`: `[n, d]`, `y`: `[n]` with values 0/1
///
/// # Errors
/// Bad input/parameters, labels other than 0/1; [`ClassicalError::Diverged`].
pub fn fit_logistic_sgd(
    x: &Tensor,
    y: &Tensor,
    params: &SgdParams,
) -> Result<(LogisticModel, TrainHistory)> {
    params.validate()?;
    let (xm, yv) = data::xy(x, y)?;
    data::check_binary(&yv, "y", false)?;
    let (w, b, h) = sgd(&xm, &yv, params, Loss::Logistic)?;
    Ok((LogisticModel::from_vec(w, b)?, h))
}

fn objective(x: &Mat64, y: &[f64], w: &[f64], b: f64, l2: f64, loss: Loss) -> f64 {
    let mut tot = 0.0;
    for (row, &yi) in x.v.chunks_exact(x.d).zip(y) {
        let z = data::dot(row, w) + b;
        tot += match loss {
            Loss::Squared => 0.5 * (z - yi) * (z - yi),
            Loss::Logistic => softplus(z) - yi * z,
        };
    }
    tot / x.n as f64 + 0.5 * l2 * data::dot(w, w)
}

fn sgd(x: &Mat64, y: &[f64], p: &SgdParams, loss: Loss) -> Result<(Vec<f64>, f64, TrainHistory)> {
    let d = x.d;
    let (mut w, mut b) = match &p.warm_start {
        Some(m) => (source_weights(&m.weights, d)?, m.intercept),
        None => (vec![0.0; d], 0.0),
    };
    let mut rng = forge_linalg::seeded_rng(p.seed);
    let bs = p.batch_size.min(x.n);
    let mut hist = TrainHistory::default();
    let mut gw = vec![0.0; d];
    for epoch in 0..p.epochs {
        let perm = forge_linalg::rng::permutation(x.n, &mut rng);
        for batch in perm.chunks(bs) {
            gw.iter_mut().for_each(|g| *g = 0.0);
            let mut gb = 0.0;
            for &i in batch {
                let row = x.row(i);
                let z = data::dot(row, &w) + b;
                let r = match loss {
                    Loss::Squared => z - y[i],
                    Loss::Logistic => sigmoid(z) - y[i],
                };
                for (g, &v) in gw.iter_mut().zip(row) {
                    *g += r * v;
                }
                gb += r;
            }
            let inv = 1.0 / batch.len() as f64;
            for (wj, &g) in w.iter_mut().zip(&gw) {
                *wj -= p.lr * (g * inv + p.l2 * *wj);
            }
            b -= p.lr * gb * inv;
            hist.steps += 1;
        }
        let l = objective(x, y, &w, b, p.l2, loss);
        if !l.is_finite() {
            return Err(ClassicalError::Diverged {
                method: match loss {
                    Loss::Squared => "fit_linear_sgd",
                    Loss::Logistic => "fit_logistic_sgd",
                },
                epoch,
                loss: l,
                lr: p.lr,
            });
        }
        hist.epoch_loss.push(l);
    }
    Ok((w, b, hist))
}
