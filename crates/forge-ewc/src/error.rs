//! Error type of forge-ewc: one enum whose messages name the offending value.

use std::path::PathBuf;

/// Errors returned by forge-ewc.
#[derive(Debug, thiserror::Error)]
pub enum EwcError {
    /// An error from candle.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// An error from forge-linalg (file I/O: missing, unreadable or truncated safetensors).
    #[error(transparent)]
    Linalg(#[from] forge_linalg::LinalgError),
    /// The parameter list is empty (after filtering), so there is nothing to estimate or penalise.
    #[error("no parameters to {context}: the parameter list is empty (after filtering)")]
    NoParameters {
        /// What needed them (`"estimate the Fisher of"`, `"penalise"`, ...).
        context: &'static str,
    },
    /// Two parameters share a name.
    #[error("parameter name {name:?} appears twice in the parameter list")]
    DuplicateParameter {
        /// The repeated name.
        name: String,
    },
    /// The data set is empty.
    #[error(
        "empty data: the Fisher needs at least one sample, got {n} (max_samples {max_samples:?})"
    )]
    EmptyData {
        /// The number of samples offered.
        n: usize,
        /// The configured cap.
        max_samples: Option<usize>,
    },
    /// The estimator needs the true labels and none were given.
    #[error("the {estimator} Fisher needs the true labels, but the targets are unlabelled")]
    MissingLabels {
        /// The estimator's name.
        estimator: String,
    },
    /// A label is outside `[0, classes)`.
    #[error("label {label} of sample {sample} is outside [0, {classes})")]
    LabelOutOfRange {
        /// The sample index.
        sample: usize,
        /// The label.
        label: usize,
        /// The number of classes (logit columns).
        classes: usize,
    },
    /// The closure returned logits (or NLLs) of the wrong shape.
    #[error(
        "the closure returned {what} of shape {got:?} for {samples} samples; expected {expected}"
    )]
    OutputShape {
        /// `"logits"` or `"negative log-likelihoods"`.
        what: &'static str,
        /// How many sample indices were passed.
        samples: usize,
        /// The expected shape, in words.
        expected: String,
        /// The shape returned.
        got: Vec<usize>,
    },
    /// The loss of a sample is NaN or infinite (so its gradient would poison the Fisher).
    #[error("the negative log-likelihood of sample {sample} is not finite ({value})")]
    NonFiniteLoss {
        /// The sample index (first index of the batch for the batch estimator).
        sample: usize,
        /// The value.
        value: f64,
    },
    /// A parameter received no gradient (not in the graph, frozen/detached, or behind an op
    /// without a backward pass).
    #[error("parameter {name:?} received no gradient: it is not used by the closure's output, is detached (frozen), or sits behind an op without a backward pass; set allow_missing_gradients to accept a zero Fisher")]
    NoGradient {
        /// The parameter's name.
        name: String,
    },
    /// A hyper-parameter is invalid.
    #[error("invalid {field}: {reason}")]
    InvalidConfig {
        /// The field name.
        field: &'static str,
        /// Why, with the value.
        reason: String,
    },
    /// `lambda` is negative or not finite.
    #[error("lambda must be finite and >= 0, got {value}")]
    InvalidLambda {
        /// The value.
        value: f64,
    },
    /// `gamma` is outside `[0, 1]` or not finite.
    #[error("gamma must be in [0, 1], got {value}")]
    InvalidGamma {
        /// The value.
        value: f64,
    },
    /// A Fisher or anchor tensor holds NaN or an infinity.
    #[error("{what} of {name:?} is not finite: value {value} at flat index {index}")]
    NonFinite {
        /// `"Fisher"` or `"anchor"`.
        what: &'static str,
        /// The parameter's name.
        name: String,
        /// The flat index of the first offending value.
        index: usize,
        /// The value.
        value: f64,
    },
    /// A Fisher diagonal has a negative entry (a diagonal Fisher is a mean of squares).
    #[error("the Fisher of {name:?} is negative ({value}) at flat index {index}; a diagonal Fisher is >= 0")]
    NegativeFisher {
        /// The parameter's name.
        name: String,
        /// The flat index.
        index: usize,
        /// The value.
        value: f64,
    },
    /// A parameter has no Fisher entry.
    #[error(
        "parameter {name:?} has no Fisher entry (the Fisher was estimated over other parameters)"
    )]
    MissingFisher {
        /// The parameter's name.
        name: String,
    },
    /// A penalised tensor has no parameter of that name in the model.
    #[error("the EWC state holds {name:?} but the model has no parameter of that name; exclude it with a ParamFilter")]
    MissingParameter {
        /// The name.
        name: String,
    },
    /// Shapes differ (parameter vs Fisher/anchor, or a file vs the model).
    #[error("shape mismatch for {name:?}: expected {expected:?}, got {got:?} (a replaced head? skip it with ParamFilter::skip_shape_mismatch)")]
    ShapeMismatch {
        /// The name.
        name: String,
        /// The shape of the stored Fisher/anchor.
        expected: Vec<usize>,
        /// The shape of the parameter.
        got: Vec<usize>,
    },
    /// The estimator cannot be used with this entry point.
    #[error("the {estimator} Fisher is not available here: {reason}")]
    UnsupportedEstimator {
        /// The estimator's name.
        estimator: String,
        /// Why.
        reason: String,
    },
    /// The user's closure failed.
    #[error("the model closure failed: {0}")]
    Closure(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A file could not be read or written.
    #[error("I/O error on {path:?}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A file exists but is not a valid EWC state.
    #[error("cannot read EWC state from {path:?}: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// Result alias of forge-ewc.
pub type Result<T> = std::result::Result<T, EwcError>;

/// Lets an [`EwcError`] flow through `candle_core::Result` code, e.g. a training-loop penalty
/// hook `Fn() -> candle_core::Result<Tensor>`: `move || Ok(ewc.penalty()?)`.
impl From<EwcError> for candle_core::Error {
    fn from(e: EwcError) -> Self {
        match e {
            EwcError::Candle(c) => c,
            other => candle_core::Error::wrap(other),
        }
    }
}
