//! CodeCarbon-compatible `emissions.csv` and the JSON Lines record of each run, appended in
//! O(1) and crash-safely.
//!
//! # Columns
//!
//! New files get CodeCarbon 3.3's 38 columns in CodeCarbon 3.3's order ([`CODECARBON_COLUMNS`],
//! the field order of its `EmissionsData`): `water_consumed` follows `energy_consumed`, the four
//! utilisation columns (`cpu_utilization_percent`, `gpu_utilization_percent`,
//! `ram_utilization_percent`, `ram_used_gb`) follow `tracking_mode`, and `on_cloud, pue, wue` end
//! the row. Existing files are appended to in *their* column order, as CodeCarbon does, when
//! their header is one of CodeCarbon's generations: the header is compared as a set (CodeCarbon's
//! `sorted(headers) == sorted(fields)`) and accepted when it holds the 32 columns of CodeCarbon
//! 2.x / Forge before 0.2 ([`CODECARBON_2X_COLUMNS`]) and nothing outside the 38. So Forge and
//! CodeCarbon 3.3 append to one file without moving it aside; only a file with a foreign header is
//! backed up (`<file>.<uuid>.bak`) and restarted, as CodeCarbon does.
//!
//! Water: `water_consumed` = `energy_consumed` x `wue` and `wue` are written only when a WUE is
//! configured; otherwise both cells are empty (CodeCarbon writes 0, which would claim a
//! measurement). Columns without a Forge value (`python_version`, `codecarbon_version`,
//! coordinates) are empty. Units are CodeCarbon's: s, kg, kg/s, W, kWh, L, GB, %.
//!
//! # Crash safety at O(1) per append
//!
//! [`append_record`] (used by the tracker) keeps `emissions.csv` and `emissions.jsonl` consistent
//! with a small journal:
//! 1. take an exclusive lock on `emissions.csv.lock` (std `File::lock`);
//! 2. finish a previous interrupted append if a journal file `.forge-pending-<csv name>.json`
//!    is left (see below), and remove stale `.forge-tmp-*` files older than an hour;
//! 3. repair a torn last line of either file (a line without its newline, left by a kill in the
//!    middle of a write): it is cut off and reported with a warning ([`read_csv`] and
//!    [`read_json`] skip such a line until then: it was never committed);
//! 4. write the journal (atomically): the record and both files' lengths;
//! 5. append the JSON line, fsync; append the CSV row, fsync; delete the journal.
//!
//! Recovery after a crash between 4 and 5 appends what is missing: a file whose content at the
//! journalled offset does not start with the run's line gets it. Each append reads only the
//! header and the last bytes of each file, never the whole file.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::emissions::Emissions;
use crate::error::{CarbonError, Result};
use crate::util::{sync_dir, write_atomic, FileLock};

/// CodeCarbon 3.3's `emissions.csv` columns, in its order (`EmissionsData` fields).
pub const CODECARBON_COLUMNS: [&str; 38] = [
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
    "water_consumed",
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
    "cpu_utilization_percent",
    "gpu_utilization_percent",
    "ram_utilization_percent",
    "ram_used_gb",
    "on_cloud",
    "pue",
    "wue",
];

