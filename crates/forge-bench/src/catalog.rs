//! The crate-level catalogue: every scenario Forge ships ([`registry`]), the production run
//! context ([`context`]), and how the transformer model and text data are found
//! ([`resolve_model`], [`resolve_text_data_dir`]).
//!
//! A new scenario is added by registering it in [`registry`]; the runner, tables, figures, gates
//! and the xtask command line pick it up from there.

use crate::carbon::CarbonMeter;
use crate::error::{BenchError, Result};
use crate::scenario::{Mode, Registry, RunContext};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The model used when none is given (`--model` / `FORGE_MODEL`): the seed's DistilBERT.
pub const DEFAULT_MODEL: &str = forge_models::DEFAULT_MODEL;

/// Every scenario Forge ships, in display order.
///
/// # Errors
/// [`BenchError::InvalidConfig`] if two scenarios share a name or one is malformed (a bug).
pub fn registry() -> Result<Registry> {
    let mut r = Registry::new();
    crate::classical::register(&mut r)?;
    crate::transformer::register(&mut r)?;
    Ok(r)
}

/// A [`RunContext`] for `mode` measuring with forge-carbon (`FORGE_*` environment overrides
/// apply), reading the tabular CSVs from `data_dir`, on the best device of this build (CUDA with
/// the `cuda` feature, else Metal with `metal`, else the CPU). Model and text data are unset; see
/// [`resolve_model`] and [`resolve_text_data_dir`].
///
/// # Errors
/// Invalid carbon configuration in the environment.
pub fn context(mode: Mode, data_dir: PathBuf) -> Result<RunContext> {
    let mut ctx = RunContext::new(mode, Arc::new(CarbonMeter::from_env()?));
    ctx.data_dir = data_dir;
    ctx.device = forge_linalg::device::best_device();
    Ok(ctx)
}

/// Finds a transformer model: `name_or_path` as a local folder if it is one, else the Hugging
/// Face cache, else a download from the Hub (hf-hub; honours `HF_HUB_OFFLINE`, fails within
/// seconds without network). Returns the folder holding `config.json` and the weights.
///
/// # Errors
/// [`BenchError::ModelNotFound`] naming the model, the reason, and what to set instead.
pub fn resolve_model(name_or_path: &str) -> Result<PathBuf> {
    let files =
        forge_models::ModelFiles::resolve(name_or_path).map_err(|e| BenchError::ModelNotFound {
            model: name_or_path.to_string(),
            reason: format!(
                "{e}; set FORGE_MODEL (or --model) to a local model folder \
                 (config.json, model.safetensors, tokenizer.json)"
            ),
        })?;
    Ok(files
        .config
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(name_or_path)))
}

/// The text data folder: `explicit` (from `--text-data-dir`) or `$FORGE_TEXT_DATA_DIR`, if it
/// is an existing folder; `None` otherwise.
///
/// # Errors
/// [`BenchError::InvalidConfig`] if a folder was given but does not exist (a typo should not
/// silently skip the text scenarios).
pub fn resolve_text_data_dir(explicit: Option<PathBuf>) -> Result<Option<PathBuf>> {
    let given = explicit.or_else(|| std::env::var_os("FORGE_TEXT_DATA_DIR").map(PathBuf::from));
    match given {
        None => Ok(None),
        Some(p) if p.as_os_str().is_empty() => Ok(None),
        Some(p) if p.is_dir() => Ok(Some(p)),
        Some(p) => Err(BenchError::config(
            "text data folder",
            format!(
                "{} is not a folder (FORGE_TEXT_DATA_DIR / --text-data-dir)",
                p.display()
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_lists_every_shipped_scenario_once() {
        let r = registry().unwrap();
        let names = r.names();
        assert!(names.contains(&"housing") && names.contains(&"harmful-source"));
        assert!(names.contains(&crate::transformer::SST2_FULL_VS_LORA));
        let mut dedup = names.clone();
        dedup.sort();
        dedup.dedup();
        assert_eq!(dedup.len(), names.len());
    }

    #[test]
    fn a_missing_model_folder_names_what_to_set() {
        let empty = tempfile::tempdir().unwrap();
        let e = resolve_model(empty.path().to_str().unwrap()).unwrap_err();
        assert!(e.to_string().contains("config.json"), "{e}");
        assert!(e.to_string().contains("FORGE_MODEL"), "{e}");
    }

    #[test]
    fn a_text_data_folder_that_does_not_exist_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            resolve_text_data_dir(Some(dir.path().to_path_buf())).unwrap(),
            Some(dir.path().to_path_buf())
        );
        let e = resolve_text_data_dir(Some(dir.path().join("missing"))).unwrap_err();
        assert!(e.to_string().contains("missing"), "{e}");
    }
}
