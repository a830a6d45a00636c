//! Text classification sets for the transformer experiments: GLUE SST-2 (Socher et al. 2013,
//! "Recursive deep models for semantic compositionality over a sentiment treebank", EMNLP),
//! AG News (Zhang, Zhao & LeCun 2015, "Character-level convolutional networks for text
//! classification", NeurIPS) and Rotten Tomatoes snippets (Pang & Lee 2005, ACL).
//!
//! These files are research-use data and are never shipped in the repository: they are read
//! from a local folder, by default `$FORGE_TEXT_DATA_DIR` (layout: `sst2/{train,dev}.tsv`,
//! `ag_news/{train,test}.tsv`, `rotten_tomatoes.csv`).

use crate::table::{Header, Sep, Table};
use crate::{Budget, DataError, Result};
use forge_linalg::rng;
use std::path::{Path, PathBuf};

/// A labelled text classification data set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextDataset {
    /// Data set name (e.g. `"sst2/dev"`).
    pub name: String,
    /// The texts, one per example.
    pub texts: Vec<String>,
    /// Class ids in `0..label_names.len()`, one per text.
    pub labels: Vec<usize>,
    /// Class names, indexed by class id.
    pub label_names: Vec<String>,
}

/// Which part of a text data set to load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextSplit {
    /// The training file (`train.tsv`).
    Train,
    /// The evaluation file: SST-2 `dev.tsv` (its test labels are not public), AG News `test.tsv`.
    Eval,
}

/// `$FORGE_TEXT_DATA_DIR`.
///
/// # Errors
/// [`DataError::MissingEnv`] if the variable is unset or empty.
pub fn text_data_dir() -> Result<PathBuf> {
    match std::env::var_os("FORGE_TEXT_DATA_DIR") {
        Some(d) if !d.is_empty() => Ok(PathBuf::from(d)),
        _ => Err(DataError::MissingEnv("FORGE_TEXT_DATA_DIR")),
    }
}

impl TextDataset {
    /// Number of examples.
    pub fn len(&self) -> usize {
        self.texts.len()
    }

    /// Whether there is no example.
    pub fn is_empty(&self) -> bool {
        self.texts.is_empty()
    }

    /// Number of classes.
    pub fn n_classes(&self) -> usize {
        self.label_names.len()
    }

    /// Examples per class.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut c = vec![0; self.n_classes()];
        for &l in &self.labels {
            c[l] += 1;
        }
        c
    }

    /// The examples `idx`, in that order.
    ///
    /// # Errors
    /// [`DataError::Empty`] for an empty `idx`, [`DataError::IndexOutOfRange`].
    pub fn select(&self, idx: &[usize]) -> Result<Self> {
        let n = self.len();
        if idx.is_empty() {
            return Err(DataError::Empty(format!(
                "{}: select with no index",
                self.name
            )));
        }
        if let Some(&index) = idx.iter().find(|&&i| i >= n) {
            return Err(DataError::IndexOutOfRange { index, n });
        }
        Ok(Self {
            name: self.name.clone(),
            texts: idx.iter().map(|&i| self.texts[i].clone()).collect(),
            labels: idx.iter().map(|&i| self.labels[i]).collect(),
            label_names: self.label_names.clone(),
        })
    }

    /// A seeded, class-stratified subsample of the size given by `budget` (e.g. a small
    /// training set for CPU fine-tuning); original order kept.
    ///
    /// # Errors
    /// [`DataError::BadFraction`] / [`DataError::BadCount`] for a bad budget.
    pub fn subsample(&self, budget: Budget, seed: u64) -> Result<Self> {
        let k = budget.count_of(self.len())?;
        self.select(&crate::tabular::draw(
            Some(&self.labels),
            self.len(),
            k,
            seed,
        ))
    }

    /// A seeded, class-stratified split into `(train, test)` partitioning the examples.
    ///
    /// # Errors
    /// [`DataError::BadFraction`] unless `0 < test_fraction < 1`; [`DataError::Empty`] if fewer
    /// than 2 examples.
    pub fn train_test_split(&self, test_fraction: f64, seed: u64) -> Result<(Self, Self)> {
        let (train, test) = crate::tabular::split_indices(
            &self.name,
            Some(&self.labels),
            self.len(),
            test_fraction,
            seed,
        )?;
        Ok((self.select(&train)?, self.select(&test)?))
    }

    /// A seeded shuffle of the examples.
    ///
    /// # Errors
    /// [`DataError::Empty`] for an empty set.
    pub fn shuffled(&self, seed: u64) -> Result<Self> {
        self.select(&rng::permutation(self.len(), &mut rng::seeded_rng(seed)))
    }
}

/// The layout of a labelled text file.
struct Layout<'a> {
    sep: Sep,
    text_col: &'a str,
    label_col: &'a str,
    /// Class names by class id.
    label_names: &'a [&'a str],
    /// The label cells accepted (for error messages).
    accepted: &'a [&'a str],
}

