//! The multi-seed runner: scenarios x seeds x strategies -> a [`ResultsFile`], as
//! [`resolve`] (plan -> work units, in [`crate::plan`]) + [`execute`] (some or all units -> raw
//! records) + [`finalize`] (raw records -> the results file).

use crate::error::{BenchError, Result};
use crate::scenario::{Registry, RunContext, Scenario, StrategyOutcome, StrategySpec};
use crate::schema::{
    Aggregate, ConvergenceCurve, ConvergenceSummary, GateRecord, MachineInfo, MeanStd, ResultsFile,
    RunInfo, RunRecord, ScenarioSummary, SourceCost, StrategyKind, SCHEMA_VERSION,
};
use crate::stats::mean_std;
use std::collections::BTreeMap;
use std::time::Instant;

pub use crate::plan::{atoms_of, resolve, units_of, Resolved, RunPlan, WorkUnit};

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

/// What executing some work units produced, before the cross-unit numbers (reductions against
/// the baseline, aggregates, summaries) are computed by [`finalize`].
///
/// Records carry zeros in their baseline-relative fields. A trial's own outputs (its source
/// cost, convergence curves and gate decision) are produced by whoever runs the trial's
/// BASELINE unit, so each is recorded exactly once however the units are split.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RawRun {
    /// One record per executed unit.
    pub records: Vec<RunRecord>,
    /// Source-model cost per scenario x seed (from the baseline unit's trial).
    pub source_costs: Vec<SourceCost>,
    /// Convergence curves (from the baseline unit's trial).
    pub convergence: Vec<ConvergenceCurve>,
    /// Gate decisions (from the baseline unit's trial).
    pub gate: Vec<GateRecord>,
    /// Trials (scenario x seed) built here without their baseline unit: their setup (e.g. a
    /// source fit) ran again for this subset of strategies and is not in `source_costs`.
    #[serde(default)]
    pub extra_trials: usize,
}

