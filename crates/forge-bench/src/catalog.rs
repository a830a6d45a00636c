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

/// The text data folder: `explicit` (from `--text-data-dir`) or `$FORGE_TEXT_DATA_DIR` if one
/// is given (it must be an existing folder); otherwise SST-2 and AG News from the Hugging Face
/// Hub's dataset files ([`hf_text_data_dir`]: the Hugging Face cache, else a download), and
/// `None` when those cannot be had (offline and not cached), with the reason logged.
///
/// # Errors
/// [`BenchError::InvalidConfig`] if a folder was given but does not exist (a typo should not
/// silently skip the text scenarios).
pub fn resolve_text_data_dir(explicit: Option<PathBuf>) -> Result<Option<PathBuf>> {
    let given = explicit.or_else(|| std::env::var_os("FORGE_TEXT_DATA_DIR").map(PathBuf::from));
    match given {
        None => match hf_text_data_dir(None, &forge_text_cache_dir()) {
            Ok(dir) => Ok(Some(dir)),
            Err(e) => {
                tracing::info!(
                    "no text data: {e}; set FORGE_TEXT_DATA_DIR (or --text-data-dir) to a folder \
                     with sst2/ and ag_news/"
                );
                Ok(None)
            }
        },
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

/// Where Forge keeps text data converted from the Hub's parquet files: `$FORGE_CACHE_DIR/text`,
/// else `$XDG_CACHE_HOME/forge/text`, else `~/.cache/forge/text`.
pub fn forge_text_cache_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("FORGE_CACHE_DIR") {
        return PathBuf::from(p).join("text");
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| ".".into())).join(".cache")
        });
    base.join("forge").join("text")
}

/// SST-2 (`stanfordnlp/sst2`) and AG News (`fancyzhx/ag_news`) from the Hugging Face Hub's
/// parquet files, found in the Hugging Face cache under `hf_root` (default: the standard cache)
/// or downloaded into it, converted once into Forge's TSV layout under `out`
/// (`out/sst2/{train,dev}.tsv`, `out/ag_news/{train,test}.tsv`; existing files are reused).
/// Returns `out`.
///
/// # Errors
/// forge-models' Hub errors (offline and not cached, unreachable, unknown file); forge-data's
/// parquet errors (bad columns or labels), naming the file.
pub fn hf_text_data_dir(hf_root: Option<&Path>, out: &Path) -> Result<PathBuf> {
    use forge_data::text_hf::{tsv_from_parquet, HfText};
    for kind in [HfText::Sst2, HfText::AgNews] {
        for (file, tsv) in kind.files() {
            let dst = out.join(kind.folder()).join(tsv);
            if dst.is_file() {
                continue;
            }
            let src = forge_models::ModelFiles::hub_dataset_file(kind.repo(), file, hf_root)?;
            let n = tsv_from_parquet(kind, &src, &dst)?;
            tracing::info!("{}: {n} rows from {}", dst.display(), src.display());
        }
    }
    Ok(out.to_path_buf())
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
    fn text_data_comes_from_the_hugging_face_cache_when_no_folder_is_given() {
        // A Hugging Face cache holding the Hub's parquet files (forge-data's fixtures in the
        // Hub's layout): converted once into Forge's TSV folders and loaded from there.
        let hf = tempfile::tempdir().unwrap();
        let fixtures =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../forge-data/tests/fixtures/hf");
        for (repo, files) in [
            (
                "datasets--stanfordnlp--sst2",
                [("train", "sst2-train"), ("validation", "sst2-validation")],
            ),
            (
                "datasets--fancyzhx--ag_news",
                [("train", "ag_news-train"), ("test", "ag_news-test")],
            ),
        ] {
            let snap = hf.path().join(repo).join("snapshots/abc123/data");
            std::fs::create_dir_all(&snap).unwrap();
            std::fs::create_dir_all(hf.path().join(repo).join("refs")).unwrap();
            std::fs::write(hf.path().join(repo).join("refs/main"), "abc123").unwrap();
            for (split, fixture) in files {
                std::fs::copy(
                    fixtures.join(format!("{fixture}.parquet")),
                    snap.join(format!("{split}-00000-of-00001.parquet")),
                )
                .unwrap();
            }
        }
        let out = tempfile::tempdir().unwrap();
        let dir = hf_text_data_dir(Some(hf.path()), out.path()).unwrap();
        let sst = forge_data::sst2(&dir, forge_data::TextSplit::Train).unwrap();
        assert_eq!(sst.labels, [1, 0, 1, 0]);
        let ag = forge_data::ag_news(&dir, forge_data::TextSplit::Eval).unwrap();
        assert_eq!(ag.len(), 2);
        // Converted once: a second call reuses the TSVs even without the cache.
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(
            hf_text_data_dir(Some(empty.path()), out.path()).unwrap(),
            dir
        );
        // Nothing cached and offline: a Hub error naming the dataset, fast.
        std::env::set_var("HF_HUB_OFFLINE", "1");
        let fresh = tempfile::tempdir().unwrap();
        let e = hf_text_data_dir(Some(empty.path()), fresh.path()).unwrap_err();
        assert!(e.to_string().contains("stanfordnlp/sst2"), "{e}");
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
