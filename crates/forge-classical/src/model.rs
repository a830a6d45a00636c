//! The fitted model types: [`LinearModel`] (regression), [`LogisticModel`] (binary) and
//! [`SoftmaxModel`] (multi-class). Weights are f64 tensors on the CPU; prediction accepts `x`
//! of any float dtype and returns f64 tensors on `x`'s device.

use crate::data::{self, sigmoid, tensor1};
use crate::{ClassicalError, Result};
use candle_core::{DType, Device, Tensor};

/// A linear regression model `f(x) = w^T x + b`.
#[derive(Debug, Clone)]
pub struct LinearModel {
    /// Weights `w`, f64 `[d]`.
    pub weights: Tensor,
    /// Intercept `b`.
    pub intercept: f64,
}

impl LinearModel {
    /// Builds a model from weights (any float dtype, converted to f64 on the CPU) and an intercept.
    ///
    /// # Errors
    /// Shape errors if `weights` is not a non-empty vector; non-finite weights or intercept.
    pub fn new(weights: &Tensor, intercept: f64) -> Result<Self> {
        let w = data::weights(weights, "weights")?;
        check_intercept(intercept)?;
        Self::from_vec(w, intercept)
    }

    /// Builds a model from a weight vector.
    ///
    /// # Errors
    /// Empty or non-finite weights.
    pub fn from_vec(weights: Vec<f64>, intercept: f64) -> Result<Self> {
        if weights.is_empty() {
            return Err(ClassicalError::Empty("weights".into()));
        }
        forge_linalg::check::ensure_finite_slice(&weights, "weights")?;
        check_intercept(intercept)?;
        Ok(Self {
            weights: tensor1(weights, &Device::Cpu)?,
            intercept,
        })
    }

    /// The zero model with `d` features.
    ///
    /// # Errors
    /// [`ClassicalError::Empty`] if `d == 0`.
    pub fn zeros(d: usize) -> Result<Self> {
        Self::from_vec(vec![0.0; d], 0.0)
    }

    /// Number of features `d`.
    pub fn n_features(&self) -> usize {
        self.weights.elem_count()
    }

    /// Number of parameters (`d + 1`, intercept included).
    pub fn n_params(&self) -> usize {
        self.n_features() + 1
    }

    /// The weights as a `Vec<f64>`.
    ///
    /// # Errors
    /// Candle errors if the weight tensor was replaced by a non-vector.
    pub fn weights_vec(&self) -> Result<Vec<f64>> {
        data::weights(&self.weights, "weights")
    }

    /// Predictions `X w + b`.
    ///
    /// # Shapes
    /// `x`: `[n, d]` -> `[n]` (f64)
    ///
    /// # Errors
    /// Shape errors if `x` does not have `d` columns; non-finite `x`.
    pub fn predict(&self, x: &Tensor) -> Result<Tensor> {
        let w = self.weights_vec()?;
        let xm = data::matrix_cols(x, "x", w.len())?;
        tensor1(xm.affine(&w, self.intercept), x.device())
    }
}

/// A binary logistic regression model `P(y = 1 | x) = sigmoid(w^T x + b)`.
#[derive(Debug, Clone)]
pub struct LogisticModel {
    /// Weights `w`, f64 `[d]`.
    pub weights: Tensor,
    /// Intercept `b`.
    pub intercept: f64,
}

impl LogisticModel {
    /// Builds a model from weights (any float dtype, converted to f64 on the CPU) and an intercept.
    ///
    /// # Errors
    /// Shape errors if `weights` is not a non-empty vector; non-finite weights or intercept.
    pub fn new(weights: &Tensor, intercept: f64) -> Result<Self> {
        let w = data::weights(weights, "weights")?;
        Self::from_vec(w, intercept)
    }

    /// Builds a model from a weight vector.
    ///
    /// # Errors
    /// Empty or non-finite weights.
    pub fn from_vec(weights: Vec<f64>, intercept: f64) -> Result<Self> {
        let lin = LinearModel::from_vec(weights, intercept)?;
        Ok(Self {
            weights: lin.weights,
            intercept,
        })
    }

    /// Number of features `d`.
    pub fn n_features(&self) -> usize {
        self.weights.elem_count()
    }

    /// Number of parameters (`d + 1`).
    pub fn n_params(&self) -> usize {
        self.n_features() + 1
    }

    /// The weights as a `Vec<f64>`.
    ///
    /// # Errors
    /// Candle errors if the weight tensor was replaced by a non-vector.
    pub fn weights_vec(&self) -> Result<Vec<f64>> {
        data::weights(&self.weights, "weights")
    }

    /// The linear predictor (logit) as a [`LinearModel`], e.g. to warm-start SGD.
    pub fn linear_part(&self) -> LinearModel {
        LinearModel {
            weights: self.weights.clone(),
            intercept: self.intercept,
        }
    }

    /// Logits `X w + b`.
    ///
    /// # Shapes
    /// `x`: `[n, d]` -> `[n]`
    ///
    /// # Errors
    /// Shape errors; non-finite `x`.
    pub fn decision_function(&self, x: &Tensor) -> Result<Tensor> {
        self.linear_part().predict(x)
    }

