//! Two-sample Kolmogorov–Smirnov tests, one per feature, with multiple-testing correction and
//! the fraction of shifted features.
//!
//! Statistic: `D = sup_t |F_source(t) - F_target(t)|` over the empirical CDFs (Smirnov, 1939,
//! "On the estimation of the discrepancy between empirical curves of distribution for two
//! independent samples", Bull. Math. Univ. Moscou 2). P-values:
//! - exact: the lattice-path recursion of Hodges (1958, Ark. Mat. 3) as implemented in R's
//!   `psmirnov2x`, counting the paths from (0, 0) to (m, n) that stay strictly inside
//!   `|i/m - j/n| < D`; `p = P(D_{m,n} >= D_obs)` under continuous (tie-free) data, conservative with ties;
//! - asymptotic: `p = Q_KS(sqrt(m n / (m + n)) D)` with the Kolmogorov survival function
//!   [`crate::stats::kolmogorov_sf`] (what `scipy.stats.ks_2samp(method="asymp")` approximates).
//!
//! [`KsMethod::Auto`] uses the exact p-value when `m n <= 1,000,000` and the asymptotic one otherwise.

use crate::correction::{adjust_p_values, Correction};
use crate::input::{check_unit, two_samples};
use crate::stats::kolmogorov_sf;
use crate::{Result, SafetyError};
use candle_core::Tensor;
use forge_linalg::check::ensure_finite_slice;
use serde::{Deserialize, Serialize};

/// Largest `m * n` for which [`KsMethod::Auto`] computes the exact p-value (O(m n) time, O(n) memory).
pub const EXACT_MAX_PRODUCT: usize = 1_000_000;

/// How the KS p-value is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum KsMethod {
    /// Exact when `m n <= EXACT_MAX_PRODUCT`, asymptotic otherwise.
    #[default]
    Auto,
    /// Exact null distribution (Hodges 1958), O(m n).
    Exact,
    /// Kolmogorov limiting distribution.
    Asymptotic,
}

/// The result of one two-sample KS test.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct KsResult {
    /// `D = sup |F_a - F_b|`, in [0, 1].
    pub statistic: f64,
    /// Two-sided p-value.
    pub p_value: f64,
    /// The method used (never `Auto`).
    pub method: KsMethod,
}

/// Two-sample two-sided Kolmogorov–Smirnov test.
///
/// # Errors
/// [`SafetyError::TooFewSamples`] for an empty sample; a [`forge_linalg::LinalgError::NonFinite`]
/// for NaN/inf values.
pub fn ks_2samp(a: &[f64], b: &[f64], method: KsMethod) -> Result<KsResult> {
    for (v, what) in [(a, "a"), (b, "b")] {
        if v.is_empty() {
            return Err(SafetyError::TooFewSamples {
                what: format!("KS sample {what}"),
                got: 0,
                min: 1,
            });
        }
        ensure_finite_slice(v, what)?;
    }
    let mut a = a.to_vec();
    let mut b = b.to_vec();
    a.sort_by(|x, y| x.total_cmp(y));
    b.sort_by(|x, y| x.total_cmp(y));
    let d = ks_statistic_sorted(&a, &b);
    let (m, n) = (a.len(), b.len());
    let method = match method {
        KsMethod::Auto if m.saturating_mul(n) <= EXACT_MAX_PRODUCT => KsMethod::Exact,
        KsMethod::Auto => KsMethod::Asymptotic,
        other => other,
    };
    let p_value = match method {
        KsMethod::Exact => ks_exact_p(d, m, n),
        _ => {
            let en = (m as f64 * n as f64) / (m as f64 + n as f64);
            kolmogorov_sf(en.sqrt() * d)
        }
    };
    Ok(KsResult {
        statistic: d,
        p_value,
        method,
    })
}

/// `sup |F_a - F_b|` for sorted samples (ties handled by stepping over equal values together).
fn ks_statistic_sorted(a: &[f64], b: &[f64]) -> f64 {
    let (m, n) = (a.len() as f64, b.len() as f64);
    let (mut i, mut j) = (0usize, 0usize);
    let mut d: f64 = 0.0;
    while i < a.len() && j < b.len() {
        let v = a[i].min(b[j]);
        while i < a.len() && a[i] <= v {
            i += 1;
        }
        while j < b.len() && b[j] <= v {
            j += 1;
        }
        d = d.max((i as f64 / m - j as f64 / n).abs());
    }
    d
}

/// Exact `P(D_{m,n} >= d)` under H0 for continuous data (R's `psmirnov2x`, Hodges 1958).
fn ks_exact_p(d: f64, m: usize, n: usize) -> f64 {
    let (m, n) = if m > n { (n, m) } else { (m, n) };
    let (md, nd) = (m as f64, n as f64);
    // Paths with |i/m - j/n| > q are exactly those reaching |i/m - j/n| >= d (m n D is an integer).
    let q = (0.5 + (d * md * nd - 1e-7).floor()) / (md * nd);
    let mut u: Vec<f64> = (0..=n)
        .map(|j| if j as f64 / nd > q { 0.0 } else { 1.0 })
        .collect();
    for i in 1..=m {
        let w = i as f64 / (i + n) as f64;
        let im = i as f64 / md;
        u[0] = if im > q { 0.0 } else { w * u[0] };
        for j in 1..=n {
            u[j] = if (im - j as f64 / nd).abs() > q {
                0.0
            } else {
                w * u[j] + u[j - 1]
            };
        }
    }
    (1.0 - u[n]).clamp(0.0, 1.0)
}

