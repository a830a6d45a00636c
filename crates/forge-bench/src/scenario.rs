//! The scenario abstraction: what a benchmark is, independent of how it is run.
//!
//! A [`Scenario`] names its strategies and, for each seed, builds a [`Trial`]: the per-seed state
//! (loaded data, a trained source model) shared by all strategies of that seed. The runner asks
//! the trial to run each strategy; the trial measures the TRAINING of that strategy with
//! [`RunContext::measure`] and returns a [`StrategyOutcome`]. New scenarios (e.g. transformer
//! fine-tuning, LoRA, EWC, merging) plug in by implementing these two traits and registering in a
//! [`Registry`]; the runner, schema, tables, figures and gates need no change.

use crate::error::{BenchError, Result};
use crate::schema::{
    CarbonSettings, ConvergenceCurve, GateRecord, Measurement, Metric, StrategyKind,
};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

/// How big a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Small data sizes, few seeds: seconds.
    Quick,
    /// The default.
    Standard,
    /// Full data sizes and more seeds.
    Full,
}

impl Mode {
    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Quick => "quick",
            Mode::Standard => "standard",
            Mode::Full => "full",
        }
    }

    /// Default number of seeds.
    pub fn default_seeds(self) -> usize {
        match self {
            Mode::Quick => 2,
            Mode::Standard => 3,
            Mode::Full => 10,
        }
    }

    /// Default minimum measurement window in seconds.
    pub fn default_min_measure_s(self) -> f64 {
        match self {
            Mode::Quick => 0.02,
            Mode::Standard => 0.05,
            Mode::Full => 0.2,
        }
    }
}

/// Measures the energy and CO2 of a closure. The production meter wraps forge-carbon's tracker;
/// tests use a deterministic fake.
pub trait Meter: Send + Sync {
    /// Runs `f` once inside a measurement window and returns the window's totals
    /// (`repeats` = 1; the caller divides).
    ///
    /// # Errors
    /// Whatever `f` returns, or a tracker error.
    fn measure(&self, f: &mut dyn FnMut() -> Result<()>) -> Result<Measurement>;

    /// How this meter turns energy into CO2 (recorded in the results file).
    fn settings(&self) -> CarbonSettings;
}

/// Everything a trial needs besides its own state.
pub struct RunContext {
    /// Run size.
    pub mode: Mode,
    /// Folder with the tabular CSVs.
    pub data_dir: PathBuf,
    /// Short fits are repeated until one measurement window lasts at least this long; every
    /// reported number is per single fit. 0 disables the repetition (for long trainings).
    pub min_measure_s: f64,
    /// Upper bound on repetitions per window.
    pub max_repeats: u32,
    /// The energy meter.
    pub meter: Box<dyn Meter>,
}

impl std::fmt::Debug for RunContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunContext")
            .field("mode", &self.mode)
            .field("data_dir", &self.data_dir)
            .field("min_measure_s", &self.min_measure_s)
            .finish_non_exhaustive()
    }
}

impl RunContext {
    /// Measures `f` (a training) and returns its last output with the per-execution cost.
    ///
    /// If `min_measure_s > 0`, `f` is first run once unmeasured to time it (this also warms the
    /// caches), then run `r = clamp(ceil(min_measure_s / t1), 1, max_repeats)` times inside one
    /// window, and the window's wall time, energy and CO2 are divided by `r`. Millisecond fits
    /// are otherwise below the resolution of process CPU-time counters.
    ///
    /// # Errors
    /// Whatever `f` or the meter returns.
    pub fn measure<T>(&self, mut f: impl FnMut() -> Result<T>) -> Result<(T, Measurement)> {
        let mut repeats = 1u32;
        if self.min_measure_s > 0.0 {
            let t0 = Instant::now();
            f()?;
            let t1 = t0.elapsed().as_secs_f64().max(1e-7);
            let r = (self.min_measure_s / t1).ceil();
            repeats = r.clamp(1.0, f64::from(self.max_repeats.max(1))) as u32;
        }
        let mut out = None;
        let mut window = self.meter.measure(&mut || {
            for _ in 0..repeats {
                out = Some(f()?);
            }
            Ok(())
        })?;
        let r = f64::from(repeats);
        window.wall_time_s /= r;
        window.cpu_kwh /= r;
        window.ram_kwh /= r;
        window.gpu_kwh /= r;
        window.total_kwh /= r;
        window.co2_kg /= r;
        window.repeats = repeats;
        let out = out.ok_or_else(|| BenchError::config("measure", "closure produced no output"))?;
        Ok((out, window))
    }
}

impl RunContext {
    /// Measures `f` exactly once (no calibration run, no repetition): for work that is long
    /// enough to measure on its own, or that must not run twice (e.g. a randomised gate).
    ///
    /// # Errors
    /// Whatever `f` or the meter returns.
    pub fn measure_once<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<(T, Measurement)> {
        let mut f = Some(f);
        let mut out = None;
        let m = self.meter.measure(&mut || {
            if let Some(f) = f.take() {
                out = Some(f()?);
            }
            Ok(())
        })?;
        let out =
            out.ok_or_else(|| BenchError::config("measure_once", "closure produced no output"))?;
        Ok((out, Measurement { repeats: 1, ..m }))
    }
}

/// A strategy a scenario offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StrategySpec {
    /// Unique name within the scenario (kebab-case, e.g. `warm-start-sgd`).
    pub name: String,
    /// Its role.
    pub kind: StrategyKind,
    /// Whether it uses the source model (its cost then includes the source cost).
    pub uses_source: bool,
    /// One-line description.
    pub description: String,
}

