//! What a fine-tuned model costs on disk: the adapter (PEFT's `adapter_model.safetensors` +
//! `adapter_config.json`) or the whole checkpoint (`model.safetensors` + `config.json`), written
//! for real into a temporary folder and measured there.

use crate::error::{BenchError, Result};
use forge_lora::{save_adapter, LoraConfig};
use forge_models::{AnyClassifier, SavePretrained};
use std::path::Path;

/// Bytes of the regular files directly inside `dir`.
///
/// # Errors
/// [`BenchError::Io`] naming the folder or file that could not be read.
pub fn dir_bytes(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).map_err(|e| BenchError::io(dir, e))? {
        let entry = entry.map_err(|e| BenchError::io(dir, e))?;
        let meta = entry
            .metadata()
            .map_err(|e| BenchError::io(entry.path(), e))?;
        if meta.is_file() {
            total += meta.len();
        }
    }
    Ok(total)
}

/// Writes what has to be stored to reuse `model` — its LoRA adapter with the heads it trained
/// when `lora` is set, else the whole checkpoint (`save_pretrained`) — into a fresh temporary
/// folder, and returns the bytes written. The folder is removed afterwards.
///
/// # Errors
/// [`BenchError::Io`] for the temporary folder; forge-lora / forge-models write errors.
pub fn stored_bytes(model: &mut AnyClassifier, lora: Option<&LoraConfig>) -> Result<u64> {
    let tmp = tempfile::Builder::new()
        .prefix("forge-bench-storage-")
        .tempdir()
        .map_err(|e| BenchError::io(std::env::temp_dir(), e))?;
    let dir = tmp.path().join("checkpoint");
    match lora {
        Some(cfg) => save_adapter(model, cfg, &dir)?,
        None => model.save_pretrained(&dir)?,
    }
    let bytes = dir_bytes(&dir)?;
    tmp.close()
        .map_err(|e| BenchError::io(std::env::temp_dir(), e))?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_bytes_sums_the_files() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("a"), [0u8; 10]).unwrap();
        std::fs::write(d.path().join("b"), [0u8; 5]).unwrap();
        std::fs::create_dir(d.path().join("sub")).unwrap();
        assert_eq!(dir_bytes(d.path()).unwrap(), 15);
        let e = dir_bytes(&d.path().join("missing")).unwrap_err();
        assert!(e.to_string().contains("missing"), "{e}");
    }
}
