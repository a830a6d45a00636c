//! Proves that a new scenario needs no change to the runner, the tables, the figures, the gates
//! or xtask beyond registering it: a dummy scenario with its own strategy names (no
//! `scratch-sgd` / `warm-start-sgd`), its own words, measurement policy, configuration and
//! convergence curves goes through run -> tables -> figures -> gate in a test registry, and the
//! generic sources name no scenario's strategy.

mod common;

use forge_bench::gates::{check, Thresholds};
use forge_bench::scenario::{Mode, Registry, RunContext, Scenario, StrategyOutcome, Trial};
use forge_bench::schema::*;
use forge_bench::{figures, io, report, runner, StrategySpec};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// A fine-tuning-like scenario: full fine-tuning (baseline) vs LoRA r4 (headline) and r8.
struct Dummy {
    trainings: Arc<AtomicUsize>,
}

struct DummyTrial {
    seed: u64,
    trainings: Arc<AtomicUsize>,
}

const STRATEGIES: [(&str, StrategyKind, u64, f64); 4] = [
    ("full-ft", StrategyKind::Baseline, 1_000_000, 0.90),
    ("frozen-head", StrategyKind::Reference, 1_000, 0.70),
    ("lora-r4", StrategyKind::Transfer, 20_000, 0.88),
    ("lora-r8", StrategyKind::Transfer, 40_000, 0.89),
];

impl Scenario for Dummy {
    fn name(&self) -> &str {
        "dummy-ft"
    }
    fn description(&self) -> &str {
        "a dummy fine-tuning scenario"
    }
    fn metric(&self) -> Metric {
        Metric::Accuracy
    }
    fn strategies(&self) -> Vec<StrategySpec> {
        STRATEGIES
            .iter()
            .map(|(n, k, _, _)| StrategySpec::new(n, *k, *k != StrategyKind::Baseline, n))
            .collect()
    }
    fn headline_strategy(&self) -> &str {
        "lora-r4"
    }
    fn wording(&self) -> Wording {
        Wording {
            baseline: "full fine-tuning".into(),
            transfer: "LoRA r4".into(),
            curve_x: "training epochs".into(),
            protocol: "Dummy protocol: every weight trained vs a rank-4 adapter.".into(),
        }
    }
    // measure_policy: the default (once), although the context asks for a 0.5 s window.
    fn trial(&self, seed: u64, _ctx: &RunContext) -> forge_bench::Result<Box<dyn Trial>> {
        Ok(Box::new(DummyTrial {
            seed,
            trainings: self.trainings.clone(),
        }))
    }
}

impl Trial for DummyTrial {
    fn run(&mut self, strategy: &str, ctx: &RunContext) -> forge_bench::Result<StrategyOutcome> {
        let &(name, _, params, quality) =
            STRATEGIES.iter().find(|s| s.0 == strategy).ok_or_else(|| {
                forge_bench::BenchError::UnknownStrategy {
                    scenario: "dummy-ft".into(),
                    strategy: strategy.into(),
                }
            })?;
        let counter = self.trainings.clone();
        let ((), training) = ctx.measure(|| {
            counter.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })?;
        let training = Measurement {
            co2_kg: training.co2_kg * params as f64,
            ..training
        };
        let mut config = Config::new();
        config.insert("model".into(), "tiny-bert".into());
        config.insert("lr".into(), 5e-4.into());
        if let Some(r) = name.strip_prefix("lora-r") {
            config.insert("rank".into(), (r.parse::<i64>().unwrap_or(0)).into());
        }
        Ok(StrategyOutcome {
            quality: quality + 0.001 * self.seed as f64,
            extra_metrics: Default::default(),
            trainable_params: params,
            gradient_steps: 300,
            epochs: Some(3),
            training,
            note: None,
            config,
        })
    }
    fn source_cost(&self) -> Option<Measurement> {
        None
    }
    fn convergence(&mut self, _ctx: &RunContext) -> forge_bench::Result<Vec<ConvergenceCurve>> {
        Ok(["full-ft", "lora-r4"]
            .iter()
            .map(|s| ConvergenceCurve {
                scenario: "dummy-ft".into(),
                strategy: s.to_string(),
                seed: self.seed,
                metric: Metric::Accuracy,
                quality: if *s == "full-ft" {
                    vec![0.5, 0.8, 0.9, 0.9]
                } else {
                    vec![0.5, 0.7, 0.85, 0.9]
                },
            })
            .collect())
    }
    fn gate(&mut self, _ctx: &RunContext) -> forge_bench::Result<Option<GateRecord>> {
        Ok(Some(GateRecord {
            scenario: "dummy-ft".into(),
            seed: self.seed,
            verdict: "transfer".into(),
            statistics: vec![GateStatistic {
                name: "cka".into(),
                value: 0.8,
                threshold: Some(0.5),
                flagged: false,
            }],
            reasons: vec![],
            transfer_hurt: Some(false),
            subject: "the pretrained encoder vs a random one (CKA)".into(),
        }))
    }
}