/// Executes the units of `resolved` that are in `only` (all of them with `None`), one trial
/// per scenario x seed that has any, in canonical order.
///
/// # Errors
/// [`BenchError::NonFinite`] if a strategy returns a non-finite quality or measurement, and any
/// trial error.
pub fn execute(
    resolved: &Resolved<'_>,
    only: Option<&[WorkUnit]>,
    ctx: &RunContext,
    observer: &mut dyn Observer,
) -> Result<RawRun> {
    let wanted: Option<std::collections::HashSet<&WorkUnit>> = only.map(|u| u.iter().collect());
    let selected = |sc: &str, seed: u64, strategy: &str| -> bool {
        wanted.as_ref().is_none_or(|w| {
            w.contains(&WorkUnit {
                scenario: sc.to_string(),
                seed,
                strategy: strategy.to_string(),
            })
        })
    };
    let total = resolved
        .units
        .iter()
        .filter(|u| selected(&u.scenario, u.seed, &u.strategy))
        .count();
    observer.start(total);
    let mut raw = RawRun::default();
    for sc in &resolved.scenarios {
        // Each scenario measures its trainings its own way (repeat short fits, or once).
        let ctx = &ctx.with_policy(sc.measure_policy());
        let specs = sc.strategies();
        for &seed in &resolved.seeds {
            let mine: Vec<&StrategySpec> = specs
                .iter()
                .filter(|s| selected(sc.name(), seed, &s.name))
                .collect();
            if mine.is_empty() {
                continue;
            }
            let owner = mine.iter().any(|s| s.kind == StrategyKind::Baseline);
            observer.trial(sc.name(), seed);
            let mut trial = sc.trial(seed, ctx)?;
            let source = trial.source_cost();
            if owner {
                if let Some(m) = &source {
                    raw.source_costs.push(SourceCost {
                        scenario: sc.name().to_string(),
                        seed,
                        training: m.clone(),
                    });
                }
            } else {
                raw.extra_trials += 1;
            }
            for spec in mine {
                let out = trial.run(&spec.name, ctx)?;
                check_outcome(&out, sc.name(), &spec.name)?;
                let src_co2 = match (&source, spec.uses_source) {
                    (Some(m), true) => m.co2_kg,
                    _ => 0.0,
                };
                raw.records.push(RunRecord {
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
            if owner {
                raw.convergence.extend(trial.convergence(ctx)?);
                if let Some(g) = trial.gate(ctx)? {
                    raw.gate.push(g);
                }
            }
        }
    }
    observer.finish();
    Ok(raw)
}

/// Turns the raw outputs of a complete set of work units into the results file: records in
/// canonical order with their baseline-relative fields and source-inclusive CO2 (from the one
/// recorded source cost of each scenario x seed), aggregates, headline summaries and the
/// convergence view. `run` names the scenarios (looked up in `registry`) and seeds.
///
/// Completeness is the caller's job ([`crate::shard::aggregate`] checks it); `finalize` only
/// orders and derives.
///
/// # Errors
/// [`BenchError::UnknownScenario`] for a scenario of `run` not in `registry`,
/// [`BenchError::UnknownStrategy`] for a record of a strategy the scenario does not offer.
pub fn finalize(
    registry: &Registry,
    run: RunInfo,
    machine: MachineInfo,
    carbon: crate::schema::CarbonSettings,
    raw: RawRun,
) -> Result<ResultsFile> {
    let scenarios: Vec<&dyn Scenario> = run
        .scenarios
        .iter()
        .map(|n| {
            registry.get(n).ok_or_else(|| BenchError::UnknownScenario {
                name: n.clone(),
                known: registry.names().join(", "),
            })
        })
        .collect::<Result<_>>()?;
    let specs: Vec<Vec<StrategySpec>> = scenarios.iter().map(|s| s.strategies()).collect();
    let sc_index = |name: &str| scenarios.iter().position(|s| s.name() == name);
    let seed_index = |seed: u64| run.seeds.iter().position(|&s| s == seed);
    let group_key = |sc: &str, seed: u64| (sc_index(sc), seed_index(seed));

    let RawRun {
        mut records,
        mut source_costs,
        mut convergence,
        mut gate,
        ..
    } = raw;
    let mut keys = Vec::with_capacity(records.len());
    for r in &records {
        let i = sc_index(&r.scenario).ok_or_else(|| BenchError::UnknownScenario {
            name: r.scenario.clone(),
            known: run.scenarios.join(", "),
        })?;
        let j = specs[i]
            .iter()
            .position(|s| s.name == r.strategy)
            .ok_or_else(|| BenchError::UnknownStrategy {
                scenario: r.scenario.clone(),
                strategy: r.strategy.clone(),
            })?;
        keys.push((i, seed_index(r.seed), j));
    }
    let mut order: Vec<usize> = (0..records.len()).collect();
    order.sort_by_key(|&k| keys[k]);
    let mut slots: Vec<Option<RunRecord>> = records.drain(..).map(Some).collect();
    records = order.into_iter().filter_map(|k| slots[k].take()).collect();
    // Stable sorts keep each trial's own order inside a scenario x seed.
    source_costs.sort_by_key(|c| group_key(&c.scenario, c.seed));
    convergence.sort_by_key(|c| group_key(&c.scenario, c.seed));
    gate.sort_by_key(|g| group_key(&g.scenario, g.seed));

    // Source-inclusive CO2 from the one recorded source cost of each scenario x seed.
    let source_of: BTreeMap<(&str, u64), f64> = source_costs
        .iter()
        .map(|c| ((c.scenario.as_str(), c.seed), c.training.co2_kg))
        .collect();
    for r in records.iter_mut() {
        let uses_source = sc_index(&r.scenario)
            .and_then(|i| specs[i].iter().find(|s| s.name == r.strategy))
            .is_some_and(|s| s.uses_source);
        let src = if uses_source {
            source_of
                .get(&(r.scenario.as_str(), r.seed))
                .copied()
                .unwrap_or(0.0)
        } else {
            0.0
        };
        r.co2_kg_with_source = r.training.co2_kg + src;
    }
    let mut start = 0;
    while start < records.len() {
        let key = (records[start].scenario.clone(), records[start].seed);
        let end = records[start..]
            .iter()
            .position(|r| (r.scenario.as_str(), r.seed) != (key.0.as_str(), key.1))
            .map_or(records.len(), |n| start + n);
        fill_relative(&mut records[start..end]);
        start = end;
    }

    let aggregates = aggregate(&records);
    let summaries = summarize(&scenarios, &aggregates, &gate);
    let convergence_summaries = summarize_convergence(&convergence, &summaries);
    Ok(ResultsFile {
        schema_version: SCHEMA_VERSION,
        generator: generator(),
        created_unix_s: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        run,
        machine,
        carbon,
        records,
        aggregates,
        scenarios: summaries,
        source_costs,
        convergence,
        convergence_summaries,
        gate,
        sweep: None,
    })
}

/// `forge-bench <version>`: the `generator` of every results file this build writes.
pub fn generator() -> String {
    format!("forge-bench {}", env!("CARGO_PKG_VERSION"))
}

/// Runs a plan in this process: [`resolve`], [`execute`] every unit, [`finalize`].
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
    let t0 = Instant::now();
    let resolved = resolve(registry, plan, ctx)?;
    let raw = execute(&resolved, None, ctx, observer)?;
    let run = RunInfo {
        mode: plan.mode.name().to_string(),
        seeds: plan.seeds.clone(),
        scenarios: resolved
            .scenarios
            .iter()
            .map(|s| s.name().to_string())
            .collect(),
        min_measure_s: ctx.min_measure_s,
        total_wall_s: t0.elapsed().as_secs_f64(),
        skipped: resolved.skipped.clone(),
    };
    finalize(
        registry,
        run,
        MachineInfo::detect(),
        ctx.meter.settings(),
        raw,
    )
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
