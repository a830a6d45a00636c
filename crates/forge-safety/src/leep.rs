//! LEEP: the log expected empirical prediction of a source model's classification head on a
//! labelled target sample.
//!
//! Nguyen, Hassner, Seeger & Archambeau (2020), "LEEP: A New Measure to Evaluate
//! Transferability of Learned Representations", ICML. With `theta_i(z)` the source head's
//! probability of source class `z` on target example `i` and `y_i` its target label:
//! the empirical joint `P(y, z) = (1/N) sum_{i: y_i = y} theta_i(z)`, the conditional
//! `P(y | z) = P(y, z) / P(z)`, and `LEEP = (1/N) sum_i log sum_z P(y_i | z) theta_i(z)`.
//! It is the average log-likelihood of the "expected empirical predictor": higher (closer to 0)
//! is better. A head that carries no information about the target labels scores exactly
//! `sum_y p(y) log p(y)` (minus the label entropy), reported as [`Leep::null_score`]; `gain` is
//! the difference, in nats.
//!
//! Values equal the published code (github.com/thuml/LogME, `LEEP.py`) on the committed fixture.
//! Classes are `0..=max(labels)`, as there. A source class that receives zero probability on
//! every example (the reference divides 0 by 0 there) contributes nothing to any prediction and
//! is skipped.

use crate::input::Rows;
use crate::logme::check_labels;
use crate::{Result, SafetyError};
use candle_core::Tensor;
use serde::{Deserialize, Serialize};

/// How far a row of probabilities may sum from 1.
const ROW_SUM_TOL: f64 = 1e-4;

/// A LEEP score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Leep {
    /// LEEP (mean log-likelihood, <= 0; higher is better).
    pub score: f64,
    /// The score of a head independent of the target labels: `sum_y p(y) log p(y)`.
    pub null_score: f64,
    /// `score - null_score` (nats of label information in the source head's predictions).
    pub gain: f64,
    /// `P(y | z)`, `[source classes][target classes]`.
    pub conditional: Vec<Vec<f64>>,
}

/// LEEP from a source head's probabilities on the target examples.
///
/// # Shapes
/// `source_probs`: `[n, c_s]`, rows non-negative and summing to 1 (a softmax output);
/// `labels`: `n` target classes.
///
/// # Errors
/// [`SafetyError::RowMismatch`]; [`SafetyError::TooFewClasses`]; NaN/inf probabilities;
/// [`SafetyError::InvalidArgument`] for a negative probability or a row not summing to 1
/// (naming the row and its sum).
pub fn leep(source_probs: &Tensor, labels: &[u32]) -> Result<Leep> {
    let (p, classes) = prepare(source_probs, labels)?;
    Ok(leep_rows(&p, labels, classes))
}

fn check_probabilities(p: &Rows) -> Result<()> {
    for i in 0..p.n {
        let r = p.row(i);
        if let Some(v) = r.iter().find(|v| **v < 0.0) {
            return Err(SafetyError::InvalidArgument {
                name: "source_probs",
                reason: format!("row {i} has a negative probability {v}"),
            });
        }
        let s: f64 = r.iter().sum();
        if (s - 1.0).abs() > ROW_SUM_TOL {
            return Err(SafetyError::InvalidArgument {
                name: "source_probs",
                reason: format!(
                    "row {i} sums to {s}, not 1 (pass softmax probabilities, not logits)"
                ),
            });
        }
    }
    Ok(())
}

/// LEEP on validated rows (also used with permuted labels).
pub(crate) fn leep_rows(p: &Rows, labels: &[u32], classes: usize) -> Leep {
    let (n, cs) = (p.n, p.d);
    let nf = n as f64;
    let mut joint = vec![vec![0.0; classes]; cs];
    for (i, &y) in labels.iter().enumerate() {
        for (z, v) in p.row(i).iter().enumerate() {
            joint[z][y as usize] += v / nf;
        }
    }
    let conditional: Vec<Vec<f64>> = joint
        .iter()
        .map(|row| {
            let pz: f64 = row.iter().sum();
            if pz > 0.0 {
                row.iter().map(|v| v / pz).collect()
            } else {
                vec![0.0; classes]
            }
        })
        .collect();
    let mut score = 0.0;
    for (i, &y) in labels.iter().enumerate() {
        let e: f64 = p
            .row(i)
            .iter()
            .zip(&conditional)
            .map(|(t, c)| t * c[y as usize])
            .sum();
        score += e.ln();
    }
    score /= nf;
    let mut counts = vec![0usize; classes];
    for &y in labels {
        counts[y as usize] += 1;
    }
    let null_score: f64 = counts
        .iter()
        .filter(|c| **c > 0)
        .map(|&c| {
            let q = c as f64 / nf;
            q * q.ln()
        })
        .sum();
    Leep {
        score,
        null_score,
        gain: score - null_score,
        conditional,
    }
}

/// Validates probabilities for the gate (rows of `source_probs`).
pub(crate) fn prepare(source_probs: &Tensor, labels: &[u32]) -> Result<(Rows, usize)> {
    let p = Rows::from_tensor(source_probs, "source_probs", 1)?;
    let classes = check_labels(labels, p.n, "source_probs")?;
    check_probabilities(&p)?;
    Ok((p, classes))
}