#[test]
fn a_registered_scenario_goes_through_run_tables_figures_and_gate() {
    let trainings = Arc::new(AtomicUsize::new(0));
    let mut reg = Registry::new();
    reg.register(Box::new(forge_bench::example::Toy)).unwrap();
    reg.register(Box::new(Dummy {
        trainings: trainings.clone(),
    }))
    .unwrap();
    let mut ctx = common::fixed_ctx(1e-9);
    // A repetition window that a `Repeat` scenario would fill by running each fit many times.
    ctx.min_measure_s = 0.5;
    ctx.max_repeats = 50;
    let plan = runner::RunPlan {
        mode: Mode::Quick,
        seeds: vec![0, 1, 2],
        scenarios: None,
    };
    let r = runner::run(&reg, &plan, &ctx, &mut runner::NoProgress).unwrap();

    // Measured once per strategy and seed: the scenario's policy, not the context's window.
    assert_eq!(trainings.load(Ordering::SeqCst), 4 * 3);
    assert!(r
        .records
        .iter()
        .filter(|x| x.scenario == "dummy-ft")
        .all(|x| x.training.repeats == 1));

    // Roles come from the scenario: baseline, headline, convergence pairing.
    let s = r
        .scenarios
        .iter()
        .find(|s| s.scenario == "dummy-ft")
        .unwrap();
    assert_eq!(
        (s.baseline.as_str(), s.transfer.as_str()),
        ("full-ft", "lora-r4")
    );
    assert_eq!(s.wording.transfer, "LoRA r4");
    assert_eq!(s.measure_policy, MeasurePolicy::Once);
    let c = r
        .convergence_summaries
        .iter()
        .find(|c| c.scenario == "dummy-ft")
        .unwrap();
    assert_eq!(
        (c.baseline.as_str(), c.transfer.as_str()),
        ("full-ft", "lora-r4")
    );
    assert_eq!((c.baseline_epochs, c.transfer_epochs), (Some(2), Some(3)));
    let lora = r
        .aggregates
        .iter()
        .find(|a| a.strategy == "lora-r4")
        .unwrap();
    assert!((lora.co2_reduction_pct.mean - 98.0).abs() < 1e-9);

    // The config map travels through the results file.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("r.json");
    io::write_results(&p, &r).unwrap();
    let back = io::read_results(&p).unwrap();
    let rec = back
        .records
        .iter()
        .find(|x| x.strategy == "lora-r8")
        .unwrap();
    assert_eq!(rec.config["rank"], ConfigValue::Int(8));
    assert_eq!(rec.config["model"], ConfigValue::Str("tiny-bert".into()));
    assert_eq!(rec.config["lr"], ConfigValue::Float(5e-4));

    // Tables speak the scenario's words, fit in 100 columns, and never speak of SGD.
    let mut text = report::headline_table(&r).to_text();
    for t in report::method_tables(&r) {
        text.push_str(&t.to_text());
    }
    text.push_str(&report::convergence_table(&r).to_text());
    text.push_str(&report::gate_table(&r).to_text());
    // The impact arithmetic scales this run's saving per experiment to a year of experiments.
    let impact = report::impact_table(&r);
    let row = impact
        .rows
        .iter()
        .find(|row| row[0] == "dummy-ft")
        .expect("impact row");
    let saved_year = s.baseline_co2_kg.mean - s.transfer_co2_kg.mean;
    let want = format!("{:.3} kg", saved_year * report::EXPERIMENTS_PER_YEAR);
    assert_eq!(row[3], want, "{row:?}");
    let km: f64 = row[4].parse().unwrap();
    let eq = forge_carbon::equivalents(saved_year * report::EXPERIMENTS_PER_YEAR);
    assert!(
        (km - eq.km_driven).abs() < 0.051,
        "{km} vs {}",
        eq.km_driven
    );
    text.push_str(&impact.to_text());
    for f in report::footer(&r) {
        text.push_str(&report::wrap(&f, report::TERMINAL_WIDTH, 2));
        text.push('\n');
    }
    assert!(text.contains("full-ft (full fine-tuning)"), "{text}");
    assert!(text.contains("lora-r4 (LoRA r4)"), "{text}");
    assert!(text.contains("training epochs"), "{text}");
    assert!(text.contains("Dummy protocol"), "{text}");
    assert!(text.contains("random one (CKA)"), "{text}");
    assert!(!text.contains("SGD"), "{text}");
    for line in text.lines() {
        assert!(
            line.chars().count() <= 100,
            "{} columns: {line}",
            line.len()
        );
    }
    let md = report::readme_section(&r, "cargo xtask demo", "demo");
    assert!(md.contains("Dummy protocol") && !md.contains("SGD"), "{md}");

    // Figures.
    let out = tempfile::tempdir().unwrap();
    let figs = figures::write_all(&r, out.path()).unwrap();
    // CO2 per strategy, quality vs CO2, quality per strategy, convergence, gate, and parameter
    // efficiency (full-ft trains 50x more parameters than LoRA r4).
    assert_eq!(figs.written.len(), 6, "{:?}", figs.notes);
    assert!(figs
        .written
        .iter()
        .any(|p| p.ends_with("parameter_efficiency.png")));

    // Gate: floors on the new scenario pass, a broken one fails naming it.
    let mut t = Thresholds::default();
    t.quality_floors
        .entry("dummy-ft".into())
        .or_default()
        .insert("lora-r4".into(), 0.85);
    t.co2_reduction_floors_pct
        .entry("dummy-ft".into())
        .or_default()
        .insert("lora-r4".into(), 90.0);
    t.gate_verdicts
        .insert("dummy-ft".into(), vec!["transfer".into()]);
    assert!(check(&r, &t).passed(), "{:?}", check(&r, &t).violations);
    t.quality_floors
        .get_mut("dummy-ft")
        .unwrap()
        .insert("lora-r4".into(), 0.95);
    let rep = check(&r, &t);
    assert_eq!(rep.violations.len(), 1);
    assert!(rep.violations[0].to_string().contains("dummy-ft / lora-r4"));
}

#[test]
fn generic_code_names_no_scenario_strategy() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let files = [
        root.join("src/runner.rs"),
        root.join("src/report.rs"),
        root.join("src/figures.rs"),
        root.join("src/gates.rs"),
        root.join("../../xtask/src/main.rs"),
    ];
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for banned in ["scratch-sgd", "warm-start-sgd", "SGD", "classical::", "Sgd"] {
            assert!(
                !text.contains(banned),
                "{} mentions {banned:?}: generic code must take roles and words from the scenario",
                f.display()
            );
        }
    }
}
