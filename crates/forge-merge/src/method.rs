//! The merge strategies, as one enum, and their per-tensor parameters.
//!
//! | method | paper | needs a base | per-model parameters | defaults (as mergekit) |
//! |---|---|---|---|---|
//! | [`Linear`](MergeMethod::Linear) | Wortsman et al. 2022, *Model soups* | no | `weight` | `normalize: true` |
//! | [`Slerp`](MergeMethod::Slerp) | Shoemake 1985; White 2016 | yes (one other model) | - | `t` required, in `[0, 1]` |
//! | [`TaskArithmetic`](MergeMethod::TaskArithmetic) | Ilharco et al. 2023, *Editing models with task arithmetic* | yes | `weight` | `normalize: false`, `lambda: 1` |
//! | [`Ties`](MergeMethod::Ties) | Yadav et al. 2023, *TIES-Merging* | yes | `weight`, `density` in `(0, 1]` | `normalize: true` |
//! | [`DareTies`](MergeMethod::DareTies), [`DareLinear`](MergeMethod::DareLinear) | Yu et al. 2024, *Language models are Super Mario* | yes | `weight`, `density` = 1 - drop rate p | `rescale: true` (by 1/(1-p)) |
//! | [`Breadcrumbs`](MergeMethod::Breadcrumbs), [`BreadcrumbsTies`](MergeMethod::BreadcrumbsTies) | Davari & Belilovsky 2024, *Model breadcrumbs* | yes | `weight`, `density`, `gamma` | `gamma: 0.01` |
//! | [`Della`](MergeMethod::Della), [`DellaLinear`](MergeMethod::DellaLinear) | Deep et al. 2024, *DELLA-Merging* | yes | `weight`, `density`, `epsilon` | `epsilon: 0.1`, `rescale: true` (by 1/p_i) |
//!
//! `density` is the fraction of each task vector kept; DARE's drop rate is `p = 1 - density`.

use crate::error::{MergeError, Result};
use serde::{Deserialize, Serialize};

/// A merge strategy. Parsed from mergekit's `merge_method` names with [`MergeMethod::from_name`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MergeMethod {
    /// Weighted average of the models (Wortsman et al. 2022).
    Linear,
    /// Spherical interpolation between the base and one other model, per tensor; linear
    /// interpolation when the two are nearly collinear (|cos| > 0.9995), as mergekit does.
    Slerp,
    /// Base + lambda * sum of weighted task vectors (Ilharco et al. 2023).
    TaskArithmetic,
    /// TIES-Merging (Yadav et al. 2023): trim each task vector to its top-`density` magnitudes,
    /// elect a sign per parameter (sign of the weighted sum), average the agreeing entries.
    Ties,
    /// DARE (Yu et al. 2024) with TIES sign election: drop each task-vector entry with
    /// probability p = 1 - density, rescale survivors by 1/(1-p), then elect signs.
    DareTies,
    /// DARE (Yu et al. 2024) with a plain weighted sum (task arithmetic).
    DareLinear,
    /// Model breadcrumbs (Davari & Belilovsky 2024): drop the largest `gamma` fraction and the
    /// smallest entries of each task vector, keeping `density`; weighted sum.
    Breadcrumbs,
    /// Breadcrumbs followed by TIES sign election.
    BreadcrumbsTies,
    /// DELLA (Deep et al. 2024, "DELLA-Merging: Reducing Interference in Model Merging through
    /// Magnitude-Based Sampling"): MAGPRUNE keeps each task-vector entry with a probability
    /// that grows with its magnitude rank within its row, from `density - epsilon` (smallest)
    /// to `density + epsilon` (largest), rescales survivors by 1/p_i, then TIES sign election.
    Della,
    /// DELLA's MAGPRUNE with a plain weighted sum (no sign election).
    DellaLinear,
}

/// How a task vector is sparsified before combining.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sparsification {
    /// Keep every entry.
    None,
    /// Keep the top-`density` fraction by magnitude (TIES' trim step).
    Magnitude,
    /// Keep each entry with probability `density` (DARE's drop step), seeded.
    Random,
    /// Drop the top `gamma` fraction and the smallest entries, keeping `density` (breadcrumbs).
    MagnitudeOutliers,
    /// Keep each entry with a probability set by its magnitude rank within its row, in
    /// `[density - epsilon, density + epsilon]` (DELLA's MAGPRUNE), seeded.
    MagnitudeSampling,
}

impl MergeMethod {
    /// Every method, in documentation order.
    pub const ALL: [MergeMethod; 10] = [
        MergeMethod::Linear,
        MergeMethod::Slerp,
        MergeMethod::TaskArithmetic,
        MergeMethod::Ties,
        MergeMethod::DareTies,
        MergeMethod::DareLinear,
        MergeMethod::Breadcrumbs,
        MergeMethod::BreadcrumbsTies,
        MergeMethod::Della,
        MergeMethod::DellaLinear,
    ];

