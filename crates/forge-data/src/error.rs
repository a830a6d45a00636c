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
    /// A data file could not be opened or read (permissions, a bad gzip stream, invalid UTF-8).
    #[error("{path}: {source}{hint}", hint = gz_hint(.path))]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A path that must be a folder (e.g. `$FORGE_DATA_DIR`) is something else.
    #[error(
        "{path} is not a folder (looking for {wanted}); check FORGE_DATA_DIR / FORGE_TEXT_DATA_DIR"
    )]
    NotAFolder {
        /// The path that is not a folder.
        path: PathBuf,
        /// The file that was looked for inside it.
        wanted: PathBuf,
    },
    /// Two header columns have the same name, so a column cannot be selected by name.
    #[error("{path}: column name {column:?} appears more than once in the header (fields {first} and {second}, 1-based)")]
    DuplicateColumn {
        /// The file.
        path: PathBuf,
        /// The repeated name.
        column: String,
        /// 1-based field number of its first occurrence.
        first: usize,
        /// 1-based field number of its second occurrence.
        second: usize,
    },
    /// A column was asked for twice as a feature.
    #[error("{path}: feature column {column:?} is listed more than once")]
    RepeatedFeature {
        /// The file.
        path: PathBuf,
        /// The repeated name.
        column: String,
    },
    /// The target column was also listed as a feature (target leakage).
    #[error("{path}: target column {column:?} is also listed as a feature (target leakage)")]
    TargetAsFeature {
        /// The file.
        path: PathBuf,
        /// The target column.
        column: String,
    },
    /// One value of a feature column makes standardisation meaningless (it overflows the
    /// statistics or erases every other row of the column).
    #[error("{dataset}: feature {column:?}: value {value:e} at row {row} (0-based) {reason}")]
    BadFeature {
        /// The data set name.
        dataset: String,
        /// The feature name.
        column: String,
        /// The 0-based row in the data set.
        row: usize,
        /// The value.
        value: f64,
        /// What goes wrong.
        reason: String,
    },
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
    /// A parquet file could not be read or does not have the expected columns.
    #[error("{path}: {reason}")]
    Parquet {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong.
        reason: String,
    },
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

/// A hint for errors while reading a `.gz` file.
fn gz_hint(path: &std::path::Path) -> &'static str {
    if path.extension().is_some_and(|e| e == "gz") {
        " (is it a complete gzip file of UTF-8 text?)"
    } else {
        ""
    }
}

/// Result alias of forge-data.
pub type Result<T> = std::result::Result<T, DataError>;
