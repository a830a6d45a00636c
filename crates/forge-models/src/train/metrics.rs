//! Classification metrics: accuracy, macro-F1 and the confusion matrix.

use serde::{Deserialize, Serialize};

/// The result of an evaluation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalMetrics {
    /// Mean cross-entropy.
    pub loss: f64,
    /// Fraction of correct predictions.
    pub accuracy: f64,
    /// Unweighted mean over classes of the per-class F1 (a class with no true and no predicted
    /// example counts as F1 = 0, as scikit-learn's `zero_division=0`; classes are `0..c`).
    pub macro_f1: f64,
    /// `confusion[true][predicted]` counts, `c x c`.
    pub confusion: Vec<Vec<usize>>,
    /// Number of examples.
    pub n: usize,
}

/// `confusion[t][p]` from true and predicted class ids in `0..num_classes` (others ignored).
pub fn confusion_matrix(truth: &[u32], pred: &[u32], num_classes: usize) -> Vec<Vec<usize>> {
    let mut c = vec![vec![0usize; num_classes]; num_classes];
    for (&t, &p) in truth.iter().zip(pred) {
        if (t as usize) < num_classes && (p as usize) < num_classes {
            c[t as usize][p as usize] += 1;
        }
    }
    c
}

/// Accuracy from a confusion matrix (0 when empty).
pub fn accuracy(confusion: &[Vec<usize>]) -> f64 {
    let total: usize = confusion.iter().flatten().sum();
    let right: usize = (0..confusion.len()).map(|i| confusion[i][i]).sum();
    if total == 0 {
        0.0
    } else {
        right as f64 / total as f64
    }
}

/// Macro-F1 from a confusion matrix: mean over classes of `2 tp / (2 tp + fp + fn)`, 0 for a
/// class with `2 tp + fp + fn = 0` (scikit-learn's `f1_score(average="macro", zero_division=0)`
/// with `labels = 0..c`).
pub fn macro_f1(confusion: &[Vec<usize>]) -> f64 {
    let c = confusion.len();
    if c == 0 {
        return 0.0;
    }
    let f1: f64 = (0..c)
        .map(|k| {
            let tp = confusion[k][k] as f64;
            let fp = (0..c).map(|t| confusion[t][k]).sum::<usize>() as f64 - tp;
            let fnn = confusion[k].iter().sum::<usize>() as f64 - tp;
            let d = 2.0 * tp + fp + fnn;
            if d == 0.0 {
                0.0
            } else {
                2.0 * tp / d
            }
        })
        .sum();
    f1 / c as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_scikit_learn() {
        // sklearn: f1_score([0,0,1,1,2,2], [0,1,1,1,2,0], average="macro") = 0.7222222
        let t = [0, 0, 1, 1, 2, 2];
        let p = [0, 1, 1, 1, 2, 0];
        let c = confusion_matrix(&t, &p, 3);
        assert_eq!(c, vec![vec![1, 1, 0], vec![0, 2, 0], vec![1, 0, 1]]);
        assert!((accuracy(&c) - 4.0 / 6.0).abs() < 1e-12);
        // class 0: tp 1 fp 1 fn 1 -> 0.5; class 1: tp 2 fp 1 fn 0 -> 0.8; class 2: tp 1 fp 0 fn 1 -> 2/3
        assert!((macro_f1(&c) - (0.5 + 0.8 + 2.0 / 3.0) / 3.0).abs() < 1e-12);
    }
}