/// Settings of the per-feature KS screen.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct KsConfig {
    /// Level of the corrected tests. Default 0.05; range (0, 1).
    pub alpha: f64,
    /// Multiple-testing correction. Default [`Correction::Holm`].
    pub correction: Correction,
    /// P-value method. Default [`KsMethod::Auto`].
    pub method: KsMethod,
}

impl Default for KsConfig {
    fn default() -> Self {
        Self {
            alpha: 0.05,
            correction: Correction::Holm,
            method: KsMethod::Auto,
        }
    }
}

/// The KS test of one feature.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FeatureShift {
    /// Column index.
    pub feature: usize,
    /// KS statistic `D`.
    pub statistic: f64,
    /// Raw two-sided p-value.
    pub p_value: f64,
    /// Corrected p-value.
    pub p_adjusted: f64,
    /// `p_adjusted <= alpha`.
    pub shifted: bool,
}

/// Per-feature KS screen of a source/target pair.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KsReport {
    /// One entry per feature, in column order.
    pub features: Vec<FeatureShift>,
    /// The configuration used.
    pub config: KsConfig,
    /// Number of features whose corrected p-value is `<= alpha`.
    pub n_shifted: usize,
    /// `n_shifted / d`.
    pub fraction_shifted: f64,
    /// Smallest corrected p-value (the family's p-value under Holm or Bonferroni).
    pub min_p_adjusted: f64,
    /// Largest KS statistic over the features.
    pub max_statistic: f64,
}

/// Two-sample KS test of every feature (column) of `source` against `target`, corrected for
/// multiple testing.
///
/// # Shapes
/// `source`: `[n_s, d]`, `target`: `[n_t, d]`
///
/// # Errors
/// [`SafetyError::FeatureMismatch`], [`SafetyError::TooFewSamples`] (fewer than 2 rows),
/// non-finite input, [`SafetyError::InvalidArgument`] for `alpha` outside (0, 1).
pub fn ks_per_feature(source: &Tensor, target: &Tensor, config: &KsConfig) -> Result<KsReport> {
    check_unit("alpha", config.alpha)?;
    let (s, t) = two_samples(source, target, 2)?;
    ks_rows(&s, &t, config)
}

pub(crate) fn ks_rows(
    s: &crate::input::Rows,
    t: &crate::input::Rows,
    config: &KsConfig,
) -> Result<KsReport> {
    let mut stats = Vec::with_capacity(s.d);
    for j in 0..s.d {
        stats.push(ks_2samp(&s.column(j), &t.column(j), config.method)?);
    }
    let p: Vec<f64> = stats.iter().map(|r| r.p_value).collect();
    let adj = adjust_p_values(&p, config.correction)?;
    let features: Vec<FeatureShift> = stats
        .iter()
        .zip(&adj)
        .enumerate()
        .map(|(feature, (r, &pa))| FeatureShift {
            feature,
            statistic: r.statistic,
            p_value: r.p_value,
            p_adjusted: pa,
            shifted: pa <= config.alpha,
        })
        .collect();
    let n_shifted = features.iter().filter(|f| f.shifted).count();
    Ok(KsReport {
        n_shifted,
        fraction_shifted: n_shifted as f64 / s.d as f64,
        min_p_adjusted: adj.iter().copied().fold(1.0, f64::min),
        max_statistic: stats.iter().map(|r| r.statistic).fold(0.0, f64::max),
        features,
        config: *config,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statistic_with_ties_matches_definition() {
        // F_a at 1,2,3 = 1/3,2/3,1 ; F_b at 1,2,3 = 1/4... b = [2,2,3,4]: F_b(1)=0, F_b(2)=1/2, F_b(3)=3/4.
        // |diff|: 1/3, 1/6, 1/4, 0 -> D = 1/3
        let r = ks_2samp(&[1.0, 2.0, 3.0], &[2.0, 2.0, 3.0, 4.0], KsMethod::Exact).unwrap();
        assert!((r.statistic - 1.0 / 3.0).abs() < 1e-15);
    }

    #[test]
    fn exact_p_small_case_by_enumeration() {
        // m = n = 2: C(4,2) = 6 equally likely orderings; D = 1 for AABB and BBAA -> P(D >= 1) = 1/3.
        assert!((ks_exact_p(1.0, 2, 2) - 1.0 / 3.0).abs() < 1e-14);
        // D >= 1/2 always holds (every ordering has D >= 1/2) -> p = 1.
        assert!((ks_exact_p(0.5, 2, 2) - 1.0).abs() < 1e-14);
    }

    #[test]
    fn rejects_bad_input() {
        assert!(matches!(
            ks_2samp(&[], &[1.0], KsMethod::Auto),
            Err(SafetyError::TooFewSamples { .. })
        ));
        assert!(matches!(
            ks_2samp(&[f64::NAN], &[1.0], KsMethod::Auto),
            Err(SafetyError::Linalg(_))
        ));
    }
}
