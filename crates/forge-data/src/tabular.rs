//! Typed tabular data sets ([`TabularDataset`]), domain splits ([`DomainSplit`]), seeded
//! train/test splits, few-shot subsampling and the generic CSV loader [`load_csv`].

use crate::table::{Header, Sep, Table};
use crate::{DataError, Result};
use candle_core::{DType, Device, Tensor};
use forge_linalg::{rng, Standardizer};
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::Path;

/// The learning task of a data set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Task {
    /// Real-valued target.
    Regression,
    /// Two classes; the target holds `0.0` or `1.0`.
    Binary,
    /// `n_classes` classes; the target holds `0.0, 1.0, ..., (n_classes - 1) as f64`.
    Multiclass {
        /// Number of classes.
        n_classes: usize,
    },
}

impl Task {
    /// Number of classes (2 for [`Task::Binary`]); `None` for regression.
    pub fn n_classes(&self) -> Option<usize> {
        match self {
            Task::Regression => None,
            Task::Binary => Some(2),
            Task::Multiclass { n_classes } => Some(*n_classes),
        }
    }

    /// Whether the task is binary or multi-class classification.
    pub fn is_classification(&self) -> bool {
        self.n_classes().is_some()
    }
}

impl fmt::Display for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Task::Regression => write!(f, "regression"),
            Task::Binary => write!(f, "binary"),
            Task::Multiclass { n_classes } => write!(f, "multiclass({n_classes})"),
        }
    }
}

/// How many samples to keep when subsampling.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Budget {
    /// A fraction in `(0, 1]` of the rows: `max(1, round(fraction * n))` rows.
    Fraction(f64),
    /// An absolute number of rows in `1..=n`.
    Count(usize),
}

impl Budget {
    /// The number of rows this budget keeps out of `n`.
    ///
    /// # Errors
    /// [`DataError::BadFraction`] for a fraction outside `(0, 1]` (or NaN),
    /// [`DataError::BadCount`] for a count of 0 or above `n`.
    pub fn count_of(&self, n: usize) -> Result<usize> {
        match *self {
            Budget::Fraction(f) => {
                if !(f > 0.0 && f <= 1.0) {
                    return Err(DataError::BadFraction {
                        what: "budget",
                        range: "(0, 1]",
                        value: f,
                    });
                }
                Ok(((f * n as f64).round() as usize).clamp(1, n.max(1)))
            }
            Budget::Count(c) => {
                if c == 0 || c > n {
                    return Err(DataError::BadCount { count: c, n });
                }
                Ok(c)
            }
        }
    }
}

/// A tabular data set: an f64 feature matrix, an f64 target vector and their names.
///
/// Invariants (checked by [`TabularDataset::new`]): `x` is f64 `[n, d]` with `n, d >= 1`,
/// `y` is f64 `[n]`, all values finite, `feature_names.len() == d`, and for classification
/// tasks every target is a class id `0., 1., ..., n_classes - 1`.
#[derive(Debug, Clone)]
pub struct TabularDataset {
    /// Data set name (e.g. `"california_housing/source"`).
    pub name: String,
    /// Features, f64 `[n, d]`.
    pub x: Tensor,
    /// Target, f64 `[n]`; class ids as `0., 1., ...` for classification.
    pub y: Tensor,
    /// Column names of `x`.
    pub feature_names: Vec<String>,
    /// Name of the target column.
    pub target_name: String,
    /// The learning task.
    pub task: Task,
}

impl TabularDataset {
    /// Builds a data set, checking the invariants above. `x` and `y` are converted to f64.
    ///
    /// # Shapes
    /// `x`: `[n, d]`, `y`: `[n]`.
    ///
    /// # Errors
    /// [`DataError::Linalg`] for wrong shapes, empty or non-finite input (also when
    /// `feature_names` has the wrong length), [`DataError::BadLabel`] for an invalid class id.
    pub fn new(
        name: impl Into<String>,
        x: Tensor,
        y: Tensor,
        feature_names: Vec<String>,
        target_name: impl Into<String>,
        task: Task,
    ) -> Result<Self> {
        let name = name.into();
        let x = x.to_dtype(DType::F64)?;
        let y = y.to_dtype(DType::F64)?;
        let (_, d) = forge_linalg::check::ensure_xy(&x, &y)?;
        if feature_names.len() != d {
            return Err(forge_linalg::LinalgError::Shape {
                what: "feature_names".into(),
                expected: format!("{d} names (one per column of x)"),
                got: vec![feature_names.len()],
            }
            .into());
        }
        let ds = Self {
            name,
            x,
            y,
            feature_names,
            target_name: target_name.into(),
            task,
        };
        if task.is_classification() {
            ds.labels()?;
        }
        Ok(ds)
    }

