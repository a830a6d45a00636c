//! Reading Hugging Face checkpoints: `model.safetensors` (memory-mapped), sharded
//! `model.safetensors.index.json`, and PyTorch's `pytorch_model.bin` (pickle, via candle).
//!
//! Every tensor handed out is checked: a floating-point dtype (integer tensors are an error,
//! never cast), no NaN or infinity, then converted to f32.

use crate::{ModelError, Result};
use candle_core::{DType, Device, Tensor};
use forge_linalg::io::SafeTensorsFile;
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

/// File name of a single-file safetensors checkpoint.
pub const SAFETENSORS: &str = "model.safetensors";
/// File name of the index of a sharded safetensors checkpoint.
pub const SAFETENSORS_INDEX: &str = "model.safetensors.index.json";
/// File name of a PyTorch pickle checkpoint.
pub const PYTORCH_BIN: &str = "pytorch_model.bin";
/// File name of the index of a sharded PyTorch pickle checkpoint.
pub const PYTORCH_BIN_INDEX: &str = "pytorch_model.bin.index.json";

enum Store {
    /// Memory-mapped safetensors (one file or shards; forge-linalg's reader): tensors are copied
    /// out one at a time and their mapped pages released after the copy, so loading a model
    /// holds about one copy of it in memory. The map gives each tensor's shard.
    Mmap(Vec<SafeTensorsFile>, HashMap<String, usize>),
    /// Tensors in memory (PyTorch pickles, or built in code).
    Memory(HashMap<String, Tensor>),
}

/// The tensors of one checkpoint: names, shapes and dtypes are known up front; values are read
/// (and checked) one tensor at a time by [`Weights::get`].
pub struct Weights {
    store: Store,
    /// name -> (shape, dtype)
    index: HashMap<String, (Vec<usize>, DType)>,
    path: PathBuf,
    device: Device,
}

impl std::fmt::Debug for Weights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Weights")
            .field("path", &self.path)
            .field("tensors", &self.index.len())
            .finish()
    }
}

fn io_or_missing(path: &Path, e: std::io::Error, hint: &str) -> ModelError {
    if e.kind() == std::io::ErrorKind::NotFound {
        ModelError::MissingFile {
            path: path.to_path_buf(),
            hint: hint.into(),
        }
    } else {
        ModelError::Io {
            path: path.to_path_buf(),
            source: e,
        }
    }
}

