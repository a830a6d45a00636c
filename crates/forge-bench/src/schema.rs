//! The versioned results schema: what `cargo xtask demo --save-json` writes.
//!
//! One [`RunRecord`] per scenario x strategy x seed, [`Aggregate`]s (mean +- std over seeds) per
//! scenario x strategy, one [`ScenarioSummary`] per scenario (the headline table), convergence
//! curves, and the transfer gate's decisions. The field-by-field description lives in
//! `docs/results-schema.md`; bump [`SCHEMA_VERSION`] on any change, and keep reading the older
//! versions listed in [`READABLE_SCHEMA_VERSIONS`] (new fields carry `#[serde(default)]`, renamed
//! ones a `#[serde(alias)]`).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The version of the results schema written by this build.
///
/// - 1: the first version.
/// - 2: adds `config` per record, `wording` and `measure_policy` per scenario summary, `subject`
///   per gate decision, `skipped` per run, and names the convergence summary's fields after the
///   scenario's baseline (`baseline_final`, `baseline_epochs`; version 1's `scratch_*` still read).
/// - 3: adds the optional `sweep` section (shards, per-task and per-node carbon totals), present
///   only in a results file aggregated from shards (`cargo xtask aggregate`).
pub const SCHEMA_VERSION: u32 = 3;

/// Schema versions this build reads (older files get defaults for the fields added since).
pub const READABLE_SCHEMA_VERSIONS: [u32; 3] = [1, 2, 3];

/// One value of a record's `config` map (model id, rank, learning rate, ...).
///
/// Serialised untagged: a JSON string, integer, number or boolean. Floats are kept as `f64`
/// (not `serde_json::Value`, which would turn NaN into `null` silently), so results validation
/// can name a non-finite configuration value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ConfigValue {
    /// A boolean flag.
    Bool(bool),
    /// An integer (rank, batch size, epochs).
    Int(i64),
    /// A real number (learning rate, penalty).
    Float(f64),
    /// Text (model id, target modules).
    Str(String),
}

impl From<&str> for ConfigValue {
    fn from(v: &str) -> Self {
        ConfigValue::Str(v.to_string())
    }
}
impl From<String> for ConfigValue {
    fn from(v: String) -> Self {
        ConfigValue::Str(v)
    }
}
impl From<f64> for ConfigValue {
    fn from(v: f64) -> Self {
        ConfigValue::Float(v)
    }
}
impl From<i64> for ConfigValue {
    fn from(v: i64) -> Self {
        ConfigValue::Int(v)
    }
}
impl From<usize> for ConfigValue {
    fn from(v: usize) -> Self {
        ConfigValue::Int(i64::try_from(v).unwrap_or(i64::MAX))
    }
}
impl From<bool> for ConfigValue {
    fn from(v: bool) -> Self {
        ConfigValue::Bool(v)
    }
}

impl std::fmt::Display for ConfigValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigValue::Bool(v) => write!(f, "{v}"),
            ConfigValue::Int(v) => write!(f, "{v}"),
            ConfigValue::Float(v) => write!(f, "{v}"),
            ConfigValue::Str(v) => f.write_str(v),
        }
    }
}

/// A record's configuration: what was trained and how (`model`, `rank`, `lr`, `epochs`, ...).
pub type Config = BTreeMap<String, ConfigValue>;

/// How a scenario's trainings are measured (see `RunContext::measure`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MeasurePolicy {
    /// Run once unmeasured to time it, then repeat inside one window of at least the run's
    /// `min_measure_s` and divide: for millisecond fits below the counters' resolution.
    Repeat,
    /// Measure exactly one execution: for trainings long enough to measure on their own (and
    /// that must not run twice).
    #[default]
    Once,
}

/// The words a scenario uses for its own baseline and transfer, so that tables, figures and
/// footers never speak of one scenario's method in generic code.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Wording {
    /// Short label of the baseline (e.g. `SGD from scratch`, `full fine-tuning`).
    pub baseline: String,
    /// Short label of the headline transfer (e.g. `warm-start SGD`, `LoRA r8`).
    pub transfer: String,
    /// What the convergence curves' x axis counts (e.g. `SGD epochs`, `training epochs`).
    pub curve_x: String,
    /// One or two sentences on the protocol: what the baseline is and how the transfer is
    /// compared with it (printed under the tables and in the README).
    pub protocol: String,
}

/// Which quality metric a scenario reports (higher is better for both).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Coefficient of determination on held-out target data.
    R2,
    /// Classification accuracy on held-out target data.
    Accuracy,
    /// Centered kernel alignment (Kornblith et al. 2019) between two models' representations of
    /// the same sentences, in [0, 1] (1 = the same up to rotation and scale).
    Cka,
}

