//! K-fold cross-validation to choose hyperparameters (`lam`, rank, blend, ...) on the target
//! TRAINING data only, so that the held-out target test set is never looked at.

use crate::{ClassicalError, Result};
use candle_core::Tensor;
use serde::{Deserialize, Serialize};

/// One fold: row indices to train on and to validate on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fold {
    /// Training rows.
    pub train: Vec<usize>,
    /// Validation rows.
    pub valid: Vec<usize>,
}

/// Seeded K-fold split of `0..n` (shuffled, fold sizes differ by at most one).
/// `k` is clamped to `n`.
///
/// # Errors
/// [`ClassicalError::InvalidParameter`] if `k < 2` or `n < 2`.
pub fn k_fold(n: usize, k: usize, seed: u64) -> Result<Vec<Fold>> {
    check(n, k)?;
    let k = k.min(n);
    let perm = forge_linalg::rng::permutation(n, &mut forge_linalg::seeded_rng(seed));
    let groups: Vec<Vec<usize>> = (0..k)
        .map(|f| perm.iter().skip(f).step_by(k).copied().collect())
        .collect();
    Ok(folds_from_groups(&groups))
}

/// Seeded stratified K-fold for class labels: each class is dealt round-robin over the folds,
/// so every fold has about the same class proportions. `k` is clamped to `n`.
///
/// # Errors
/// [`ClassicalError::InvalidParameter`] if `k < 2` or `n < 2`.
pub fn stratified_k_fold(labels: &[f64], k: usize, seed: u64) -> Result<Vec<Fold>> {
    let n = labels.len();
    check(n, k)?;
    let k = k.min(n);
    let perm = forge_linalg::rng::permutation(n, &mut forge_linalg::seeded_rng(seed));
    let mut order = perm.clone();
    order.sort_by(|&a, &b| labels[a].total_cmp(&labels[b])); // stable: shuffled within a class
    let mut groups = vec![Vec::new(); k];
    for (i, &r) in order.iter().enumerate() {
        groups[i % k].push(r);
    }
    Ok(folds_from_groups(&groups))
}

fn check(n: usize, k: usize) -> Result<()> {
    if k < 2 {
        return Err(ClassicalError::InvalidParameter {
            name: "k",
            reason: format!("must be >= 2, got {k}"),
        });
    }
    if n < 2 {
        return Err(ClassicalError::InvalidParameter {
            name: "n",
            reason: format!("cross-validation needs at least 2 rows, got {n}"),
        });
    }
    Ok(())
}

fn folds_from_groups(groups: &[Vec<usize>]) -> Vec<Fold> {
    (0..groups.len())
        .map(|f| Fold {
            train: groups
                .iter()
                .enumerate()
                .filter(|(g, _)| *g != f)
                .flat_map(|(_, v)| v.iter().copied())
                .collect(),
            valid: groups[f].clone(),
        })
        .collect()
}

/// Rows `idx` of a tensor (along dimension 0).
///
/// # Errors
/// Candle errors (e.g. an index out of range).
pub fn take_rows(t: &Tensor, idx: &[usize]) -> Result<Tensor> {
    let ids: Vec<u32> = idx.iter().map(|&i| i as u32).collect();
    let ids = Tensor::from_vec(ids, idx.len(), t.device())?;
    Ok(t.index_select(&ids, 0)?)
}

/// Settings of [`select`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CvParams {
    /// Number of folds (clamped to the number of rows).
    pub k: usize,
    /// Seed of the fold assignment.
    pub seed: u64,
    /// Stratify folds by the target's values (for class labels).
    pub stratified: bool,
}

impl Default for CvParams {
    fn default() -> Self {
        Self {
            k: 5,
            seed: 0,
            stratified: false,
        }
    }
}

/// The outcome of [`select`].
#[derive(Debug, Clone)]
pub struct CvChoice<T> {
    /// The candidate with the best mean validation score.
    pub best: T,
    /// Mean validation score per candidate (`-inf` where every fold failed).
    pub scores: Vec<f64>,
}

/// Chooses the candidate with the highest mean validation score by K-fold cross-validation
/// on `(x, y)` (Stone, 1974, "Cross-Validatory Choice and Assessment of Statistical
/// Predictions", JRSS-B). `fit_score(x_train, y_train, x_valid, y_valid, candidate)` returns a
/// score where higher is better (e.g. `-mse`, `r2`, accuracy, `-log_loss`). A fold whose fit
/// fails (e.g. a single class in the training part) is skipped for that candidate; ties (equal
/// to a relative 1e-10) keep the earliest candidate, so list candidates from the most to the
/// least preferred (e.g. the strongest penalty first).
///
/// # Shapes
/// `x`: `[n, d]`, `y`: `[n]`
///
/// # Errors
/// No candidates; fewer than 2 rows; every candidate failing on every fold.
pub fn select<T: Clone>(
    x: &Tensor,
    y: &Tensor,
    candidates: &[T],
    params: &CvParams,
    mut fit_score: impl FnMut(&Tensor, &Tensor, &Tensor, &Tensor, &T) -> Result<f64>,
) -> Result<CvChoice<T>> {
    if candidates.is_empty() {
        return Err(ClassicalError::InvalidParameter {
            name: "candidates",
            reason: "is empty".into(),
        });
    }
    let n = y.dims().first().copied().unwrap_or(0);
    let folds = if params.stratified {
        let labels: Vec<f64> = y.to_dtype(candle_core::DType::F64)?.to_vec1()?;
        stratified_k_fold(&labels, params.k, params.seed)?
    } else {
        k_fold(n, params.k, params.seed)?
    };
    let split: Vec<(Tensor, Tensor, Tensor, Tensor)> = folds
        .iter()
        .map(|f| {
            Ok((
                take_rows(x, &f.train)?,
                take_rows(y, &f.train)?,
                take_rows(x, &f.valid)?,
                take_rows(y, &f.valid)?,
            ))
        })
        .collect::<Result<_>>()?;
    let mut scores = Vec::with_capacity(candidates.len());
    let mut last_err = None;
    for c in candidates {
        let mut tot = 0.0;
        let mut cnt = 0usize;
        for (xtr, ytr, xva, yva) in &split {
            match fit_score(xtr, ytr, xva, yva, c) {
                Ok(s) if s.is_finite() => {
                    tot += s;
                    cnt += 1;
                }
                Ok(_) => {}
                Err(e) => last_err = Some(e),
            }
        }
        scores.push(if cnt > 0 {
            tot / cnt as f64
        } else {
            f64::NEG_INFINITY
        });
    }
    // Scores equal up to rounding (relative 1e-10) are ties and keep the earlier candidate.
    let mut best = 0;
    for (i, &s) in scores.iter().enumerate() {
        let b = scores[best];
        if s > b && (b == f64::NEG_INFINITY || s - b > 1e-10 * b.abs().max(s.abs())) {
            best = i;
        }
    }
    if scores[best] == f64::NEG_INFINITY {
        return Err(last_err.unwrap_or(ClassicalError::InvalidParameter {
            name: "candidates",
            reason: "every candidate failed on every fold".into(),
        }));
    }
    Ok(CvChoice {
        best: candidates[best].clone(),
        scores,
    })
}
