//! Bayesian transfer: the source model becomes the prior mean of the target posterior.
//! Linear-Gaussian in closed form; logistic by the Laplace approximation.

use crate::data::{self, check_pos, sigmoid};
use crate::logistic::BinaryProblem;
use crate::model::{LinearModel, LogisticModel};
use crate::ridge::{moments, source_weights, Moments};
use crate::{ClassicalError, Result};
use candle_core::{Device, Tensor};
use faer::Mat;

/// Posterior of Bayesian linear regression (see [`bayesian_transfer_linear`]).
#[derive(Debug, Clone)]
pub struct BayesianLinear {
    /// Posterior mean of the weights and the posterior-mean intercept `ȳ - x̄^T m`.
    pub mean: LinearModel,
    /// Posterior covariance of the weights `S`, f64 `[d, d]`.
    pub cov: Tensor,
    /// Noise variance `sigma^2` used.
    pub sigma2: f64,
    /// Prior variance `tau^2` used.
    pub tau2: f64,
    /// Number of target observations `n`.
    pub n_obs: usize,
    /// Target feature means `x̄`, f64 `[d]`.
    pub x_mean: Tensor,
}

impl BayesianLinear {
    /// Predictive mean `ȳ + (x - x̄)^T m` and predictive variance
    /// `sigma^2 + sigma^2 / n + (x - x̄)^T S (x - x̄)` (the `sigma^2/n` term is the intercept's
    /// posterior variance under its flat prior).
    ///
    /// # Shapes
    /// `x`: `[n*, d]` -> (mean `[n*]`, variance `[n*]`)
    ///
    /// # Errors
    /// Shape errors; non-finite `x`.
    pub fn predict(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let mean = self.mean.predict(x)?;
        let d = self.mean.n_features();
        let xm = data::matrix_cols(x, "x", d)?;
        let s: Vec<f64> = self.cov.flatten_all()?.to_vec1()?;
        let mu: Vec<f64> = self.x_mean.to_vec1()?;
        let mut var = Vec::with_capacity(xm.n);
        let mut c = vec![0.0; d];
        for row in xm.v.chunks_exact(d) {
            for ((cv, &v), &m) in c.iter_mut().zip(row).zip(&mu) {
                *cv = v - m;
            }
            let q: f64 = (0..d)
                .map(|i| c[i] * data::dot(&s[i * d..i * d + d], &c))
                .sum();
            var.push(self.sigma2 * (1.0 + 1.0 / self.n_obs as f64) + q);
        }
        Ok((mean, data::tensor1(var, x.device())?))
    }
}

/// Bayesian transfer for linear regression (Bishop, 2006, *Pattern Recognition and Machine
/// Learning*, §3.3; the source posterior becomes the target prior, Raina, Ng & Koller, 2006,
/// "Constructing informative priors using transfer learning", ICML).
///
/// Model: `y = X w + b + eps`, `eps ~ N(0, sigma^2 I)`, prior `w ~ N(w_src, tau^2 I)`, flat prior
/// on `b`. Integrating `b` out centres the data, and the posterior is Gaussian with
/// `S = (X_c^T X_c / sigma^2 + I / tau^2)^{-1}` and `m = S (X_c^T y_c / sigma^2 + w_src / tau^2)`,
/// i.e. the posterior mean is exactly [`regularized_transfer_linear`](crate::regularized_transfer_linear)
/// with `lam = sigma^2 / tau^2`.
///
/// # Shapes
/// `x`: `[n, d]`, `y`: `[n]`, `prior_mean.weights`: `[d]`
///
/// # Errors
/// Bad input; `sigma2` or `tau2` not finite and > 0; a prior with a different `d`.
pub fn bayesian_transfer_linear(
    x: &Tensor,
    y: &Tensor,
    prior_mean: &LinearModel,
    sigma2: f64,
    tau2: f64,
) -> Result<BayesianLinear> {
    check_pos("sigma2", sigma2)?;
    check_pos("tau2", tau2)?;
    let (xm, yv) = data::xy(x, y)?;
    let d = xm.d;
    let w0 = source_weights(&prior_mean.weights, d)?;
    let Moments { mx, my, g, c } = moments(&xm, &yv, None);
    let prec = Mat::from_fn(d, d, |i, j| {
        g[i * d + j] / sigma2 + if i == j { 1.0 / tau2 } else { 0.0 }
    });
    let rhs = Mat::from_fn(d, 1, |i, _| c[i] / sigma2 + w0[i] / tau2);
    let llt = prec
        .llt(faer::Side::Lower)
        .map_err(|_| ClassicalError::Linalg(forge_linalg::LinalgError::NotPositiveDefinite))?;
    use faer::linalg::solvers::Solve;
    let m = llt.solve(&rhs);
    // small orders without faer's parallel triangular products, larger ones from `llt`
    let cov =
        forge_linalg::dense::inverse_spd_faer(&prec, Some(&llt)).map_err(ClassicalError::Linalg)?;
    let w: Vec<f64> = (0..d).map(|i| m[(i, 0)]).collect();
    let b = my - data::dot(&mx, &w);
    Ok(BayesianLinear {
        mean: LinearModel::from_vec(w, b)?,
        cov: forge_linalg::dense::from_faer(cov.as_ref(), candle_core::DType::F64, &Device::Cpu)?,
        sigma2,
        tau2,
        n_obs: xm.n,
        x_mean: data::tensor1(mx, &Device::Cpu)?,
    })
}

