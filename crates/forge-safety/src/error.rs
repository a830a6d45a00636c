//! Error type of forge-safety: one enum, messages that name the offending value.

/// A boxed error returned by user-supplied model-fitting closures (see [`crate::validate`]).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Errors returned by forge-safety.
#[derive(Debug, thiserror::Error)]
pub enum SafetyError {
    /// An error from candle.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// A shape, emptiness or finiteness error from forge-linalg (NaN/inf input lands here as
    /// [`forge_linalg::LinalgError::NonFinite`], naming the argument and the flat index).
    #[error(transparent)]
    Linalg(#[from] forge_linalg::LinalgError),
    /// An error from a forge-classical model (domain classifier, transfer or target-only model).
    #[error(transparent)]
    Classical(#[from] forge_classical::ClassicalError),
    /// Source and target have a different number of features.
    #[error("feature count mismatch: source has {source_features} features, target has {target_features}")]
    FeatureMismatch {
        /// Columns of the source matrix.
        source_features: usize,
        /// Columns of the target matrix.
        target_features: usize,
    },
    /// A sample had too few rows for the requested statistic.
    #[error("{what} needs at least {min} samples, got {got}")]
    TooFewSamples {
        /// Which sample (and for what).
        what: String,
        /// How many rows it had.
        got: usize,
        /// How many are needed.
        min: usize,
    },
    /// A configuration value or argument was out of range.
    #[error("invalid argument {name}: {reason}")]
    InvalidArgument {
        /// The argument's name.
        name: &'static str,
        /// Why it is invalid, with the value.
        reason: String,
    },
    /// Two inputs that must describe the same examples have different row counts.
    #[error("row count mismatch: {what_a} has {rows_a} rows, {what_b} has {rows_b}")]
    RowMismatch {
        /// The first input.
        what_a: String,
        /// Its rows.
        rows_a: usize,
        /// The second input.
        what_b: String,
        /// Its rows.
        rows_b: usize,
    },
    /// Labels with fewer than two distinct classes.
    #[error("{what} needs at least 2 distinct classes, got {got}")]
    TooFewClasses {
        /// Which labels.
        what: String,
        /// Distinct classes present.
        got: usize,
    },
    /// The input is valid but degenerate for the statistic (e.g. constant features: a zero
    /// denominator in CKA).
    #[error("{what} is degenerate: {reason}")]
    Degenerate {
        /// Which input.
        what: String,
        /// Why, with the value.
        reason: String,
    },
    /// Named tensors that must correspond (before / after training) do not.
    #[error("parameter {name:?}: {reason}")]
    ParameterMismatch {
        /// The parameter name.
        name: String,
        /// What differs.
        reason: String,
    },
    /// A user-supplied learner failed while fitting or predicting in [`crate::validate_transfer`].
    #[error("the {role} learner failed on fold {fold}: {source}")]
    Learner {
        /// `"transfer"` or `"target-only"`.
        role: &'static str,
        /// The cross-validation fold (0-based, over all repeats).
        fold: usize,
        /// The learner's error.
        #[source]
        source: BoxError,
    },
}

/// Result alias of forge-safety.
pub type Result<T> = std::result::Result<T, SafetyError>;