    /// Builds a data set from row-major feature rows and targets (CPU tensors).
    ///
    /// # Errors
    /// As [`TabularDataset::new`]; [`DataError::Empty`] for no rows.
    pub fn from_rows(
        name: impl Into<String>,
        rows: &[Vec<f64>],
        y: Vec<f64>,
        feature_names: Vec<String>,
        target_name: impl Into<String>,
        task: Task,
    ) -> Result<Self> {
        let name = name.into();
        let n = rows.len();
        if n == 0 {
            return Err(DataError::Empty(format!("{name}: no rows")));
        }
        let d = feature_names.len();
        let mut flat = Vec::with_capacity(n * d);
        for r in rows {
            if r.len() != d {
                return Err(forge_linalg::LinalgError::Shape {
                    what: format!("{name}: feature row"),
                    expected: format!("{d} values"),
                    got: vec![r.len()],
                }
                .into());
            }
            flat.extend_from_slice(r);
        }
        let x = Tensor::from_vec(flat, (n, d), &Device::Cpu)?;
        let y = Tensor::from_vec(y, n, &Device::Cpu)?;
        Self::new(name, x, y, feature_names, target_name, task)
    }

    /// Returns the same data with another task, checking the labels.
    ///
    /// # Errors
    /// [`DataError::BadLabel`] if a target is not a class id of `task`.
    pub fn with_task(mut self, task: Task) -> Result<Self> {
        self.task = task;
        if task.is_classification() {
            self.labels()?;
        }
        Ok(self)
    }

    /// Number of rows `n`.
    pub fn n_samples(&self) -> usize {
        self.x.dims().first().copied().unwrap_or(0)
    }

    /// Number of feature columns `d`.
    pub fn n_features(&self) -> usize {
        self.x.dims().get(1).copied().unwrap_or(0)
    }

    /// The target as a `Vec<f64>`.
    ///
    /// # Errors
    /// Candle errors.
    pub fn y_vec(&self) -> Result<Vec<f64>> {
        Ok(self.y.to_dtype(DType::F64)?.to_vec1()?)
    }

    /// The features as row vectors.
    ///
    /// # Errors
    /// Candle errors.
    pub fn x_rows(&self) -> Result<Vec<Vec<f64>>> {
        Ok(self.x.to_dtype(DType::F64)?.to_vec2()?)
    }

    /// One feature column by name.
    ///
    /// # Errors
    /// [`DataError::MissingColumn`] (with an empty path) if there is no such feature.
    pub fn column(&self, name: &str) -> Result<Vec<f64>> {
        let j = self
            .feature_names
            .iter()
            .position(|f| f == name)
            .ok_or_else(|| DataError::MissingColumn {
                path: self.name.clone().into(),
                column: name.to_string(),
                available: self.feature_names.clone(),
            })?;
        Ok(self
            .x
            .narrow(1, j, 1)?
            .squeeze(1)?
            .to_dtype(DType::F64)?
            .to_vec1()?)
    }

    /// Class ids of a classification data set.
    ///
    /// # Errors
    /// [`DataError::NotClassification`] for regression, [`DataError::BadLabel`] for a target that
    /// is not an integer in `0..n_classes`.
    pub fn labels(&self) -> Result<Vec<usize>> {
        let k = self
            .task
            .n_classes()
            .ok_or_else(|| DataError::NotClassification {
                dataset: self.name.clone(),
                task: self.task.to_string(),
            })?;
        self.y_vec()?
            .into_iter()
            .enumerate()
            .map(|(row, v)| {
                if v >= 0.0 && v.fract() == 0.0 && (v as usize) < k {
                    Ok(v as usize)
                } else {
                    Err(DataError::BadLabel {
                        dataset: self.name.clone(),
                        row,
                        value: v,
                        task: self.task.to_string(),
                    })
                }
            })
            .collect()
    }

    /// Number of rows per class (`counts[c]` for class `c`).
    ///
    /// # Errors
    /// As [`TabularDataset::labels`].
    pub fn class_counts(&self) -> Result<Vec<usize>> {
        let k = self.task.n_classes().unwrap_or(0);
        let mut counts = vec![0; k];
        for l in self.labels()? {
            counts[l] += 1;
        }
        Ok(counts)
    }

