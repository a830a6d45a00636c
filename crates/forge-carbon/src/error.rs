//! The crate's single error type.
//!
//! Every fallible public function returns [`Result`]. Messages carry the offending value.

use std::path::PathBuf;

/// Errors raised by forge-carbon.
#[derive(Debug, thiserror::Error)]
pub enum CarbonError {
    /// The power usage effectiveness is not a finite number >= 1.0.
    #[error("PUE must be a finite number >= 1.0, got {0}")]
    InvalidPue(f64),
    /// The carbon intensity is negative or not finite.
    #[error("carbon intensity must be a finite number >= 0 g CO2/kWh, got {0}")]
    InvalidIntensity(f64),
    /// A setting has a value outside its allowed set.
    #[error("setting {key} = {value:?} is not valid: expected {expected}")]
    InvalidSetting {
        /// The setting.
        key: &'static str,
        /// The rejected value.
        value: String,
        /// What is allowed.
        expected: &'static str,
    },
    /// A power figure (TDP, W per GB, ...) is not a finite positive number.
    #[error("{what} must be a finite number > 0, got {value}")]
    InvalidPower {
        /// Which setting.
        what: &'static str,
        /// The rejected value.
        value: f64,
    },
    /// An environment variable or configuration-file entry holds a value that cannot be parsed.
    #[error("{var}={value:?} is not a valid number")]
    InvalidEnv {
        /// The variable's name (`FORGE_PUE`, `CODECARBON_PUE`, `~/.codecarbon.config: pue`, ...).
        var: String,
        /// Its raw value.
        value: String,
    },
    /// A predictor was asked for zero total epochs, or given more epochs than it expects.
    #[error("invalid epoch count: {0}")]
    InvalidEpochs(String),
    /// A measurement value handed to the crate is negative or not finite.
    #[error("{what} must be a finite number >= 0, got {value}")]
    InvalidMeasurement {
        /// Which value.
        what: &'static str,
        /// The rejected value.
        value: f64,
    },
    /// `start` was called on a tracker that is already running.
    #[error("the tracker is already running: call stop() before start()")]
    AlreadyStarted,
    /// `stop` was called on a tracker that is not running.
    #[error("the tracker is not running: call start() before stop()")]
    NotStarted,
    /// RAPL counters are absent or unusable under the powercap root.
    #[error("RAPL unavailable under {root}: {reason}")]
    RaplUnavailable {
        /// The powercap root.
        root: PathBuf,
        /// Why.
        reason: String,
    },
    /// A file has unexpected content (an unparsable sysfs counter, ...).
    #[error("unexpected content in {path}: {reason}")]
    BadFile {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// An I/O error on a named path.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// JSON (de)serialisation failed.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}

impl CarbonError {
    /// Wraps an I/O error with the path it concerns.
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        CarbonError::Io {
            path: path.into(),
            source,
        }
    }
}

/// The crate's result type.
pub type Result<T> = std::result::Result<T, CarbonError>;
