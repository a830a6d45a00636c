//! End-to-end tests of the runner, schema round trip, regression gate and figures on the toy
//! scenario and on a synthetic multi-scenario results file (no datasets, deterministic meter).

use forge_bench::example::Toy;
use forge_bench::gates::{check, Thresholds};
use forge_bench::scenario::{Meter, Mode, Registry, RunContext};
use forge_bench::schema::*;
use forge_bench::{figures, io, report, runner};
use std::collections::BTreeMap;

/// A meter whose CO2 is proportional to the wall time of the window: deterministic enough for
/// ordering checks, no system counters.
struct FakeMeter;
impl Meter for FakeMeter {
    fn measure(
        &self,
        f: &mut dyn FnMut() -> forge_bench::Result<()>,
    ) -> forge_bench::Result<Measurement> {
        f()?;
        Ok(Measurement {
            wall_time_s: 1e-3,
            cpu_kwh: 1e-9,
            total_kwh: 1e-9,
            co2_kg: 1e-9,
            repeats: 1,
            energy_method: BTreeMap::from([("cpu".to_string(), "fake".to_string())]),
            ..Default::default()
        })
    }
    fn settings(&self) -> CarbonSettings {
        CarbonSettings {
            energy_method: "fake".into(),
            carbon_intensity_g_per_kwh: 475.0,
            pue: 1.0,
            region: "WLD".into(),
            note: "test".into(),
        }
    }
}

fn ctx() -> RunContext {
    let mut c = RunContext::new(Mode::Quick, std::sync::Arc::new(FakeMeter));
    c.min_measure_s = 0.0;
    c.max_repeats = 1;
    c
}

fn toy_results() -> ResultsFile {
    let mut reg = Registry::new();
    reg.register(Box::new(forge_bench::example::Toy)).unwrap();
    let plan = runner::RunPlan {
        mode: Mode::Quick,
        seeds: vec![0, 1, 2],
        scenarios: None,
    };
    runner::run(&reg, &plan, &ctx(), &mut runner::NoProgress).unwrap()
}

#[test]
fn runner_computes_savings_against_the_same_seed_baseline() {
    let r = toy_results();
    assert_eq!(r.schema_version, SCHEMA_VERSION);
    assert_eq!(r.records.len(), 6);
    // The toy scales CO2 by its gradient steps: 100 (scratch) vs 10 (warm start) -> 90 % less.
    let warm = r
        .aggregates
        .iter()
        .find(|a| a.strategy == Toy::TRANSFER)
        .unwrap();
    assert!((warm.co2_reduction_pct.mean - 90.0).abs() < 1e-9);
    assert!((warm.step_reduction_pct.mean - 90.0).abs() < 1e-9);
    // quality 0.79 + 0.001 seed vs 0.80: deltas -0.010, -0.009, -0.008 -> mean -0.009, std 0.001
    assert!((warm.quality_delta.mean + 0.009).abs() < 1e-12);
    assert!((warm.quality_delta.std - 0.001).abs() < 1e-12);
    // Source cost 5e-6 kg is charged on top of 1e-8 kg when included.
    let rec = r
        .records
        .iter()
        .find(|x| x.strategy == Toy::TRANSFER)
        .unwrap();
    assert!((rec.co2_kg_with_source - (5e-6 + 1e-8)).abs() < 1e-15);
    let s = &r.scenarios[0];
    assert_eq!(
        (s.baseline.as_str(), s.transfer.as_str()),
        (Toy::BASELINE, Toy::TRANSFER)
    );
    assert!(report::headline_table(&r).to_text().contains("90.0%"));
}

#[test]
fn results_round_trip_through_an_atomic_write() {
    let r = toy_results();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("sub/r.json");
    io::write_json(&p, &r).unwrap();
    let back = io::read_results(&p).unwrap();
    // serde_json's default float parsing may differ in the last ulp: compare structure and text.
    assert_eq!(back.records.len(), r.records.len());
    assert_eq!(
        serde_json::to_string(&back).unwrap().len(),
        serde_json::to_string(&r).unwrap().len()
    );
    // No temporary files left behind.
    assert_eq!(std::fs::read_dir(p.parent().unwrap()).unwrap().count(), 1);
    // A wrong schema version is a typed error naming the version.
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    v["schema_version"] = serde_json::json!(99);
    std::fs::write(&p, v.to_string()).unwrap();
    let err = io::read_results(&p).unwrap_err();
    assert!(
        matches!(
            err,
            forge_bench::BenchError::SchemaVersion {
                found: Some(99),
                ..
            }
        ),
        "{err}"
    );
    std::fs::write(&p, "{ not json").unwrap();
    assert!(matches!(
        io::read_results(&p).unwrap_err(),
        forge_bench::BenchError::Json { .. }
    ));
}

