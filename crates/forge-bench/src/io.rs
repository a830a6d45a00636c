//! Atomic file writes and schema-checked reads.

use crate::error::{BenchError, Result};
use crate::schema::{ResultsFile, SCHEMA_VERSION};
use std::io::Write;
use std::path::Path;

/// Writes `bytes` to `path` atomically: a temporary file in the same folder, flushed and synced,
/// then renamed over `path`. An interrupted write never leaves a torn file. Creates the parent
/// folder if needed.
///
/// # Errors
/// [`BenchError::Io`] naming `path`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).map_err(|e| BenchError::io(dir, e))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| BenchError::io(dir, e))?;
    tmp.write_all(bytes).map_err(|e| BenchError::io(path, e))?;
    tmp.as_file()
        .sync_all()
        .map_err(|e| BenchError::io(path, e))?;
    // tempfile creates 0600 files; results and figures are meant to be shared (0644).
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o644))
            .map_err(|e| BenchError::io(path, e))?;
    }
    tmp.persist(path)
        .map_err(|e| BenchError::io(path, e.error))?;
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

/// Reads a results file, checking its `schema_version` first (so an old file gets a clear error
/// rather than a missing-field one).
///
/// # Errors
/// [`BenchError::SchemaVersion`], [`BenchError::Io`] or [`BenchError::Json`].
pub fn read_results(path: &Path) -> Result<ResultsFile> {
    let v: serde_json::Value = read_json(path)?;
    let found = v
        .get("schema_version")
        .and_then(|x| x.as_u64())
        .unwrap_or(0) as u32;
    if found != SCHEMA_VERSION {
        return Err(BenchError::SchemaVersion {
            path: path.to_path_buf(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    serde_json::from_value(v).map_err(|source| BenchError::Json {
        path: path.to_path_buf(),
        source,
    })
}
