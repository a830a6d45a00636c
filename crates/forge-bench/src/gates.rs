//! Regression gates: committed thresholds that a results file must meet (`cargo xtask gate`).
//!
//! Thresholds are a JSON file (`xtask/gates.json` in the repository):
//!
//! ```json
//! {
//!   "quality_floors": { "housing": { "regularized": 0.55 } },
//!   "co2_reduction_floors_pct": { "housing": { "regularized": 20.0 } },
//!   "step_reduction_floors_pct": { "housing": { "adapter": 50.0 } },
//!   "gate_verdicts": { "negative-housing": ["block"] }
//! }
//! ```
//!
//! `metric_floors` / `metric_ceilings` bound a strategy's extra metrics (the records'
//! `extra_metrics`, e.g. `{"sst2-full-vs-lora": {"lora-r4": {"storage_pct_full": 5.0}}}`).
//!
//! Quality, reduction and metric bounds apply to the mean over seeds; gate verdicts apply to
//! every seed.
//! An optional `"modes": ["quick", "standard"]` restricts the thresholds to results of those run
//! modes (floors depend on the data budget). A floor for a scenario or strategy that is missing from the results is a violation too (a
//! scenario that silently disappears is a regression), unless the results file was produced with
//! `--scenario` and does not contain that scenario at all (see [`check`]).

use crate::schema::ResultsFile;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Per-scenario, per-strategy floor values.
pub type Floors = BTreeMap<String, BTreeMap<String, f64>>;

/// Per-scenario, per-strategy, per-metric bounds on the records' `extra_metrics`.
pub type MetricBounds = BTreeMap<String, BTreeMap<String, BTreeMap<String, f64>>>;

/// The committed thresholds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Thresholds {
    /// Free-form explanation kept in the file.
    #[serde(default)]
    pub comment: String,
    /// Run modes (`quick`, `standard`, `full`) the thresholds were calibrated for; empty = any.
    /// Results of another mode are a violation (floors depend on the data budget).
    #[serde(default)]
    pub modes: Vec<String>,
    /// Minimum mean quality (R2 or accuracy).
    #[serde(default)]
    pub quality_floors: Floors,
    /// Minimum mean CO2 reduction vs the baseline, percent (source cost excluded).
    #[serde(default)]
    pub co2_reduction_floors_pct: Floors,
    /// Minimum mean gradient-step reduction vs the baseline, percent.
    #[serde(default)]
    pub step_reduction_floors_pct: Floors,
    /// Minimum mean over seeds of an extra metric (e.g. macro-F1).
    #[serde(default)]
    pub metric_floors: MetricBounds,
    /// Maximum mean over seeds of an extra metric (e.g. storage or trainable parameters as a
    /// percentage of full fine-tuning).
    #[serde(default)]
    pub metric_ceilings: MetricBounds,
    /// Allowed gate verdicts per scenario.
    #[serde(default)]
    pub gate_verdicts: BTreeMap<String, Vec<String>>,
    /// When true, no gate decision (any scenario, any seed) whose validated transfer actually
    /// hurt on the held-out test set may be a plain `transfer`: the gate must block it or at
    /// least attach its caution, whatever the scenario.
    #[serde(default)]
    pub hurt_never_transfer: bool,
}

/// One broken threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct Violation {
    /// Scenario.
    pub scenario: String,
    /// Strategy (empty for gate verdicts).
    pub strategy: String,
    /// Human-readable description of what broke.
    pub message: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.strategy.is_empty() {
            write!(f, "{}: {}", self.scenario, self.message)
        } else {
            write!(f, "{} / {}: {}", self.scenario, self.strategy, self.message)
        }
    }
}

/// The outcome of a gate check.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GateReport {
    /// Number of thresholds checked.
    pub checked: usize,
    /// Those that broke.
    pub violations: Vec<Violation>,
}

impl GateReport {
    /// True when nothing broke.
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }
}

