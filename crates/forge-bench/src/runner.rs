//! The multi-seed runner: scenarios x seeds x strategies -> a [`ResultsFile`].

use crate::error::{BenchError, Result};
use crate::scenario::{Mode, Registry, RunContext, Scenario, StrategyOutcome};
use crate::schema::{
    Aggregate, ConvergenceCurve, ConvergenceSummary, MachineInfo, MeanStd, ResultsFile, RunInfo,
    RunRecord, ScenarioSummary, SourceCost, StrategyKind, SCHEMA_VERSION,
};
use crate::stats::mean_std;
use std::collections::BTreeMap;
use std::time::Instant;

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

/// Receives progress events (the xtask draws progress bars from them). All methods default to
/// doing nothing.
pub trait Observer {
    /// The run is starting with `total` strategy executions.
    fn start(&mut self, _total: usize) {}
    /// A scenario x seed is starting.
    fn trial(&mut self, _scenario: &str, _seed: u64) {}
    /// A strategy finished.
    fn strategy_done(&mut self, _scenario: &str, _seed: u64, _strategy: &str) {}
    /// The run finished.
    fn finish(&mut self) {}
}

/// An observer that ignores everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;
impl Observer for NoProgress {}

/// Tolerance (absolute, metric units) for "reached scratch quality" in the convergence view.
pub const CONVERGENCE_TOLERANCE: f64 = 0.005;

/// Runs a plan.
///
/// # Errors
/// [`BenchError::UnknownScenario`] for a bad selection, [`BenchError::InvalidConfig`] for no
/// seeds, [`BenchError::NonFinite`] if a strategy returns a non-finite quality, and any trial error.
pub fn run(
    registry: &Registry,
    plan: &RunPlan,
    ctx: &RunContext,
    observer: &mut dyn Observer,
) -> Result<ResultsFile> {
    if plan.seeds.is_empty() {
        return Err(BenchError::config("seeds", "at least one seed is required"));
    }
    let t0 = Instant::now();
    let selection = registry.select(plan.scenarios.as_deref(), plan.mode, ctx)?;
    let scenarios = selection.run;
    let total: usize = scenarios
        .iter()
        .map(|s| s.strategies().len())
        .sum::<usize>()
        * plan.seeds.len();
    observer.start(total);

    let mut records = Vec::new();
    let mut source_costs = Vec::new();
    let mut convergence = Vec::new();
    let mut gate = Vec::new();
    for sc in &scenarios {
        // Each scenario measures its trainings its own way (repeat short fits, or once).
        let ctx = &ctx.with_policy(sc.measure_policy());
        for &seed in &plan.seeds {
            observer.trial(sc.name(), seed);
            let mut trial = sc.trial(seed, ctx)?;
            let source = trial.source_cost();
            if let Some(m) = &source {
                source_costs.push(SourceCost {
                    scenario: sc.name().to_string(),
                    seed,
                    training: m.clone(),
                });
            }
            let mut seed_records = Vec::new();
            for spec in sc.strategies() {
                let out = trial.run(&spec.name, ctx)?;
                check_outcome(&out, sc.name(), &spec.name)?;
                let src_co2 = match (&source, spec.uses_source) {
                    (Some(m), true) => m.co2_kg,
                    _ => 0.0,
                };
                seed_records.push(RunRecord {
                    scenario: sc.name().to_string(),
                    strategy: spec.name.clone(),
                    kind: spec.kind,
                    seed,
                    metric: sc.metric(),
                    quality: out.quality,
                    extra_metrics: out.extra_metrics,
                    trainable_params: out.trainable_params,
                    gradient_steps: out.gradient_steps,
                    epochs: out.epochs,
                    co2_kg_with_source: out.training.co2_kg + src_co2,
                    training: out.training,
                    co2_reduction_pct: 0.0,
                    co2_reduction_with_source_pct: 0.0,
                    step_reduction_pct: 0.0,
                    quality_delta: 0.0,
                    note: out.note,
                    config: out.config,
                });
                observer.strategy_done(sc.name(), seed, &spec.name);
            }
            fill_relative(&mut seed_records);
            records.extend(seed_records);
            convergence.extend(trial.convergence(ctx)?);
            if let Some(g) = trial.gate(ctx)? {
                gate.push(g);
            }
        }
    }
    observer.finish();

    let aggregates = aggregate(&records);
    let summaries = summarize(&scenarios, &aggregates, &gate);
    let convergence_summaries = summarize_convergence(&convergence, &summaries);
    Ok(ResultsFile {
        schema_version: SCHEMA_VERSION,
        generator: format!("forge-bench {}", env!("CARGO_PKG_VERSION")),
        created_unix_s: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        run: RunInfo {
            mode: plan.mode.name().to_string(),
            seeds: plan.seeds.clone(),
            scenarios: scenarios.iter().map(|s| s.name().to_string()).collect(),
            min_measure_s: ctx.min_measure_s,
            total_wall_s: t0.elapsed().as_secs_f64(),
            skipped: selection.skipped,
        },
        machine: MachineInfo::detect(),
        carbon: ctx.meter.settings(),
        records,
        aggregates,
        scenarios: summaries,
        source_costs,
        convergence,
        convergence_summaries,
        gate,
    })
}

