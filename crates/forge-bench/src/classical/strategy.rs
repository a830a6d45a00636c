//! The classical strategies: one enum with each strategy's name, role, use of the source model
//! and description, written once.

use crate::scenario::StrategySpec;
use crate::schema::StrategyKind;

/// A strategy of the classical scenarios (see the table in the [module docs](super)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ClassicalStrategy {
    /// Mini-batch SGD from zero weights, to convergence (the baseline).
    ScratchSgd,
    /// Closed form on the target data, lam by 5-fold CV.
    TargetOnly,
    /// The source model applied as is.
    SourceOnly,
    /// The same SGD warm-started from the source weights (the headline transfer).
    WarmStartSgd,
    /// `argmin loss + lam ||w - w_src||^2`, lam by 5-fold CV.
    Regularized,
    /// Source posterior as the target prior.
    Bayesian,
    /// Importance-weighted source fit blended with a target fit.
    CovShift,
    /// Source weights mapped by feature moments (no labels, no steps).
    StatMapping,
    /// Rank-2 adapter on the frozen source weights.
    Adapter,
    /// The transfer gate, then `Regularized` if allowed, else `TargetOnly`.
    Gated,
}

impl ClassicalStrategy {
    /// Every strategy in display order (the baseline first).
    pub const ALL: [ClassicalStrategy; 10] = [
        Self::ScratchSgd,
        Self::TargetOnly,
        Self::SourceOnly,
        Self::WarmStartSgd,
        Self::Regularized,
        Self::Bayesian,
        Self::CovShift,
        Self::StatMapping,
        Self::Adapter,
        Self::Gated,
    ];

    /// The headline transfer of every classical scenario.
    pub const HEADLINE: ClassicalStrategy = Self::WarmStartSgd;

    /// Kebab-case name, as stored in results files.
    pub fn name(self) -> &'static str {
        match self {
            Self::ScratchSgd => "scratch-sgd",
            Self::TargetOnly => "target-only",
            Self::SourceOnly => "source-only",
            Self::WarmStartSgd => "warm-start-sgd",
            Self::Regularized => "regularized",
            Self::Bayesian => "bayesian",
            Self::CovShift => "cov-shift",
            Self::StatMapping => "stat-mapping",
            Self::Adapter => "adapter",
            Self::Gated => "gated",
        }
    }

    /// The strategy called `name`, if any.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Its role in the comparison.
    pub fn kind(self) -> StrategyKind {
        match self {
            Self::ScratchSgd => StrategyKind::Baseline,
            Self::TargetOnly | Self::SourceOnly => StrategyKind::Reference,
            _ => StrategyKind::Transfer,
        }
    }

    /// Whether it uses the source model (its cost with source then includes the source fit).
    pub fn uses_source(self) -> bool {
        !matches!(self, Self::ScratchSgd | Self::TargetOnly)
    }

    /// One-line description.
    pub fn description(self) -> &'static str {
        match self {
            Self::ScratchSgd => "mini-batch SGD from zero weights, to convergence",
            Self::TargetOnly => "closed form on the target data, lam by 5-fold CV",
            Self::SourceOnly => "the source model as is (no target training)",
            Self::WarmStartSgd => "the same SGD warm-started from the source weights",
            Self::Regularized => "penalty lam ||w - w_src||^2, lam by 5-fold CV",
            Self::Bayesian => "source posterior as the target prior",
            Self::CovShift => "importance-weighted source fit blended with a target fit",
            Self::StatMapping => "source weights mapped by feature moments (no labels)",
            Self::Adapter => "rank-2 adapter on the frozen source weights",
            Self::Gated => "transfer gate, then regularized if allowed, else target-only",
        }
    }

    /// Whether it is one of the two SGD runs (convergence curves, stopping rule).
    pub fn is_sgd(self) -> bool {
        matches!(self, Self::ScratchSgd | Self::WarmStartSgd)
    }

    /// The runner's view of it.
    pub fn spec(self) -> StrategySpec {
        StrategySpec::new(
            self.name(),
            self.kind(),
            self.uses_source(),
            self.description(),
        )
    }
}

impl std::fmt::Display for ClassicalStrategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_exactly_one_baseline() {
        for s in ClassicalStrategy::ALL {
            assert_eq!(ClassicalStrategy::from_name(s.name()), Some(s));
        }
        assert_eq!(ClassicalStrategy::from_name("nope"), None);
        let baselines = ClassicalStrategy::ALL
            .iter()
            .filter(|s| s.kind() == StrategyKind::Baseline)
            .count();
        assert_eq!(baselines, 1);
        assert_eq!(ClassicalStrategy::HEADLINE.kind(), StrategyKind::Transfer);
    }
}
