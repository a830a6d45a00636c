//! Reading Hugging Face checkpoints (`model.safetensors`) with name aliases and shape checks.

use crate::{ModelError, Result};
use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The tensors of one safetensors checkpoint, converted to f32.
#[derive(Debug)]
pub struct Weights {
    tensors: HashMap<String, Tensor>,
    path: PathBuf,
}

impl Weights {
    /// Read a safetensors file.
    ///
    /// # Errors
    /// [`ModelError::MissingFile`] when absent, [`ModelError::Io`] when unreadable,
    /// [`ModelError::Corrupt`] when not valid safetensors.
    pub fn from_file(path: &Path, device: &Device) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                ModelError::MissingFile {
                    path: path.to_path_buf(),
                    hint: " (expected a Hugging Face model.safetensors)".into(),
                }
            } else {
                ModelError::Io {
                    path: path.to_path_buf(),
                    source: e,
                }
            }
        })?;
        let tensors = candle_core::safetensors::load_buffer(&bytes, device).map_err(|e| {
            ModelError::Corrupt {
                path: path.to_path_buf(),
                reason: e.to_string(),
            }
        })?;
        Ok(Self {
            tensors,
            path: path.to_path_buf(),
        })
    }

    /// From tensors already in memory (`path` is only used in messages).
    pub fn from_tensors(tensors: HashMap<String, Tensor>, path: &Path) -> Self {
        Self {
            tensors,
            path: path.to_path_buf(),
        }
    }

    /// The checkpoint path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Tensor names.
    pub fn names(&self) -> Vec<&str> {
        self.tensors.keys().map(|s| s.as_str()).collect()
    }

    /// The first of `names` present in the checkpoint, checked against `shape`, as f32.
    ///
    /// # Errors
    /// [`ModelError::ShapeMismatch`] naming the tensor.
    pub fn find(&self, names: &[String], shape: &[usize]) -> Result<Option<Tensor>> {
        for n in names {
            if let Some(t) = self.tensors.get(n) {
                if t.dims() != shape {
                    return Err(ModelError::ShapeMismatch {
                        tensor: n.clone(),
                        expected: shape.to_vec(),
                        got: t.dims().to_vec(),
                    });
                }
                return Ok(Some(t.to_dtype(DType::F32)?));
            }
        }
        Ok(None)
    }
}