    /// The rows `idx` (in that order, repeats allowed), keeping names and task.
    ///
    /// # Errors
    /// [`DataError::Empty`] for an empty `idx`, [`DataError::IndexOutOfRange`].
    pub fn select(&self, idx: &[usize]) -> Result<Self> {
        let n = self.n_samples();
        if idx.is_empty() {
            return Err(DataError::Empty(format!(
                "{}: select with no index",
                self.name
            )));
        }
        if let Some(&index) = idx.iter().find(|&&i| i >= n) {
            return Err(DataError::IndexOutOfRange { index, n });
        }
        let ids: Vec<u32> = idx.iter().map(|&i| i as u32).collect();
        let ids = Tensor::from_vec(ids, idx.len(), self.x.device())?;
        Ok(Self {
            name: self.name.clone(),
            x: self.x.index_select(&ids, 0)?,
            y: self.y.index_select(&ids, 0)?,
            feature_names: self.feature_names.clone(),
            target_name: self.target_name.clone(),
            task: self.task,
        })
    }

    /// Class ids for stratification (`None` for regression).
    fn strata(&self) -> Result<Option<Vec<usize>>> {
        if self.task.is_classification() {
            Ok(Some(self.labels()?))
        } else {
            Ok(None)
        }
    }

    /// A seeded random split into `(train, test)` that partitions the rows (no overlap, no row
    /// lost). The test set has `round(test_fraction * n)` rows, clamped to `1..=n-1`; for
    /// classification the split is stratified by class (proportional allocation, largest
    /// remainders). Rows keep their original order within each part.
    ///
    /// # Errors
    /// [`DataError::BadFraction`] unless `0 < test_fraction < 1`; [`DataError::Empty`] if `n < 2`.
    pub fn train_test_split(&self, test_fraction: f64, seed: u64) -> Result<(Self, Self)> {
        let strata = self.strata()?;
        let (train, test) = split_indices(
            &self.name,
            strata.as_deref(),
            self.n_samples(),
            test_fraction,
            seed,
        )?;
        Ok((self.select(&train)?, self.select(&test)?))
    }

    /// A seeded random subsample without replacement of the size given by `budget` (few-shot
    /// target data). For classification it is stratified by class (proportional allocation,
    /// largest remainders, and at least one row of every class present whenever the budget
    /// allows). Rows keep their original order. The same seed gives the same rows.
    ///
    /// # Errors
    /// [`DataError::BadFraction`] / [`DataError::BadCount`] for a bad budget.
    pub fn subsample(&self, budget: Budget, seed: u64) -> Result<Self> {
        let n = self.n_samples();
        let k = budget.count_of(n)?;
        let strata = self.strata()?;
        self.select(&draw(strata.as_deref(), n, k, seed))
    }

    /// Turns a forge-linalg column error on this data set's features into a
    /// [`DataError::BadFeature`] naming the feature; other errors pass through.
    fn name_column(&self, e: forge_linalg::LinalgError) -> DataError {
        match e {
            forge_linalg::LinalgError::BadColumn {
                column,
                row,
                value,
                reason,
                ..
            } => DataError::BadFeature {
                dataset: self.name.clone(),
                column: self
                    .feature_names
                    .get(column)
                    .cloned()
                    .unwrap_or_else(|| format!("#{column}")),
                row,
                value,
                reason,
            },
            other => other.into(),
        }
    }

    /// The same data set moved to `device`.
    ///
    /// # Errors
    /// Candle errors.
    pub fn to_device(&self, device: &Device) -> Result<Self> {
        Ok(Self {
            x: self.x.to_device(device)?,
            y: self.y.to_device(device)?,
            ..self.clone()
        })
    }
}

/// Seeded `(train, test)` index partition of `0..n` (both sorted), stratified by `labels`.
pub(crate) fn split_indices(
    name: &str,
    labels: Option<&[usize]>,
    n: usize,
    test_fraction: f64,
    seed: u64,
) -> Result<(Vec<usize>, Vec<usize>)> {
    if !(test_fraction > 0.0 && test_fraction < 1.0) {
        return Err(DataError::BadFraction {
            what: "test_fraction",
            range: "(0, 1)",
            value: test_fraction,
        });
    }
    if n < 2 {
        return Err(DataError::Empty(format!(
            "{name}: a train/test split needs at least 2 rows, got {n}"
        )));
    }
    let k = ((test_fraction * n as f64).round() as usize).clamp(1, n - 1);
    let test = draw(labels, n, k, seed);
    let mut in_test = vec![false; n];
    for &i in &test {
        in_test[i] = true;
    }
    let train = (0..n).filter(|&i| !in_test[i]).collect();
    Ok((train, test))
}

