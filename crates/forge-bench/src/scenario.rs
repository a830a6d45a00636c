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
    CarbonSettings, Config, ConvergenceCurve, GateRecord, MeasurePolicy, Measurement, Metric,
    SkippedScenario, StrategyKind, Wording,
};
use candle_core::Device;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
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

/// Upper bound on repetitions inside one measurement window (see [`RunContext::measure`]).
pub const DEFAULT_MAX_REPEATS: u32 = 200;

/// Everything a trial needs besides its own state. Cheap to clone (the meter is shared).
///
/// The runner hands each scenario a copy whose [`policy`](RunContext::policy) is the scenario's
/// own [`Scenario::measure_policy`].
#[derive(Clone)]
pub struct RunContext {
    /// Run size.
    pub mode: Mode,
    /// Folder with the tabular CSVs.
    pub data_dir: PathBuf,
    /// Folder with the text classification sets (SST-2, AG News), if one was given or found.
    pub text_data_dir: Option<PathBuf>,
    /// The resolved local folder of the transformer model (config.json, model.safetensors,
    /// tokenizer.json), if one was given or found.
    pub model_dir: Option<PathBuf>,
    /// How the model was asked for (a Hub id or a path), for the tables and the `config` map.
    pub model_id: Option<String>,
    /// The device tensors are placed on.
    pub device: Device,
    /// How [`RunContext::measure`] measures (set per scenario by the runner).
    pub policy: MeasurePolicy,
    /// With [`MeasurePolicy::Repeat`], short fits are repeated until one measurement window
    /// lasts at least this long; every reported number is per single fit. 0 disables it.
    pub min_measure_s: f64,
    /// Upper bound on repetitions per window.
    pub max_repeats: u32,
    /// The energy meter.
    pub meter: Arc<dyn Meter>,
}

impl std::fmt::Debug for RunContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunContext")
            .field("mode", &self.mode)
            .field("data_dir", &self.data_dir)
            .field("text_data_dir", &self.text_data_dir)
            .field("model_dir", &self.model_dir)
            .field("device", &self.device)
            .field("policy", &self.policy)
            .field("min_measure_s", &self.min_measure_s)
            .finish_non_exhaustive()
    }
}

impl RunContext {
    /// A context for `mode` with `meter`: the tabular data in [`crate::default_data_dir`], no
    /// model or text data, CPU, [`MeasurePolicy::Once`], the mode's default window and
    /// [`DEFAULT_MAX_REPEATS`].
    pub fn new(mode: Mode, meter: Arc<dyn Meter>) -> Self {
        Self {
            mode,
            data_dir: crate::default_data_dir(),
            text_data_dir: None,
            model_dir: None,
            model_id: None,
            device: Device::Cpu,
            policy: MeasurePolicy::Once,
            min_measure_s: mode.default_min_measure_s(),
            max_repeats: DEFAULT_MAX_REPEATS,
            meter,
        }
    }

    /// A copy measuring with `policy`.
    pub fn with_policy(&self, policy: MeasurePolicy) -> Self {
        Self {
            policy,
            ..self.clone()
        }
    }

    /// Measures `f` (a training) and returns its last output with the per-execution cost.
    ///
    /// With [`MeasurePolicy::Once`] (or `min_measure_s == 0`), `f` runs exactly once inside the
    /// window. With [`MeasurePolicy::Repeat`], `f` is first run once unmeasured to time it (this
    /// also warms the caches), then run `r = clamp(ceil(min_measure_s / t1), 1, max_repeats)`
    /// times inside one window, and the window's wall time, energy and CO2 are divided by `r`.
    /// Millisecond fits are otherwise below the resolution of process CPU-time counters.
    ///
    /// # Errors
    /// Whatever `f` or the meter returns.
    pub fn measure<T>(&self, mut f: impl FnMut() -> Result<T>) -> Result<(T, Measurement)> {
        if self.policy == MeasurePolicy::Once || self.min_measure_s <= 0.0 {
            return self.measure_once(f);
        }
        let t0 = Instant::now();
        f()?;
        let t1 = t0.elapsed().as_secs_f64().max(1e-7);
        let r = (self.min_measure_s / t1).ceil();
        let repeats = r.clamp(1.0, f64::from(self.max_repeats.max(1))) as u32;
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

    /// Measures `f` exactly once (no calibration run, no repetition), whatever the policy: for
    /// work that must not run twice (e.g. a randomised gate).
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

    /// The missing resources among `req`, as a reason with what to set, or `None` if all are
    /// there.
    pub fn missing(&self, req: Requirements) -> Option<String> {
        let mut miss = Vec::new();
        if req.model && self.model_dir.is_none() {
            miss.push("a transformer model (--model / FORGE_MODEL: a local folder or a Hub id)");
        }
        if req.text_data && self.text_data_dir.is_none() {
            miss.push("the text data sets (--text-data-dir / FORGE_TEXT_DATA_DIR)");
        }
        if miss.is_empty() {
            None
        } else {
            Some(format!("needs {}", miss.join(" and ")))
        }
    }
}

/// External resources a scenario needs besides the shipped tabular data.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Requirements {
    /// A transformer model folder ([`RunContext::model_dir`]).
    pub model: bool,
    /// The text data sets ([`RunContext::text_data_dir`]).
    pub text_data: bool,
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
    /// What was trained and how (model id, rank, lr, ...), copied into the record.
    pub config: Config,
}