impl StrategySpec {
    /// Convenience constructor.
    pub fn new(name: &str, kind: StrategyKind, uses_source: bool, description: &str) -> Self {
        Self {
            name: name.to_string(),
            kind,
            uses_source,
            description: description.to_string(),
        }
    }
}

/// What one strategy produced for one seed.
#[derive(Debug, Clone, PartialEq)]
pub struct StrategyOutcome {
    /// Quality on the held-out target test set, in the scenario's metric.
    pub quality: f64,
    /// Further metrics.
    pub extra_metrics: BTreeMap<String, f64>,
    /// Parameters trained.
    pub trainable_params: u64,
    /// Gradient steps taken (0 for closed forms).
    pub gradient_steps: u64,
    /// Epochs, for iterative strategies.
    pub epochs: Option<u32>,
    /// Measured cost of the training (from [`RunContext::measure`]).
    pub training: Measurement,
    /// Optional note.
    pub note: Option<String>,
}

/// The per-seed state of a scenario.
pub trait Trial {
    /// Trains and evaluates one strategy.
    ///
    /// # Errors
    /// [`BenchError::UnknownStrategy`] for a name not in [`Scenario::strategies`], or any
    /// data/fit/measurement error.
    fn run(&mut self, strategy: &str, ctx: &RunContext) -> Result<StrategyOutcome>;

    /// The measured cost of training the source model for this seed (shared by all
    /// source-using strategies), if there is one.
    fn source_cost(&self) -> Option<Measurement>;

    /// Quality-per-epoch curves for the convergence view (unmeasured; may retrain).
    ///
    /// # Errors
    /// Fit errors.
    fn convergence(&mut self, _ctx: &RunContext) -> Result<Vec<ConvergenceCurve>> {
        Ok(Vec::new())
    }

    /// The transfer gate's decision for this seed, if the scenario runs it.
    ///
    /// # Errors
    /// Gate errors.
    fn gate(&mut self, _ctx: &RunContext) -> Result<Option<GateRecord>> {
        Ok(None)
    }
}

/// A benchmark scenario.
pub trait Scenario: Send + Sync {
    /// Unique name (used by `--scenario`).
    fn name(&self) -> &str;
    /// One-line description of the domain shift.
    fn description(&self) -> &str;
    /// The metric it reports.
    fn metric(&self) -> Metric;
    /// Its strategies; exactly one must be [`StrategyKind::Baseline`].
    fn strategies(&self) -> Vec<StrategySpec>;
    /// The transfer strategy shown in the headline table.
    fn headline_strategy(&self) -> &str;
    /// Whether the scenario is part of the quick demo.
    fn in_quick(&self) -> bool {
        true
    }
    /// Builds the per-seed state (loads data, trains and measures the source model).
    ///
    /// # Errors
    /// Data or fit errors.
    fn trial(&self, seed: u64, ctx: &RunContext) -> Result<Box<dyn Trial>>;
}

/// An ordered collection of scenarios.
#[derive(Default)]
pub struct Registry {
    scenarios: Vec<Box<dyn Scenario>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a scenario.
    ///
    /// # Errors
    /// [`BenchError::InvalidConfig`] if the name is taken or the scenario does not have exactly
    /// one baseline strategy, or its headline strategy is not among its strategies.
    pub fn register(&mut self, scenario: Box<dyn Scenario>) -> Result<&mut Self> {
        let name = scenario.name().to_string();
        if self.get(&name).is_some() {
            return Err(BenchError::config(
                "scenario",
                format!("{name:?} registered twice"),
            ));
        }
        let specs = scenario.strategies();
        let baselines = specs
            .iter()
            .filter(|s| s.kind == StrategyKind::Baseline)
            .count();
        if baselines != 1 {
            return Err(BenchError::config(
                "scenario",
                format!("{name:?} has {baselines} baseline strategies; exactly 1 is required"),
            ));
        }
        if !specs.iter().any(|s| s.name == scenario.headline_strategy()) {
            return Err(BenchError::config(
                "scenario",
                format!(
                    "{name:?}: headline strategy {:?} is not one of its strategies",
                    scenario.headline_strategy()
                ),
            ));
        }
        self.scenarios.push(scenario);
        Ok(self)
    }

    /// Scenario names in registration order.
    pub fn names(&self) -> Vec<&str> {
        self.scenarios.iter().map(|s| s.name()).collect()
    }

    /// Looks a scenario up by name.
    pub fn get(&self, name: &str) -> Option<&dyn Scenario> {
        self.scenarios
            .iter()
            .find(|s| s.name() == name)
            .map(|b| b.as_ref())
    }

    /// Resolves a selection: `None` = every scenario (for [`Mode::Quick`], those with
    /// [`Scenario::in_quick`]).
    ///
    /// # Errors
    /// [`BenchError::UnknownScenario`].
    pub fn select(&self, names: Option<&[String]>, mode: Mode) -> Result<Vec<&dyn Scenario>> {
        match names {
            None => Ok(self
                .scenarios
                .iter()
                .filter(|s| mode != Mode::Quick || s.in_quick())
                .map(|b| b.as_ref())
                .collect()),
            Some(names) => names
                .iter()
                .map(|n| {
                    self.get(n).ok_or_else(|| BenchError::UnknownScenario {
                        name: n.clone(),
                        known: self.names().join(", "),
                    })
                })
                .collect(),
        }
    }
}