#[test]
fn gate_passes_then_fails_when_a_threshold_is_broken() {
    let r = toy_results();
    let mut t = Thresholds::default();
    t.quality_floors
        .entry("toy".into())
        .or_default()
        .insert(Toy::TRANSFER.into(), 0.78);
    t.co2_reduction_floors_pct
        .entry("toy".into())
        .or_default()
        .insert(Toy::TRANSFER.into(), 80.0);
    let rep = check(&r, &t);
    assert!(rep.passed(), "{:?}", rep.violations);
    assert_eq!(rep.checked, 2);

    // Raise the quality floor above the measured 0.791 mean: the gate must fail and say why.
    t.quality_floors
        .get_mut("toy")
        .unwrap()
        .insert(Toy::TRANSFER.into(), 0.80);
    let rep = check(&r, &t);
    assert!(!rep.passed());
    let msg = rep.violations[0].to_string();
    assert!(
        msg.contains("toy / toy-transfer") && msg.contains("below the floor 0.8"),
        "{msg}"
    );

    // A CO2-reduction floor above the measured 90 % fails as well.
    let mut t2 = Thresholds::default();
    t2.co2_reduction_floors_pct
        .entry("toy".into())
        .or_default()
        .insert(Toy::TRANSFER.into(), 95.0);
    assert!(!check(&r, &t2).passed());

    // A threshold for a strategy that vanished from the results is a violation.
    let mut t3 = Thresholds::default();
    t3.quality_floors
        .entry("toy".into())
        .or_default()
        .insert("gone".into(), 0.0);
    assert!(check(&r, &t3).violations[0].message.contains("no results"));

    // A required gate verdict that never ran is a violation.
    let mut t4 = Thresholds::default();
    t4.gate_verdicts.insert("toy".into(), vec!["block".into()]);
    assert!(!check(&r, &t4).passed());
}

#[test]
fn committed_thresholds_file_parses() {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../xtask/gates.json");
    let t: Thresholds = io::read_json(&p).unwrap();
    assert!(t.quality_floors.contains_key("housing"));
    assert_eq!(t.gate_verdicts["harmful-source"], vec!["block".to_string()]);
}

/// A synthetic results file shaped like the classical demo's (6 scenarios, 9 strategies,
/// convergence curves and gate statistics) for drawing every figure.
pub fn synthetic() -> ResultsFile {
    let mut r = toy_results();
    r.records.clear();
    r.convergence.clear();
    let scen = [
        "housing",
        "wine",
        "titanic",
        "cancer",
        "diabetes",
        "negative-housing",
    ];
    let strat = [
        ("scratch-sgd", StrategyKind::Baseline),
        ("target-only", StrategyKind::Reference),
        ("source-only", StrategyKind::Reference),
        ("warm-start-sgd", StrategyKind::Transfer),
        ("regularized", StrategyKind::Transfer),
        ("bayesian", StrategyKind::Transfer),
        ("cov-shift", StrategyKind::Transfer),
        ("stat-mapping", StrategyKind::Transfer),
        ("adapter", StrategyKind::Transfer),
    ];
    let mut gate = Vec::new();
    for (si, sc) in scen.iter().enumerate() {
        for seed in 0..3u64 {
            for (k, (st, kind)) in strat.iter().enumerate() {
                let co2 = 2e-9
                    * (1.0 + k as f64)
                    * (1.0 + 0.1 * seed as f64)
                    * if k == 0 { 5.0 } else { 1.0 };
                r.records.push(RunRecord {
                    scenario: sc.to_string(),
                    strategy: st.to_string(),
                    kind: *kind,
                    seed,
                    metric: if si == 2 || si == 3 {
                        Metric::Accuracy
                    } else {
                        Metric::R2
                    },
                    quality: 0.6 + 0.01 * k as f64 - 0.005 * seed as f64,
                    extra_metrics: BTreeMap::new(),
                    trainable_params: 9,
                    gradient_steps: 100 / (k as u64 + 1),
                    epochs: Some(10),
                    training: Measurement {
                        co2_kg: co2,
                        total_kwh: co2 * 2.0,
                        repeats: 1,
                        ..Default::default()
                    },
                    co2_kg_with_source: co2,
                    co2_reduction_pct: 0.0,
                    co2_reduction_with_source_pct: 0.0,
                    step_reduction_pct: 0.0,
                    quality_delta: 0.0,
                    note: None,
                    config: Config::new(),
                });
            }
            for (st, speed) in [("scratch-sgd", 8.0), ("warm-start-sgd", 1.5)] {
                r.convergence.push(ConvergenceCurve {
                    scenario: sc.to_string(),
                    strategy: st.into(),
                    seed,
                    metric: Metric::R2,
                    quality: (0..40)
                        .map(|e| 0.7 - 0.6 * (-(e as f64) / speed).exp())
                        .collect(),
                });
            }
            let block = si == 5;
            gate.push(GateRecord {
                scenario: sc.to_string(),
                seed,
                verdict: if block {
                    "block".into()
                } else if si == 1 {
                    "transfer_with_caution".into()
                } else {
                    "transfer".into()
                },
                statistics: vec![
                    GateStatistic {
                        name: "mmd2".into(),
                        value: 0.05 * si as f64,
                        threshold: Some(0.5),
                        flagged: false,
                    },
                    GateStatistic {
                        name: "pad".into(),
                        value: 0.3 * si as f64,
                        threshold: Some(1.9),
                        flagged: false,
                    },
                    GateStatistic {
                        name: "ks_shifted_fraction".into(),
                        value: 0.1 * si as f64,
                        threshold: Some(0.5),
                        flagged: false,
                    },
                    GateStatistic {
                        name: "validation_effect".into(),
                        value: if block { -0.4 } else { 0.02 },
                        threshold: Some(0.0),
                        flagged: block,
                    },
                ],
                reasons: vec![],
                transfer_hurt: Some(block),
                subject: "regularized transfer vs target-only".into(),
            });
        }
    }
    r.run.scenarios = scen.iter().map(|s| s.to_string()).collect();
    for sc in scen {
        for seed in 0..3u64 {
            let mut part: Vec<_> = r
                .records
                .iter()
                .filter(|x| x.scenario == sc && x.seed == seed)
                .cloned()
                .collect();
            runner::fill_relative(&mut part);
            for p in part {
                let i = r
                    .records
                    .iter()
                    .position(|x| {
                        x.scenario == p.scenario && x.seed == p.seed && x.strategy == p.strategy
                    })
                    .unwrap();
                r.records[i] = p;
            }
        }
    }
    r.aggregates = runner::aggregate(&r.records);
    let template = r.scenarios[0].clone();
    r.scenarios = scen
        .iter()
        .map(|sc| ScenarioSummary {
            scenario: sc.to_string(),
            baseline: "scratch-sgd".into(),
            transfer: "warm-start-sgd".into(),
            ..template.clone()
        })
        .collect();
    r.convergence_summaries = runner::summarize_convergence(&r.convergence, &r.scenarios);
    r.gate = gate;
    r
}

