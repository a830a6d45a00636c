//! Hugging Face dataset files (parquet) converted to Forge's text layout, so that SST-2 and
//! AG News downloaded from the Hub (or found in the Hugging Face cache) load with
//! [`crate::text::sst2`] and [`crate::text::ag_news`]. Behind the `parquet` feature.
//!
//! | data set | Hub repository | splits (files under `data/`) | columns |
//! |---|---|---|---|
//! | SST-2 (Socher et al. 2013, GLUE) | `stanfordnlp/sst2` | `train`, `validation` -> `dev.tsv` | `sentence`, `label` (0 negative, 1 positive) |
//! | AG News (Zhang et al. 2015) | `fancyzhx/ag_news` | `train`, `test` | `text`, `label` (0 World, 1 Sports, 2 Business, 3 Sci/Tech) |

use crate::text::AG_NEWS_LABELS;
use crate::{DataError, Result};
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::Field;
use std::fmt::Write as _;
use std::path::Path;

/// A text data set published on the Hugging Face Hub as parquet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HfText {
    /// GLUE SST-2 (`stanfordnlp/sst2`).
    Sst2,
    /// AG News (`fancyzhx/ag_news`).
    AgNews,
}

impl HfText {
    /// The Hub repository id.
    pub fn repo(self) -> &'static str {
        match self {
            HfText::Sst2 => "stanfordnlp/sst2",
            HfText::AgNews => "fancyzhx/ag_news",
        }
    }

    /// Forge's folder name (`<text data dir>/<folder>/`).
    pub fn folder(self) -> &'static str {
        match self {
            HfText::Sst2 => "sst2",
            HfText::AgNews => "ag_news",
        }
    }

    /// `(file in the Hub repository, Forge's TSV name)` of the training and evaluation splits.
    pub fn files(self) -> [(&'static str, &'static str); 2] {
        match self {
            HfText::Sst2 => [
                ("data/train-00000-of-00001.parquet", "train.tsv"),
                ("data/validation-00000-of-00001.parquet", "dev.tsv"),
            ],
            HfText::AgNews => [
                ("data/train-00000-of-00001.parquet", "train.tsv"),
                ("data/test-00000-of-00001.parquet", "test.tsv"),
            ],
        }
    }

    fn columns(self) -> (&'static str, &'static str) {
        match self {
            HfText::Sst2 => ("sentence", "label"),
            HfText::AgNews => ("text", "label"),
        }
    }

    fn classes(self) -> usize {
        match self {
            HfText::Sst2 => 2,
            HfText::AgNews => AG_NEWS_LABELS.len(),
        }
    }
}

/// Reads the text and integer label columns of `kind` from the parquet file `parquet` and
/// writes them as Forge's TSV (`sentence<TAB>label` with 0/1 for SST-2, `text<TAB>label` with
/// the class names for AG News; tabs and line breaks inside a text become spaces) to `out`,
/// atomically. Returns the number of rows.
///
/// # Errors
/// [`DataError::Parquet`] for an unreadable file, a missing column or a text / label of the
/// wrong type; [`DataError::BadLabel`] for a label outside the data set's classes; I/O errors
/// writing `out`.
pub fn tsv_from_parquet(kind: HfText, parquet: &Path, out: &Path) -> Result<usize> {
    let bad = |reason: String| DataError::Parquet {
        path: parquet.to_path_buf(),
        reason,
    };
    let file = std::fs::File::open(parquet).map_err(|e| DataError::Read {
        path: parquet.to_path_buf(),
        source: e,
    })?;
    let reader =
        SerializedFileReader::new(file).map_err(|e| bad(format!("not a parquet file ({e})")))?;
    let (text_col, label_col) = kind.columns();
    let schema = reader.metadata().file_metadata().schema_descr();
    let names: Vec<String> = schema
        .columns()
        .iter()
        .map(|c| c.name().to_string())
        .collect();
    for want in [text_col, label_col] {
        if !names.iter().any(|n| n == want) {
            return Err(bad(format!(
                "no column {want:?} (columns: {}); expected the {} layout of {}",
                names.join(", "),
                kind.folder(),
                kind.repo()
            )));
        }
    }
    let mut tsv = String::new();
    tsv.push_str(match kind {
        HfText::Sst2 => "sentence\tlabel\n",
        HfText::AgNews => "text\tlabel\n",
    });
    let rows = reader
        .get_row_iter(None)
        .map_err(|e| bad(format!("cannot read rows ({e})")))?;
    let mut n = 0usize;
    for (r, row) in rows.enumerate() {
        let row = row.map_err(|e| bad(format!("row {r}: {e}")))?;
        let (mut text, mut label) = (None, None);
        for (name, field) in row.get_column_iter() {
            if name == text_col {
                text = match field {
                    Field::Str(s) => Some(s.clone()),
                    other => return Err(bad(format!("row {r}: {text_col} is not text ({other})"))),
                };
            } else if name == label_col {
                label = match field {
                    Field::Long(v) => Some(*v),
                    Field::Int(v) => Some(i64::from(*v)),
                    Field::Short(v) => Some(i64::from(*v)),
                    Field::Byte(v) => Some(i64::from(*v)),
                    other => {
                        return Err(bad(format!(
                            "row {r}: {label_col} is not an integer ({other})"
                        )))
                    }
                };
            }
        }
        let (Some(text), Some(label)) = (text, label) else {
            return Err(bad(format!("row {r}: {text_col} or {label_col} is null")));
        };
        let class = usize::try_from(label)
            .ok()
            .filter(|&c| c < kind.classes())
            .ok_or_else(|| DataError::BadLabel {
                dataset: parquet.display().to_string(),
                row: r,
                value: label as f64,
                task: format!("{}-class {}", kind.classes(), kind.folder()),
            })?;
        let clean: String = text
            .chars()
            .map(|c| {
                if c == '\t' || c == '\n' || c == '\r' {
                    ' '
                } else {
                    c
                }
            })
            .collect();
        match kind {
            HfText::Sst2 => writeln!(tsv, "{}\t{class}", clean.trim()),
            HfText::AgNews => writeln!(tsv, "{}\t{}", clean.trim(), AG_NEWS_LABELS[class]),
        }
        .map_err(|e| bad(e.to_string()))?;
        n += 1;
    }
    if n == 0 {
        return Err(bad("no rows".into()));
    }
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    forge_linalg::io::write_atomic(out, tsv.as_bytes())?;
    Ok(n)
}