    /// mergekit's name of the method (`merge_method:` in its YAML).
    pub fn name(self) -> &'static str {
        match self {
            MergeMethod::Linear => "linear",
            MergeMethod::Slerp => "slerp",
            MergeMethod::TaskArithmetic => "task_arithmetic",
            MergeMethod::Ties => "ties",
            MergeMethod::DareTies => "dare_ties",
            MergeMethod::DareLinear => "dare_linear",
            MergeMethod::Breadcrumbs => "breadcrumbs",
            MergeMethod::BreadcrumbsTies => "breadcrumbs_ties",
            MergeMethod::Della => "della",
            MergeMethod::DellaLinear => "della_linear",
        }
    }

    /// Parse mergekit's method name.
    ///
    /// # Errors
    /// [`MergeError::UnknownMethod`] listing the supported names.
    pub fn from_name(name: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|m| m.name() == name)
            .ok_or_else(|| MergeError::UnknownMethod {
                method: name.to_string(),
                supported: Self::ALL.map(|m| m.name()).join(", "),
            })
    }

    /// Whether the method needs a base model.
    pub fn needs_base(self) -> bool {
        !matches!(self, MergeMethod::Linear)
    }

    /// Whether the method works on task vectors (deltas from the base).
    pub fn is_task_arithmetic_family(self) -> bool {
        !matches!(self, MergeMethod::Linear | MergeMethod::Slerp)
    }

    /// The sparsification step of a task-arithmetic-family method.
    pub fn sparsification(self) -> Sparsification {
        match self {
            MergeMethod::Ties => Sparsification::Magnitude,
            MergeMethod::DareTies | MergeMethod::DareLinear => Sparsification::Random,
            MergeMethod::Breadcrumbs | MergeMethod::BreadcrumbsTies => {
                Sparsification::MagnitudeOutliers
            }
            MergeMethod::Della | MergeMethod::DellaLinear => Sparsification::MagnitudeSampling,
            _ => Sparsification::None,
        }
    }

    /// Whether TIES' sign election (consensus by the sign of the weighted sum) is applied.
    pub fn sign_consensus(self) -> bool {
        matches!(
            self,
            MergeMethod::Ties
                | MergeMethod::DareTies
                | MergeMethod::BreadcrumbsTies
                | MergeMethod::Della
        )
    }

    /// Default of `normalize` (divide by the sum of the weights that contribute), as in mergekit.
    pub fn default_normalize(self) -> bool {
        matches!(self, MergeMethod::Linear | MergeMethod::Ties)
    }

    /// Default of `rescale` (DARE's 1/(1-p)), as in mergekit.
    pub fn default_rescale(self) -> bool {
        matches!(
            self,
            MergeMethod::DareTies
                | MergeMethod::DareLinear
                | MergeMethod::Della
                | MergeMethod::DellaLinear
        )
    }

    /// Whether the method uses per-model `density`.
    pub fn uses_density(self) -> bool {
        self.sparsification() != Sparsification::None
    }
}

impl std::fmt::Display for MergeMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for MergeMethod {
    type Err = MergeError;
    fn from_str(s: &str) -> Result<Self> {
        Self::from_name(s)
    }
}

/// The parameters of one tensor's merge, resolved from the config (per-layer gradients and
/// filters already evaluated). Model order is the order of the non-base inputs.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorParams {
    /// Weight of each non-base model (linear: of each model).
    pub weights: Vec<f64>,
    /// Density of each non-base model (fraction kept; DARE: 1 - drop rate).
    pub densities: Vec<f64>,
    /// Breadcrumbs' outlier fraction of each non-base model.
    pub gammas: Vec<f64>,
    /// DELLA's half-width of the keep-probability range of each non-base model.
    pub epsilons: Vec<f64>,
    /// Entries per row for row-wise sparsification (DELLA ranks magnitudes within each row of
    /// a matrix, as mergekit does; the last dimension of the tensor); 0 = the whole tensor is
    /// one row.
    pub row_len: usize,
    /// Divide by the sum of contributing weights.
    pub normalize: bool,
    /// DARE: rescale kept entries by 1/density (= 1/(1-p)).
    pub rescale: bool,
    /// Scale of the combined task vector.
    pub lambda: f64,
    /// SLERP's interpolation factor (0 = base).
    pub t: f64,
    /// Seed of DARE's random drops (combined with the tensor name and model index, so the
    /// result does not depend on the order tensors are processed in).
    pub seed: u64,
}

