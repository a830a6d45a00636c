//! Finding model files: a local folder, the Hugging Face cache layout, or the Hub (hf-hub), and
//! building models from them.

use crate::bert::{BertForSequenceClassification, BertModel};
use crate::config::ModelConfig;
use crate::distilbert::{DistilBertForSequenceClassification, DistilBertModel};
use crate::weights::{PYTORCH_BIN, PYTORCH_BIN_INDEX, SAFETENSORS, SAFETENSORS_INDEX};
use crate::{ModelError, Result, SequenceClassifier, TextEncoder, Weights};
use candle_core::{Device, Tensor};
use forge_lora::{DeepClone, LoraModel, ModuleMut};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The default Hub model.
pub const DEFAULT_MODEL: &str = "distilbert-base-uncased";

/// How long the Hub reachability probe may take before giving up.
pub const HUB_PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// The files of one model.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelFiles {
    /// The folder.
    pub dir: PathBuf,
    /// `config.json`.
    pub config: PathBuf,
    /// The checkpoint: `model.safetensors`, else `model.safetensors.index.json` (sharded), else
    /// `pytorch_model.bin` or `pytorch_model.bin.index.json` (PyTorch pickles), in the order
    /// transformers prefers them. [`Weights::from_file`] reads any of them.
    pub weights: PathBuf,
    /// `tokenizer.json`, when present.
    pub tokenizer: Option<PathBuf>,
}

fn missing(path: &Path, hint: &str) -> ModelError {
    ModelError::MissingFile {
        path: path.to_path_buf(),
        hint: hint.to_string(),
    }
}