/// The 32 columns of CodeCarbon 2.x (and of Forge before 0.2), in their order. Every accepted
/// header holds at least these.
pub const CODECARBON_2X_COLUMNS: [&str; 32] = [
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

/// The CSV file name used in `output_dir` (CodeCarbon's default `output_file`).
pub const CSV_FILE: &str = "emissions.csv";
/// The JSON Lines file name used in `output_dir`: one full [`Emissions`] record per line.
pub const JSON_FILE: &str = "emissions.jsonl";

/// How far back from the end a torn-line check looks for the previous newline before giving up
/// on O(1) and scanning further (a CSV row is ~0.5 KB, a JSON record ~3 KB).
const TAIL_CHUNK: u64 = 64 * 1024;

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

fn opt(x: Option<f64>) -> String {
    x.map(fmt_f64).unwrap_or_default()
}

/// The CSV header line of a new file (without newline): [`CODECARBON_COLUMNS`].
pub fn csv_header() -> String {
    CODECARBON_COLUMNS.join(",")
}

/// The value of one CodeCarbon column for `e` (unquoted); `None` for an unknown column.
pub fn csv_value(e: &Emissions, column: &str) -> Option<String> {
    let f = fmt_f64;
    Some(match column {
        "timestamp" => e.timestamp.clone(),
        "project_name" => e.project_name.clone(),
        "run_id" => e.run_id.clone(),
        "experiment_id" => e.experiment_id.clone(),
        "duration" => f(e.duration_s),
        "emissions" => f(e.emissions_kg),
        "emissions_rate" => f(e.emissions_rate_kg_per_s),
        "cpu_power" => f(e.cpu_power_w),
        "gpu_power" => f(e.gpu_power_w),
        "ram_power" => f(e.ram_power_w),
        "cpu_energy" => f(e.cpu_energy_kwh),
        "gpu_energy" => f(e.gpu_energy_kwh),
        "ram_energy" => f(e.ram_energy_kwh),
        "energy_consumed" => f(e.energy_kwh),
        "water_consumed" => opt(e.water_consumed_l),
        "country_name" => e.country_name.clone(),
        "country_iso_code" => e.country_iso.clone(),
        "region" => e.region.clone().unwrap_or_default(),
        "cloud_provider" => e.cloud_provider.clone().unwrap_or_default(),
        "cloud_region" => e.cloud_region.clone().unwrap_or_default(),
        "os" => e.os.clone(),
        "python_version" | "codecarbon_version" | "longitude" | "latitude" => String::new(),
        "cpu_count" => e.cpu_count.to_string(),
        "cpu_model" => e.cpu_model.clone(),
        "gpu_count" => e.gpu_count.to_string(),
        "gpu_model" => e.gpu_model.clone().unwrap_or_default(),
        "ram_total_size" => f(e.ram_total_gb),
        "tracking_mode" => e.tracking_mode.as_str().to_string(),
        "cpu_utilization_percent" => opt(e.cpu_utilization_percent),
        "gpu_utilization_percent" => opt(e.gpu_utilization_percent),
        "ram_utilization_percent" => opt(e.ram_utilization_percent),
        "ram_used_gb" => opt(e.ram_used_gb),
        "on_cloud" => if e.cloud_provider.is_some() { "Y" } else { "N" }.to_string(),
        "pue" => f(e.pue),
        "wue" => opt(e.wue_l_per_kwh),
        _ => return None,
    })
}

/// One CSV record (without newline) with the values of `columns`, in that order; an unknown
/// column gets an empty cell.
pub fn csv_row_for<S: AsRef<str>>(e: &Emissions, columns: &[S]) -> String {
    columns
        .iter()
        .map(|c| csv_field(&csv_value(e, c.as_ref()).unwrap_or_default()))
        .collect::<Vec<_>>()
        .join(",")
}

/// One CSV record (without newline) in [`CODECARBON_COLUMNS`] order.
pub fn csv_row(e: &Emissions) -> String {
    csv_row_for(e, &CODECARBON_COLUMNS)
}

/// Whether Forge appends to a file with this header: CodeCarbon's set comparison, widened to
/// every CodeCarbon generation (all of [`CODECARBON_2X_COLUMNS`], nothing outside
/// [`CODECARBON_COLUMNS`], no duplicates).
pub fn header_is_compatible<S: AsRef<str>>(header: &[S]) -> bool {
    let set: std::collections::BTreeSet<&str> = header.iter().map(AsRef::as_ref).collect();
    set.len() == header.len()
        && CODECARBON_2X_COLUMNS.iter().all(|c| set.contains(c))
        && set.iter().all(|c| CODECARBON_COLUMNS.contains(c))
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CarbonError + '_ {
    move |e| CarbonError::io(path, e)
}

/// Reads the first line of `f` (up to 64 KiB); `None` when the file has no complete first line.
fn read_first_line(f: &mut File, path: &Path) -> Result<Option<String>> {
    f.seek(SeekFrom::Start(0)).map_err(io(path))?;
    let mut buf = Vec::new();
    Read::by_ref(f)
        .take(TAIL_CHUNK)
        .read_to_end(&mut buf)
        .map_err(io(path))?;
    Ok(buf
        .iter()
        .position(|&b| b == b'\n')
        .map(|i| String::from_utf8_lossy(&buf[..i]).into_owned()))
}

/// Cuts a torn last line (bytes after the last newline) off `f`; returns the removed text.
/// Reads only the file's tail, scanning further back only when the torn part is longer than
/// [`TAIL_CHUNK`].
fn repair_tail(f: &mut File, path: &Path) -> Result<Option<String>> {
    let len = f.metadata().map_err(io(path))?.len();
    if len == 0 {
        return Ok(None);
    }
    let mut last = [0u8; 1];
    f.seek(SeekFrom::Start(len - 1)).map_err(io(path))?;
    f.read_exact(&mut last).map_err(io(path))?;
    if last[0] == b'\n' {
        return Ok(None);
    }
    let mut end = len;
    let keep = loop {
        let start = end.saturating_sub(TAIL_CHUNK);
        let mut buf = vec![0u8; (end - start) as usize];
        f.seek(SeekFrom::Start(start)).map_err(io(path))?;
        f.read_exact(&mut buf).map_err(io(path))?;
        if let Some(i) = buf.iter().rposition(|&b| b == b'\n') {
            break start + i as u64 + 1;
        }
        if start == 0 {
            break 0;
        }
        end = start;
    };
    let mut torn = vec![0u8; (len - keep) as usize];
    f.seek(SeekFrom::Start(keep)).map_err(io(path))?;
    f.read_exact(&mut torn).map_err(io(path))?;
    f.set_len(keep).map_err(io(path))?;
    f.sync_all().map_err(io(path))?;
    let torn = String::from_utf8_lossy(&torn).into_owned();
    tracing::warn!(file = %path.display(), torn = %torn, "removed a torn last line (an interrupted write)");
    Ok(Some(torn))
}

fn open_rw(path: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(io(path))
}

fn append_bytes(f: &mut File, path: &Path, bytes: &[u8]) -> Result<()> {
    f.seek(SeekFrom::End(0)).map_err(io(path))?;
    f.write_all(bytes).map_err(io(path))?;
    f.sync_data().map_err(io(path))
}

fn backup(path: &Path) -> Result<PathBuf> {
    let mut bak = path.as_os_str().to_owned();
    bak.push(format!(".{}.bak", crate::util::uuid_v4()));
    let bak = PathBuf::from(bak);
    std::fs::rename(path, &bak).map_err(io(path))?;
    Ok(bak)
}

/// The CSV line (with its line ending) that `e` gets in the file at `path`, after making the file
/// appendable: created with the 3.3 header when absent or empty, torn tail repaired, a foreign
/// header backed up. Returns the open file, the line and notes (repairs, backups).
fn prepare_csv(path: &Path, e: &Emissions) -> Result<(File, String, Vec<String>)> {
    let mut notes = Vec::new();
    let mut f = open_rw(path)?;
    if let Some(torn) = repair_tail(&mut f, path)? {
        notes.push(format!(
            "{}: removed a torn last line {torn:?}",
            path.display()
        ));
    }
    let header = match read_first_line(&mut f, path)? {
        Some(h) => Some(h),
        None => {
            // Empty, or a torn header only (cut off above): start afresh.
            f.set_len(0).map_err(io(path))?;
            None
        }
    };
    let (columns, eol): (Vec<String>, &str) = match header {
        None => {
            let eol = "\n";
            append_bytes(&mut f, path, format!("{}{eol}", csv_header()).as_bytes())?;
            if let Some(d) = path.parent() {
                sync_dir(if d.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    d
                });
            }
            (
                CODECARBON_COLUMNS.iter().map(|s| s.to_string()).collect(),
                eol,
            )
        }
        Some(line) => {
            let eol = if line.ends_with('\r') { "\r\n" } else { "\n" };
            let cols: Vec<String> = csv::ReaderBuilder::new()
                .has_headers(false)
                .from_reader(line.trim_end_matches('\r').as_bytes())
                .records()
                .next()
                .and_then(|r| r.ok())
                .map(|r| r.iter().map(|s| s.trim().to_string()).collect())
                .unwrap_or_default();
            if header_is_compatible(&cols) {
                (cols, eol)
            } else {
                drop(f);
                let bak = backup(path)?;
                tracing::warn!(file = %path.display(), backup = %bak.display(), "emissions.csv header is not a CodeCarbon header; old file backed up");
                notes.push(format!(
                    "{} had a foreign header; moved to {}",
                    path.display(),
                    bak.display()
                ));
                let (f2, line, more) = prepare_csv(path, e)?;
                notes.extend(more);
                return Ok((f2, line, notes));
            }
        }
    };
    let line = format!("{}{eol}", csv_row_for(e, &columns));
    Ok((f, line, notes))
}