impl Metric {
    /// Short display name (`"R2"`, `"acc"`).
    pub fn short(self) -> &'static str {
        match self {
            Metric::R2 => "R2",
            Metric::Accuracy => "acc",
            Metric::Cka => "CKA",
        }
    }
}

/// The role a strategy plays in a scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StrategyKind {
    /// The from-scratch baseline every saving is measured against.
    Baseline,
    /// A non-transfer reference point (target-only, source-only).
    Reference,
    /// A transfer method.
    Transfer,
}

/// Energy and emissions of one measured piece of work.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Measurement {
    /// Wall time of ONE execution, seconds.
    pub wall_time_s: f64,
    /// CPU energy of one execution, kWh.
    pub cpu_kwh: f64,
    /// RAM energy of one execution, kWh.
    pub ram_kwh: f64,
    /// GPU energy of one execution, kWh.
    pub gpu_kwh: f64,
    /// Total energy of one execution including PUE, kWh.
    pub total_kwh: f64,
    /// CO2-equivalent of one execution, kg.
    pub co2_kg: f64,
    /// How the energy was obtained, per component (e.g. `{"cpu": "tdp-estimate", "ram": "model"}`).
    pub energy_method: BTreeMap<String, String>,
    /// How many executions the measurement window contained; every number above is divided by it.
    pub repeats: u32,
}

/// One scenario x strategy x seed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// Scenario name.
    pub scenario: String,
    /// Strategy name.
    pub strategy: String,
    /// The strategy's role.
    pub kind: StrategyKind,
    /// The seed (data split, subsample and SGD order all derive from it).
    pub seed: u64,
    /// The metric `quality` is measured in.
    pub metric: Metric,
    /// Quality on the held-out target test set.
    pub quality: f64,
    /// Further metrics (e.g. `rmse`, `log_loss`).
    pub extra_metrics: BTreeMap<String, f64>,
    /// Number of parameters trained by this strategy.
    pub trainable_params: u64,
    /// Gradient steps (mini-batch updates) taken; 0 for closed-form fits.
    pub gradient_steps: u64,
    /// Epochs over the target training data, where the strategy is iterative.
    pub epochs: Option<u32>,
    /// Cost of this strategy's training (the source model's training excluded).
    pub training: Measurement,
    /// CO2 including the full cost of training the source model (worst case: the source was
    /// trained for this task alone); equals `training.co2_kg` for strategies that use no source model.
    pub co2_kg_with_source: f64,
    /// CO2 reduction against the same seed's baseline, percent (source cost excluded).
    pub co2_reduction_pct: f64,
    /// CO2 reduction against the same seed's baseline, percent, source cost included.
    pub co2_reduction_with_source_pct: f64,
    /// Gradient-step reduction against the baseline, percent (a deterministic proxy for energy).
    pub step_reduction_pct: f64,
    /// `quality - baseline quality` for the same seed.
    pub quality_delta: f64,
    /// Free-form note (e.g. "gate: block -> fell back to target-only").
    pub note: Option<String>,
    /// What was trained and how: model id, rank, learning rate, epochs, ... (empty in version 1).
    #[serde(default)]
    pub config: Config,
}

/// Mean and sample standard deviation over seeds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct MeanStd {
    /// Mean.
    pub mean: f64,
    /// Sample standard deviation (n - 1); 0 for a single seed.
    pub std: f64,
}

/// Aggregate over seeds of one scenario x strategy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Aggregate {
    /// Scenario name.
    pub scenario: String,
    /// Strategy name.
    pub strategy: String,
    /// The strategy's role.
    pub kind: StrategyKind,
    /// Metric of `quality`.
    pub metric: Metric,
    /// Number of seeds aggregated.
    pub n_seeds: usize,
    /// Quality.
    pub quality: MeanStd,
    /// Quality minus baseline quality.
    pub quality_delta: MeanStd,
    /// Trainable parameters (mean).
    pub trainable_params: f64,
    /// Gradient steps.
    pub gradient_steps: MeanStd,
    /// Wall time, seconds.
    pub wall_time_s: MeanStd,
    /// Total energy, kWh.
    pub energy_kwh: MeanStd,
    /// CO2, kg (source excluded).
    pub co2_kg: MeanStd,
    /// CO2, kg (source included).
    pub co2_kg_with_source: MeanStd,
    /// CO2 reduction vs baseline, percent (source excluded).
    pub co2_reduction_pct: MeanStd,
    /// CO2 reduction vs baseline, percent (source included).
    pub co2_reduction_with_source_pct: MeanStd,
    /// Gradient-step reduction vs baseline, percent.
    pub step_reduction_pct: MeanStd,
}