/// The per-seed state of a scenario.
///
/// A sharded sweep ([`crate::shard`]) may build the same trial in several processes, each
/// running only some of its strategies; only the process running the baseline records
/// [`Trial::source_cost`], [`Trial::convergence`] and [`Trial::gate`]. So, unless its scenario
/// asks for [`Scenario::whole_trials`], a strategy's outcome must not depend on which other
/// strategies ran before it in this trial, and the convergence curves and gate decision must
/// need nothing but the baseline having run (recompute what else they need).
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

    /// The transfer gate's decision for this seed, if the scenario runs it. The record's
    /// `subject` says what the gate judged.
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
    /// How its trainings are measured. The default, [`MeasurePolicy::Once`], suits anything
    /// that trains for more than a fraction of a second.
    fn measure_policy(&self) -> MeasurePolicy {
        MeasurePolicy::Once
    }
    /// Whether a sharded sweep must run all strategies of one of its trials in one process:
    /// `true` for a scenario whose strategies or gate use each other's results (e.g. a gate
    /// judged against the outcomes of several strategies), or whose set-up is too costly to
    /// repeat per shard. The default, `false`, lets shards split a trial by strategy.
    fn whole_trials(&self) -> bool {
        false
    }
    /// Resources it needs besides the tabular data (a model, text data). Scenarios whose
    /// resources are missing are skipped from the default selection, with the reason.
    fn requires(&self) -> Requirements {
        Requirements::default()
    }
    /// Its words for the baseline, the headline transfer and the protocol. The default is
    /// built from the strategies' names and descriptions.
    fn wording(&self) -> Wording {
        let specs = self.strategies();
        let base = specs.iter().find(|s| s.kind == StrategyKind::Baseline);
        let head = specs.iter().find(|s| s.name == self.headline_strategy());
        let (bn, bd) = base
            .map(|s| (s.name.clone(), s.description.clone()))
            .unwrap_or_default();
        let (tn, td) = head
            .map(|s| (s.name.clone(), s.description.clone()))
            .unwrap_or_default();
        Wording {
            protocol: format!("Baseline {bn}: {bd}. Transfer {tn}: {td}."),
            baseline: bn,
            transfer: tn,
            curve_x: "epochs".into(),
        }
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
    /// [`Scenario::in_quick`]) whose [`Scenario::requires`] are met by `ctx`; the others are
    /// returned as skipped, with the reason. Scenarios named explicitly must have their
    /// resources.
    ///
    /// # Errors
    /// [`BenchError::UnknownScenario`]; [`BenchError::MissingResource`] for a named scenario
    /// whose resources are missing.
    pub fn select(
        &self,
        names: Option<&[String]>,
        mode: Mode,
        ctx: &RunContext,
    ) -> Result<Selection<'_>> {
        let mut sel = Selection::default();
        match names {
            None => {
                for s in self.scenarios.iter().map(|b| b.as_ref()) {
                    if mode == Mode::Quick && !s.in_quick() {
                        continue;
                    }
                    match ctx.missing(s.requires()) {
                        None => sel.run.push(s),
                        Some(reason) => sel.skipped.push(SkippedScenario {
                            scenario: s.name().to_string(),
                            reason,
                        }),
                    }
                }
            }
            Some(names) => {
                for n in names {
                    let s = self.get(n).ok_or_else(|| BenchError::UnknownScenario {
                        name: n.clone(),
                        known: self.names().join(", "),
                    })?;
                    if let Some(reason) = ctx.missing(s.requires()) {
                        return Err(BenchError::MissingResource {
                            scenario: n.clone(),
                            reason,
                        });
                    }
                    sel.run.push(s);
                }
            }
        }
        Ok(sel)
    }

    /// Whether any scenario of the default selection of `mode` needs `what`.
    pub fn any_requires(&self, mode: Mode, what: impl Fn(Requirements) -> bool) -> bool {
        self.scenarios
            .iter()
            .filter(|s| mode != Mode::Quick || s.in_quick())
            .any(|s| what(s.requires()))
    }
}

/// The scenarios a plan runs, and those left out.
#[derive(Default)]
pub struct Selection<'a> {
    /// To run, in registry order (or the order asked for).
    pub run: Vec<&'a dyn Scenario>,
    /// Left out of the default selection for missing resources.
    pub skipped: Vec<SkippedScenario>,
}

impl std::fmt::Debug for Selection<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Selection")
            .field(
                "run",
                &self.run.iter().map(|s| s.name()).collect::<Vec<_>>(),
            )
            .field("skipped", &self.skipped)
            .finish()
    }
}