/// Rejects a strategy outcome with a non-finite quality, metric or measurement, naming it.
fn check_outcome(out: &StrategyOutcome, scenario: &str, strategy: &str) -> Result<()> {
    let m = &out.training;
    let fields = [
        ("quality", out.quality),
        ("training.wall_time_s", m.wall_time_s),
        ("training.cpu_kwh", m.cpu_kwh),
        ("training.ram_kwh", m.ram_kwh),
        ("training.gpu_kwh", m.gpu_kwh),
        ("training.total_kwh", m.total_kwh),
        ("training.co2_kg", m.co2_kg),
    ];
    let extra = out
        .extra_metrics
        .iter()
        .map(|(k, &v)| (format!("extra_metrics.{k}"), v));
    for (what, value) in fields
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .chain(extra)
    {
        if !value.is_finite() {
            return Err(BenchError::NonFinite {
                what,
                value,
                scenario: scenario.into(),
                strategy: strategy.into(),
            });
        }
    }
    Ok(())
}

/// Percentage reduction of `x` relative to `base` (positive = `x` is smaller). 0 if `base` is 0.
pub fn reduction_pct(base: f64, x: f64) -> f64 {
    if base > 0.0 {
        100.0 * (1.0 - x / base)
    } else {
        0.0
    }
}

/// Fills the baseline-relative fields (deltas and reductions against the baseline) of ONE
/// scenario x seed's records.
pub fn fill_relative(records: &mut [RunRecord]) {
    let Some(base) = records
        .iter()
        .find(|r| r.kind == StrategyKind::Baseline)
        .cloned()
    else {
        return;
    };
    for r in records.iter_mut() {
        r.quality_delta = r.quality - base.quality;
        r.co2_reduction_pct = reduction_pct(base.training.co2_kg, r.training.co2_kg);
        r.co2_reduction_with_source_pct =
            reduction_pct(base.co2_kg_with_source, r.co2_kg_with_source);
        r.step_reduction_pct = reduction_pct(base.gradient_steps as f64, r.gradient_steps as f64);
    }
}

/// Aggregates records over seeds, per scenario x strategy, keeping first-seen order.
pub fn aggregate(records: &[RunRecord]) -> Vec<Aggregate> {
    let mut order: Vec<(String, String)> = Vec::new();
    let mut groups: BTreeMap<(String, String), Vec<&RunRecord>> = BTreeMap::new();
    for r in records {
        let key = (r.scenario.clone(), r.strategy.clone());
        if !groups.contains_key(&key) {
            order.push(key.clone());
        }
        groups.entry(key).or_default().push(r);
    }
    order
        .into_iter()
        .map(|key| {
            let g = &groups[&key];
            let f = |sel: &dyn Fn(&RunRecord) -> f64| -> MeanStd {
                mean_std(&g.iter().map(|r| sel(r)).collect::<Vec<_>>())
            };
            Aggregate {
                scenario: key.0.clone(),
                strategy: key.1.clone(),
                kind: g[0].kind,
                metric: g[0].metric,
                n_seeds: g.len(),
                quality: f(&|r| r.quality),
                quality_delta: f(&|r| r.quality_delta),
                trainable_params: f(&|r| r.trainable_params as f64).mean,
                gradient_steps: f(&|r| r.gradient_steps as f64),
                wall_time_s: f(&|r| r.training.wall_time_s),
                energy_kwh: f(&|r| r.training.total_kwh),
                co2_kg: f(&|r| r.training.co2_kg),
                co2_kg_with_source: f(&|r| r.co2_kg_with_source),
                co2_reduction_pct: f(&|r| r.co2_reduction_pct),
                co2_reduction_with_source_pct: f(&|r| r.co2_reduction_with_source_pct),
                step_reduction_pct: f(&|r| r.step_reduction_pct),
            }
        })
        .collect()
}

