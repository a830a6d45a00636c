//! What a run does, as data: the [`RunPlan`] (mode, seeds, scenarios), resolved against a
//! registry into its work units ([`WorkUnit`]: one scenario x strategy x seed) and the
//! indivisible pieces a sweep splits into shards ([`atoms_of`]). Re-exported by
//! [`crate::runner`].

use crate::error::{BenchError, Result};
use crate::scenario::{Mode, Registry, RunContext, Scenario};
use crate::schema::SkippedScenario;

/// What to run.
#[derive(Debug, Clone)]
pub struct RunPlan {
    /// Run size.
    pub mode: Mode,
    /// Seeds.
    pub seeds: Vec<u64>,
    /// Scenario names; `None` = the mode's default set.
    pub scenarios: Option<Vec<String>>,
}

impl RunPlan {
    /// The default plan of a mode: seeds `0..mode.default_seeds()`, default scenarios.
    pub fn for_mode(mode: Mode) -> Self {
        Self {
            mode,
            seeds: (0..mode.default_seeds() as u64).collect(),
            scenarios: None,
        }
    }
}

/// One unit of work: one strategy of one scenario on one seed. A sweep is partitioned into
/// shards of work units ([`crate::shard`]).
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct WorkUnit {
    /// Scenario name.
    pub scenario: String,
    /// Seed.
    pub seed: u64,
    /// Strategy name.
    pub strategy: String,
}

impl std::fmt::Display for WorkUnit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/seed {}", self.scenario, self.strategy, self.seed)
    }
}

/// A plan resolved against a registry: the scenarios it runs (in order), those left out, and
/// its work units in canonical order (scenario, then seed, then the scenario's strategy order).
pub struct Resolved<'a> {
    /// The scenarios run, in run order.
    pub scenarios: Vec<&'a dyn Scenario>,
    /// Scenarios of the default selection left out for a missing resource.
    pub skipped: Vec<SkippedScenario>,
    /// The seeds.
    pub seeds: Vec<u64>,
    /// Every work unit, in canonical order.
    pub units: Vec<WorkUnit>,
    /// The same units grouped into indivisible pieces ([`atoms_of`]): what shards split.
    pub atoms: Vec<Vec<WorkUnit>>,
}

impl std::fmt::Debug for Resolved<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolved")
            .field(
                "scenarios",
                &self.scenarios.iter().map(|s| s.name()).collect::<Vec<_>>(),
            )
            .field("skipped", &self.skipped)
            .field("seeds", &self.seeds)
            .field("units", &self.units.len())
            .finish()
    }
}

/// The work units of `scenarios` x `seeds` in canonical order: scenario, then seed, then the
/// scenario's own strategy order.
pub fn units_of(scenarios: &[&dyn Scenario], seeds: &[u64]) -> Vec<WorkUnit> {
    atoms_of(scenarios, seeds).concat()
}

/// The indivisible pieces of the work of `scenarios` x `seeds`, in canonical order: one per
/// unit, except that the units of one trial of a scenario with [`Scenario::whole_trials`] form
/// one piece (they must run in one process).
pub fn atoms_of(scenarios: &[&dyn Scenario], seeds: &[u64]) -> Vec<Vec<WorkUnit>> {
    let mut out = Vec::new();
    for sc in scenarios {
        let specs = sc.strategies();
        for &seed in seeds {
            let units = specs.iter().map(|spec| WorkUnit {
                scenario: sc.name().to_string(),
                seed,
                strategy: spec.name.clone(),
            });
            if sc.whole_trials() {
                out.push(units.collect());
            } else {
                out.extend(units.map(|u| vec![u]));
            }
        }
    }
    out
}

/// Resolves `plan` against `registry` (see [`Registry::select`]).
///
/// # Errors
/// [`BenchError::InvalidConfig`] for no seeds or a repeated seed,
/// [`BenchError::UnknownScenario`] / [`BenchError::MissingResource`] for a bad selection.
pub fn resolve<'a>(
    registry: &'a Registry,
    plan: &RunPlan,
    ctx: &RunContext,
) -> Result<Resolved<'a>> {
    if plan.seeds.is_empty() {
        return Err(BenchError::config("seeds", "at least one seed is required"));
    }
    let mut seen = std::collections::BTreeSet::new();
    if let Some(s) = plan.seeds.iter().find(|s| !seen.insert(**s)) {
        return Err(BenchError::config(
            "seeds",
            format!("seed {s} is listed twice"),
        ));
    }
    let selection = registry.select(plan.scenarios.as_deref(), plan.mode, ctx)?;
    let atoms = atoms_of(&selection.run, &plan.seeds);
    Ok(Resolved {
        scenarios: selection.run,
        skipped: selection.skipped,
        seeds: plan.seeds.clone(),
        units: atoms.concat(),
        atoms,
    })
}
