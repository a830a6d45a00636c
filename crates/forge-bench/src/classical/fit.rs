//! The per-seed data of a classical trial and the closed-form / non-SGD fits of its strategies
//! (target-only, regularized, Bayesian, covariance shift, moment mapping, low-rank adapter).

use super::LAMS;
use crate::error::Result;
use candle_core::Tensor;
use forge_classical::cv::{select, CvParams};
use forge_classical::{
    bayesian_transfer_linear, bayesian_transfer_logistic, covariance_shift_transfer,
    covariance_shift_transfer_logistic, fit_logistic, fit_low_rank_adapter, metrics,
    regularized_transfer_linear, regularized_transfer_logistic, ridge, stat_mapping, AdapterParams,
    CovShiftParams, LinearModel, LogisticModel,
};
use forge_data::TabularDataset;

/// A fitted model of either task.
#[derive(Debug, Clone)]
pub enum Fitted {
    /// Regression.
    Linear(LinearModel),
    /// Binary classification.
    Logistic(LogisticModel),
}

impl Fitted {
    /// The linear part (weights and intercept) of the model.
    pub fn linear(&self) -> LinearModel {
        match self {
            Fitted::Linear(m) => m.clone(),
            Fitted::Logistic(m) => m.linear_part(),
        }
    }

    /// Held-out quality: R2 for regression, accuracy for classification.
    ///
    /// # Errors
    /// Shape errors.
    pub fn quality(&self, d: &TabularDataset) -> Result<f64> {
        Ok(match self {
            Fitted::Linear(m) => metrics::r2(&d.y, &m.predict(&d.x)?)?,
            Fitted::Logistic(m) => metrics::accuracy(&d.y, &m.predict(&d.x)?)?,
        })
    }
}

/// The source model: ridge (regression) or L2 logistic regression (classification), lam = 1.
pub(crate) fn fit_source(source: &TabularDataset, cls: bool) -> Result<Fitted> {
    Ok(if cls {
        Fitted::Logistic(fit_logistic(&source.x, &source.y, 1.0)?)
    } else {
        Fitted::Linear(ridge(&source.x, &source.y, 1.0)?)
    })
}

/// Everything one seed of a classical scenario trains on.
pub(crate) struct TrialData {
    pub(crate) seed: u64,
    /// Binary classification (else regression).
    pub(crate) cls: bool,
    pub(crate) source: TabularDataset,
    pub(crate) train: TabularDataset,
    pub(crate) test: TabularDataset,
    /// The source model.
    pub(crate) src: Fitted,
}

impl TrialData {
    /// Parameters estimated from target data by a full (re)fit: weights + intercept.
    pub(crate) fn n_params(&self) -> u64 {
        self.train.n_features() as u64 + 1
    }

    fn cv(&self) -> CvParams {
        CvParams {
            k: 5,
            seed: self.seed,
            stratified: self.cls,
        }
    }

    /// The penalty in [`LAMS`] with the best 5-fold CV score: R2 (regression) or negative
    /// log-loss (classification).
    fn cv_lam(&self, fit: impl Fn(&Tensor, &Tensor, f64) -> Result<Fitted>) -> Result<f64> {
        let choice = select(
            &self.train.x,
            &self.train.y,
            &LAMS,
            &self.cv(),
            |xt, yt, xv, yv, &lam| {
                let m = fit(xt, yt, lam).map_err(|e| {
                    forge_classical::ClassicalError::InvalidParameter {
                        name: "cv fit",
                        reason: e.to_string(),
                    }
                })?;
                match m {
                    Fitted::Linear(m) => metrics::r2(yv, &m.predict(xv)?),
                    Fitted::Logistic(m) => Ok(-metrics::log_loss(yv, &m.predict_proba(xv)?)?),
                }
            },
        )?;
        Ok(choice.best)
    }

    pub(crate) fn target_only(&self) -> Result<Fitted> {
        let cls = self.cls;
        let fit = move |x: &Tensor, y: &Tensor, lam: f64| -> Result<Fitted> {
            Ok(if cls {
                Fitted::Logistic(fit_logistic(x, y, lam)?)
            } else {
                Fitted::Linear(ridge(x, y, lam)?)
            })
        };
        let lam = self.cv_lam(fit)?;
        fit(&self.train.x, &self.train.y, lam)
    }

    pub(crate) fn regularized(&self) -> Result<Fitted> {
        let src = self.src.clone();
        let fit = move |x: &Tensor, y: &Tensor, lam: f64| -> Result<Fitted> {
            Ok(match &src {
                Fitted::Logistic(s) => {
                    Fitted::Logistic(regularized_transfer_logistic(x, y, s, lam)?)
                }
                Fitted::Linear(s) => Fitted::Linear(regularized_transfer_linear(x, y, s, lam)?),
            })
        };
        let lam = self.cv_lam(&fit)?;
        fit(&self.train.x, &self.train.y, lam)
    }

    /// Empirical-Bayes prior scale: `tau^2` = mean squared source weight; noise `sigma^2` =
    /// the source model's residual variance on the source data.
    pub(crate) fn bayesian(&self) -> Result<Fitted> {
        let w = self.src.linear().weights_vec()?;
        let tau2 = (w.iter().map(|v| v * v).sum::<f64>() / w.len().max(1) as f64).max(1e-6);
        Ok(match &self.src {
            Fitted::Logistic(s) => Fitted::Logistic(
                bayesian_transfer_logistic(&self.train.x, &self.train.y, s, tau2)?.map,
            ),
            Fitted::Linear(s) => {
                let sigma2 = metrics::mse(&self.source.y, &s.predict(&self.source.x)?)?.max(1e-9);
                Fitted::Linear(
                    bayesian_transfer_linear(&self.train.x, &self.train.y, s, sigma2, tau2)?.mean,
                )
            }
        })
    }

    pub(crate) fn cov_shift(&self) -> Result<Fitted> {
        let p = CovShiftParams::default().seed(self.seed);
        let (s, t) = (&self.source, &self.train);
        Ok(if self.cls {
            Fitted::Logistic(covariance_shift_transfer_logistic(&s.x, &s.y, &t.x, &t.y, &p)?.model)
        } else {
            Fitted::Linear(covariance_shift_transfer(&s.x, &s.y, &t.x, &t.y, &p)?.model)
        })
    }

    pub(crate) fn stat_mapping(&self) -> Result<Fitted> {
        let mapped = stat_mapping(&self.src.linear(), &self.source.x, &self.train.x)?;
        Ok(match &self.src {
            Fitted::Logistic(_) => {
                Fitted::Logistic(LogisticModel::new(&mapped.weights, mapped.intercept)?)
            }
            Fitted::Linear(_) => Fitted::Linear(mapped),
        })
    }

    pub(crate) fn adapter_params(&self) -> AdapterParams {
        AdapterParams::default()
            .rank(2.min(self.train.n_features()))
            .seed(self.seed)
    }

    pub(crate) fn adapter(&self) -> Result<Fitted> {
        let p = self.adapter_params();
        Ok(match &self.src {
            Fitted::Logistic(s) => {
                Fitted::Logistic(fit_low_rank_adapter(&self.train.x, &self.train.y, s, &p)?.model)
            }
            Fitted::Linear(s) => {
                Fitted::Linear(fit_low_rank_adapter(&self.train.x, &self.train.y, s, &p)?.model)
            }
        })
    }
}