fn summarize(
    scenarios: &[&dyn Scenario],
    aggregates: &[Aggregate],
    gate: &[crate::schema::GateRecord],
) -> Vec<ScenarioSummary> {
    scenarios
        .iter()
        .filter_map(|sc| {
            let find = |name: &str| {
                aggregates
                    .iter()
                    .find(|a| a.scenario == sc.name() && a.strategy == name)
            };
            let base = aggregates
                .iter()
                .find(|a| a.scenario == sc.name() && a.kind == StrategyKind::Baseline)?;
            let tr = find(sc.headline_strategy())?;
            let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
            for g in gate.iter().filter(|g| g.scenario == sc.name()) {
                *counts.entry(g.verdict.as_str()).or_default() += 1;
            }
            let gate_verdict = counts
                .into_iter()
                .max_by_key(|(_, c)| *c)
                .map(|(v, _)| v.to_string());
            let gate_subject = gate
                .iter()
                .find(|g| g.scenario == sc.name() && !g.subject.is_empty())
                .map(|g| g.subject.clone());
            Some(ScenarioSummary {
                scenario: sc.name().to_string(),
                description: sc.description().to_string(),
                metric: sc.metric(),
                baseline: base.strategy.clone(),
                transfer: tr.strategy.clone(),
                baseline_co2_kg: base.co2_kg,
                transfer_co2_kg: tr.co2_kg,
                co2_reduction_pct: tr.co2_reduction_pct,
                co2_reduction_with_source_pct: tr.co2_reduction_with_source_pct,
                baseline_quality: base.quality,
                transfer_quality: tr.quality,
                quality_delta: tr.quality_delta,
                gate_verdict,
                gate_subject,
                wording: sc.wording(),
                measure_policy: sc.measure_policy(),
            })
        })
        .collect()
}

/// First epoch `e` with `curve[e] >= target - tol`.
pub fn epochs_to_reach(curve: &[f64], target: f64, tol: f64) -> Option<u32> {
    curve
        .iter()
        .position(|&q| q >= target - tol)
        .map(|e| e as u32)
}

/// Compares, per scenario and seed, the convergence curve of the scenario's baseline with that
/// of its headline transfer (both named by the scenario's [`ScenarioSummary`]): epochs for the
/// baseline to come within [`CONVERGENCE_TOLERANCE`] of its own final quality, and for the
/// transfer to reach that same quality.
pub fn summarize_convergence(
    curves: &[ConvergenceCurve],
    summaries: &[ScenarioSummary],
) -> Vec<ConvergenceSummary> {
    let mut out = Vec::new();
    for sum in summaries {
        let of = |strategy: &str| -> Vec<&ConvergenceCurve> {
            curves
                .iter()
                .filter(|c| c.scenario == sum.scenario && c.strategy == strategy)
                .collect()
        };
        let transfers = of(&sum.transfer);
        for b in of(&sum.baseline) {
            let Some(t) = transfers.iter().find(|t| t.seed == b.seed) else {
                continue;
            };
            let Some(&fin) = b.quality.last() else {
                continue;
            };
            out.push(ConvergenceSummary {
                scenario: sum.scenario.clone(),
                seed: b.seed,
                baseline: sum.baseline.clone(),
                transfer: sum.transfer.clone(),
                baseline_final: fin,
                baseline_epochs: epochs_to_reach(&b.quality, fin, CONVERGENCE_TOLERANCE),
                transfer_epochs: epochs_to_reach(&t.quality, fin, CONVERGENCE_TOLERANCE),
                tolerance: CONVERGENCE_TOLERANCE,
            });
        }
    }
    out
}
