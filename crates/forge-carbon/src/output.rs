//! CodeCarbon-compatible `emissions.csv` and JSON output, appended crash-safely.
//!
//! Each append takes an advisory lock (`<file>.lock`), reads the existing file, writes the old
//! content plus the new record to a temporary file in the same directory, fsyncs it and renames
//! it over the original: a crash at any point leaves either the old or the new complete file,
//! never a torn one.
//!
//! The CSV columns are CodeCarbon's `EmissionsData` fields, in CodeCarbon's order, as written by
//! CodeCarbon 2.4-2.8 ([`CODECARBON_COLUMNS`]). CodeCarbon 3.x inserts `cpu_utilization_percent`,
//! `ram_utilization_percent`, `ram_used_gb` after `emissions_rate`, `water_consumed` after
//! `energy_consumed` and `wue` at the end; Forge does not fill those and does not write them.
//! Columns without a Forge value (`python_version`, `codecarbon_version`, cloud, coordinates) are
//! left empty, as CodeCarbon does for unknown values. Units are CodeCarbon's: s, kg, kg/s, W, kWh, GB.

use std::path::Path;

use crate::emissions::Emissions;
use crate::error::{CarbonError, Result};
use crate::util::{write_atomic, FileLock};

/// CodeCarbon's `emissions.csv` columns, in order.
pub const CODECARBON_COLUMNS: [&str; 32] = [
    "timestamp",
    "project_name",
    "run_id",
    "experiment_id",
    "duration",
    "emissions",
    "emissions_rate",
    "cpu_power",
    "gpu_power",
    "ram_power",
    "cpu_energy",
    "gpu_energy",
    "ram_energy",
    "energy_consumed",
    "country_name",
    "country_iso_code",
    "region",
    "cloud_provider",
    "cloud_region",
    "os",
    "python_version",
    "codecarbon_version",
    "cpu_count",
    "cpu_model",
    "gpu_count",
    "gpu_model",
    "longitude",
    "latitude",
    "ram_total_size",
    "tracking_mode",
    "on_cloud",
    "pue",
];

/// The CSV file name used in `output_dir`.
pub const CSV_FILE: &str = "emissions.csv";
/// The JSON file name used in `output_dir` (a JSON array of [`Emissions`]).
pub const JSON_FILE: &str = "emissions.json";

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Shortest round-trip text of `x`; scientific notation below 1e-4 (as Python writes them).
fn fmt_f64(x: f64) -> String {
    if x != 0.0 && x.abs() < 1e-4 {
        format!("{x:e}")
    } else {
        format!("{x}")
    }
}

/// The CSV header line (without newline).
pub fn csv_header() -> String {
    CODECARBON_COLUMNS.join(",")
}

/// One CSV record (without newline) in [`CODECARBON_COLUMNS`] order.
pub fn csv_row(e: &Emissions) -> String {
    let f = fmt_f64;
    let fields: [String; 32] = [
        e.timestamp.clone(),
        e.project_name.clone(),
        e.run_id.clone(),
        e.experiment_id.clone(),
        f(e.duration_s),
        f(e.emissions_kg),
        f(e.emissions_rate_kg_per_s),
        f(e.cpu_power_w),
        f(e.gpu_power_w),
        f(e.ram_power_w),
        f(e.cpu_energy_kwh),
        f(e.gpu_energy_kwh),
        f(e.ram_energy_kwh),
        f(e.energy_kwh),
        e.country_name.clone(),
        e.country_iso.clone(),
        e.region.clone().unwrap_or_default(),
        String::new(),
        String::new(),
        e.os.clone(),
        String::new(),
        String::new(),
        e.cpu_count.to_string(),
        e.cpu_model.clone(),
        e.gpu_count.to_string(),
        e.gpu_model.clone().unwrap_or_default(),
        String::new(),
        String::new(),
        f(e.ram_total_gb),
        e.tracking_mode.clone(),
        "N".to_string(),
        f(e.pue),
    ];
    fields
        .iter()
        .map(|s| csv_field(s))
        .collect::<Vec<_>>()
        .join(",")
}

