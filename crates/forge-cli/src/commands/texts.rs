//! Labelled texts from a TSV file (header line, a text column and a label column), shared by
//! `forge rank` and `forge finetune`.

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::{CliError, Result};

/// Reads `(texts, raw labels)`; the text column is `text_col`, else `sentence`, else `text`.
///
/// # Errors
/// A missing file, an unknown column (naming the header), a malformed line, no rows.
pub fn read_tsv(
    path: &Path,
    what: &'static str,
    text_col: Option<&str>,
    label_col: &str,
    max_rows: Option<usize>,
) -> Result<(Vec<String>, Vec<String>)> {
    if !path.is_file() {
        return Err(CliError::MissingInput {
            what,
            path: path.to_path_buf(),
        });
    }
    let bad = |r: String| CliError::Input(format!("{}: {r}", path.display()));
    let mut rdr = csv::ReaderBuilder::new()
        .delimiter(b'\t')
        .quoting(false)
        .from_path(path)
        .map_err(|e| bad(e.to_string()))?;
    let headers: Vec<String> = rdr
        .headers()
        .map_err(|e| bad(e.to_string()))?
        .iter()
        .map(str::to_string)
        .collect();
    let find = |name: &str| headers.iter().position(|h| h == name);
    let tc = match text_col {
        Some(c) => {
            find(c).ok_or_else(|| bad(format!("no column {c:?} (header has {headers:?})")))?
        }
        None => find("sentence").or_else(|| find("text")).ok_or_else(|| {
            bad(format!(
                "no text column \"sentence\" or \"text\" (header has {headers:?}); pass --text-col"
            ))
        })?,
    };
    let lc = find(label_col)
        .ok_or_else(|| bad(format!("no column {label_col:?} (header has {headers:?})")))?;
    let (mut texts, mut raw) = (Vec::new(), Vec::new());
    for (i, rec) in rdr.records().enumerate() {
        if max_rows.is_some_and(|m| texts.len() >= m) {
            break;
        }
        let rec = rec.map_err(|e| bad(format!("line {}: {e}", i + 2)))?;
        texts.push(rec[tc].to_string());
        raw.push(rec[lc].trim().to_string());
    }
    if texts.is_empty() {
        return Err(bad("no data rows".into()));
    }
    Ok((texts, raw))
}

/// The distinct label values in class-id order: numeric labels in numeric order, others sorted.
///
/// # Errors
/// Fewer than two distinct values.
pub fn class_names(raw: &[String], path: &Path, label_col: &str) -> Result<Vec<String>> {
    let mut names: Vec<String> = raw.to_vec();
    names.sort_by(|x, y| match (x.parse::<f64>(), y.parse::<f64>()) {
        (Ok(p), Ok(q)) => p.total_cmp(&q),
        _ => x.cmp(y),
    });
    names.dedup();
    if names.len() < 2 {
        return Err(CliError::Input(format!(
            "{}: column {label_col:?} has a single label value ({:?}): at least two classes are needed",
            path.display(),
            names.first().cloned().unwrap_or_default()
        )));
    }
    Ok(names)
}

/// Class ids of `raw` given the class names.
///
/// # Errors
/// A label that is not among `names` (e.g. a validation label unseen in training).
pub fn class_ids(raw: &[String], names: &[String], path: &Path) -> Result<Vec<u32>> {
    let id: BTreeMap<&str, u32> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), i as u32))
        .collect();
    raw.iter()
        .map(|r| {
            id.get(r.as_str()).copied().ok_or_else(|| {
                CliError::Input(format!(
                    "{}: label {r:?} is not one of the training labels {names:?}",
                    path.display()
                ))
            })
        })
        .collect()
}