/// Checks `results` against `thresholds`. Scenarios absent from `results.run.scenarios` are
/// skipped (so `--scenario housing` can be gated), but a scenario that ran and lacks a strategy
/// or aggregate named by a threshold is a violation.
pub fn check(results: &ResultsFile, thresholds: &Thresholds) -> GateReport {
    let mut rep = GateReport::default();
    if !thresholds.modes.is_empty() {
        rep.checked += 1;
        if !thresholds.modes.contains(&results.run.mode) {
            rep.violations.push(Violation {
                scenario: "(run)".into(),
                strategy: String::new(),
                message: format!(
                    "results are from mode {:?}, the thresholds are calibrated for {:?}",
                    results.run.mode, thresholds.modes
                ),
            });
        }
    }
    let ran = |sc: &str| results.run.scenarios.iter().any(|s| s == sc);
    let mut floors =
        |floors: &Floors, what: &str, get: &dyn Fn(&crate::schema::Aggregate) -> f64| {
            for (sc, per) in floors {
                if !ran(sc) {
                    continue;
                }
                for (st, &floor) in per {
                    rep.checked += 1;
                    let agg = results
                        .aggregates
                        .iter()
                        .find(|a| &a.scenario == sc && &a.strategy == st);
                    match agg {
                        None => rep.violations.push(Violation {
                            scenario: sc.clone(),
                            strategy: st.clone(),
                            message: format!("no results for this strategy ({what} floor {floor})"),
                        }),
                        Some(a) => {
                            let v = get(a);
                            // NaN fails the floor too.
                            if v.is_nan() || v < floor {
                                rep.violations.push(Violation {
                                    scenario: sc.clone(),
                                    strategy: st.clone(),
                                    message: format!("{what} {v:.4} is below the floor {floor}"),
                                });
                            }
                        }
                    }
                }
            }
        };
    floors(&thresholds.quality_floors, "mean quality", &|a| {
        a.quality.mean
    });
    floors(
        &thresholds.co2_reduction_floors_pct,
        "mean CO2 reduction %",
        &|a| a.co2_reduction_pct.mean,
    );
    floors(
        &thresholds.step_reduction_floors_pct,
        "mean gradient-step reduction %",
        &|a| a.step_reduction_pct.mean,
    );
    for (bounds, is_floor) in [
        (&thresholds.metric_floors, true),
        (&thresholds.metric_ceilings, false),
    ] {
        check_metric_bounds(results, bounds, is_floor, &mut rep);
    }
    for (sc, allowed) in &thresholds.gate_verdicts {
        if !ran(sc) {
            continue;
        }
        rep.checked += 1;
        let decisions: Vec<_> = results.gate.iter().filter(|g| &g.scenario == sc).collect();
        if decisions.is_empty() {
            rep.violations.push(Violation {
                scenario: sc.clone(),
                strategy: String::new(),
                message: format!("the transfer gate did not run (expected one of {allowed:?})"),
            });
        }
        for g in decisions {
            if !allowed.iter().any(|a| a == &g.verdict) {
                rep.violations.push(Violation {
                    scenario: sc.clone(),
                    strategy: String::new(),
                    message: format!(
                        "gate verdict {:?} for seed {} is not one of {allowed:?} (reasons: {})",
                        g.verdict,
                        g.seed,
                        g.reasons.join("; ")
                    ),
                });
            }
        }
    }
    if thresholds.hurt_never_transfer {
        rep.checked += 1;
        for g in &results.gate {
            if g.transfer_hurt == Some(true) && g.verdict == "transfer" {
                rep.violations.push(Violation {
                    scenario: g.scenario.clone(),
                    strategy: String::new(),
                    message: format!(
                        "transfer hurt on the held-out test set (seed {}) but the gate said {:?} \
                         without caution (reasons: {})",
                        g.seed,
                        g.verdict,
                        g.reasons.join("; ")
                    ),
                });
            }
        }
    }
    rep
}

/// The mean over seeds of `metric` in the records of `scenario` / `strategy`, `None` when no
/// record carries it.
pub fn mean_extra_metric(
    results: &ResultsFile,
    scenario: &str,
    strategy: &str,
    metric: &str,
) -> Option<f64> {
    let vals: Vec<f64> = results
        .records
        .iter()
        .filter(|r| r.scenario == scenario && r.strategy == strategy)
        .filter_map(|r| r.extra_metrics.get(metric).copied())
        .collect();
    (!vals.is_empty()).then(|| vals.iter().sum::<f64>() / vals.len() as f64)
}

/// Checks floors (`is_floor`) or ceilings on extra metrics; scenarios that did not run are
/// skipped, a missing metric of one that ran is a violation.
fn check_metric_bounds(
    results: &ResultsFile,
    bounds: &MetricBounds,
    is_floor: bool,
    rep: &mut GateReport,
) {
    let what = if is_floor { "floor" } else { "ceiling" };
    for (sc, per) in bounds {
        if !results.run.scenarios.iter().any(|s| s == sc) {
            continue;
        }
        for (st, metrics) in per {
            for (metric, &bound) in metrics {
                rep.checked += 1;
                let violation = |message: String| Violation {
                    scenario: sc.clone(),
                    strategy: st.clone(),
                    message,
                };
                match mean_extra_metric(results, sc, st, metric) {
                    None => rep.violations.push(violation(format!(
                        "no {metric} in the results ({what} {bound})"
                    ))),
                    Some(v) => {
                        // NaN breaks both kinds of bound.
                        let broken = v.is_nan() || if is_floor { v < bound } else { v > bound };
                        if broken {
                            let side = if is_floor { "below" } else { "above" };
                            rep.violations.push(violation(format!(
                                "mean {metric} {v:.4} is {side} the {what} {bound}"
                            )));
                        }
                    }
                }
            }
        }
    }
}

/// Proposes thresholds from a results file: quality floors at `mean - quality_margin` (and
/// 3 std below the mean, whichever is lower), reduction floors at `reduction_fraction` of the
/// observed mean reduction for transfer strategies with a positive saving, and the observed
/// majority gate verdicts. A starting point for the committed file, to be reviewed by hand.
pub fn propose(results: &ResultsFile, quality_margin: f64, reduction_fraction: f64) -> Thresholds {
    let mut t = Thresholds {
        comment:
            "Proposed from a results file by forge_bench::gates::propose; review before committing."
                .into(),
        hurt_never_transfer: true,
        ..Default::default()
    };
    for a in &results.aggregates {
        let q = (a.quality.mean - quality_margin).min(a.quality.mean - 3.0 * a.quality.std);
        t.quality_floors
            .entry(a.scenario.clone())
            .or_default()
            .insert(a.strategy.clone(), (q * 1000.0).floor() / 1000.0);
        if a.kind == crate::schema::StrategyKind::Transfer {
            if a.co2_reduction_pct.mean > 0.0 {
                t.co2_reduction_floors_pct
                    .entry(a.scenario.clone())
                    .or_default()
                    .insert(
                        a.strategy.clone(),
                        (a.co2_reduction_pct.mean * reduction_fraction).floor(),
                    );
            }
            if a.step_reduction_pct.mean > 0.0 {
                t.step_reduction_floors_pct
                    .entry(a.scenario.clone())
                    .or_default()
                    .insert(
                        a.strategy.clone(),
                        (a.step_reduction_pct.mean * reduction_fraction).floor(),
                    );
            }
        }
    }
    for s in &results.scenarios {
        if let Some(v) = &s.gate_verdict {
            t.gate_verdicts.insert(s.scenario.clone(), vec![v.clone()]);
        }
    }
    t
}