impl TensorParams {
    /// Parameters for `n` models with equal weights 1, density 1, the method's defaults.
    pub fn new(method: MergeMethod, n: usize) -> Self {
        Self {
            weights: vec![1.0; n],
            densities: vec![1.0; n],
            gammas: vec![0.01; n],
            epsilons: vec![0.1; n],
            row_len: 0,
            normalize: method.default_normalize(),
            rescale: method.default_rescale(),
            lambda: 1.0,
            t: 0.5,
            seed: 0,
        }
    }

    /// Check every value against its range.
    ///
    /// # Errors
    /// [`MergeError::OutOfRange`] naming the parameter (and model index) and value: weights
    /// must be finite; densities in `(0, 1]` (DARE: drop rate p = 1 - density in `[0, 1)`);
    /// gamma in `[0, 1)` with density + gamma <= 1; DELLA's epsilon >= 0 with density -
    /// epsilon > 0 and density + epsilon <= 1 (for density < 1); `t` in `[0, 1]`; lambda finite.
    pub fn validate(&self, method: MergeMethod, tensor: &str) -> Result<()> {
        let bad = |name: String, value: f64, reason: &str| MergeError::OutOfRange {
            name,
            value,
            reason: reason.to_string(),
        };
        for (i, &w) in self.weights.iter().enumerate() {
            if !w.is_finite() {
                return Err(bad(
                    format!("weight of model {i} for {tensor}"),
                    w,
                    "must be finite",
                ));
            }
        }
        if method.uses_density() {
            for (i, &d) in self.densities.iter().enumerate() {
                if !(d > 0.0 && d <= 1.0) {
                    let (name, value, reason) = if method.sparsification() == Sparsification::Random
                    {
                        (
                            format!("drop rate p (= 1 - density) of model {i} for {tensor}"),
                            1.0 - d,
                            "must be in [0, 1)",
                        )
                    } else {
                        (
                            format!("density of model {i} for {tensor}"),
                            d,
                            "must be in (0, 1]",
                        )
                    };
                    return Err(bad(name, value, reason));
                }
            }
        }
        if method.sparsification() == Sparsification::MagnitudeOutliers {
            for (i, (&g, &d)) in self.gammas.iter().zip(&self.densities).enumerate() {
                if !(0.0..1.0).contains(&g) || d + g > 1.0 {
                    return Err(bad(
                        format!("gamma of model {i} for {tensor}"),
                        g,
                        "must be in [0, 1) with density + gamma <= 1",
                    ));
                }
            }
        }
        if method.sparsification() == Sparsification::MagnitudeSampling {
            for (i, (&e, &d)) in self.epsilons.iter().zip(&self.densities).enumerate() {
                let ok = e.is_finite() && e >= 0.0 && (d >= 1.0 || (d - e > 0.0 && d + e <= 1.0));
                if !ok {
                    return Err(bad(
                        format!("epsilon of model {i} for {tensor}"),
                        e,
                        "must be >= 0 with density - epsilon > 0 and density + epsilon <= 1",
                    ));
                }
            }
        }
        if method == MergeMethod::Slerp && !(0.0..=1.0).contains(&self.t) {
            return Err(bad(format!("t for {tensor}"), self.t, "must be in [0, 1]"));
        }
        if !self.lambda.is_finite() {
            return Err(bad(
                format!("lambda for {tensor}"),
                self.lambda,
                "must be finite",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_is_typed() {
        for m in MergeMethod::ALL {
            assert_eq!(MergeMethod::from_name(m.name()).unwrap(), m);
        }
        let e = MergeMethod::from_name("frankenmerge").unwrap_err();
        assert!(e.to_string().contains("frankenmerge") && e.to_string().contains("ties"));
    }

    #[test]
    fn ranges_are_enforced() {
        let mut p = TensorParams::new(MergeMethod::Ties, 2);
        p.densities[1] = 0.0;
        let e = p.validate(MergeMethod::Ties, "w").unwrap_err().to_string();
        assert!(e.contains("density of model 1"), "{e}");
        p.densities[1] = 1.5;
        assert!(p.validate(MergeMethod::Ties, "w").is_err());
        let mut d = TensorParams::new(MergeMethod::DareTies, 1);
        d.densities[0] = 0.0; // p = 1: everything dropped
        let e = d
            .validate(MergeMethod::DareTies, "w")
            .unwrap_err()
            .to_string();
        assert!(e.contains("drop rate"), "{e}");
        let mut s = TensorParams::new(MergeMethod::Slerp, 1);
        s.t = 1.2;
        assert!(s.validate(MergeMethod::Slerp, "w").is_err());
    }
}
