//! The CLI's error type and its exit codes.
//!
//! | exit code | meaning |
//! |---:|---|
//! | 0 | success (`forge gate`: verdict `transfer`) |
//! | 1 | `forge gate`: verdict `transfer-with-caution` |
//! | 2 | `forge gate`: verdict `block` |
//! | 64 | usage error: unknown option, bad option value, unknown method (sysexits `EX_USAGE`) |
//! | 65 | bad input: missing or unreadable file, unknown column, non-numeric cell, bad YAML/JSON, wrong shapes (`EX_DATAERR`) |
//! | 70 | internal error (a bug: please report) (`EX_SOFTWARE`) |
//! | 74 | an output file could not be written (`EX_IOERR`) |
//! | 126 / 127 | `forge track`: the command exists but cannot be run / was not found (as `env`, `timeout`) |
//! | other | `forge track`: the tracked command's own exit code (128 + n when killed by signal n) |
//!
//! Errors print as one line on stderr, `error: <what> ...`, naming the bad value or file.

use std::path::PathBuf;

/// Usage error (sysexits `EX_USAGE`).
pub const EXIT_USAGE: i32 = 64;
/// Bad input data (sysexits `EX_DATAERR`).
pub const EXIT_DATA: i32 = 65;
/// Internal error (sysexits `EX_SOFTWARE`).
pub const EXIT_SOFTWARE: i32 = 70;
/// Output could not be written (sysexits `EX_IOERR`).
pub const EXIT_IO: i32 = 74;
/// `forge track`: the command was found but could not be executed.
pub const EXIT_CANNOT_EXECUTE: i32 = 126;
/// `forge track`: the command was not found.
pub const EXIT_NOT_FOUND: i32 = 127;

/// Everything that can go wrong in a `forge` command.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A bad command-line value (the clap parser accepted it, the command did not).
    #[error("{0}")]
    Usage(String),
    /// An input file does not exist.
    #[error("{what} not found: {path}")]
    MissingInput {
        /// What the file is (e.g. "source CSV").
        what: &'static str,
        /// The path given.
        path: PathBuf,
    },
    /// Bad content in an input (wrong columns, labels, ...), described in full.
    #[error("{0}")]
    Input(String),
    /// An output could not be written.
    #[error("cannot write {path}: {reason}")]
    Output {
        /// The output path.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// `forge track` could not start the command.
    #[error("cannot run {program:?}: {reason}")]
    Spawn {
        /// The program name.
        program: String,
        /// Why (not found, permission denied, ...).
        reason: String,
        /// The exit code to use (126 or 127).
        code: i32,
    },
    /// An error of forge-carbon.
    #[error(transparent)]
    Carbon(#[from] forge_carbon::CarbonError),
    /// An error of forge-data (files, columns, cells).
    #[error(transparent)]
    Data(#[from] forge_data::DataError),
    /// An error of forge-safety.
    #[error(transparent)]
    Safety(#[from] forge_safety::SafetyError),
    /// An error of forge-linalg.
    #[error(transparent)]
    Linalg(#[from] forge_linalg::LinalgError),
    /// An error of candle.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// JSON (de)serialisation.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// An I/O error outside a named file (stdout, /proc, ...).
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// A bug.
    #[error("internal error: {0}")]
    Internal(String),
}

impl CliError {
    /// The process exit code for this error (see the module docs).
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Usage(_) => EXIT_USAGE,
            CliError::Carbon(e) => match e {
                forge_carbon::CarbonError::Io { .. } => EXIT_IO,
                forge_carbon::CarbonError::InvalidEnv { .. }
                | forge_carbon::CarbonError::InvalidPue(_)
                | forge_carbon::CarbonError::InvalidIntensity(_)
                | forge_carbon::CarbonError::InvalidSetting { .. }
                | forge_carbon::CarbonError::InvalidPower { .. } => EXIT_USAGE,
                _ => EXIT_SOFTWARE,
            },
            CliError::MissingInput { .. }
            | CliError::Input(_)
            | CliError::Data(_)
            | CliError::Safety(_)
            | CliError::Linalg(_)
            | CliError::Json(_) => EXIT_DATA,
            CliError::Output { .. } | CliError::Io(_) => EXIT_IO,
            CliError::Spawn { code, .. } => *code,
            CliError::Candle(_) | CliError::Internal(_) => EXIT_SOFTWARE,
        }
    }

    /// The message on one line: the error and its sources joined by `": "`, newlines folded.
    pub fn one_line(&self) -> String {
        one_line(self)
    }
}

/// Renders an error and its `source()` chain on one line (sources already contained in the
/// message are not repeated).
pub fn one_line(e: &(dyn std::error::Error + 'static)) -> String {
    let mut msg = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let t = s.to_string();
        if !msg.contains(&t) {
            msg.push_str(": ");
            msg.push_str(&t);
        }
        src = s.source();
    }
    msg.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The crate's result type.
pub type Result<T> = std::result::Result<T, CliError>;