/// One row of the headline table: baseline vs the scenario's headline transfer strategy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScenarioSummary {
    /// Scenario name.
    pub scenario: String,
    /// One-line description of the domain shift.
    pub description: String,
    /// Metric.
    pub metric: Metric,
    /// The baseline strategy.
    pub baseline: String,
    /// The headline transfer strategy.
    pub transfer: String,
    /// Baseline CO2, kg.
    pub baseline_co2_kg: MeanStd,
    /// Transfer CO2, kg (source excluded).
    pub transfer_co2_kg: MeanStd,
    /// CO2 reduction, percent (source excluded).
    pub co2_reduction_pct: MeanStd,
    /// CO2 reduction, percent (source included).
    pub co2_reduction_with_source_pct: MeanStd,
    /// Baseline quality.
    pub baseline_quality: MeanStd,
    /// Transfer quality.
    pub transfer_quality: MeanStd,
    /// Transfer minus baseline quality.
    pub quality_delta: MeanStd,
    /// The most common gate verdict over seeds, if the scenario ran the gate.
    pub gate_verdict: Option<String>,
    /// What the gate judged (e.g. `regularized transfer (lam = 10) vs target-only ridge`), which
    /// need not be the headline transfer.
    #[serde(default)]
    pub gate_subject: Option<String>,
    /// The scenario's own words for its baseline, transfer and protocol.
    #[serde(default)]
    pub wording: Wording,
    /// How its trainings were measured.
    #[serde(default)]
    pub measure_policy: MeasurePolicy,
}

/// Quality per epoch of one iterative strategy (the convergence view).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConvergenceCurve {
    /// Scenario name.
    pub scenario: String,
    /// Strategy name.
    pub strategy: String,
    /// Seed.
    pub seed: u64,
    /// Metric.
    pub metric: Metric,
    /// `quality[e]` = held-out quality after `e` epochs (`quality[0]` is the initialisation).
    pub quality: Vec<f64>,
}

/// Summary of a baseline-vs-headline-transfer convergence comparison for one seed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConvergenceSummary {
    /// Scenario name.
    pub scenario: String,
    /// Seed.
    pub seed: u64,
    /// The baseline strategy whose curve is the reference (version 1: always `scratch-sgd`).
    #[serde(default)]
    pub baseline: String,
    /// The headline transfer strategy compared with it.
    #[serde(default)]
    pub transfer: String,
    /// Final quality of the baseline run.
    #[serde(alias = "scratch_final")]
    pub baseline_final: f64,
    /// Epochs the baseline run needed to come within the tolerance of its own final quality.
    #[serde(alias = "scratch_epochs")]
    pub baseline_epochs: Option<u32>,
    /// Epochs the transfer run needed to come within the tolerance of the baseline's final quality.
    pub transfer_epochs: Option<u32>,
    /// The tolerance used (absolute, in metric units).
    pub tolerance: f64,
}

/// One statistic of the transfer gate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateStatistic {
    /// Name (e.g. `mmd2`, `pad`, `ks_shifted_fraction`, `validation_effect`).
    pub name: String,
    /// Value.
    pub value: f64,
    /// The threshold it is compared against, if any.
    pub threshold: Option<f64>,
    /// Whether it raised a flag.
    pub flagged: bool,
}

/// The transfer gate's decision for one scenario and seed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateRecord {
    /// Scenario name.
    pub scenario: String,
    /// Seed.
    pub seed: u64,
    /// `transfer`, `transfer_with_caution` or `block`.
    pub verdict: String,
    /// The statistics behind it.
    pub statistics: Vec<GateStatistic>,
    /// Human-readable reasons.
    pub reasons: Vec<String>,
    /// Whether transfer actually hurt: the transfer the gate validated scored worse than
    /// target-only on the held-out test set by more than `HURT_MARGIN` (0.01 R2 or log-loss).
    pub transfer_hurt: Option<bool>,
    /// What the gate judged, in words (empty in version 1 files).
    #[serde(default)]
    pub subject: String,
}

/// The machine the results come from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MachineInfo {
    /// Operating system.
    pub os: String,
    /// CPU architecture.
    pub arch: String,
    /// CPU model name.
    pub cpu_model: String,
    /// Logical CPUs available to the process.
    pub logical_cpus: usize,
    /// GPU model, if one was used.
    pub gpu_model: Option<String>,
}

