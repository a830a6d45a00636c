//! Small statistics helpers for aggregating over seeds.

use crate::schema::MeanStd;

/// Mean and sample standard deviation (n - 1 denominator; 0 for fewer than 2 values).
/// Non-finite values are kept, so a NaN shows up rather than vanishing.
pub fn mean_std(xs: &[f64]) -> MeanStd {
    if xs.is_empty() {
        return MeanStd {
            mean: f64::NAN,
            std: f64::NAN,
        };
    }
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let std = if xs.len() < 2 {
        0.0
    } else {
        (xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
    };
    MeanStd { mean, std }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_hand_computed_sample_std() {
        // values 2, 4, 4, 4, 5, 5, 7, 9: mean 5, sample variance 32/7
        let m = mean_std(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]);
        assert!((m.mean - 5.0).abs() < 1e-12);
        assert!((m.std - (32.0f64 / 7.0).sqrt()).abs() < 1e-12);
        assert_eq!(mean_std(&[3.0]).std, 0.0);
        assert!(mean_std(&[]).mean.is_nan());
    }
}