/// Appends `e` to the CSV at `path` (creating it with the CodeCarbon 3.3 header), in O(1):
/// the file's own column order, a torn last line repaired first, append + fsync.
///
/// Returns notes on repairs or backups (also logged).
///
/// # Errors
/// [`CarbonError::Io`] on file-system failures.
pub fn append_csv(path: &Path, e: &Emissions) -> Result<Vec<String>> {
    let _lock = FileLock::acquire(path)?;
    let (mut f, line, notes) = prepare_csv(path, e)?;
    append_bytes(&mut f, path, line.as_bytes())?;
    Ok(notes)
}

/// Appends `e` as one line to the JSON Lines file at `path`, in O(1) (torn last line repaired).
///
/// # Errors
/// [`CarbonError::Io`] on file-system failures, [`CarbonError::Json`] never in practice.
pub fn append_json(path: &Path, e: &Emissions) -> Result<Vec<String>> {
    let _lock = FileLock::acquire(path)?;
    let mut f = open_rw(path)?;
    let notes = repair_tail(&mut f, path)?
        .map(|t| {
            vec![format!(
                "{}: removed a torn last line {t:?}",
                path.display()
            )]
        })
        .unwrap_or_default();
    let mut line = serde_json::to_string(e)?;
    line.push('\n');
    append_bytes(&mut f, path, line.as_bytes())?;
    Ok(notes)
}

