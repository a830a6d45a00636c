//! Error type of forge-merge.

use std::path::PathBuf;

/// Errors returned by forge-merge. Every message names the offending model, tensor, file or value.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    /// An error from forge-linalg (file I/O, corrupt or truncated safetensors, SVD).
    #[error(transparent)]
    Linalg(#[from] forge_linalg::LinalgError),
    /// An error from candle.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// An error from forge-lora (adapter config validation).
    #[error(transparent)]
    Lora(#[from] forge_lora::LoraError),
    /// A file or folder could not be read or written.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A config file (YAML or JSON) could not be parsed.
    #[error("cannot parse {path}: {reason}")]
    Config {
        /// The file (or `<string>` for YAML given as text).
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// `merge_method` names a method forge-merge does not implement.
    #[error("unknown merge method {method:?}; supported: {supported}")]
    UnknownMethod {
        /// The name found.
        method: String,
        /// The supported names, comma-separated.
        supported: String,
    },
    /// A parameter is outside its range (density, drop rate, weight, t, lambda, gamma, rank...).
    #[error("parameter {name} = {value} is out of range: {reason}")]
    OutOfRange {
        /// The parameter, with the model or tensor it applies to when known.
        name: String,
        /// The value given.
        value: f64,
        /// The allowed range.
        reason: String,
    },
    /// A tensor is missing from one of the models.
    #[error("tensor {tensor:?} is missing from model {model}")]
    MissingTensor {
        /// The model (path or label).
        model: String,
        /// The tensor name.
        tensor: String,
    },
    /// A tensor has different shapes in two models and the mismatch policy is `error`.
    #[error(
        "tensor {tensor:?} has shape {got:?} in model {model} but {expected:?} in {reference}; \
         set a mismatch policy (take from a named model, or skip) for a backbone-only merge"
    )]
    ShapeMismatch {
        /// The tensor name.
        tensor: String,
        /// The model whose shape differs.
        model: String,
        /// Its shape.
        got: Box<[usize]>,
        /// The reference model.
        reference: String,
        /// The reference shape.
        expected: Box<[usize]>,
    },
    /// A tensor has a dtype that cannot be merged.
    #[error(
        "tensor {tensor:?} of model {model} has dtype {dtype}; merges support F32, F16 and BF16"
    )]
    UnsupportedDtype {
        /// The model.
        model: String,
        /// The tensor.
        tensor: String,
        /// The dtype found.
        dtype: String,
    },
    /// The method needs a different number of models or a base model.
    #[error("{method} needs {expected}, got {got}")]
    WrongInputs {
        /// The method.
        method: String,
        /// What it needs.
        expected: String,
        /// What was given.
        got: String,
    },
    /// A model named in the config (base, take-from) is not one of the inputs.
    #[error("model {name:?} is not one of the inputs ({known})")]
    UnknownModel {
        /// The name given.
        name: String,
        /// The inputs, comma-separated.
        known: String,
    },
    /// A merge produced NaN or infinity (e.g. NaN in an input).
    #[error(
        "merged tensor {tensor:?} contains a non-finite value ({value}) at flat index {index}"
    )]
    NonFinite {
        /// The tensor.
        tensor: String,
        /// The first offending value.
        value: f32,
        /// Its flat index.
        index: usize,
    },
    /// A LoRA adapter folder is inconsistent (missing A or B, ranks or modules that do not match).
    #[error("adapter {adapter}: {reason}")]
    Adapter {
        /// The adapter folder or label.
        adapter: String,
        /// What is wrong.
        reason: String,
    },
}

/// Result alias of forge-merge.
pub type Result<T> = std::result::Result<T, MergeError>;

pub(crate) fn io_err(path: impl Into<PathBuf>, source: std::io::Error) -> MergeError {
    MergeError::Io {
        path: path.into(),
        source,
    }
}
