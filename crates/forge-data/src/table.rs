//! A small string table read from a delimited text file (optionally gzip-compressed), with typed
//! accessors that turn bad cells into [`DataError`]s naming the file, line and column.

use crate::{DataError, Result};
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

/// How fields are separated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sep {
    /// RFC 4180 CSV with `"` quoting.
    Comma,
    /// Tab separated, no quoting (quotes are part of the text).
    Tab,
    /// Runs of ASCII whitespace, no quoting.
    Whitespace,
}

/// What the first line of a file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Header {
    /// Column names; every data line must have as many fields.
    Names,
    /// No header: the first line is data and sets the field count.
    None,
    /// A free-form first line (kept in [`Table::preamble`]); the first data line sets the count.
    Preamble,
}

/// A table of string cells with the 1-based line number of each row.
#[derive(Debug)]
pub(crate) struct Table {
    pub path: PathBuf,
    /// Header names (empty when the file has no header).
    pub headers: Vec<String>,
    /// The first line in [`Header::Preamble`] mode.
    pub preamble: Vec<String>,
    pub rows: Vec<Vec<String>>,
    pub lines: Vec<u64>,
}

/// The error for a failed open or read of `path`: [`DataError::MissingFile`],
/// [`DataError::NotAFolder`] when a parent folder is a file, else [`DataError::Read`].
pub(crate) fn io_error(path: &Path, e: std::io::Error) -> DataError {
    if let Some(parent) = path
        .ancestors()
        .skip(1)
        .find(|p| !p.as_os_str().is_empty() && p.exists())
    {
        if !parent.is_dir() {
            return DataError::NotAFolder {
                path: parent.to_path_buf(),
                wanted: path.to_path_buf(),
            };
        }
    }
    if e.kind() == std::io::ErrorKind::NotFound {
        DataError::MissingFile {
            path: path.to_path_buf(),
        }
    } else {
        DataError::Read {
            path: path.to_path_buf(),
            source: e,
        }
    }
}

/// Opens `path`, mapping a missing file to [`DataError::MissingFile`] and decompressing `.gz`.
pub(crate) fn open(path: &Path) -> Result<Box<dyn Read>> {
    let f = File::open(path).map_err(|e| io_error(path, e))?;
    if path.extension().is_some_and(|e| e == "gz") {
        Ok(Box::new(flate2::read::GzDecoder::new(BufReader::new(f))))
    } else {
        Ok(Box::new(BufReader::new(f)))
    }
}