fn backup(path: &Path) -> Result<std::path::PathBuf> {
    let mut bak = path.as_os_str().to_owned();
    bak.push(format!(".{}.bak", crate::util::uuid_v4()));
    let bak = std::path::PathBuf::from(bak);
    std::fs::rename(path, &bak).map_err(|e| CarbonError::io(path, e))?;
    Ok(bak)
}

/// Appends `e` to the CSV at `path`, creating it with the header if absent.
///
/// A file whose header differs (e.g. written by CodeCarbon 3.x) is renamed to
/// `<path>.<uuid>.bak` with a warning and a new file is started, as CodeCarbon does.
///
/// # Errors
/// [`CarbonError::Io`] on file-system failures.
pub fn append_csv(path: &Path, e: &Emissions) -> Result<()> {
    let _lock = FileLock::acquire(path)?;
    let header = csv_header();
    let mut content = match std::fs::read_to_string(path) {
        Ok(s) => s,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(err) => return Err(CarbonError::io(path, err)),
    };
    if !content.is_empty() && content.lines().next().map(str::trim_end) != Some(header.as_str()) {
        let bak = backup(path)?;
        tracing::warn!(file = %path.display(), backup = %bak.display(), "emissions.csv header differs; old file backed up");
        content.clear();
    }
    if content.is_empty() {
        content.push_str(&header);
        content.push('\n');
    } else if !content.ends_with('\n') {
        content.push('\n');
    }
    content.push_str(&csv_row(e));
    content.push('\n');
    write_atomic(path, content.as_bytes())
}

/// Appends `e` to the JSON array file at `path`, creating it if absent.
///
/// A file that is not a JSON array is renamed to `<path>.<uuid>.bak` with a warning.
///
/// # Errors
/// [`CarbonError::Io`] on file-system failures.
pub fn append_json(path: &Path, e: &Emissions) -> Result<()> {
    let _lock = FileLock::acquire(path)?;
    let mut records: Vec<serde_json::Value> = match std::fs::read_to_string(path) {
        Ok(s) => match serde_json::from_str(&s) {
            Ok(v) => v,
            Err(err) => {
                let bak = backup(path)?;
                tracing::warn!(file = %path.display(), backup = %bak.display(), error = %err, "emissions.json unreadable; old file backed up");
                Vec::new()
            }
        },
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(err) => return Err(CarbonError::io(path, err)),
    };
    records.push(serde_json::to_value(e)?);
    let mut text = serde_json::to_string_pretty(&records)?;
    text.push('\n');
    write_atomic(path, text.as_bytes())
}

/// Writes one record as a pretty JSON object to `path`, atomically.
///
/// # Errors
/// [`CarbonError::Io`] on file-system failures.
pub fn write_json(path: &Path, e: &Emissions) -> Result<()> {
    let mut text = e.to_json()?;
    text.push('\n');
    write_atomic(path, text.as_bytes())
}

/// Reads the records of an `emissions.json` written by [`append_json`].
///
/// # Errors
/// [`CarbonError::Io`] when unreadable, [`CarbonError::Json`] when not an array of records.
pub fn read_json(path: &Path) -> Result<Vec<Emissions>> {
    let s = std::fs::read_to_string(path).map_err(|e| CarbonError::io(path, e))?;
    Ok(serde_json::from_str(&s)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_round_trip() {
        for x in [0.0, 1.0, 2.5e-9, 123.456, 1e-4, 9.272413037891701e-7] {
            assert_eq!(fmt_f64(x).parse::<f64>().unwrap(), x);
        }
        assert_eq!(fmt_f64(2.5e-9), "2.5e-9");
    }

    #[test]
    fn csv_quoting() {
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("plain"), "plain");
    }
}