/// The journal of an append in progress.
#[derive(Debug, Serialize, Deserialize)]
struct Pending {
    record: Emissions,
    csv_len: u64,
    json_len: u64,
}

fn pending_path(csv: &Path) -> PathBuf {
    let name = csv
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| CSV_FILE.into());
    csv.with_file_name(format!(".forge-pending-{name}.json"))
}

/// True when the line starting at `offset` in `f` mentions `run_id`.
fn line_at_has(f: &mut File, path: &Path, offset: u64, run_id: &str) -> Result<bool> {
    let len = f.metadata().map_err(io(path))?.len();
    if offset >= len {
        return Ok(false);
    }
    f.seek(SeekFrom::Start(offset)).map_err(io(path))?;
    let mut buf = Vec::new();
    Read::by_ref(f)
        .take(TAIL_CHUNK)
        .read_to_end(&mut buf)
        .map_err(io(path))?;
    let line_end = buf.iter().position(|&b| b == b'\n').unwrap_or(buf.len());
    Ok(String::from_utf8_lossy(&buf[..line_end]).contains(run_id))
}

fn recover(csv: &Path, json: &Path, notes: &mut Vec<String>) -> Result<()> {
    let pp = pending_path(csv);
    let text = match std::fs::read_to_string(&pp) {
        Ok(t) => t,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(CarbonError::io(&pp, err)),
    };
    match serde_json::from_str::<Pending>(&text) {
        Ok(p) => {
            let id = p.record.run_id.clone();
            let mut jf = open_rw(json)?;
            repair_tail(&mut jf, json)?;
            if !line_at_has(&mut jf, json, p.json_len, &id)? {
                let mut line = serde_json::to_string(&p.record)?;
                line.push('\n');
                append_bytes(&mut jf, json, line.as_bytes())?;
                notes.push(format!(
                    "completed an interrupted append of run {id} to {}",
                    json.display()
                ));
            }
            let (mut cf, line, more) = prepare_csv(csv, &p.record)?;
            notes.extend(more);
            if !line_at_has(&mut cf, csv, p.csv_len, &id)? {
                append_bytes(&mut cf, csv, line.as_bytes())?;
                notes.push(format!(
                    "completed an interrupted append of run {id} to {}",
                    csv.display()
                ));
            }
            tracing::warn!(run_id = %id, "completed an interrupted emissions append");
        }
        Err(err) => {
            // A journal is written atomically, so this is not ours or was edited: leave a note.
            notes.push(format!(
                "ignored an unreadable journal {}: {err}",
                pp.display()
            ));
            tracing::warn!(file = %pp.display(), error = %err, "unreadable emissions journal ignored");
        }
    }
    std::fs::remove_file(&pp).map_err(io(&pp))?;
    Ok(())
}