/// How energy was turned into CO2 for this run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CarbonSettings {
    /// Energy method(s) used, e.g. `tdp-estimate` or `rapl`.
    pub energy_method: String,
    /// Grid carbon intensity, g CO2e per kWh.
    pub carbon_intensity_g_per_kwh: f64,
    /// Power usage effectiveness applied.
    pub pue: f64,
    /// Region / country code of the intensity.
    pub region: String,
    /// Free-form explanation shown next to the tables.
    pub note: String,
}

/// How the run was configured.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    /// `quick`, `standard` or `full`.
    pub mode: String,
    /// Seeds used.
    pub seeds: Vec<u64>,
    /// Scenarios run.
    pub scenarios: Vec<String>,
    /// Minimum length of a measurement window, seconds (short fits are repeated to fill it).
    pub min_measure_s: f64,
    /// Total wall time of the run, seconds.
    pub total_wall_s: f64,
    /// Scenarios of the default selection that were not run, and why (e.g. no model).
    #[serde(default)]
    pub skipped: Vec<SkippedScenario>,
}

/// A scenario left out of a run, with the reason and what to set to run it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SkippedScenario {
    /// Scenario name.
    pub scenario: String,
    /// Why (e.g. `no model: set FORGE_MODEL or --model`).
    pub reason: String,
}

/// A complete results file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultsFile {
    /// Always [`SCHEMA_VERSION`] when written by this build.
    pub schema_version: u32,
    /// `forge-bench <version>`.
    pub generator: String,
    /// Seconds since the Unix epoch when the run finished.
    pub created_unix_s: u64,
    /// Run configuration.
    pub run: RunInfo,
    /// Machine.
    pub machine: MachineInfo,
    /// Carbon accounting.
    pub carbon: CarbonSettings,
    /// One record per scenario x strategy x seed.
    pub records: Vec<RunRecord>,
    /// Mean +- std per scenario x strategy.
    pub aggregates: Vec<Aggregate>,
    /// Headline row per scenario.
    pub scenarios: Vec<ScenarioSummary>,
    /// Source-model training cost per scenario and seed (the shared, sunk cost).
    pub source_costs: Vec<SourceCost>,
    /// Convergence curves.
    pub convergence: Vec<ConvergenceCurve>,
    /// Convergence summaries ("transfer reaches scratch quality in K epochs vs M").
    pub convergence_summaries: Vec<ConvergenceSummary>,
    /// Transfer gate decisions.
    pub gate: Vec<GateRecord>,
    /// v3: how a sharded sweep ran (shards, hosts, per-task and per-node carbon totals); absent
    /// for a run in one process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sweep: Option<SweepInfo>,
}

/// How a sharded sweep ran: one entry per shard (task), carbon summed per node and overall.
///
/// Every task measures its own process (forge-carbon's `process` tracking mode), so the task
/// totals are disjoint and add up, also when tasks share a node. A whole-machine measurement
/// (`machine` mode) is only accepted when no two tasks overlapped in time on one node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SweepInfo {
    /// The code version every shard was produced by (git commit, or the crate version).
    pub code_version: String,
    /// Number of shards the units were split into.
    pub shard_count: usize,
    /// forge-carbon tracking mode of the task measurements (`process` or `machine`).
    pub tracking_mode: String,
    /// Trials (scenario x seed) that more than one shard had to build: their set-up (e.g. the
    /// source fit) is in the task totals of each, but in `source_costs` once.
    pub extra_trials: usize,
    /// One entry per shard, in shard order.
    pub shards: Vec<ShardSummary>,
    /// Task totals summed per host, in order of first appearance.
    pub nodes: Vec<NodeTotal>,
    /// Task totals summed over every shard (each process counted once).
    pub total: Measurement,
    /// The accounting rule, in words.
    pub rule: String,
}

/// One shard of a sweep, as recorded in [`SweepInfo`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ShardSummary {
    /// 1-based shard index.
    pub index: usize,
    /// Host the shard ran on.
    pub host: String,
    /// Work units it ran.
    pub units: usize,
    /// Start, seconds since the Unix epoch.
    pub started_unix_s: f64,
    /// End, seconds since the Unix epoch.
    pub finished_unix_s: f64,
    /// Slurm job and array task (`<job>_<task>`), when it ran under Slurm.
    pub slurm_job: Option<String>,
    /// The whole task's own measurement (process start-up excluded), if it was measured.
    pub task: Option<Measurement>,
}

/// Task totals of one host.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeTotal {
    /// Host name.
    pub host: String,
    /// Shards that ran there.
    pub tasks: usize,
    /// Their measurements summed.
    pub total: Measurement,
}

/// The cost of training a scenario's source model for one seed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceCost {
    /// Scenario name.
    pub scenario: String,
    /// Seed.
    pub seed: u64,
    /// Measurement of the source fit.
    pub training: Measurement,
}
