//! Multiple-testing corrections for per-feature p-values: Bonferroni, Holm (1979) step-down
//! family-wise error control and Benjamini & Hochberg (1995) false-discovery-rate control.

use crate::{Result, SafetyError};
use serde::{Deserialize, Serialize};

/// How per-feature p-values are corrected for testing many features at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Correction {
    /// No correction (each feature tested at level alpha).
    None,
    /// Bonferroni: `p_adj = min(1, k p)`; controls the family-wise error rate.
    Bonferroni,
    /// Holm (1979), "A simple sequentially rejective multiple test procedure", Scand. J. Statist. 6:
    /// with sorted `p_(1) <= ... <= p_(k)`, `p_adj(i) = max_{j <= i} min(1, (k - j + 1) p_(j))`.
    /// Controls the family-wise error rate under any dependence; uniformly more powerful than Bonferroni.
    #[default]
    Holm,
    /// Benjamini & Hochberg (1995), "Controlling the false discovery rate", JRSS-B 57:
    /// `p_adj(i) = min_{j >= i} min(1, k p_(j) / j)`. Controls the false discovery rate
    /// (independent or positively dependent tests).
    BenjaminiHochberg,
}

/// Adjusted p-values in the input order; a feature is rejected at level `alpha` when its
/// adjusted p-value is `<= alpha`.
///
/// # Errors
/// [`SafetyError::InvalidArgument`] if a p-value is outside `[0, 1]` or NaN.
pub fn adjust_p_values(p: &[f64], correction: Correction) -> Result<Vec<f64>> {
    if let Some((i, v)) = p
        .iter()
        .enumerate()
        .find(|(_, v)| !(0.0..=1.0).contains(*v))
    {
        return Err(SafetyError::InvalidArgument {
            name: "p",
            reason: format!("p-values must lie in [0, 1], got {v} at index {i}"),
        });
    }
    let k = p.len();
    let kf = k as f64;
    let mut order: Vec<usize> = (0..k).collect();
    order.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    let mut out = vec![0.0; k];
    match correction {
        Correction::None => out.copy_from_slice(p),
        Correction::Bonferroni => {
            for (o, &v) in out.iter_mut().zip(p) {
                *o = (v * kf).min(1.0);
            }
        }
        Correction::Holm => {
            let mut running: f64 = 0.0;
            for (rank, &i) in order.iter().enumerate() {
                let adj = ((kf - rank as f64) * p[i]).min(1.0);
                running = running.max(adj);
                out[i] = running;
            }
        }
        Correction::BenjaminiHochberg => {
            let mut running: f64 = 1.0;
            for (rank, &i) in order.iter().enumerate().rev() {
                let adj = (kf * p[i] / (rank as f64 + 1.0)).min(1.0);
                running = running.min(adj);
                out[i] = running;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Hand-computed from the definitions (k = 4, p = [0.01, 0.04, 0.03, 0.005]):
    // sorted 0.005, 0.01, 0.03, 0.04.
    // Holm: 4*0.005=0.02, 3*0.01=0.03, 2*0.03=0.06, 1*0.04=0.04 -> cummax 0.02, 0.03, 0.06, 0.06.
    // BH:   4*0.005/1=0.02, 4*0.01/2=0.02, 4*0.03/3=0.04, 4*0.04/4=0.04 -> cummin from the top.
    #[test]
    fn holm_and_bh_match_hand_computation() {
        let p = [0.01, 0.04, 0.03, 0.005];
        let holm = adjust_p_values(&p, Correction::Holm).unwrap();
        let want = [0.03, 0.06, 0.06, 0.02];
        for (a, b) in holm.iter().zip(want) {
            assert!((a - b).abs() < 1e-15, "{holm:?}");
        }
        let bh = adjust_p_values(&p, Correction::BenjaminiHochberg).unwrap();
        let want = [0.02, 0.04, 0.04, 0.02];
        for (a, b) in bh.iter().zip(want) {
            assert!((a - b).abs() < 1e-15, "{bh:?}");
        }
        let bonf = adjust_p_values(&p, Correction::Bonferroni).unwrap();
        assert!((bonf[1] - 0.16).abs() < 1e-15);
        assert_eq!(adjust_p_values(&p, Correction::None).unwrap(), p.to_vec());
        assert!(adjust_p_values(&[0.5, f64::NAN], Correction::Holm).is_err());
        assert!(adjust_p_values(&[1.5], Correction::Holm).is_err());
        assert!(adjust_p_values(&[], Correction::Holm).unwrap().is_empty());
    }
}