/// Appends `e` to both `csv` and `json` (JSON Lines) as one journalled, crash-safe, O(1) step
/// (see the module docs). The JSON line is the full record; the CSV row is derived from it.
/// Returns notes on repairs, recoveries and backups (also logged).
///
/// # Errors
/// [`CarbonError::Io`] on file-system failures.
pub fn append_record(csv: &Path, json: &Path, e: &Emissions) -> Result<Vec<String>> {
    let _lock = FileLock::acquire(csv)?;
    let mut notes = Vec::new();
    if let Some(dir) = csv.parent() {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        crate::util::clean_stale_temp_files(dir, std::time::Duration::from_secs(3600));
    }
    recover(csv, json, &mut notes)?;
    let mut jf = open_rw(json)?;
    if let Some(t) = repair_tail(&mut jf, json)? {
        notes.push(format!(
            "{}: removed a torn last line {t:?}",
            json.display()
        ));
    }
    let (mut cf, csv_line, more) = prepare_csv(csv, e)?;
    notes.extend(more);
    let pending = Pending {
        record: e.clone(),
        csv_len: cf.metadata().map_err(io(csv))?.len(),
        json_len: jf.metadata().map_err(io(json))?.len(),
    };
    let pp = pending_path(csv);
    write_atomic(&pp, serde_json::to_string(&pending)?.as_bytes())?;
    let mut json_line = serde_json::to_string(e)?;
    json_line.push('\n');
    append_bytes(&mut jf, json, json_line.as_bytes())?;
    append_bytes(&mut cf, csv, csv_line.as_bytes())?;
    std::fs::remove_file(&pp).map_err(io(&pp))?;
    Ok(notes)
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

/// Reads the records of an `emissions.jsonl` (one JSON record per line), or of a legacy
/// `emissions.json` array written by Forge before 0.2.
///
/// # Errors
/// [`CarbonError::Io`] when unreadable, [`CarbonError::Json`] for a malformed record.
///
/// A last line without its newline that does not parse is the torn tail of an append that was
/// killed: it was never committed, so it is skipped with a warning (the next append removes it).
pub fn read_json(path: &Path) -> Result<Vec<Emissions>> {
    let s = std::fs::read_to_string(path).map_err(io(path))?;
    if s.trim_start().starts_with('[') {
        return Ok(serde_json::from_str(&s)?);
    }
    let (committed, tail) = match s.rfind('\n') {
        Some(i) if i + 1 < s.len() => (&s[..=i], &s[i + 1..]),
        None if !s.is_empty() => ("", s.as_str()),
        _ => (s.as_str(), ""),
    };
    let mut out: Vec<Emissions> = committed
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| Ok(serde_json::from_str(l)?))
        .collect::<Result<_>>()?;
    if !tail.trim().is_empty() {
        match serde_json::from_str(tail) {
            Ok(e) => out.push(e),
            Err(_) => tracing::warn!(
                path = %path.display(),
                bytes = tail.len(),
                "skipped a torn last line (an append that was interrupted)"
            ),
        }
    }
    Ok(out)
}

