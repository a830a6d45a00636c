//! The two SGD strategies (from zero, warm-started from the source) and their shared stopping
//! rule (see the [module docs](super)).

use super::fit::{Fitted, TrialData};
use crate::error::Result;
use forge_classical::{fit_linear_sgd, fit_logistic_sgd, LinearModel, SgdParams};

/// Epochs without a 0.1 % improvement of the training objective before SGD stops.
pub const PATIENCE: usize = 2;
/// Relative improvement that counts as progress for the stopping rule.
pub const REL_TOL: f64 = 1e-3;
/// SGD learning rate (both SGD strategies).
pub const SGD_LR: f64 = 0.01;
/// SGD mini-batch size.
pub const SGD_BATCH: usize = 32;
/// L2 penalty `l2/2 ||w||^2` of both SGD strategies (keeps the logistic optimum finite on
/// near-separable data, so "convergence" is well defined).
pub const SGD_L2: f64 = 1e-2;

/// Where an SGD run starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SgdInit {
    /// Zero weights, intercept at the target mean (regression) or prior log-odds (binary).
    Zero,
    /// The source model's weights and intercept.
    Source,
}

/// The stopping epoch of the rule described in the module docs, from per-epoch training losses.
pub fn stop_epoch(loss: &[f64], rel_tol: f64, patience: usize) -> usize {
    let mut best = f64::INFINITY;
    let mut since = 0;
    for (i, &l) in loss.iter().enumerate() {
        if l < best * (1.0 - rel_tol) || !best.is_finite() {
            best = l;
            since = 0;
        } else {
            since += 1;
            if since >= patience {
                return i + 1;
            }
        }
    }
    loss.len()
}

impl TrialData {
    fn sgd_params(&self, init: LinearModel, epochs: usize) -> SgdParams {
        SgdParams::default()
            .lr(SGD_LR)
            .batch_size(SGD_BATCH)
            .seed(self.seed)
            .l2(SGD_L2)
            .epochs(epochs)
            .warm_start(init)
    }

    /// `epochs` epochs of SGD from `init`: the model and the number of gradient steps.
    pub(crate) fn sgd(&self, init: &LinearModel, epochs: usize) -> Result<(Fitted, u64)> {
        let p = self.sgd_params(init.clone(), epochs);
        Ok(if self.cls {
            let (m, h) = fit_logistic_sgd(&self.train.x, &self.train.y, &p)?;
            (Fitted::Logistic(m), h.steps as u64)
        } else {
            let (m, h) = fit_linear_sgd(&self.train.x, &self.train.y, &p)?;
            (Fitted::Linear(m), h.steps as u64)
        })
    }

    /// The training objective after each of `epochs` epochs from `init`.
    pub(crate) fn sgd_losses(&self, init: &LinearModel, epochs: usize) -> Result<Vec<f64>> {
        let p = self.sgd_params(init.clone(), epochs);
        Ok(if self.cls {
            fit_logistic_sgd(&self.train.x, &self.train.y, &p)?
                .1
                .epoch_loss
        } else {
            fit_linear_sgd(&self.train.x, &self.train.y, &p)?
                .1
                .epoch_loss
        })
    }

    /// The initial model of `init`.
    pub(crate) fn sgd_init(&self, init: SgdInit) -> Result<LinearModel> {
        match init {
            SgdInit::Source => Ok(self.src.linear()),
            SgdInit::Zero => {
                let d = self.train.n_features();
                let m = self.train.y.mean_all()?.to_scalar::<f64>()?;
                let b = if self.cls {
                    let p = m.clamp(1e-3, 1.0 - 1e-3);
                    (p / (1.0 - p)).ln()
                } else {
                    m
                };
                Ok(LinearModel::from_vec(vec![0.0; d], b)?)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stopping_rule_counts_patience_epochs() {
        // improving by 10 % per epoch, then flat from epoch 4: stops after 4 + PATIENCE epochs
        let l = [10.0, 9.0, 8.1, 7.29, 7.29, 7.29, 7.29, 7.29];
        assert_eq!(stop_epoch(&l, REL_TOL, 2), 6);
        // a warm start already at the optimum stops after 1 + patience epochs
        assert_eq!(stop_epoch(&[1.0, 1.0, 1.0, 1.0], REL_TOL, 2), 3);
        // never converging: the cap
        let l: Vec<f64> = (0..10).map(|i| 100.0 - i as f64).collect();
        assert_eq!(stop_epoch(&l, REL_TOL, 2), 10);
    }
}
