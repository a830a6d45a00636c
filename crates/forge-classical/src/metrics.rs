//! Evaluation metrics on f64 tensors, following scikit-learn's definitions
//! (`sklearn.metrics`): `(y_true, pred) -> f64`.

use crate::data;
use crate::{ClassicalError, Result};
use candle_core::Tensor;

fn pair(y_true: &Tensor, pred: &Tensor) -> Result<(Vec<f64>, Vec<f64>)> {
    let y = data::vector(y_true, "y_true")?;
    let p = data::vector(pred, "pred")?;
    data::check_len(&p, y.len(), "pred")?;
    Ok((y, p))
}

/// Mean squared error `1/n sum (y_i - p_i)^2`.
///
/// # Shapes
/// `y_true`, `pred`: `[n]`
///
/// # Errors
/// Shape mismatch, empty or non-finite input.
pub fn mse(y_true: &Tensor, pred: &Tensor) -> Result<f64> {
    let (y, p) = pair(y_true, pred)?;
    Ok(y.iter()
        .zip(&p)
        .map(|(a, b)| (a - b) * (a - b))
        .sum::<f64>()
        / y.len() as f64)
}

/// Root mean squared error `sqrt(mse)`.
///
/// # Errors
/// As [`mse`].
pub fn rmse(y_true: &Tensor, pred: &Tensor) -> Result<f64> {
    Ok(mse(y_true, pred)?.sqrt())
}

/// Mean absolute error `1/n sum |y_i - p_i|`.
///
/// # Errors
/// As [`mse`].
pub fn mae(y_true: &Tensor, pred: &Tensor) -> Result<f64> {
    let (y, p) = pair(y_true, pred)?;
    Ok(y.iter().zip(&p).map(|(a, b)| (a - b).abs()).sum::<f64>() / y.len() as f64)
}

/// Coefficient of determination `R^2 = 1 - SS_res / SS_tot`. As scikit-learn: if `y_true` is
/// constant, returns 1.0 for a perfect prediction and 0.0 otherwise.
///
/// # Errors
/// As [`mse`].
pub fn r2(y_true: &Tensor, pred: &Tensor) -> Result<f64> {
    let (y, p) = pair(y_true, pred)?;
    let m = y.iter().sum::<f64>() / y.len() as f64;
    let ss_tot: f64 = y.iter().map(|v| (v - m) * (v - m)).sum();
    let ss_res: f64 = y.iter().zip(&p).map(|(a, b)| (a - b) * (a - b)).sum();
    if ss_tot == 0.0 {
        return Ok(if ss_res == 0.0 { 1.0 } else { 0.0 });
    }
    Ok(1.0 - ss_res / ss_tot)
}

/// Accuracy: the fraction of positions where `pred == y_true` (labels compared as numbers,
/// e.g. 0/1 or class ids).
///
/// # Errors
/// As [`mse`].
pub fn accuracy(y_true: &Tensor, pred: &Tensor) -> Result<f64> {
    let (y, p) = pair(y_true, pred)?;
    Ok(y.iter().zip(&p).filter(|(a, b)| a == b).count() as f64 / y.len() as f64)
}

/// Log-loss (cross-entropy), probabilities clipped to `[1e-15, 1 - 1e-15]`.
/// Binary: `pred` `[n]` holds `P(y = 1)` and `y_true` is 0/1:
/// `-1/n sum [y log p + (1 - y) log(1 - p)]`. Multi-class: `pred` `[n, k]` holds class
/// probabilities and `y_true` class ids: `-1/n sum log p_{i, y_i}`.
///
/// # Errors
/// Shape mismatch; probabilities outside `[0, 1]`; invalid labels.
pub fn log_loss(y_true: &Tensor, pred: &Tensor) -> Result<f64> {
    const EPS: f64 = 1e-15;
    let y = data::vector(y_true, "y_true")?;
    let check_p = |v: &[f64]| -> Result<()> {
        if let Some((i, &p)) = v
            .iter()
            .enumerate()
            .find(|(_, p)| !(0.0..=1.0).contains(*p))
        {
            return Err(ClassicalError::InvalidLabel {
                what: "pred".into(),
                value: p,
                index: i,
                expected: "a probability in [0, 1]".into(),
            });
        }
        Ok(())
    };
    if pred.rank() == 2 {
        let pm = data::matrix(pred, "pred")?;
        data::check_len(&y, pm.n, "y_true")?;
        check_p(&pm.v)?;
        let ids = data::class_ids(&y, pm.d, "y_true")?;
        let s: f64 = ids
            .iter()
            .enumerate()
            .map(|(i, &c)| -pm.v[i * pm.d + c].clamp(EPS, 1.0 - EPS).ln())
            .sum();
        return Ok(s / y.len() as f64);
    }
    let p = data::vector(pred, "pred")?;
    data::check_len(&p, y.len(), "pred")?;
    check_p(&p)?;
    data::check_binary(&y, "y_true", false)?;
    let s: f64 = y
        .iter()
        .zip(&p)
        .map(|(&t, &q)| {
            let q = q.clamp(EPS, 1.0 - EPS);
            -(t * q.ln() + (1.0 - t) * (1.0 - q).ln())
        })
        .sum();
    Ok(s / y.len() as f64)
}

/// Area under the ROC curve for binary `y_true` (0/1) and real-valued scores, by the
/// Mann–Whitney statistic with average ranks for ties (Hanley & McNeil, 1982, Radiology 143).
///
/// # Errors
/// As [`mse`]; labels other than 0/1; a single class ([`ClassicalError::SingleClass`]).
pub fn roc_auc(y_true: &Tensor, pred: &Tensor) -> Result<f64> {
    let (y, p) = pair(y_true, pred)?;
    data::check_binary(&y, "y_true", true)?;
    let mut idx: Vec<usize> = (0..p.len()).collect();
    idx.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    let mut ranks = vec![0.0; p.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && p[idx[j + 1]] == p[idx[i]] {
            j += 1;
        }
        let r = (i + j) as f64 / 2.0 + 1.0;
        for &k in &idx[i..=j] {
            ranks[k] = r;
        }
        i = j + 1;
    }
    let n_pos = y.iter().filter(|&&v| v == 1.0).count() as f64;
    let n_neg = y.len() as f64 - n_pos;
    let sum_pos: f64 = y
        .iter()
        .zip(&ranks)
        .filter(|(&v, _)| v == 1.0)
        .map(|(_, r)| r)
        .sum();
    Ok((sum_pos - n_pos * (n_pos + 1.0) / 2.0) / (n_pos * n_neg))
}