fn corrupt(path: &Path, reason: impl std::fmt::Display) -> ModelError {
    ModelError::Corrupt {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

impl Weights {
    /// Open a checkpoint by its file name: `*.safetensors` (memory-mapped), `*.index.json`
    /// (sharded; the shards are read as their extension says), or anything else as a PyTorch
    /// pickle (`pytorch_model.bin`, `*.pt`, `*.pth`).
    ///
    /// # Errors
    /// [`ModelError::MissingFile`] when absent (a shard included), [`ModelError::Io`] when
    /// unreadable, [`ModelError::Corrupt`] when not a valid file of its kind.
    pub fn from_file(path: &Path, device: &Device) -> Result<Self> {
        std::fs::metadata(path)
            .map_err(|e| io_or_missing(path, e, " (expected a Hugging Face model.safetensors)"))?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.ends_with(".index.json") {
            Self::from_index(path, device)
        } else if name.ends_with(".safetensors") {
            Self::mmap(&[path.to_path_buf()], path, device)
        } else {
            let tensors = read_pickle(path)?;
            Ok(Self::from_tensors_on(tensors, path, device))
        }
    }

    fn mmap(files: &[PathBuf], shown: &Path, device: &Device) -> Result<Self> {
        let mut shards = Vec::with_capacity(files.len());
        let mut route = HashMap::new();
        let mut index = HashMap::new();
        for (i, f) in files.iter().enumerate() {
            let st = SafeTensorsFile::open(f).map_err(|e| linalg_err(f, e))?;
            for spec in st.specs() {
                let dtype = DType::try_from(spec.dtype).map_err(|e| {
                    corrupt(
                        f,
                        format!("tensor {:?} has an unsupported dtype: {e}", spec.name),
                    )
                })?;
                if route.insert(spec.name.clone(), i).is_some() {
                    return Err(corrupt(
                        shown,
                        format!("tensor {:?} is in more than one shard", spec.name),
                    ));
                }
                index.insert(spec.name.clone(), (spec.shape.clone(), dtype));
            }
            shards.push(st);
        }
        Ok(Self {
            store: Store::Mmap(shards, route),
            index,
            path: shown.to_path_buf(),
            device: device.clone(),
        })
    }

    fn from_index(path: &Path, device: &Device) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| io_or_missing(path, e, ""))?;
        let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| corrupt(path, e))?;
        let map = v
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| corrupt(path, "no \"weight_map\" object"))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut shards = BTreeSet::new();
        for (k, f) in map {
            let f = f
                .as_str()
                .ok_or_else(|| corrupt(path, format!("weight_map[{k:?}] is not a file name")))?;
            if f.contains('/') || f.contains('\\') || f.starts_with('.') {
                return Err(corrupt(
                    path,
                    format!("shard name {f:?} is not a plain file name"),
                ));
            }
            shards.insert(dir.join(f));
        }
        if shards.is_empty() {
            return Err(corrupt(path, "the weight_map is empty"));
        }
        let shards: Vec<PathBuf> = shards.into_iter().collect();
        let w = if shards
            .iter()
            .all(|s| s.extension().is_some_and(|e| e == "safetensors"))
        {
            Self::mmap(&shards, path, device)?
        } else {
            let mut all = HashMap::new();
            for s in &shards {
                std::fs::metadata(s)
                    .map_err(|e| io_or_missing(s, e, " (a shard of the checkpoint)"))?;
                all.extend(read_pickle(s)?);
            }
            Self::from_tensors_on(all, path, device)
        };
        // the index and the shards must agree
        for k in map.keys() {
            if !w.contains(k) {
                return Err(corrupt(
                    path,
                    format!("the index lists {k:?} but no shard holds it"),
                ));
            }
        }
        Ok(w)
    }

    /// From tensors already in memory (`path` is only used in messages); on the CPU.
    pub fn from_tensors(tensors: HashMap<String, Tensor>, path: &Path) -> Self {
        Self::from_tensors_on(tensors, path, &Device::Cpu)
    }

    fn from_tensors_on(tensors: HashMap<String, Tensor>, path: &Path, device: &Device) -> Self {
        let index = tensors
            .iter()
            .map(|(k, t)| (k.clone(), (t.dims().to_vec(), t.dtype())))
            .collect();
        Self {
            store: Store::Memory(tensors),
            index,
            path: path.to_path_buf(),
            device: device.clone(),
        }
    }

    /// The checkpoint path (the index file for a sharded checkpoint).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Tensor names, sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.index.keys().map(|s| s.as_str()).collect();
        v.sort_unstable();
        v
    }

    /// Whether the checkpoint holds `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    /// The shape of `name`, without reading it.
    pub fn dims(&self, name: &str) -> Option<Vec<usize>> {
        self.index.get(name).map(|(d, _)| d.clone())
    }

    /// The stored dtype of `name`, without reading it.
    pub fn dtype(&self, name: &str) -> Option<DType> {
        self.index.get(name).map(|(_, t)| *t)
    }

    /// Read `name`, check it and convert it to f32 on the device.
    ///
    /// # Errors
    /// [`ModelError::MissingTensor`] when absent; [`ModelError::BadDType`] for an integer or
    /// boolean tensor (weights are never cast from integers); [`ModelError::NonFinite`] when it
    /// holds NaN or infinity; [`ModelError::Corrupt`] when the bytes cannot be read.
    pub fn get(&self, name: &str) -> Result<Tensor> {
        let (_, dtype) = self
            .index
            .get(name)
            .ok_or_else(|| ModelError::MissingTensor {
                tensor: name.to_string(),
                path: self.path.clone(),
            })?;
        if !dtype.is_float() {
            return Err(ModelError::BadDType {
                tensor: name.to_string(),
                path: self.path.clone(),
                dtype: dtype.as_str().to_string(),
            });
        }
        let t = match &self.store {
            Store::Mmap(shards, route) => {
                let f = &shards[route[name]];
                let (spec, bytes) = f.raw(name).map_err(|e| linalg_err(f.path(), e))?;
                let t = Tensor::from_raw_buffer(bytes, *dtype, &spec.shape, &self.device)?;
                // the copy is made: let the kernel drop the mapped pages (best effort)
                let _ = f.release(name);
                t
            }
            Store::Memory(m) => m[name].to_device(&self.device)?,
        };
        // Converted once; f16/bf16 infinities and NaNs stay so in f32, and max_abs on an f32
        // tensor converts nothing.
        let t = t.to_dtype(DType::F32)?;
        let count = forge_lora::io::non_finite_count(&t)?;
        if count > 0 {
            return Err(ModelError::NonFinite {
                tensor: name.to_string(),
                path: self.path.clone(),
                count,
            });
        }
        let max = forge_lora::io::max_abs(&t)?;
        if max > forge_lora::io::MAX_WEIGHT_ABS {
            return Err(ModelError::Corrupt {
                path: self.path.clone(),
                reason: format!(
                    "tensor {name:?} holds a value of magnitude {max:e}; no trained weight is \
                     above {:e} (a damaged file: such values overflow to NaN)",
                    forge_lora::io::MAX_WEIGHT_ABS
                ),
            });
        }
        Ok(t)
    }
}

/// forge-linalg's reader errors as forge-models' (missing file, I/O, corrupt file), naming the file.
fn linalg_err(path: &Path, e: forge_linalg::LinalgError) -> ModelError {
    match e {
        forge_linalg::LinalgError::Io { path, source } => io_or_missing(&path, source, ""),
        forge_linalg::LinalgError::Corrupt { path, reason } => ModelError::Corrupt { path, reason },
        other => corrupt(path, other),
    }
}

/// Read every tensor of a PyTorch pickle (`torch.save` of a state dict, zip format).
fn read_pickle(path: &Path) -> Result<HashMap<String, Tensor>> {
    let v = candle_core::pickle::read_all(path).map_err(|e| corrupt(path, e))?;
    Ok(v.into_iter().collect())
}