    /// `P(y = 1 | x)`.
    ///
    /// # Shapes
    /// `x`: `[n, d]` -> `[n]`
    ///
    /// # Errors
    /// Shape errors; non-finite `x`.
    pub fn predict_proba(&self, x: &Tensor) -> Result<Tensor> {
        let w = self.weights_vec()?;
        let xm = data::matrix_cols(x, "x", w.len())?;
        let p = xm
            .affine(&w, self.intercept)
            .into_iter()
            .map(sigmoid)
            .collect();
        tensor1(p, x.device())
    }

    /// Hard labels `1.0` where `P(y = 1 | x) >= 0.5`, else `0.0`.
    ///
    /// # Shapes
    /// `x`: `[n, d]` -> `[n]`
    ///
    /// # Errors
    /// Shape errors; non-finite `x`.
    pub fn predict(&self, x: &Tensor) -> Result<Tensor> {
        let w = self.weights_vec()?;
        let xm = data::matrix_cols(x, "x", w.len())?;
        let p = xm
            .affine(&w, self.intercept)
            .into_iter()
            .map(|z| if z >= 0.0 { 1.0 } else { 0.0 })
            .collect();
        tensor1(p, x.device())
    }
}

impl From<LogisticModel> for LinearModel {
    fn from(m: LogisticModel) -> Self {
        LinearModel {
            weights: m.weights,
            intercept: m.intercept,
        }
    }
}

impl From<LinearModel> for LogisticModel {
    /// Uses the linear model as the logit `w^T x + b` (e.g. after [`stat_mapping`](crate::stat_mapping)).
    fn from(m: LinearModel) -> Self {
        LogisticModel {
            weights: m.weights,
            intercept: m.intercept,
        }
    }
}

/// A multinomial (softmax) logistic regression model `P(y = c | x) = softmax(x^T W + b)_c`.
#[derive(Debug, Clone)]
pub struct SoftmaxModel {
    /// Weights `W`, f64 `[d, k]`.
    pub weights: Tensor,
    /// Intercepts `b`, f64 `[k]`.
    pub intercept: Tensor,
}

impl SoftmaxModel {
    /// Builds a model from `W` `[d, k]` and `b` `[k]` (any float dtype, stored as f64 on the CPU).
    ///
    /// # Errors
    /// Shape errors if the dimensions disagree; non-finite values.
    pub fn new(weights: &Tensor, intercept: &Tensor) -> Result<Self> {
        let w = data::matrix(weights, "weights")?;
        let b = data::vector(intercept, "intercept")?;
        if b.len() != w.d {
            return Err(ClassicalError::Shape {
                what: "intercept".into(),
                expected: format!("[{}] (one per class)", w.d),
                got: intercept.dims().to_vec(),
            });
        }
        Ok(Self {
            weights: w.to_tensor(&Device::Cpu)?,
            intercept: tensor1(b, &Device::Cpu)?,
        })
    }

    /// Number of features `d`.
    pub fn n_features(&self) -> usize {
        self.weights.dims().first().copied().unwrap_or(0)
    }

    /// Number of classes `k`.
    pub fn n_classes(&self) -> usize {
        self.intercept.elem_count()
    }

    /// Number of parameters (`(d + 1) k`).
    pub fn n_params(&self) -> usize {
        (self.n_features() + 1) * self.n_classes()
    }

    /// Class scores (logits) `X W + b`.
    ///
    /// # Shapes
    /// `x`: `[n, d]` -> `[n, k]`
    ///
    /// # Errors
    /// Shape errors; non-finite `x`.
    pub fn decision_function(&self, x: &Tensor) -> Result<Tensor> {
        let d = self.n_features();
        let xm = data::matrix_cols(x, "x", d)?;
        let xt = xm.to_tensor(&Device::Cpu)?;
        let w = self.weights.to_dtype(DType::F64)?;
        let b = self.intercept.to_dtype(DType::F64)?;
        Ok(xt.matmul(&w)?.broadcast_add(&b)?.to_device(x.device())?)
    }

    /// Class probabilities.
    ///
    /// # Shapes
    /// `x`: `[n, d]` -> `[n, k]`, rows sum to 1
    ///
    /// # Errors
    /// Shape errors; non-finite `x`.
    pub fn predict_proba(&self, x: &Tensor) -> Result<Tensor> {
        Ok(forge_linalg::ops::softmax_rows(
            &self.decision_function(x)?,
        )?)
    }

    /// Most probable class id per row (as f64).
    ///
    /// # Shapes
    /// `x`: `[n, d]` -> `[n]`
    ///
    /// # Errors
    /// Shape errors; non-finite `x`.
    pub fn predict(&self, x: &Tensor) -> Result<Tensor> {
        let ids = self.decision_function(x)?.argmax(1)?.to_dtype(DType::F64)?;
        Ok(ids)
    }
}

fn check_intercept(b: f64) -> Result<()> {
    if !b.is_finite() {
        return Err(ClassicalError::NonFinite {
            what: "intercept".into(),
            value: b,
            index: 0,
        });
    }
    Ok(())
}