/// Reads `text<SEP>label` (or `label<SEP>text`) records with a header line; `label_of` maps the
/// label cell to a class id.
fn load_labelled(
    path: &Path,
    name: &str,
    layout: Layout<'_>,
    label_of: impl Fn(&str) -> Option<usize>,
) -> Result<TextDataset> {
    let Layout {
        sep,
        text_col,
        label_col,
        label_names,
        accepted,
    } = layout;
    let t = Table::read(path, sep, Header::Names)?;
    let (tc, lc) = (t.col(text_col)?, t.col(label_col)?);
    let mut texts = Vec::with_capacity(t.n_rows());
    let mut labels = Vec::with_capacity(t.n_rows());
    for r in 0..t.n_rows() {
        let l = label_of(t.cell(r, lc)).ok_or_else(|| t.bad_category(r, lc, accepted))?;
        texts.push(t.rows[r][tc].trim().to_string());
        labels.push(l);
    }
    Ok(TextDataset {
        name: name.to_string(),
        texts,
        labels,
        label_names: label_names.iter().map(|s| s.to_string()).collect(),
    })
}

fn binary_label(s: &str) -> Option<usize> {
    match s {
        "0" => Some(0),
        "1" => Some(1),
        _ => None,
    }
}

/// Loads a GLUE SST-2 TSV file: header `sentence<TAB>label`, label 0 = negative, 1 = positive.
///
/// # Errors
/// [`DataError::MissingFile`], [`DataError::EmptyFile`], [`DataError::MissingColumn`],
/// [`DataError::ColumnCount`], [`DataError::BadCategory`] for a label other than 0/1.
pub fn load_sst2_tsv(path: &Path) -> Result<TextDataset> {
    let name = format!(
        "sst2/{}",
        path.file_stem()
            .map_or_else(String::new, |s| s.to_string_lossy().into_owned())
    );
    load_labelled(
        path,
        &name,
        Layout {
            sep: Sep::Tab,
            text_col: "sentence",
            label_col: "label",
            label_names: &["negative", "positive"],
            accepted: &["0", "1"],
        },
        binary_label,
    )
}

/// The AG News class names, indexed by class id (the order of the original data set).
pub const AG_NEWS_LABELS: [&str; 4] = ["World", "Sports", "Business", "Sci/Tech"];

/// Loads an AG News TSV file: header `text<TAB>label`, label one of [`AG_NEWS_LABELS`].
///
/// # Errors
/// As [`load_sst2_tsv`]; [`DataError::BadCategory`] for an unknown label name.
pub fn load_ag_news_tsv(path: &Path) -> Result<TextDataset> {
    let name = format!(
        "ag_news/{}",
        path.file_stem()
            .map_or_else(String::new, |s| s.to_string_lossy().into_owned())
    );
    load_labelled(
        path,
        &name,
        Layout {
            sep: Sep::Tab,
            text_col: "text",
            label_col: "label",
            label_names: &AG_NEWS_LABELS,
            accepted: &AG_NEWS_LABELS,
        },
        |s| AG_NEWS_LABELS.iter().position(|l| *l == s),
    )
}

/// Loads `rotten_tomatoes.csv`: header `label,sentence`, label 1 = fresh (positive), 0 = rotten.
///
/// # Errors
/// As [`load_sst2_tsv`].
pub fn load_rotten_tomatoes_csv(path: &Path) -> Result<TextDataset> {
    load_labelled(
        path,
        "rotten_tomatoes",
        Layout {
            sep: Sep::Comma,
            text_col: "sentence",
            label_col: "label",
            label_names: &["rotten", "fresh"],
            accepted: &["0", "1"],
        },
        binary_label,
    )
}

/// SST-2 from `dir/sst2/{train,dev}.tsv` (67,349 / 872 sentences in GLUE).
///
/// # Errors
/// As [`load_sst2_tsv`].
pub fn sst2(dir: &Path, split: TextSplit) -> Result<TextDataset> {
    let file = match split {
        TextSplit::Train => "train.tsv",
        TextSplit::Eval => "dev.tsv",
    };
    load_sst2_tsv(&dir.join("sst2").join(file))
}

/// AG News from `dir/ag_news/{train,test}.tsv`.
///
/// # Errors
/// As [`load_ag_news_tsv`].
pub fn ag_news(dir: &Path, split: TextSplit) -> Result<TextDataset> {
    let file = match split {
        TextSplit::Train => "train.tsv",
        TextSplit::Eval => "test.tsv",
    };
    load_ag_news_tsv(&dir.join("ag_news").join(file))
}

/// Rotten Tomatoes from `dir/rotten_tomatoes.csv`.
///
/// # Errors
/// As [`load_rotten_tomatoes_csv`].
pub fn rotten_tomatoes(dir: &Path) -> Result<TextDataset> {
    load_rotten_tomatoes_csv(&dir.join("rotten_tomatoes.csv"))
}
