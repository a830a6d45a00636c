//! Error type of forge-bench.

use std::path::PathBuf;

/// Errors returned by forge-bench.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// An error from candle.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// An error from forge-linalg.
    #[error(transparent)]
    Linalg(#[from] forge_linalg::LinalgError),
    /// An error from forge-data (loading or splitting a dataset).
    #[error(transparent)]
    Data(#[from] forge_data::DataError),
    /// An error from forge-classical (fitting a model).
    #[error(transparent)]
    Classical(#[from] forge_classical::ClassicalError),
    /// An error from forge-safety (the transfer gate).
    #[error(transparent)]
    Safety(#[from] forge_safety::SafetyError),
    /// An error from forge-carbon (energy tracking).
    #[error(transparent)]
    Carbon(#[from] forge_carbon::CarbonError),
    /// An error from forge-models (loading, tokenising or training a transformer).
    #[error(transparent)]
    Model(#[from] forge_models::ModelError),
    /// An error from forge-lora (injecting, saving or loading an adapter).
    #[error(transparent)]
    Lora(#[from] forge_lora::LoraError),
    /// An EWC error (Fisher estimation, penalty).
    #[error(transparent)]
    Ewc(#[from] forge_ewc::EwcError),
    /// A model-merging error (boxed: forge-merge's error is the largest of all and would make
    /// every `Result<_, BenchError>` 128 bytes, which clippy's `result_large_err` refuses).
    #[error(transparent)]
    Merge(Box<forge_merge::MergeError>),
    /// A training run of a scenario failed or diverged.
    #[error("training {strategy:?} in scenario {scenario:?} failed: {reason}")]
    Training {
        /// The scenario.
        scenario: String,
        /// The strategy.
        strategy: String,
        /// What went wrong (e.g. `loss is NaN at step 12`).
        reason: String,
    },
    /// A scenario was asked for but a resource it needs (a model, a data set) is missing.
    #[error("scenario {scenario:?} {reason}")]
    MissingResource {
        /// The scenario.
        scenario: String,
        /// What is missing and what to set, e.g. `needs a transformer model (--model / FORGE_MODEL)`.
        reason: String,
    },
    /// A transformer model could not be found or fetched.
    #[error("model {model:?}: {reason}")]
    ModelNotFound {
        /// The model asked for (a folder or a Hub id).
        model: String,
        /// Why, and what to set instead.
        reason: String,
    },
    /// A results file (read or about to be written) holds a value no run can produce: a
    /// non-finite or absurd number, or an empty section.
    #[error("results{}: field {field} {reason}", path.as_ref().map(|p| format!(" {}", p.display())).unwrap_or_default())]
    InvalidResults {
        /// The file, when reading one.
        path: Option<PathBuf>,
        /// The field, as a path (e.g. `aggregates[3].co2_kg.mean`).
        field: String,
        /// What is wrong with it, with the value.
        reason: String,
    },
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A results or thresholds file was not valid JSON for its schema.
    #[error("{path}: invalid JSON: {source}")]
    Json {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        source: serde_json::Error,
    },
    /// A results file had a schema version this build cannot read (or none at all).
    #[error("{path}: {}", match found { Some(v) => format!("schema_version {v} is not supported (this build reads {supported})"), None => format!("no schema_version field: not a Forge results file (this build reads {supported})") })]
    SchemaVersion {
        /// The file involved.
        path: PathBuf,
        /// The version found in the file, if it had one.
        found: Option<u32>,
        /// The versions this build reads, e.g. `1, 2`.
        supported: String,
    },
    /// A scenario name that is not in the registry.
    #[error("unknown scenario {name:?}; known scenarios: {known}")]
    UnknownScenario {
        /// The name asked for.
        name: String,
        /// Comma-separated known names.
        known: String,
    },
    /// A strategy name that the scenario does not offer.
    #[error("scenario {scenario:?} has no strategy {strategy:?}")]
    UnknownStrategy {
        /// The scenario.
        scenario: String,
        /// The strategy asked for.
        strategy: String,
    },
    /// A configuration value was invalid.
    #[error("invalid configuration {name}: {reason}")]
    InvalidConfig {
        /// The offending setting.
        name: String,
        /// Why it is invalid.
        reason: String,
    },
    /// A computed metric was NaN or infinite.
    #[error("{what} is not finite ({value}) in scenario {scenario:?}, strategy {strategy:?}")]
    NonFinite {
        /// The quantity.
        what: String,
        /// Its value.
        value: f64,
        /// The scenario.
        scenario: String,
        /// The strategy.
        strategy: String,
    },
    /// Drawing a figure failed.
    #[error("figure {figure}: {reason}")]
    Plot {
        /// The figure file name.
        figure: String,
        /// What went wrong.
        reason: String,
    },
    /// A shard specification (`--shard i/N`) that names no shard of the sweep.
    #[error("invalid shard {spec:?}: {reason}")]
    InvalidShard {
        /// The specification as given (e.g. `5/4`).
        spec: String,
        /// Why it is invalid, with the bounds.
        reason: String,
    },
    /// Aggregation was given no shard files.
    #[error("no results shards given (expected shard-*-of-*.json files or a folder holding them)")]
    NoShards,
    /// Two shards of one aggregation disagree on something every shard of a sweep must share.
    #[error("shards disagree on {field}: {} has {}, {} has {}", files.0.display(), values.0, files.1.display(), values.1)]
    ShardMismatch {
        /// What differs (`code version`, `mode`, `seeds`, `carbon settings`, ...).
        field: String,
        /// The first shard file and the one that differs (boxed: keeps the error small).
        files: Box<(PathBuf, PathBuf)>,
        /// Their values, in the same order.
        values: Box<(String, String)>,
    },
    /// A shard file does not hold what its header says (wrong units for its index, a missing
    /// record).
    #[error("results shard {}: {reason}", path.display())]
    ShardContents {
        /// The shard file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A work unit is covered by two shard files (the same shard given twice, or shards of two
    /// different splits).
    #[error("work unit {unit} is in both {} and {}", files.0.display(), files.1.display())]
    DuplicateUnit {
        /// The unit (`scenario/strategy/seed N`).
        unit: String,
        /// The first file holding it and the second (boxed: keeps the error small).
        files: Box<(PathBuf, PathBuf)>,
    },
    /// Work units of the sweep that no shard covers.
    #[error("{count} work unit(s) missing: no shard file for shard(s) {shards} (e.g. {examples}); rerun them with --resume")]
    MissingUnits {
        /// The missing shards, as `i/N`, comma-separated.
        shards: String,
        /// Number of units missing.
        count: usize,
        /// The first few missing units.
        examples: String,
    },
    /// Whole-machine energy tracking on a node shared by overlapping tasks: each task would
    /// count the whole machine, so the sum would count it several times.
    #[error("machine-mode carbon tracking on shared node {host}: shards {shards} overlapped in time there, so each measured the whole machine (double counting); use process mode (FORGE_TRACKING_MODE=process) or one task per node")]
    SharedNodeMachineMode {
        /// The node.
        host: String,
        /// The overlapping shards, as `i/N`.
        shards: String,
    },
    /// Two results files differ in a field that must be equal (timing and energy excluded).
    #[error("results differ in {count} field(s) (timing and energy ignored):\n{differences}")]
    ResultsDiffer {
        /// How many fields differ.
        count: usize,
        /// The first differences, one per line: `path: left != right`.
        differences: String,
    },
    /// The README has no (or a malformed) generated-results section.
    #[error("README section markers: {0}")]
    ReadmeMarkers(String),
}

/// Result alias of forge-bench.
pub type Result<T> = std::result::Result<T, BenchError>;

impl From<forge_merge::MergeError> for BenchError {
    fn from(e: forge_merge::MergeError) -> Self {
        Self::Merge(Box::new(e))
    }
}

impl BenchError {
    /// An [`BenchError::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    /// An [`BenchError::InvalidConfig`].
    pub fn config(name: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::InvalidConfig {
            name: name.into(),
            reason: reason.into(),
        }
    }
}
