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