/// Draws `k` of `n` indices without replacement (sorted), stratified by `labels` when given.
pub(crate) fn draw(labels: Option<&[usize]>, n: usize, k: usize, seed: u64) -> Vec<usize> {
    let mut rng = rng::seeded_rng(seed);
    let mut out = match labels {
        None => {
            let mut p = rng::permutation(n, &mut rng);
            p.truncate(k);
            p
        }
        Some(labels) => {
            let n_classes = labels.iter().max().map_or(0, |m| m + 1);
            let mut groups: Vec<Vec<usize>> = vec![Vec::new(); n_classes];
            for (i, &l) in labels.iter().enumerate() {
                groups[l].push(i);
            }
            for g in &mut groups {
                g.shuffle(&mut rng);
            }
            let alloc = allocate(&groups.iter().map(Vec::len).collect::<Vec<_>>(), k);
            groups
                .iter()
                .zip(&alloc)
                .flat_map(|(g, &a)| g[..a].iter().copied())
                .collect()
        }
    };
    out.sort_unstable();
    out
}

/// Splits `k` among groups of the given sizes proportionally (largest remainder method), then
/// moves units so that every non-empty group gets at least one when `k` allows it.
fn allocate(sizes: &[usize], k: usize) -> Vec<usize> {
    let n: usize = sizes.iter().sum();
    let quota: Vec<f64> = sizes
        .iter()
        .map(|&s| k as f64 * s as f64 / n as f64)
        .collect();
    let mut alloc: Vec<usize> = quota.iter().map(|q| q.floor() as usize).collect();
    let mut order: Vec<usize> = (0..sizes.len()).collect();
    order.sort_by(|&a, &b| {
        (quota[b] - quota[b].floor())
            .total_cmp(&(quota[a] - quota[a].floor()))
            .then(a.cmp(&b))
    });
    let mut left = k - alloc.iter().sum::<usize>();
    for &g in order.iter().cycle() {
        if left == 0 {
            break;
        }
        if alloc[g] < sizes[g] {
            alloc[g] += 1;
            left -= 1;
        }
    }
    let present = sizes.iter().filter(|&&s| s > 0).count();
    if k >= present {
        for g in 0..sizes.len() {
            if sizes[g] > 0 && alloc[g] == 0 {
                // take one from the group with the largest allocation
                if let Some(donor) = (0..sizes.len())
                    .filter(|&h| alloc[h] > 1)
                    .max_by_key(|&h| alloc[h])
                {
                    alloc[donor] -= 1;
                    alloc[g] = 1;
                }
            }
        }
    }
    alloc
}

/// A source domain and a target domain of one data set, with a description of how they were
/// defined (the "domain shift").
#[derive(Debug, Clone)]
pub struct DomainSplit {
    /// Split name (e.g. `"california_housing"`).
    pub name: String,
    /// How source and target were defined, and the encoding used.
    pub description: String,
    /// Source domain (plentiful data the model is pre-trained on).
    pub source: TabularDataset,
    /// Target domain (the domain we transfer to).
    pub target: TabularDataset,
}

/// The three parts of a few-shot transfer experiment made by [`DomainSplit::few_shot`].
#[derive(Debug, Clone)]
pub struct FewShot {
    /// The whole source domain.
    pub source: TabularDataset,
    /// The few-shot target training rows (a subsample of the target's training part).
    pub target_train: TabularDataset,
    /// The held-out target test rows (disjoint from `target_train`).
    pub target_test: TabularDataset,
}

impl DomainSplit {
    /// Standardises both domains with a [`Standardizer`] (`z = (x - mean_src) / std_src`, ddof 0)
    /// fitted on the SOURCE features only, so no target statistic leaks into preprocessing.
    /// Targets `y` are unchanged.
    ///
    /// # Errors
    /// [`DataError::Linalg`] for mismatched features; [`DataError::BadFeature`] (naming the
    /// domain, feature, row and value) when one source value dominates its column so much that
    /// standardising would erase the other rows (e.g. one `1e308` cell among ordinary values), or
    /// a target value does not standardise to a finite number.
    pub fn standardized(&self) -> Result<DomainSplit> {
        Ok(self.standardized_with_scaler()?.0)
    }