/// Laplace-approximate posterior of Bayesian logistic regression (see [`bayesian_transfer_logistic`]).
#[derive(Debug, Clone)]
pub struct BayesianLogistic {
    /// The MAP model.
    pub map: LogisticModel,
    /// Posterior covariance of `(w, b)` (intercept last), f64 `[d + 1, d + 1]`: the inverse
    /// Hessian of the negative log posterior at the MAP.
    pub cov: Tensor,
    /// Prior variance `tau^2` used.
    pub tau2: f64,
}

impl BayesianLogistic {
    /// Predictive `P(y = 1 | x)` by the probit approximation of the logistic-Gaussian integral
    /// (MacKay, 1992, "The evidence framework applied to classification networks"):
    /// `sigmoid(mu / sqrt(1 + pi s^2 / 8))` with `mu = x~^T theta_MAP`, `s^2 = x~^T Sigma x~`,
    /// `x~ = (x, 1)`.
    ///
    /// # Shapes
    /// `x`: `[n, d]` -> `[n]`
    ///
    /// # Errors
    /// Shape errors; non-finite `x`.
    pub fn predict_proba(&self, x: &Tensor) -> Result<Tensor> {
        let w = self.map.weights_vec()?;
        let d = w.len();
        let xm = data::matrix_cols(x, "x", d)?;
        let s: Vec<f64> = self.cov.flatten_all()?.to_vec1()?;
        let p = d + 1;
        let mut xt = vec![1.0; p];
        let mut out = Vec::with_capacity(xm.n);
        for row in xm.v.chunks_exact(d) {
            xt[..d].copy_from_slice(row);
            let mu = data::dot(row, &w) + self.map.intercept;
            let s2: f64 = (0..p)
                .map(|i| xt[i] * data::dot(&s[i * p..i * p + p], &xt))
                .sum();
            out.push(sigmoid(
                mu / (1.0 + std::f64::consts::PI * s2.max(0.0) / 8.0).sqrt(),
            ));
        }
        data::tensor1(out, x.device())
    }

    /// Hard labels from the predictive probability (`>= 0.5` -> 1). Equal to the MAP labels,
    /// since moderation does not change the sign of the logit.
    ///
    /// # Errors
    /// Shape errors; non-finite `x`.
    pub fn predict(&self, x: &Tensor) -> Result<Tensor> {
        self.map.predict(x)
    }
}

/// Bayesian transfer for logistic regression by the Laplace approximation (MacKay, 1992;
/// Bishop, 2006, §4.5): prior `w ~ N(w_src, tau^2 I)`, flat prior on `b`; the MAP is
/// [`regularized_transfer_logistic`](crate::regularized_transfer_logistic) with `lam = 1/tau^2`,
/// and the posterior is approximated by `N(theta_MAP, H^{-1})`, `H = X~^T diag(p (1 - p)) X~ +
/// diag(1/tau^2, ..., 1/tau^2, 0)`.
///
/// # Shapes
/// `x`: `[n, d]`, `y`: `[n]` 0/1, `prior_mean.weights`: `[d]`
///
/// # Errors
/// As [`regularized_transfer_logistic`](crate::regularized_transfer_logistic); `tau2` not finite and > 0.
pub fn bayesian_transfer_logistic(
    x: &Tensor,
    y: &Tensor,
    prior_mean: &LogisticModel,
    tau2: f64,
) -> Result<BayesianLogistic> {
    check_pos("tau2", tau2)?;
    let (xm, yv) = data::xy(x, y)?;
    data::check_binary(&yv, "y", true)?;
    let w0 = source_weights(&prior_mean.weights, xm.d)?;
    let sol = BinaryProblem {
        x: &xm,
        y: &yv,
        s: None,
        offset: None,
        lam: 1.0 / tau2,
        w0: Some(&w0),
    }
    .solve("bayesian_transfer_logistic")?;
    let p = xm.d + 1;
    let h = Mat::from_fn(p, p, |i, j| sol.hessian[i * p + j]);
    let h_t = forge_linalg::dense::from_faer(h.as_ref(), candle_core::DType::F64, &Device::Cpu)?;
    let cov = forge_linalg::dense::inverse_spd(&h_t)?;
    Ok(BayesianLogistic {
        map: LogisticModel::from_vec(sol.w, sol.b)?,
        cov,
        tau2,
    })
}