impl ModelFiles {
    /// A local folder with `config.json` + a checkpoint (`model.safetensors`, a sharded
    /// `model.safetensors.index.json`, or `pytorch_model.bin`) (+ `tokenizer.json`).
    ///
    /// # Errors
    /// [`ModelError::MissingFile`] naming the missing file.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        if !dir.is_dir() {
            return Err(missing(
                dir,
                " (expected a folder with config.json and model.safetensors)",
            ));
        }
        let config = dir.join("config.json");
        if !config.is_file() {
            return Err(missing(&config, ""));
        }
        let weights = [SAFETENSORS, SAFETENSORS_INDEX, PYTORCH_BIN, PYTORCH_BIN_INDEX]
            .iter()
            .map(|n| dir.join(n))
            .find(|p| p.is_file())
            .ok_or_else(|| {
                missing(
                    &dir.join(SAFETENSORS),
                    " (nor model.safetensors.index.json, pytorch_model.bin or pytorch_model.bin.index.json)",
                )
            })?;
        let tok = dir.join("tokenizer.json");
        Ok(Self {
            dir: dir.to_path_buf(),
            config,
            weights,
            tokenizer: tok.is_file().then_some(tok),
        })
    }

    /// The Hugging Face cache root: `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else
    /// `~/.cache/huggingface/hub`.
    pub fn hf_cache_root() -> PathBuf {
        if let Ok(p) = std::env::var("HF_HUB_CACHE") {
            return PathBuf::from(p);
        }
        if let Ok(p) = std::env::var("HF_HOME") {
            return PathBuf::from(p).join("hub");
        }
        let home = std::env::var("HOME").unwrap_or_else(|_| ".".into());
        PathBuf::from(home)
            .join(".cache")
            .join("huggingface")
            .join("hub")
    }

    /// A model in the Hugging Face cache layout:
    /// `<root>/models--<org>--<name>/snapshots/<revision>/`, the revision taken from `refs/main`
    /// (else the first snapshot holding a `config.json`).
    ///
    /// # Errors
    /// [`ModelError::MissingFile`] when the model is not cached.
    pub fn from_hf_cache(model_id: &str, root: Option<&Path>) -> Result<Self> {
        let root = root
            .map(Path::to_path_buf)
            .unwrap_or_else(Self::hf_cache_root);
        let repo = root.join(format!("models--{}", model_id.replace('/', "--")));
        let snapshots = repo.join("snapshots");
        if let Ok(rev) = std::fs::read_to_string(repo.join("refs").join("main")) {
            let dir = snapshots.join(rev.trim());
            if dir.join("config.json").is_file() {
                return Self::from_dir(&dir);
            }
        }
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(&snapshots)
            .map_err(|_| missing(&snapshots, " (model not in the Hugging Face cache)"))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.join("config.json").is_file())
            .collect();
        dirs.sort();
        match dirs.first() {
            Some(d) => Self::from_dir(d),
            None => Err(missing(
                &snapshots,
                " (no snapshot with config.json in the Hugging Face cache)",
            )),
        }
    }

    /// Download (or reuse from the cache) a model from the Hugging Face Hub with hf-hub.
    /// Fails within a few seconds without network: `HF_HUB_OFFLINE=1` is honoured and the
    /// endpoint is probed with a [`HUB_PROBE_TIMEOUT`] connection timeout first.
    ///
    /// # Errors
    /// [`ModelError::Hub`] (offline, unreachable, unknown model), telling the user to pass a
    /// local folder instead.
    pub fn from_hub(model_id: &str) -> Result<Self> {
        if let Ok(f) = Self::from_hf_cache(model_id, None) {
            return Ok(f);
        }
        let hub_err = |reason: String| ModelError::Hub {
            model: model_id.to_string(),
            reason,
        };
        let api = hub_api("model").map_err(hub_err)?;
        let repo = api.model(model_id.to_string());
        let config = repo
            .get("config.json")
            .map_err(|e| hub_err(e.to_string()))?;
        let weights = hub_weights(&repo).map_err(hub_err)?;
        let tokenizer = repo.get("tokenizer.json").ok();
        let dir = config.parent().map(Path::to_path_buf).unwrap_or_default();
        Ok(Self {
            dir,
            config,
            weights,
            tokenizer,
        })
    }

    /// A file of a Hugging Face **dataset** repository (e.g. `stanfordnlp/sst2`,
    /// `data/train-00000-of-00001.parquet`): from the cache
    /// (`<root>/datasets--<org>--<name>/snapshots/<revision>/<file>`, the revision from
    /// `refs/main`, else any snapshot that has the file), else downloaded from the Hub into the
    /// cache, failing fast offline as [`ModelFiles::from_hub`] does. `root` defaults to
    /// [`ModelFiles::hf_cache_root`]; a download always goes to that default cache.
    ///
    /// # Errors
    /// [`ModelError::HubDataset`] (not cached and offline, unreachable, unknown repository or
    /// file).
    pub fn hub_dataset_file(repo_id: &str, file: &str, root: Option<&Path>) -> Result<PathBuf> {
        let root = root
            .map(Path::to_path_buf)
            .unwrap_or_else(Self::hf_cache_root);
        let repo = root.join(format!("datasets--{}", repo_id.replace('/', "--")));
        let snapshots = repo.join("snapshots");
        if let Ok(rev) = std::fs::read_to_string(repo.join("refs").join("main")) {
            let p = snapshots.join(rev.trim()).join(file);
            if p.is_file() {
                return Ok(p);
            }
        }
        if let Ok(entries) = std::fs::read_dir(&snapshots) {
            let mut found: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path().join(file)))
                .filter(|p| p.is_file())
                .collect();
            found.sort();
            if let Some(p) = found.into_iter().next() {
                return Ok(p);
            }
        }
        let hub_err = |reason: String| ModelError::HubDataset {
            dataset: repo_id.to_string(),
            file: file.to_string(),
            reason,
        };
        let api = hub_api("file").map_err(hub_err)?;
        api.dataset(repo_id.to_string())
            .get(file)
            .map_err(|e| hub_err(e.to_string()))
    }

    /// A local folder if `name_or_path` is one, else the Hugging Face cache, else the Hub.
    ///
    /// # Errors
    /// As [`ModelFiles::from_dir`] for an existing path, else as [`ModelFiles::from_hub`].
    pub fn resolve(name_or_path: &str) -> Result<Self> {
        let p = Path::new(name_or_path);
        if p.exists() {
            return Self::from_dir(p);
        }
        Self::from_hub(name_or_path)
    }

    /// Parse `config.json`.
    ///
    /// # Errors
    /// As [`ModelConfig::from_file`].
    pub fn model_config(&self) -> Result<ModelConfig> {
        ModelConfig::from_file(&self.config)
    }
}

/// Fetch the checkpoint of a Hub repository: `model.safetensors`, else the sharded index and
/// every shard it names, else `pytorch_model.bin`. Returns the path to pass to
/// [`Weights::from_file`].
fn hub_weights(repo: &hf_hub::api::sync::ApiRepo) -> std::result::Result<PathBuf, String> {
    if let Ok(p) = repo.get(SAFETENSORS) {
        return Ok(p);
    }
    if let Ok(index) = repo.get(SAFETENSORS_INDEX) {
        let text = std::fs::read_to_string(&index).map_err(|e| e.to_string())?;
        let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
        let mut shards: Vec<&str> = v
            .get("weight_map")
            .and_then(|m| m.as_object())
            .map(|m| m.values().filter_map(|f| f.as_str()).collect())
            .unwrap_or_default();
        shards.sort_unstable();
        shards.dedup();
        for s in shards {
            repo.get(s).map_err(|e| format!("shard {s}: {e}"))?;
        }
        return Ok(index);
    }
    repo.get(PYTORCH_BIN).map_err(|e| {
        format!("no model.safetensors, model.safetensors.index.json or pytorch_model.bin: {e}")
    })
}

