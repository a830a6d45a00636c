//! Error type of forge-data: every bad file, column, cell or argument becomes a typed error that
//! names the file, the line, the column and the offending text.

use std::path::PathBuf;

/// Errors returned by forge-data.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// An error from candle.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// An error from forge-linalg (shapes, non-finite values).
    #[error(transparent)]
    Linalg(#[from] forge_linalg::LinalgError),
    /// An I/O error other than a missing file.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// A data file does not exist.
    #[error("data file not found: {path}")]
    MissingFile {
        /// The path that was looked for.
        path: PathBuf,
    },
    /// The file has no header line or no data row.
    #[error("{path}: file is empty (no data rows)")]
    EmptyFile {
        /// The file.
        path: PathBuf,
    },
    /// A required column is not in the header.
    #[error("{path}: missing column {column:?} (header has {available:?})")]
    MissingColumn {
        /// The file.
        path: PathBuf,
        /// The column that was asked for.
        column: String,
        /// The columns the header does have.
        available: Vec<String>,
    },
    /// A cell that must be a finite number is not.
    #[error("{path}:{line}: column {column:?}: cannot read {value:?} as a finite number")]
    NonNumeric {
        /// The file.
        path: PathBuf,
        /// The 1-based line number in the file.
        line: u64,
        /// The column name.
        column: String,
        /// The cell text.
        value: String,
    },
    /// A categorical cell has a value outside its documented encoding.
    #[error("{path}:{line}: column {column:?}: unknown category {value:?} (expected one of {expected:?})")]
    BadCategory {
        /// The file.
        path: PathBuf,
        /// The 1-based line number in the file.
        line: u64,
        /// The column name.
        column: String,
        /// The cell text.
        value: String,
        /// The accepted values.
        expected: Vec<String>,
    },
    /// A line has a different number of fields than the header.
    #[error("{path}:{line}: expected {expected} fields, got {got}")]
    ColumnCount {
        /// The file.
        path: PathBuf,
        /// The 1-based line number in the file.
        line: u64,
        /// The number of fields of the header (or the documented layout).
        expected: usize,
        /// The number of fields on this line.
        got: usize,
    },
    /// The file does not match its documented layout (e.g. a row count in a header line).
    #[error("{path}: {reason}")]
    BadLayout {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the values found.
        reason: String,
    },
    /// A malformed CSV/TSV record (e.g. invalid UTF-8, unbalanced quotes).
    #[error("{path}: {source}")]
    Csv {
        /// The file.
        path: PathBuf,
        /// The parser's error.
        source: csv::Error,
    },
    /// A fraction (subsampling budget or test fraction) outside its range.
    #[error("invalid {what}: fraction must be in {range}, got {value}")]
    BadFraction {
        /// Which argument.
        what: &'static str,
        /// The accepted range.
        range: &'static str,
        /// The value passed.
        value: f64,
    },
    /// A sample count outside `1..=n`.
    #[error("invalid budget: count must be in 1..={n}, got {count}")]
    BadCount {
        /// The count passed.
        count: usize,
        /// The number of available samples.
        n: usize,
    },
    /// A row index out of range in [`crate::TabularDataset::select`].
    #[error("row index {index} out of range for a data set of {n} rows")]
    IndexOutOfRange {
        /// The bad index.
        index: usize,
        /// The number of rows.
        n: usize,
    },
    /// An operation would produce (or was given) an empty data set.
    #[error("empty data set: {0}")]
    Empty(String),
    /// A target value does not fit the data set's task (e.g. a class id outside `0..n_classes`).
    #[error("{dataset}: target value {value} at row {row} is not a valid label for task {task}")]
    BadLabel {
        /// The data set name.
        dataset: String,
        /// The row index.
        row: usize,
        /// The value found.
        value: f64,
        /// The task, as text.
        task: String,
    },
    /// An operation that needs a classification task was called on another task.
    #[error("{dataset}: needs a classification task, but the task is {task}")]
    NotClassification {
        /// The data set name.
        dataset: String,
        /// The task, as text.
        task: String,
    },
    /// No domain split has this name.
    #[error("no split named {0:?}; known splits: {known:?}", known = crate::SPLIT_NAMES)]
    UnknownSplit(String),
    /// An environment variable that must point at a data folder is not set.
    #[error("environment variable {0} is not set (it must point at the local data folder)")]
    MissingEnv(&'static str),
}

/// Result alias of forge-data.
pub type Result<T> = std::result::Result<T, DataError>;
