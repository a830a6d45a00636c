//! Atomic file writes, validated results reads and writes, and saving with a fallback path.

use crate::error::{BenchError, Result};
use crate::schema::{ResultsFile, READABLE_SCHEMA_VERSIONS};
use std::path::{Path, PathBuf};

/// Writes `bytes` to `path` atomically with forge-linalg's one mechanism (a temporary file in
/// the same folder, fsync, rename, fsync of the folder): an interrupted write never leaves a
/// torn file. Creates the parent folder if needed.
///
/// # Errors
/// [`BenchError::Io`] naming the folder it could not create, or forge-linalg's error naming
/// `path`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).map_err(|e| BenchError::io(dir, e))?;
    forge_linalg::io::write_atomic(path, bytes)?;
    Ok(())
}

/// Serialises `value` as pretty JSON and writes it atomically.
///
/// # Errors
/// [`BenchError::Json`] or [`BenchError::Io`].
pub fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<()> {
    let mut s = serde_json::to_string_pretty(value).map_err(|source| BenchError::Json {
        path: path.to_path_buf(),
        source,
    })?;
    s.push('\n');
    write_atomic(path, s.as_bytes())
}

/// Reads a JSON file into `T`.
///
/// # Errors
/// [`BenchError::Io`] or [`BenchError::Json`] naming `path`.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| BenchError::io(path, e))?;
    serde_json::from_str(&text).map_err(|source| BenchError::Json {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads a results file: checks `schema_version` first (so an old or foreign file gets a clear
/// error rather than a missing-field one), then parses it and [validates](crate::validate) it.
///
/// # Errors
/// [`BenchError::SchemaVersion`], [`BenchError::Io`], [`BenchError::Json`], or
/// [`BenchError::InvalidResults`] naming the file and the offending field.
pub fn read_results(path: &Path) -> Result<ResultsFile> {
    let v: serde_json::Value = read_json(path)?;
    let supported = READABLE_SCHEMA_VERSIONS
        .iter()
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let found = v.get("schema_version").map(|x| {
        x.as_u64()
            .and_then(|x| u32::try_from(x).ok())
            .unwrap_or(u32::MAX)
    });
    match found {
        Some(f) if READABLE_SCHEMA_VERSIONS.contains(&f) => {}
        _ => {
            return Err(BenchError::SchemaVersion {
                path: path.to_path_buf(),
                found,
                supported,
            })
        }
    }
    let r: ResultsFile = serde_json::from_value(v).map_err(|source| BenchError::Json {
        path: path.to_path_buf(),
        source,
    })?;
    crate::validate::validate(&r).map_err(|e| with_path(e, path))?;
    Ok(r)
}

fn with_path(e: BenchError, p: &Path) -> BenchError {
    match e {
        BenchError::InvalidResults { field, reason, .. } => BenchError::InvalidResults {
            path: Some(p.to_path_buf()),
            field,
            reason,
        },
        other => other,
    }
}

/// [Validates](crate::validate) `r` and writes it as pretty JSON, atomically. A non-finite
/// number is never written (serde_json would write `null`).
///
/// # Errors
/// [`BenchError::InvalidResults`] naming the field (nothing is written), or as [`write_json`].
pub fn write_results(path: &Path, r: &ResultsFile) -> Result<()> {
    crate::validate::validate(r).map_err(|e| with_path(e, path))?;
    write_json(path, r)
}

/// Where [`save_results`] put a results file.
#[derive(Debug)]
pub enum Saved {
    /// Written where asked.
    AtPath(PathBuf),
    /// The requested path failed; written to this fallback instead.
    Fallback {
        /// The path asked for.
        wanted: PathBuf,
        /// Why it failed.
        error: BenchError,
        /// Where the results went instead.
        written: PathBuf,
    },
}

/// Writes `r` to each of `paths` ([`write_results`]); when one fails for an I/O reason (read-only
/// or full folder), writes it to `fallback_dir` instead (a file named after the wanted one
/// plus the process id), so a run is never lost to a bad output path.
///
/// # Errors
/// [`BenchError::InvalidResults`] if `r` is not valid (nothing is written), or the fallback
/// write's own error when both fail (the message names both paths).
pub fn save_results(r: &ResultsFile, paths: &[PathBuf], fallback_dir: &Path) -> Result<Vec<Saved>> {
    crate::validate::validate(r)?;
    let mut out = Vec::new();
    for p in paths {
        match write_json(p, r) {
            Ok(()) => out.push(Saved::AtPath(p.clone())),
            Err(error) => {
                let stem = p
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "results".into());
                let written = fallback_dir.join(format!("{stem}.{}.json", std::process::id()));
                write_json(&written, r).map_err(|e2| {
                    BenchError::config(
                        "results output",
                        format!(
                            "could not write {} ({error}) nor the fallback {} ({e2})",
                            p.display(),
                            written.display()
                        ),
                    )
                })?;
                out.push(Saved::Fallback {
                    wanted: p.clone(),
                    error,
                    written,
                });
            }
        }
    }
    Ok(out)
}
