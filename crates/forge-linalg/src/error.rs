//! Error type of forge-linalg.

/// Errors returned by forge-linalg.
#[derive(Debug, thiserror::Error)]
pub enum LinalgError {
    /// An error from candle.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
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
    /// A tensor contained NaN or infinity.
    #[error("{what} contains a non-finite value ({value}) at flat index {index}")]
    NonFinite {
        /// Which argument was wrong.
        what: String,
        /// The first offending value.
        value: f64,
        /// The flat (row-major) index of the first offending value.
        index: usize,
    },
    /// One value of a column makes its statistics meaningless: they would overflow, or the
    /// value dominates the column so much that standardising it would erase every other row.
    #[error("{what}: column {column}: value {value:e} at row {row} {reason}")]
    BadColumn {
        /// Which argument was wrong.
        what: String,
        /// The 0-based column index.
        column: usize,
        /// The 0-based row index of the offending value.
        row: usize,
        /// The offending value.
        value: f64,
        /// What goes wrong, with the statistics involved.
        reason: String,
    },
    /// A tensor had no elements where some were required.
    #[error("{0} is empty")]
    Empty(String),
    /// A matrix that must be symmetric positive definite was not.
    #[error("matrix is not positive definite (Cholesky failed); add regularisation")]
    NotPositiveDefinite,
    /// An iterative decomposition did not converge.
    #[error("{0} did not converge")]
    NoConvergence(&'static str),
    /// An argument had an invalid value.
    #[error("invalid argument {name}: {reason}")]
    InvalidArgument {
        /// The argument's name.
        name: &'static str,
        /// Why it is invalid, with the value.
        reason: String,
    },
    /// A configuration value (e.g. a Slurm option of [`crate::cluster`]) was invalid.
    #[error("invalid configuration {name}: {reason}")]
    InvalidConfig {
        /// The offending setting.
        name: String,
        /// Why it is invalid, with the value.
        reason: String,
    },
    /// A file could not be read, written, synced or renamed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or folder involved.
        path: std::path::PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A file is not valid (e.g. a truncated or corrupt safetensors file).
    #[error("{path} is corrupt: {reason}")]
    Corrupt {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong, with the offending values.
        reason: String,
    },
    /// A tensor name is not in a file.
    #[error("tensor {name:?} not found in {path}")]
    TensorNotFound {
        /// The file.
        path: std::path::PathBuf,
        /// The missing name.
        name: String,
    },
    /// A tensor's dtype is not one Forge computes with (F32, F16, BF16).
    #[error("tensor {name:?} in {path} has dtype {dtype}; only F32, F16 and BF16 are supported")]
    UnsupportedDtype {
        /// The file.
        path: std::path::PathBuf,
        /// The tensor.
        name: String,
        /// The dtype found.
        dtype: String,
    },
}

/// Result alias of forge-linalg.
pub type Result<T> = std::result::Result<T, LinalgError>;