#[test]
fn figures_are_300_dpi_pngs() {
    let r = synthetic();
    let dir = match std::env::var_os("FORGE_BENCH_FIG_DIR") {
        Some(d) => std::path::PathBuf::from(d),
        None => tempfile::tempdir().unwrap().keep(),
    };
    let written = figures::write_all(&r, &dir).unwrap().written;
    // CO2 per strategy, quality vs CO2, quality per strategy, convergence (+ gate when present)
    assert_eq!(written.len(), 5);
    for p in &written {
        let phys = figures::read_phys(p).unwrap().expect("pHYs chunk");
        assert_eq!(phys, (11_811, 11_811, true), "{}", p.display());
        // 11811 px/m * 0.0254 m/in = 300.0 DPI
        assert!((f64::from(phys.0) * 0.0254 - 300.0).abs() < 0.01);
    }
}

#[test]
fn committed_reference_results_pass_the_committed_gate() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let r = io::read_results(&root.join("results/reference.json")).unwrap();
    let t: Thresholds = io::read_json(&root.join("xtask/gates.json")).unwrap();
    let rep = check(&r, &t);
    assert!(rep.checked > 50, "{}", rep.checked);
    assert!(rep.passed(), "{:?}", rep.violations);
    // and breaking one floor is caught
    let mut t2 = t.clone();
    t2.quality_floors
        .get_mut("housing")
        .unwrap()
        .insert("warm-start-sgd".into(), 0.99);
    let rep = check(&r, &t2);
    assert_eq!(rep.violations.len(), 1);
    assert_eq!(rep.violations[0].scenario, "housing");
    // and a gate that lets a harmful transfer through is caught
    assert!(t.hurt_never_transfer);
    let mut r2 = r.clone();
    let g = r2
        .gate
        .iter_mut()
        .find(|g| g.transfer_hurt == Some(true))
        .expect("the reference run has a harmful transfer");
    g.verdict = "transfer".into();
    let rep = check(&r2, &t);
    assert_eq!(rep.violations.len(), 1, "{:?}", rep.violations);
    assert!(rep.violations[0].message.contains("transfer hurt"));
}

#[test]
fn thresholds_for_other_modes_are_a_violation() {
    let r = toy_results(); // mode "quick"
    let t = Thresholds {
        modes: vec!["full".into()],
        ..Default::default()
    };
    let rep = check(&r, &t);
    assert!(!rep.passed());
    assert!(
        rep.violations[0].message.contains("calibrated for"),
        "{}",
        rep.violations[0]
    );
    let t = Thresholds {
        modes: vec!["quick".into(), "standard".into()],
        ..Default::default()
    };
    assert!(check(&r, &t).passed());
}