/// The Hub client, after failing fast when offline (`HF_HUB_OFFLINE`, or the endpoint does not
/// answer within [`HUB_PROBE_TIMEOUT`]): downloads go to [`ModelFiles::hf_cache_root`] and show
/// a progress bar on a terminal. `what` names the thing that is not cached, for the message.
fn hub_api(what: &str) -> std::result::Result<hf_hub::api::sync::Api, String> {
    let offline = std::env::var("HF_HUB_OFFLINE")
        .map(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"))
        .unwrap_or(false);
    if offline {
        return Err(format!(
            "HF_HUB_OFFLINE is set and the {what} is not in the local cache"
        ));
    }
    let endpoint = std::env::var("HF_ENDPOINT").unwrap_or_else(|_| "https://huggingface.co".into());
    probe(&endpoint, HUB_PROBE_TIMEOUT).map_err(|e| format!("{endpoint} is unreachable ({e})"))?;
    use std::io::IsTerminal as _;
    hf_hub::api::sync::ApiBuilder::new()
        .with_progress(std::io::stderr().is_terminal())
        .with_retries(0)
        .with_cache_dir(ModelFiles::hf_cache_root())
        .build()
        .map_err(|e| e.to_string())
}

/// TCP-connect to the endpoint's host within `timeout` (DNS failures return at once).
fn probe(endpoint: &str, timeout: Duration) -> std::io::Result<()> {
    use std::net::{TcpStream, ToSocketAddrs};
    let rest = endpoint.split("://").nth(1).unwrap_or(endpoint);
    let host_port = rest.split('/').next().unwrap_or(rest);
    let with_port = if host_port.contains(':') {
        host_port.to_string()
    } else if endpoint.starts_with("http://") {
        format!("{host_port}:80")
    } else {
        format!("{host_port}:443")
    };
    let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "no address");
    for addr in with_port.to_socket_addrs()? {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(_) => return Ok(()),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// A sequence classifier of any supported architecture (`AutoModelForSequenceClassification`).
///
/// Not `Clone` (a clone would share parameter storage): [`DeepClone::try_clone_deep`] makes an
/// independent copy.
#[derive(Debug)]
pub enum AnyClassifier {
    /// DistilBERT.
    DistilBert(DistilBertForSequenceClassification),
    /// BERT.
    Bert(BertForSequenceClassification),
}

fn with_labels(mut cfg: ModelConfig, num_labels: Option<usize>) -> ModelConfig {
    if let Some(n) = num_labels {
        match &mut cfg {
            ModelConfig::DistilBert(c) => c.num_labels = Some(n),
            ModelConfig::Bert(c) => c.num_labels = Some(n),
        }
    }
    cfg
}

impl AnyClassifier {
    /// A randomly initialised classifier for a config (no weights needed).
    ///
    /// # Errors
    /// [`ModelError::Config`] for an invalid config.
    pub fn from_config(config: &ModelConfig, seed: u64, device: &Device) -> Result<Self> {
        Ok(match config {
            ModelConfig::DistilBert(c) => Self::DistilBert(
                DistilBertForSequenceClassification::new_random(c, seed, device)?,
            ),
            ModelConfig::Bert(c) => {
                Self::Bert(BertForSequenceClassification::new_random(c, seed, device)?)
            }
        })
    }

    /// Load weights from `files`; `num_labels` overrides the config (a new head is initialised
    /// with `seed` when the checkpoint has none).
    ///
    /// # Errors
    /// Missing/corrupt files, [`ModelError::MissingTensor`], [`ModelError::ShapeMismatch`].
    pub fn from_files(
        files: &ModelFiles,
        num_labels: Option<usize>,
        seed: u64,
        device: &Device,
    ) -> Result<Self> {
        let cfg = with_labels(files.model_config()?, num_labels);
        let w = Weights::from_file(&files.weights, device)?;
        Ok(match &cfg {
            ModelConfig::DistilBert(c) => Self::DistilBert(
                DistilBertForSequenceClassification::from_weights(c, &w, seed, device)?,
            ),
            ModelConfig::Bert(c) => Self::Bert(BertForSequenceClassification::from_weights(
                c, &w, seed, device,
            )?),
        })
    }

    fn inner(&self) -> &dyn SequenceClassifier {
        match self {
            Self::DistilBert(m) => m,
            Self::Bert(m) => m,
        }
    }
}

impl DeepClone for AnyClassifier {
    fn try_clone_deep(&self) -> forge_lora::Result<Self> {
        Ok(match self {
            Self::DistilBert(m) => Self::DistilBert(m.try_clone_deep()?),
            Self::Bert(m) => Self::Bert(m.try_clone_deep()?),
        })
    }
}

impl LoraModel for AnyClassifier {
    fn architecture(&self) -> String {
        match self {
            Self::DistilBert(m) => m.architecture(),
            Self::Bert(m) => m.architecture(),
        }
    }
    fn named_modules_mut(&mut self) -> Vec<(String, ModuleMut<'_>)> {
        match self {
            Self::DistilBert(m) => m.named_modules_mut(),
            Self::Bert(m) => m.named_modules_mut(),
        }
    }
}

impl SequenceClassifier for AnyClassifier {
    fn forward(&self, input_ids: &Tensor, attention_mask: Option<&Tensor>) -> Result<Tensor> {
        self.inner().forward(input_ids, attention_mask)
    }
    fn set_training(&mut self, training: bool) {
        match self {
            Self::DistilBert(m) => m.set_training(training),
            Self::Bert(m) => m.set_training(training),
        }
    }
    fn is_training(&self) -> bool {
        self.inner().is_training()
    }
    fn num_labels(&self) -> usize {
        self.inner().num_labels()
    }
    fn encoder(&self) -> &dyn TextEncoder {
        self.inner().encoder()
    }
}

/// A bare encoder of any supported architecture (`AutoModel`), e.g. for embeddings.
///
/// Not `Clone`: see [`DeepClone::try_clone_deep`].
// A model is built once and its tensors live on the heap; the few hundred bytes between the
// variants' headers do not matter, and boxing would change the public variants.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum AnyEncoder {
    /// DistilBERT.
    DistilBert(DistilBertModel),
    /// BERT / MiniLM.
    Bert(BertModel),
}

impl AnyEncoder {
    /// Load weights from `files` (checkpoint names with or without the `bert.` / `distilbert.`
    /// prefix).
    ///
    /// # Errors
    /// Missing/corrupt files, [`ModelError::MissingTensor`], [`ModelError::ShapeMismatch`].
    pub fn from_files(files: &ModelFiles, device: &Device) -> Result<Self> {
        let w = Weights::from_file(&files.weights, device)?;
        Ok(match files.model_config()? {
            ModelConfig::DistilBert(c) => {
                Self::DistilBert(DistilBertModel::from_weights(&c, &w, device)?)
            }
            ModelConfig::Bert(c) => Self::Bert(BertModel::from_weights(&c, &w, device)?),
        })
    }

    /// Mean-pooled sentence embeddings (sentence-transformers' pooling).
    ///
    /// # Shapes
    /// ids `[b, s]`, mask `[b, s]` -> `[b, hidden]`.
    ///
    /// # Errors
    /// [`ModelError::InvalidInput`] for bad ids or mask.
    pub fn embed(&self, input_ids: &Tensor, attention_mask: &Tensor) -> Result<Tensor> {
        let h = self.encode(input_ids, Some(attention_mask))?;
        crate::layers::mean_pool(&h, attention_mask)
    }
}

impl TextEncoder for AnyEncoder {
    fn encode(&self, input_ids: &Tensor, attention_mask: Option<&Tensor>) -> Result<Tensor> {
        match self {
            Self::DistilBert(m) => m.forward(input_ids, attention_mask),
            Self::Bert(m) => m.forward(input_ids, attention_mask),
        }
    }
    fn hidden_size(&self) -> usize {
        match self {
            Self::DistilBert(m) => m.config.dim,
            Self::Bert(m) => m.config.hidden_size,
        }
    }
}

impl DeepClone for AnyEncoder {
    fn try_clone_deep(&self) -> forge_lora::Result<Self> {
        Ok(match self {
            Self::DistilBert(m) => Self::DistilBert(m.try_clone_deep()?),
            Self::Bert(m) => Self::Bert(m.try_clone_deep()?),
        })
    }
}

impl LoraModel for AnyEncoder {
    fn architecture(&self) -> String {
        match self {
            Self::DistilBert(m) => m.architecture(),
            Self::Bert(m) => m.architecture(),
        }
    }
    fn named_modules_mut(&mut self) -> Vec<(String, ModuleMut<'_>)> {
        match self {
            Self::DistilBert(m) => m.named_modules_mut(),
            Self::Bert(m) => m.named_modules_mut(),
        }
    }
}

impl crate::SavePretrained for AnyClassifier {
    fn hf_config(&self) -> Result<serde_json::Value> {
        match self {
            Self::DistilBert(m) => m.hf_config(),
            Self::Bert(m) => m.hf_config(),
        }
    }
}

impl crate::SavePretrained for AnyEncoder {
    fn hf_config(&self) -> Result<serde_json::Value> {
        match self {
            Self::DistilBert(m) => m.hf_config(),
            Self::Bert(m) => m.hf_config(),
        }
    }
}
