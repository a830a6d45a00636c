//! Error type of forge-lora.

use std::path::PathBuf;

/// Errors returned by forge-lora.
#[derive(Debug, thiserror::Error)]
pub enum LoraError {
    /// An error from candle.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// An error from forge-linalg.
    #[error(transparent)]
    Linalg(#[from] forge_linalg::LinalgError),
    /// A configuration value is invalid.
    #[error("invalid LoRA config field {field}: {reason}")]
    InvalidConfig {
        /// The PEFT field name (`r`, `lora_alpha`, ...).
        field: &'static str,
        /// Why it is invalid, with the value.
        reason: String,
    },
    /// A target module name matched no linear layer of the model.
    #[error("target module {target:?} matches no linear layer of the {architecture} model (e.g. {example:?})")]
    TargetNotFound {
        /// The target name from `target_modules`.
        target: String,
        /// The model's architecture name.
        architecture: String,
        /// One module path the model does have, to help spelling the target.
        example: String,
    },
    /// An adapter file was made for another architecture (its modules do not exist in this model).
    #[error("the adapter does not fit this {architecture} model: module {module:?} (from tensor {tensor:?}) does not exist in it; the adapter was trained on {adapter_base:?}")]
    ArchitectureMismatch {
        /// The model's architecture name.
        architecture: String,
        /// The first module path that is missing.
        module: String,
        /// The tensor key that named it.
        tensor: String,
        /// `base_model_name_or_path` from the adapter config.
        adapter_base: String,
    },
    /// A tensor expected in a file is absent.
    #[error("tensor {tensor:?} is missing from {path:?}")]
    MissingTensor {
        /// The expected key.
        tensor: String,
        /// The file.
        path: PathBuf,
    },
    /// A tensor has the wrong shape.
    #[error("tensor {tensor:?} has shape {got:?}, expected {expected:?}")]
    ShapeMismatch {
        /// The tensor key.
        tensor: String,
        /// The shape the model needs.
        expected: Vec<usize>,
        /// The shape found.
        got: Vec<usize>,
    },
    /// A file could not be read or written.
    #[error("I/O error on {path:?}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A file exists but cannot be parsed (corrupt safetensors or JSON).
    #[error("cannot parse {path:?}: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        reason: String,
    },
    /// A tensor in a file holds NaN or infinity.
    #[error("tensor {tensor:?} in {path:?} holds {count} non-finite value(s) (NaN or infinity)")]
    NonFinite {
        /// The tensor key.
        tensor: String,
        /// The file.
        path: PathBuf,
        /// How many entries are NaN or infinite.
        count: usize,
    },
    /// A tensor in a file has a dtype that cannot hold weights (an integer or boolean type).
    #[error("tensor {tensor:?} in {path:?} has dtype {dtype}, expected a floating-point type (f32, f16, bf16, f64)")]
    BadDType {
        /// The tensor key.
        tensor: String,
        /// The file.
        path: PathBuf,
        /// The dtype found, e.g. `"i64"`.
        dtype: String,
    },
    /// A file holds a tensor the config does not account for (e.g. an adapter for a module that
    /// is not in `target_modules`, or a full module that is not in `modules_to_save`).
    #[error("tensor {tensor:?} in {path:?} is not expected: {reason}")]
    UnexpectedTensor {
        /// The tensor key.
        tensor: String,
        /// The file.
        path: PathBuf,
        /// Why it is not expected.
        reason: String,
    },
    /// An operation needs a LoRA adapter that the layer does not have, or the layer state forbids it.
    #[error("module {module:?}: {reason}")]
    InvalidState {
        /// The module path (or `"<layer>"` for a standalone layer).
        module: String,
        /// What is wrong.
        reason: String,
    },
}

/// Result alias of forge-lora.
pub type Result<T> = std::result::Result<T, LoraError>;
