//! Error type of forge-classical: one enum, messages carry the offending value.

use forge_linalg::LinalgError;

/// Errors returned by forge-classical.
#[derive(Debug, thiserror::Error)]
pub enum ClassicalError {
    /// An error from candle.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// A linear-algebra error from forge-linalg (e.g. a singular system with `lam = 0`).
    #[error(transparent)]
    Linalg(LinalgError),
    /// A tensor had the wrong rank or shape.
    #[error("{what}: expected {expected}, got shape {got:?}")]
    Shape {
        /// Which argument was wrong.
        what: String,
        /// A description of the expected shape.
        expected: String,
        /// The shape that was passed.
        got: Vec<usize>,
    },
    /// An input contained NaN or infinity.
    #[error("{what} contains a non-finite value ({value}) at flat index {index}")]
    NonFinite {
        /// Which argument was wrong.
        what: String,
        /// The first offending value.
        value: f64,
        /// Its flat (row-major) index.
        index: usize,
    },
    /// An input had no rows/elements.
    #[error("{0} is empty")]
    Empty(String),
    /// A hyperparameter was out of range.
    #[error("invalid parameter {name}: {reason}")]
    InvalidParameter {
        /// The parameter's name.
        name: &'static str,
        /// Why it is invalid, with the value.
        reason: String,
    },
    /// A label was not a valid class id (0/1 for binary, 0..k for multi-class).
    #[error("{what}: invalid label {value} at index {index} (expected {expected})")]
    InvalidLabel {
        /// Which argument was wrong.
        what: String,
        /// The offending value.
        value: f64,
        /// Its index.
        index: usize,
        /// The admissible labels.
        expected: String,
    },
    /// A classifier was asked to fit data holding a single class, which has no finite optimum
    /// when the intercept is unpenalised.
    #[error("{what} holds a single class ({class}); at least two classes are needed")]
    SingleClass {
        /// Which argument was wrong.
        what: String,
        /// The only class present.
        class: f64,
    },
    /// An iterative solver did not reach its tolerance.
    #[error("{method} did not converge in {iterations} iterations (gradient norm {grad_norm:e})")]
    NoConvergence {
        /// The solver.
        method: &'static str,
        /// Iterations performed.
        iterations: usize,
        /// Final gradient norm.
        grad_norm: f64,
    },
    /// Unpenalised logistic regression on linearly separable classes: the likelihood has no
    /// finite maximiser.
    #[error("{0}: the classes are linearly separable, so with lam = 0 there is no finite optimum; use lam > 0")]
    Separable(&'static str),
    /// Training produced a non-finite loss (the learning rate is too large).
    #[error(
        "{method} diverged at epoch {epoch} (loss {loss}); lower the learning rate (lr = {lr})"
    )]
    Diverged {
        /// The trainer.
        method: &'static str,
        /// The epoch (0-based) at which the loss became non-finite.
        epoch: usize,
        /// The non-finite loss.
        loss: f64,
        /// The learning rate used.
        lr: f64,
    },
}

impl From<LinalgError> for ClassicalError {
    fn from(e: LinalgError) -> Self {
        match e {
            LinalgError::Candle(c) => Self::Candle(c),
            LinalgError::Shape {
                what,
                expected,
                got,
            } => Self::Shape {
                what,
                expected,
                got,
            },
            LinalgError::NonFinite { what, value, index } => Self::NonFinite { what, value, index },
            LinalgError::Empty(w) => Self::Empty(w),
            other => Self::Linalg(other),
        }
    }
}

/// Result alias of forge-classical.
pub type Result<T> = std::result::Result<T, ClassicalError>;