/// One row of an `emissions.csv` of any CodeCarbon generation, by column name.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CsvRow {
    /// Column name -> raw cell text.
    pub cells: std::collections::BTreeMap<String, String>,
}

impl CsvRow {
    /// The raw text of a column (`None` when the file has no such column).
    pub fn get(&self, column: &str) -> Option<&str> {
        self.cells.get(column).map(String::as_str)
    }

    /// A numeric column (`None` when absent or empty).
    pub fn f64(&self, column: &str) -> Option<f64> {
        self.get(column).and_then(|v| v.trim().parse().ok())
    }
}

/// Reads every row of an `emissions.csv` written by CodeCarbon (any generation) or Forge.
///
/// # Errors
/// [`CarbonError::Io`] when unreadable, [`CarbonError::BadFile`] when a row has a different
/// number of cells than the header.
///
/// A last row without its newline that has too few cells is the torn tail of an append that was
/// killed: it was never committed, so it is skipped with a warning (the next append removes it).
pub fn read_csv(path: &Path) -> Result<Vec<CsvRow>> {
    let bytes = std::fs::read(path).map_err(|e| CarbonError::BadFile {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let torn_tail_possible = !bytes.is_empty() && !bytes.ends_with(b"\n");
    let mut rdr = csv::Reader::from_reader(bytes.as_slice());
    let headers = rdr
        .headers()
        .map_err(|e| CarbonError::BadFile {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?
        .clone();
    let mut records: Vec<std::result::Result<csv::StringRecord, csv::Error>> =
        rdr.records().collect();
    if torn_tail_possible
        && records
            .last()
            .is_some_and(|r| r.as_ref().map_or(true, |r| r.len() < headers.len()))
    {
        records.pop();
        tracing::warn!(path = %path.display(), "skipped a torn last row (an append that was interrupted)");
    }
    records
        .into_iter()
        .map(|r| {
            let r = r.map_err(|e| CarbonError::BadFile {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
            Ok(CsvRow {
                cells: headers
                    .iter()
                    .zip(r.iter())
                    .map(|(h, v)| (h.trim().to_string(), v.to_string()))
                    .collect(),
            })
        })
        .collect()
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

    #[test]
    fn generations_are_compatible_and_foreign_headers_are_not() {
        assert!(header_is_compatible(&CODECARBON_COLUMNS));
        assert!(header_is_compatible(&CODECARBON_2X_COLUMNS));
        let mut v: Vec<&str> = CODECARBON_2X_COLUMNS.to_vec();
        v.extend(["water_consumed", "wue"]);
        v.reverse();
        assert!(header_is_compatible(&v));
        v.push("my_column");
        assert!(!header_is_compatible(&v));
        assert!(!header_is_compatible(&["timestamp", "project_name"]));
        let mut dup: Vec<&str> = CODECARBON_COLUMNS.to_vec();
        dup.push("pue");
        assert!(!header_is_compatible(&dup));
    }

    #[test]
    fn every_column_has_a_value() {
        let cfg = crate::CarbonConfig {
            use_nvml: false,
            ..crate::CarbonConfig::default()
        };
        let (_, e) = crate::track(&cfg, || ()).unwrap();
        for c in CODECARBON_COLUMNS {
            assert!(csv_value(&e, c).is_some(), "{c}");
        }
    }
}