    /// As [`DomainSplit::standardized`], also returning the fitted source standardiser (to apply
    /// to new target rows or to map weights back to raw units).
    ///
    /// # Errors
    /// As [`DomainSplit::standardized`].
    pub fn standardized_with_scaler(&self) -> Result<(DomainSplit, Standardizer)> {
        let s = Standardizer::fit(&self.source.x).map_err(|e| self.source.name_column(e))?;
        let mut out = self.clone();
        out.source.x = s
            .transform(&self.source.x)
            .map_err(|e| self.source.name_column(e))?;
        out.target.x = s
            .transform(&self.target.x)
            .map_err(|e| self.target.name_column(e))?;
        Ok((out, s))
    }

    /// Splits the target into a train and a test part (`target_test_fraction`, seeded by
    /// `seed`) and subsamples `budget` rows of the train part (seeded by a value derived from
    /// `seed`). The source is returned whole.
    ///
    /// # Errors
    /// As [`TabularDataset::train_test_split`] and [`TabularDataset::subsample`].
    pub fn few_shot(
        &self,
        target_test_fraction: f64,
        budget: Budget,
        seed: u64,
    ) -> Result<FewShot> {
        let (train, test) = self.target.train_test_split(target_test_fraction, seed)?;
        let target_train = train.subsample(budget, seed ^ 0x9E37_79B9_7F4A_7C15)?;
        Ok(FewShot {
            source: self.source.clone(),
            target_train,
            target_test: test,
        })
    }
}

/// Loads a comma-separated file with a header line into a [`TabularDataset`] with
/// [`Task::Regression`] (use [`TabularDataset::with_task`] for classification). The name is the
/// file stem. An empty `feature_cols` means every column except `target_col`, in file order.
///
/// # Errors
/// [`DataError::MissingFile`], [`DataError::Read`], [`DataError::NotAFolder`],
/// [`DataError::EmptyFile`], [`DataError::MissingColumn`], [`DataError::ColumnCount`] and
/// [`DataError::NonNumeric`] (file, line, column, cell text); [`DataError::DuplicateColumn`] if
/// two header columns share a name; [`DataError::TargetAsFeature`] if `target_col` is in
/// `feature_cols` (target leakage); [`DataError::RepeatedFeature`] for a feature listed twice.
pub fn load_csv(path: &Path, target_col: &str, feature_cols: &[&str]) -> Result<TabularDataset> {
    let t = Table::read(path, Sep::Comma, Header::Names)?;
    let tc = t.col(target_col)?;
    let names: Vec<String> = if feature_cols.is_empty() {
        t.headers
            .iter()
            .filter(|h| h.as_str() != target_col)
            .cloned()
            .collect()
    } else {
        feature_cols.iter().map(|s| s.to_string()).collect()
    };
    if names.is_empty() {
        return Err(DataError::BadLayout {
            path: path.to_path_buf(),
            reason: format!("no feature column: the header has only the target {target_col:?}"),
        });
    }
    for (i, c) in names.iter().enumerate() {
        if c == target_col {
            return Err(DataError::TargetAsFeature {
                path: path.to_path_buf(),
                column: c.clone(),
            });
        }
        if names[..i].contains(c) {
            return Err(DataError::RepeatedFeature {
                path: path.to_path_buf(),
                column: c.clone(),
            });
        }
    }
    let cols = names.iter().map(|c| t.col(c)).collect::<Result<Vec<_>>>()?;
    let mut rows = Vec::with_capacity(t.n_rows());
    let mut y = Vec::with_capacity(t.n_rows());
    for r in 0..t.n_rows() {
        rows.push(
            cols.iter()
                .map(|&c| t.num(r, c))
                .collect::<Result<Vec<_>>>()?,
        );
        y.push(t.num(r, tc)?);
    }
    let name = path
        .file_stem()
        .map_or_else(|| "csv".to_string(), |s| s.to_string_lossy().into_owned());
    TabularDataset::from_rows(name, &rows, y, names, target_col, Task::Regression)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocation_is_proportional_and_covers_classes() {
        assert_eq!(allocate(&[50, 30, 20], 10), vec![5, 3, 2]);
        // 1% of a 90/10 split with 3 rows still sees the minority class
        assert_eq!(allocate(&[90, 10], 3), vec![2, 1]);
        assert_eq!(allocate(&[90, 10], 1), vec![1, 0]);
        assert_eq!(allocate(&[3, 0, 7], 10), vec![3, 0, 7]);
        let a = allocate(&[333, 333, 334], 100);
        assert_eq!(a.iter().sum::<usize>(), 100);
    }
}
