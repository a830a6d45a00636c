//! Error type of forge-models.

use std::path::PathBuf;

/// Errors returned by forge-models.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// An error from candle.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// An error from forge-linalg.
    #[error(transparent)]
    Linalg(#[from] forge_linalg::LinalgError),
    /// An error from forge-lora (adapters, configs, adapter files), boxed to keep results small.
    #[error(transparent)]
    Lora(Box<forge_lora::LoraError>),
    /// A required file does not exist.
    #[error("file {path:?} not found{hint}")]
    MissingFile {
        /// The path looked for.
        path: PathBuf,
        /// Extra advice (may be empty).
        hint: String,
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
    /// A file exists but cannot be parsed (corrupt safetensors, bad JSON, bad tokenizer).
    #[error("cannot parse {path:?}: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        reason: String,
    },
    /// A weight the model needs is absent from the checkpoint.
    #[error("tensor {tensor:?} is missing from {path:?}")]
    MissingTensor {
        /// The tensor name (Hugging Face naming).
        tensor: String,
        /// The checkpoint file.
        path: PathBuf,
    },
    /// A checkpoint tensor does not have the shape the config implies.
    #[error("tensor {tensor:?} has shape {got:?} but the config implies {expected:?}")]
    ShapeMismatch {
        /// The tensor name.
        tensor: String,
        /// The shape the config implies.
        expected: Vec<usize>,
        /// The shape in the file.
        got: Vec<usize>,
    },
    /// A checkpoint tensor has a dtype that cannot hold weights (integer or boolean); it is
    /// rejected, never cast.
    #[error("tensor {tensor:?} in {path:?} has dtype {dtype}, expected a floating-point type (f32, f16, bf16, f64)")]
    BadDType {
        /// The tensor name.
        tensor: String,
        /// The checkpoint file.
        path: PathBuf,
        /// The dtype found, e.g. `"i64"`.
        dtype: String,
    },
    /// A checkpoint tensor holds NaN or infinity.
    #[error("tensor {tensor:?} in {path:?} holds {count} non-finite value(s) (NaN or infinity)")]
    NonFinite {
        /// The tensor name.
        tensor: String,
        /// The checkpoint file (empty for tensors passed in memory).
        path: PathBuf,
        /// How many entries are NaN or infinite.
        count: usize,
    },
    /// A checkpoint holds tensors the model has no place for.
    #[error("{} tensor(s) of {path:?} are not used: {}{}; {reason}", tensors.len(), preview(tensors), if tensors.len() > PREVIEW { ", ..." } else { "" })]
    UnexpectedTensors {
        /// The unused names, sorted.
        tensors: Vec<String>,
        /// The checkpoint file.
        path: PathBuf,
        /// Why this is an error.
        reason: String,
    },
    /// A state dict does not have exactly the model's parameter names.
    #[error("state dict does not match the model: missing {} [{}{}], unexpected {} [{}{}]", missing.len(), preview(missing), if missing.len() > PREVIEW { ", ..." } else { "" }, unexpected.len(), preview(unexpected), if unexpected.len() > PREVIEW { ", ..." } else { "" })]
    StateDictMismatch {
        /// Model parameters absent from the state dict, sorted.
        missing: Vec<String>,
        /// State dict keys that are not model parameters, sorted.
        unexpected: Vec<String>,
    },
    /// A config field is invalid or unsupported.
    #[error("invalid model config field {field}: {reason}")]
    Config {
        /// The `config.json` field.
        field: &'static str,
        /// Why, with the value.
        reason: String,
    },
    /// Tokenisation failed.
    #[error("tokenizer error: {0}")]
    Tokenizer(String),
    /// The Hugging Face Hub could not be used (offline, timeout, unknown model).
    #[error("cannot fetch {model:?} from the Hugging Face Hub: {reason}. Pass a local folder (config.json + model.safetensors + tokenizer.json) instead")]
    Hub {
        /// The model id.
        model: String,
        /// What went wrong.
        reason: String,
    },
    /// A dataset file could not be had from the Hugging Face cache or Hub.
    #[error(
        "cannot fetch {file} of dataset {dataset} from the Hugging Face cache or Hub: {reason}"
    )]
    HubDataset {
        /// The dataset repository id.
        dataset: String,
        /// The file in the repository.
        file: String,
        /// What went wrong.
        reason: String,
    },
    /// A training hyperparameter is invalid.
    #[error("invalid training config field {field}: {reason}")]
    TrainConfig {
        /// The `TrainConfig` field.
        field: &'static str,
        /// Why, with the value.
        reason: String,
    },
    /// Training diverged: a loss, penalty or gradient is NaN or infinite.
    #[error("training diverged: non-finite {what}; lower the learning rate or clip gradients")]
    Diverged {
        /// What was non-finite, with the step.
        what: String,
    },
    /// A model input is invalid (shape, dtype, token id out of range).
    #[error("invalid input {what}: {reason}")]
    InvalidInput {
        /// Which input.
        what: &'static str,
        /// Why, with the value.
        reason: String,
    },
}

impl From<forge_lora::LoraError> for ModelError {
    fn from(e: forge_lora::LoraError) -> Self {
        ModelError::Lora(Box::new(e))
    }
}

/// How many names an error message shows.
const PREVIEW: usize = 5;

fn preview(names: &[String]) -> String {
    names
        .iter()
        .take(PREVIEW)
        .map(|n| format!("{n:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Result alias of forge-models.
pub type Result<T> = std::result::Result<T, ModelError>;