impl Table {
    /// Reads a whole file. With [`Header::Names`] the first record gives the column names and
    /// every later record must have as many fields; otherwise every data record must have as
    /// many fields as the first data record. Blank lines are skipped.
    ///
    /// # Errors
    /// [`DataError::MissingFile`], [`DataError::NotAFolder`], [`DataError::Read`] (I/O, gzip or
    /// UTF-8 errors, naming the file), [`DataError::EmptyFile`] (no data row),
    /// [`DataError::DuplicateColumn`], [`DataError::ColumnCount`], [`DataError::Csv`].
    pub fn read(path: &Path, sep: Sep, header: Header) -> Result<Self> {
        let reader = open(path)?;
        let mut records: Vec<(u64, Vec<String>)> = Vec::new();
        match sep {
            Sep::Comma | Sep::Tab => {
                let mut rdr = csv::ReaderBuilder::new()
                    .has_headers(false)
                    .flexible(true)
                    .delimiter(if sep == Sep::Comma { b',' } else { b'\t' })
                    .quoting(sep == Sep::Comma)
                    .from_reader(reader);
                for rec in rdr.records() {
                    let rec = rec.map_err(|source| {
                        if !source.is_io_error() {
                            return DataError::Csv {
                                path: path.to_path_buf(),
                                source,
                            };
                        }
                        match source.into_kind() {
                            csv::ErrorKind::Io(e) => io_error(path, e),
                            kind => DataError::BadLayout {
                                path: path.to_path_buf(),
                                reason: format!("{kind:?}"),
                            },
                        }
                    })?;
                    let line = rec.position().map_or(0, |p| p.line());
                    if rec.len() == 1 && rec[0].trim().is_empty() {
                        continue;
                    }
                    records.push((line, rec.iter().map(str::to_string).collect()));
                }
            }
            Sep::Whitespace => {
                for (i, line) in BufReader::new(reader).lines().enumerate() {
                    let line = line.map_err(|e| io_error(path, e))?;
                    if line.trim().is_empty() {
                        continue;
                    }
                    records.push((
                        i as u64 + 1,
                        line.split_whitespace().map(str::to_string).collect(),
                    ));
                }
            }
        }
        let mut it = records.into_iter();
        let first = if header == Header::None {
            Vec::new()
        } else {
            match it.next() {
                Some((_, h)) => h.into_iter().map(|s| s.trim().to_string()).collect(),
                None => {
                    return Err(DataError::EmptyFile {
                        path: path.to_path_buf(),
                    })
                }
            }
        };
        if header == Header::Names {
            let mut seen = std::collections::HashMap::new();
            for (i, h) in first.iter().enumerate() {
                if let Some(&f) = seen.get(h.as_str()) {
                    return Err(DataError::DuplicateColumn {
                        path: path.to_path_buf(),
                        column: h.clone(),
                        first: f + 1,
                        second: i + 1,
                    });
                }
                seen.insert(h.as_str(), i);
            }
        }
        let mut width = (header == Header::Names).then_some(first.len());
        let (headers, preamble) = if header == Header::Names {
            (first, Vec::new())
        } else {
            (Vec::new(), first)
        };
        let mut rows = Vec::new();
        let mut lines = Vec::new();
        for (line, rec) in it {
            let w = *width.get_or_insert(rec.len());
            if rec.len() != w {
                return Err(DataError::ColumnCount {
                    path: path.to_path_buf(),
                    line,
                    expected: w,
                    got: rec.len(),
                });
            }
            rows.push(rec);
            lines.push(line);
        }
        if rows.is_empty() {
            return Err(DataError::EmptyFile {
                path: path.to_path_buf(),
            });
        }
        Ok(Self {
            path: path.to_path_buf(),
            headers,
            preamble,
            rows,
            lines,
        })
    }

    /// Number of data rows.
    pub fn n_rows(&self) -> usize {
        self.rows.len()
    }

    /// Index of a named column.
    ///
    /// # Errors
    /// [`DataError::MissingColumn`].
    pub fn col(&self, name: &str) -> Result<usize> {
        self.headers
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| DataError::MissingColumn {
                path: self.path.clone(),
                column: name.to_string(),
                available: self.headers.clone(),
            })
    }

    /// The name used for column `c` in error messages.
    fn col_name(&self, c: usize) -> String {
        self.headers
            .get(c)
            .cloned()
            .unwrap_or_else(|| format!("#{c}"))
    }

    /// The raw text of a cell (trimmed).
    pub fn cell(&self, r: usize, c: usize) -> &str {
        self.rows[r][c].trim()
    }

    /// A cell parsed as a finite `f64`.
    ///
    /// # Errors
    /// [`DataError::NonNumeric`] for text, empty cells, NaN and infinities.
    pub fn num(&self, r: usize, c: usize) -> Result<f64> {
        let s = self.cell(r, c);
        match s.parse::<f64>() {
            Ok(v) if v.is_finite() => Ok(v),
            _ => Err(self.non_numeric(r, c)),
        }
    }

    /// A [`DataError::NonNumeric`] for cell `(r, c)`.
    pub fn non_numeric(&self, r: usize, c: usize) -> DataError {
        DataError::NonNumeric {
            path: self.path.clone(),
            line: self.lines[r],
            column: self.col_name(c),
            value: self.rows[r][c].clone(),
        }
    }

    /// A [`DataError::BadCategory`] for cell `(r, c)`.
    pub fn bad_category(&self, r: usize, c: usize, expected: &[&str]) -> DataError {
        DataError::BadCategory {
            path: self.path.clone(),
            line: self.lines[r],
            column: self.col_name(c),
            value: self.rows[r][c].clone(),
            expected: expected.iter().map(|s| s.to_string()).collect(),
        }
    }
}
